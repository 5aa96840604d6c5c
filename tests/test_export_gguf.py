"""test_export_gguf.py — `adaquant export --format gguf` checked by llama.cpp itself.

  test_export_gguf.py WORKDIR NPM_DIR [--kquants | --kquants-8block | --bpe | --install]

stories260K is exported as F32 and as Q8_0; llama.cpp (node-llama-cpp@3.21.1's
prebuilt CPU build, tests/scripts/llamacpp_logits.mjs) loads each file and
evaluates 64 tokens of a TinyStories evaluation document. Its log-probabilities
are compared with an independent float64 NumPy forward (tests/scripts/model_ref.py,
llama2.c's own layout and RoPE, reading the .bin itself): the exporter's q/k row
order, names and hparams must all be right for these to agree. llama.cpp's own
tokenization (model.tokenize) of documents must equal `adaquant tokenize`.
Bad input: an unknown --type, an unwritable --out (no partial file left).
With --kquants: every K-quant on a random model whose rows fit 256-blocks;
--kquants-8block the same on the 8-block dim-1024 / hidden-2816 shape (a benchmark).
With --bpe: byte-level BPE tokenizer.json vocabularies (Llama-3, Qwen3).
Skips (77) when node/npm or the registry is unavailable.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

import aqtest
from aqtest import check

sys.path.insert(0, os.path.join(aqtest.SRC, "tests", "scripts"))
import model_ref  # noqa: E402
import ggml_ref  # noqa: E402
import hf_ref  # noqa: E402
import pipe_reader  # noqa: E402

PKG = "node-llama-cpp@3.21.1"
SCRIPT = os.path.join(aqtest.SRC, "tests", "scripts", "llamacpp_logits.mjs")
NTOK = 64


def install(npm_dir):
    """node-llama-cpp into npm_dir once (its CPU binary only: optional deps such
    as the CUDA builds are omitted). False (after a skip line) when impossible."""
    if os.path.exists(os.path.join(npm_dir, "node_modules", "node-llama-cpp", "package.json")):
        return True
    if not shutil.which("npm") or not shutil.which("node"):
        print("skip: node/npm not installed (needed for node-llama-cpp)")
        return False
    os.makedirs(npm_dir, exist_ok=True)
    cmd = ["npm", "install", "-E", "--prefix", npm_dir, "--no-audit", "--no-fund", "--omit=optional",
           "--fetch-retries=1", "--fetch-timeout=60000", PKG, "@node-llama-cpp/linux-x64@3.21.1"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        r = None
    if r is None or r.returncode != 0:
        print(f"skip: npm install {PKG} failed (registry not reachable?)")
        if r is not None:
            print(r.stderr[-600:])
        return False
    return True


def export(out, *args):
    return subprocess.run([aqtest.CLI, "export", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--out", out, *args],
                          capture_output=True, text=True)


def llamacpp(npm_dir, gguf, ids, text_files=()):
    cmd = ["node", SCRIPT, npm_dir, gguf, json.dumps(ids)] + list(text_files)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stderr[-2000:])
        return None
    d = json.loads(r.stdout)
    lp = np.array([[(-np.inf if x is None else x) for x in row] for row in d["logprobs"]])
    return lp, d.get("tokens"), (d.get("bos"), d.get("eos"))


def q8_0(w):
    """ggml's quantize_row_q8_0_ref then dequantize, rows of 32-blocks, in float32:
    d = amax / 127, q = roundf(x / d) (half away from zero), stored d = fp16(d)."""
    x = w.astype(np.float32).reshape(-1, 32)
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        idd = np.where(d > 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = x * idd
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return (q * d.astype(np.float16).astype(np.float32)).reshape(w.shape).astype(np.float64)


def q8_act(x):
    """ggml's Q8_0 matmul quantizes its activation rows to Q8_0 too (vec_dot_type
    of Q8_0 is Q8_0): the same rounding, applied to x's rows."""
    return q8_0(x)


def f16_act(x):
    """An F16 weight's matmul rounds the activations to F16 (vec_dot_type F16)."""
    return x.astype(np.float16).astype(np.float64)


def forward_ggml(cfg, w, tokens):
    """model_ref.forward (llama2.c's layout and RoPE, float64) with ggml's
    rounding of the matmul inputs for the Q8_0 export: Q8_0 activations for
    the Q8_0 weights, F16 for ffn_down. Attention and norms stay float."""
    T, hs, H, KV = len(tokens), cfg["hs"], cfg["H"], cfg["KV"]
    x = w["emb"][np.asarray(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(cfg["L"]):
        h = q8_act(model_ref.rmsnorm(x, w["rms_att"][layer]))
        q = model_ref.rope_pairs((h @ w["wq"][layer].T).reshape(T, H, hs), hs)
        k = model_ref.rope_pairs((h @ w["wk"][layer].T).reshape(T, KV, hs), hs)
        v = (h @ w["wv"][layer].T).reshape(T, KV, hs)
        att = np.empty((T, H, hs))
        for hh in range(H):
            kh = hh // (H // KV)
            sc = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(hs) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            att[:, hh, :] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kh, :]
        x = x + q8_act(att.reshape(T, -1)) @ w["wo"][layer].T
        h = q8_act(model_ref.rmsnorm(x, w["rms_ffn"][layer]))
        g = h @ w["w1"][layer].T
        hb = (g / (1 + np.exp(-g))) * (h @ w["w3"][layer].T)
        x = x + f16_act(hb) @ w["w2"][layer].T
    return q8_act(model_ref.rmsnorm(x, w["rms_final"])) @ w["wcls"].T


def as_q8_model(w):
    """The weights the Q8_0 export holds: 64-wide rows Q8_0 (token_embd = the
    tied classifier too), the 172-wide ffn_down rows fall back to F16."""
    q = dict(w)
    for k in ("emb", "wq", "wk", "wv", "wo", "w1", "w3"):
        q[k] = q8_0(w[k])
    q["w2"] = w["w2"].astype(np.float16).astype(np.float64)
    q["wcls"] = q["emb"]
    return q


def compare(name, lp, ref, tol_max, tol_mean):
    # Entries whose reference probability is below e^-30 are left out: float32
    # softmax rounds them to relative noise (and exp underflows near e^-87).
    ok = np.isfinite(lp).all() and lp.shape == ref.shape
    d = np.abs(lp - ref)[ref > -30] if ok else np.array([np.inf])
    print(f"{name}: max |dlogp| {d.max():.3g}, mean {d.mean():.3g}")
    check(ok and d.max() <= tol_max and d.mean() <= tol_mean,
          f"{name}: llama.cpp log-probs within {tol_max} (max) / {tol_mean} (mean) of the float64 reference")
    # top-1: the same token wherever the reference's best two are further apart
    # than the tolerance (a near tie may flip within it).
    top2 = np.sort(ref, axis=1)[:, -2:]
    same = (lp.argmax(1) == ref.argmax(1)) | (top2[:, 1] - top2[:, 0] <= tol_max) if ok else [False]
    check(ok and bool(np.all(same)), f"{name}: the same top-1 token at every position without a near tie")


# `adaquant quantize` with reduced settings (as test_reader.py): w4a16, ~2 s.
QUANTIZE = ["--options", "w4a16", "--target-bits", "4", "--calib-windows", "4", "--calib-len", "64",
            "--iters", "5", "--starts", "1", "--polish", "1", "--init", "rtn", "--kl-windows", "0",
            "--eval-docs", "16", "--tune-steps", "3", "--tune-docs", "6", "--tune-batch", "2",
            "--tune-len", "64"]


def check_quantized(npm_dir, work, cfg, w, ids):
    """--quantized OUTDIR: llama.cpp runs the quantized model (dequantized
    weights, calibrated biases, tuned norm gains) that pipe_reader.py, the
    independent reader written from docs/FORMAT.md, computes in float64."""
    outdir = os.path.join(work, "q4")
    shutil.rmtree(outdir, ignore_errors=True)
    r = subprocess.run([aqtest.CLI, "quantize", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--calib-text",
                        aqtest.TEXT, "--out", outdir] + QUANTIZE, capture_output=True, text=True)
    check(r.returncode == 0, "quantize stories260K (w4a16, reduced settings)")
    if r.returncode:
        print(r.stderr[-1500:])
        return
    gguf = os.path.join(work, "s260k_w4.gguf")
    r = export(gguf, "--quantized", outdir, "--type", "F32")
    check(r.returncode == 0 and "quantized layers loaded" in r.stderr, "export --quantized OUTDIR --type F32")
    res = llamacpp(npm_dir, gguf, ids)
    check(res is not None, "llama.cpp loads the quantized model's GGUF")
    if res:
        # Same float32-vs-float64 argument as the F32 export: 1e-3 / 1e-4.
        compare("w4a16 F32", res[0], model_ref.log_softmax(pipe_reader.QuantModel(outdir).forward(ids)), 1e-3, 1e-4)
        d = np.abs(res[0] - model_ref.log_softmax(model_ref.forward(cfg, w, ids))).max()
        check(d > 0.1, f"w4a16 F32: and it is not the float model (max |dlogp| {d:.3g})")


def synth(work, arch):
    d = os.path.join(work, "hf_" + arch)
    shutil.rmtree(d, ignore_errors=True)
    r = subprocess.run(["/usr/bin/python3", os.path.join(aqtest.SRC, "tests", "scripts", "synth_model.py"), arch, d,
                        "--vocab", "512", "--dtype", "f32"], capture_output=True, text=True)
    check(r.returncode == 0, f"synth_model.py {arch}")
    return d


def check_hf(npm_dir, work):
    """HF checkpoints (random, synth_model.py), F32, against hf_ref.py's float64
    HF forward (rotate-half RoPE) at float32 rounding (1e-3, as the F32
    export): llama-bias (q/k/v/o and MLP biases, head_dim 24 != 64 / 4 heads,
    GQA 4:2, untied classifier) checks the q/k reordering of an HF checkpoint,
    the biases and the head size; qwen2 (q/k/v biases, rope_theta 1e6) that a
    Qwen2 block runs exactly as llama.cpp's `llama` architecture."""
    ids = [1] + [int(t) for t in np.random.default_rng(0).integers(3, 512, NTOK - 1)]
    for arch in ("llama-bias", "qwen2"):
        d = synth(work, arch)
        gguf = os.path.join(work, f"hf_{arch}.gguf")
        r = subprocess.run([aqtest.CLI, "export", d, "--tokenizer", aqtest.TOK, "--out", gguf], capture_output=True,
                           text=True)
        check(r.returncode == 0, f"export the HF {arch} directory")
        res = llamacpp(npm_dir, gguf, ids)
        check(res is not None, f"llama.cpp loads the {arch} GGUF")
        if res:
            cfg = json.load(open(os.path.join(d, "config.json")))
            ref = model_ref.log_softmax(hf_ref.forward(cfg, hf_ref.read_weights(d), ids))
            compare(f"HF {arch} F32", res[0], ref, 1e-3, 1e-4)


KTYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def ggml_round(w, t):
    """w quantized to ggml type t and back by ggml_ref.py (the independent NumPy
    model of ggml's quantize_row_*_ref / dequantize_row_*, bit-exact)."""
    qk = ggml_ref.SIZE[t][0]
    raw = ggml_ref.QUANT[t](w.astype(np.float32).reshape(-1, qk)).astype(np.uint8).tobytes()
    return ggml_ref.dequantize(t, raw).reshape(w.shape).astype(np.float64)


# The 8-block synthetic shape (bench/gguf_kquant8.sh, not a ctest:
# ~12 minutes on a loaded 2-core machine, mostly NumPy's float64 forwards over
# 92M weights per K type). The Q8_K activation noise grows with depth (0.06 /
# 0.010 at 1 block, 0.09 / 0.0135 at 2, 0.127 / 0.025 measured at 8 for every
# K type, 2026-12-08): 0.3 / 0.05 is 2.4x / 2x that (docs/GGUF.md).
SHAPE_1 = dict(layers=1, dim=256, hidden=512, heads=4, kv=2, tol=(0.2, 0.025))
SHAPE_8 = dict(layers=8, dim=1024, hidden=2816, heads=16, kv=4, tol=(0.3, 0.05))


def check_kquants(npm_dir, work, shape=SHAPE_1):
    """Every K-quant on a random HF Llama whose rows are all multiples of 256
    (dim 256, hidden 512, 1 block): llama.cpp's log-probs against hf_ref.py's
    float64 forward with the same K-quant weights (ggml_ref.py). ggml's K-quant
    matmuls round the activations to Q8_K (8 bits per 256-block); that noise
    does not depend on the weight type and measures ~0.06-0.07 max / 0.010
    mean for every type here (0.09 / 0.0135 with 2 blocks), so 0.2 / 0.025.
    The weight quantization the reference models is far larger for the
    low-bit types (0.43 mean for Q2_K, 0.029 for Q6_K against the float
    model): the mean must stay under 3/4 of that."""
    d = os.path.join(work, f"hf_k{shape['layers']}")
    shutil.rmtree(d, ignore_errors=True)
    r = subprocess.run(["/usr/bin/python3", os.path.join(aqtest.SRC, "tests", "scripts", "synth_model.py"), "llama", d,
                        "--vocab", "512", "--dtype", "f32", "--dim", str(shape["dim"]), "--hidden",
                        str(shape["hidden"]), "--layers", str(shape["layers"]), "--heads", str(shape["heads"]),
                        "--kv-heads", str(shape["kv"])], capture_output=True, text=True)
    check(r.returncode == 0, f"synth_model.py llama, {shape['layers']} blocks, dim {shape['dim']}, "
          f"hidden {shape['hidden']}")
    files = []
    for t in KTYPES:
        files.append(os.path.join(work, f"k_{t}.gguf"))
        r = subprocess.run([aqtest.CLI, "export", d, "--tokenizer", aqtest.TOK, "--type", t, "--out", files[-1]],
                           capture_output=True, text=True)
        check(r.returncode == 0 and "using" not in r.stderr, f"export --type {t} (no fallback)")
    ids = [1] + [int(t) for t in np.random.default_rng(0).integers(3, 512, NTOK - 1)]
    r = subprocess.run(["node", SCRIPT, npm_dir, ",".join(files), json.dumps(ids)], capture_output=True, text=True)
    check(r.returncode == 0, "llama.cpp loads and evaluates every K-quant file")
    if r.returncode:
        print(r.stderr[-2000:])
        return
    cfg, w = json.load(open(os.path.join(d, "config.json"))), hf_ref.read_weights(d)
    fp = model_ref.log_softmax(hf_ref.forward(cfg, w, ids))
    for t, o in zip(KTYPES, json.loads(r.stdout)):
        lp = np.array([[(-np.inf if x is None else x) for x in row] for row in o["logprobs"]])
        wq = {k: ggml_round(v, t) if v.ndim == 2 else v for k, v in w.items()}
        ref = model_ref.log_softmax(hf_ref.forward(cfg, wq, ids))
        compare(t, lp, ref, *shape["tol"])
        dq, dfp = (np.abs(lp - x)[x > -30].mean() for x in (ref, fp))
        check(dq < 0.75 * dfp, f"{t}: closer to the {t} reference ({dq:.3g}) than to the float model ({dfp:.3g})")


# Text that exercises the pre-tokenizer regexes: digits, contractions,
# punctuation runs, newlines and spaces, non-Latin scripts, an emoji.
PRETOK_TEXT = ("Hello world! 12345 numbers, I'm here; they'LL go. caf\u00e9\u2014na\u00efve \u201cquotes\u201d\n\n"
               "  spaces\tand tabs \u65e5\u672c\u8a9e \U0001f642 x\n")


def check_hf_bpe(npm_dir, work, docs):
    """Byte-level BPE tokenizer.json vocabularies (the real Llama-3 and Qwen3
    files from the npm_refs fixture, on a random 1-block Llama of their
    vocabulary size): llama.cpp's tokenization through the exported
    tokenizer.ggml.* (gpt2 model, merges, pre llama-bpe / qwen2) equals
    `adaquant tokenize` on evaluation documents and PRETOK_TEXT."""
    files = [os.path.join(work, "pretok.txt")]
    open(files[0], "w").write(PRETOK_TEXT)
    for i, doc in enumerate(docs):
        files.append(os.path.join(work, f"bpe_doc{i}.txt"))
        open(files[-1], "w").write(doc)
    for name, env, vocab in (("llama3", "AQ_TOKJSON_LLAMA3", 128256), ("qwen3", "AQ_TOKJSON_QWEN3", 151669)):
        tj = os.environ.get(env, "")
        if not os.path.exists(tj):
            print(f"note: {env} not set or absent (npm_refs fixture): {name} vocabulary not checked")
            continue
        d = os.path.join(work, "hf_" + name)
        shutil.rmtree(d, ignore_errors=True)
        # tiny and tied (smollm): the file is mostly the vocabulary
        r = subprocess.run(["/usr/bin/python3", os.path.join(aqtest.SRC, "tests", "scripts", "synth_model.py"), "smollm",
                            d, "--vocab", str(vocab), "--dtype", "f32", "--layers", "1", "--dim", "16", "--heads", "2",
                            "--kv-heads", "1", "--hidden", "16"], capture_output=True, text=True)
        gguf = os.path.join(work, name + ".gguf")
        r = subprocess.run([aqtest.CLI, "export", d, "--tokenizer", tj, "--out", gguf], capture_output=True, text=True)
        check(r.returncode == 0, f"export with the {name} tokenizer.json")
        res = llamacpp(npm_dir, gguf, [0], files)
        check(res is not None, f"llama.cpp loads the {name}-vocabulary GGUF")
        for i, f in enumerate(files):
            r = subprocess.run([aqtest.CLI, "tokenize", "-t", tj, "--text", f], capture_output=True, text=True)
            ours = [int(t) for t in r.stdout.split()]
            check(r.returncode == 0 and res is not None and res[1][i] == ours,
                  f"{name}: llama.cpp's tokenization of {os.path.basename(f)} equals adaquant's ({len(ours)} tokens)")


def check_tokenize(npm_dir, gguf, work, docs):
    files = []
    for i, doc in enumerate(docs):
        files.append(os.path.join(work, f"doc{i}.txt"))
        open(files[-1], "w").write(doc)
    res = llamacpp(npm_dir, gguf, [1], files)
    check(res is not None and res[2] == (1, 2), "llama.cpp reads BOS 1 and EOS 2")
    for i, f in enumerate(files):
        r = subprocess.run([aqtest.CLI, "tokenize", "-t", aqtest.TOK, "--text", f], capture_output=True, text=True)
        ours = [int(t) for t in r.stdout.split()]
        check(r.returncode == 0 and res is not None and res[1][i] == ours,
              f"document {i}: llama.cpp's tokenization equals adaquant's ({len(ours)} tokens)")


def check_bad_input(work):
    out = os.path.join(work, "bad.gguf")
    r = export(out, "--type", "Q7_0")
    check(r.returncode == 2 and "Q7_0" in r.stderr, "unknown --type: usage error naming it")
    ro = os.path.join(work, "nodir", "x.gguf")
    r = export(ro, "--type", "F32")
    check(r.returncode == 1 and "nodir" in r.stderr and not os.path.exists(ro),
          "unwritable --out: error naming the path, no file")
    check(not glob.glob(os.path.join(work, "*.tmp*")), "no temporary file left behind")
    r = export(out, "--type", "Q4_K")
    check(r.returncode == 1 and "Q4_K" in r.stderr and "256" in r.stderr and not os.path.exists(out),
          "a K-quant no row of stories260K fits: error naming it, no file")
    d = synth(work, "qwen3")
    r = subprocess.run([aqtest.CLI, "export", d, "--tokenizer", aqtest.TOK, "--out", out], capture_output=True, text=True)
    check(r.returncode == 1 and "architecture qwen3 is not supported yet" in r.stderr and not os.path.exists(out),
          "Qwen3: 'architecture qwen3 is not supported yet', no file")


def main():
    work, npm_dir = sys.argv[1], sys.argv[2]
    if sys.argv[3:] == ["--install"]:  # the fixture: install once, before both tests
        return 0 if install(npm_dir) else 77
    if aqtest.missing_asset() or not install(npm_dir):
        return 77
    os.makedirs(work, exist_ok=True)
    if sys.argv[3:] == ["--kquants"]:
        check_kquants(npm_dir, work)
        return aqtest.finish("export_gguf_kquants")
    if sys.argv[3:] == ["--kquants-8block"]:
        check_kquants(npm_dir, work, SHAPE_8)
        return aqtest.finish("gguf_kquant8")
    if sys.argv[3:] == ["--bpe"]:
        docs = model_ref.documents(aqtest.TEXT)
        check_hf_bpe(npm_dir, work, docs[len(docs) // 2 + 1:len(docs) // 2 + 2])
        return aqtest.finish("export_gguf_bpe")
    cfg, w = model_ref.load_model(aqtest.MODEL)
    tok = model_ref.load_tokenizer(aqtest.TOK, cfg["V"])
    docs = model_ref.documents(aqtest.TEXT)
    ev = docs[len(docs) // 2:]
    ids = next(t for t in (model_ref.encode(tok, d) for d in ev) if len(t) >= NTOK)[:NTOK]

    f32 = os.path.join(work, "s260k_f32.gguf")
    r = export(f32, "--type", "F32")
    check(r.returncode == 0, "export --type F32")
    res = llamacpp(npm_dir, f32, ids)
    check(res is not None, "llama.cpp loads and evaluates the F32 GGUF")
    if res:
        # F32: both sides compute the same function; llama.cpp in float32
        # (dot products of 64 and 172 terms, 5 blocks, softmax in float32),
        # the reference in float64. The log-probs (|logit| < 30) differ by
        # float32 rounding, ~1e-6 relative per operation, amplified by the
        # depth: observed ~1e-5; 1e-3 bounds that with margin while a wrong
        # q/k row order or hparam moves them by > 0.1.
        compare("F32", res[0], model_ref.log_softmax(model_ref.forward(cfg, w, ids)), 1e-3, 1e-4)

    q8 = os.path.join(work, "s260k_q8_0.gguf")
    r = export(q8, "--type", "Q8_0")
    check(r.returncode == 0 and "ffn_down" in r.stderr and "F16" in r.stderr,
          "export --type Q8_0 (ffn_down's 172-wide rows fall back to F16, logged)")
    res = llamacpp(npm_dir, q8, ids)
    check(res is not None, "llama.cpp loads and evaluates the Q8_0 GGUF")
    if res:
        # Q8_0: the reference holds the same Q8_0/F16 weights (ggml's rounding,
        # done here in NumPy) and rounds the matmul inputs as ggml does
        # (forward_ggml). What it cannot reproduce is which activations fall on
        # the other side of a rounding boundary, and this tiny model amplifies
        # those: with F16 weights and activations (11-bit rounding) llama.cpp
        # and the same kind of reference already differ by 0.012 max / 0.002
        # mean in log-prob (measured). Q8_0 activations keep ~7 bits of each
        # block's max, 16x coarser, so ~0.2-0.4 max / ~0.03 mean are expected
        # (observed 0.37 / 0.040): tolerance 0.5 / 0.06. To show that the file
        # holds the quantized weights (not the float ones), the mean must also
        # be clearly smaller than against the float model (0.085 observed).
        lp = res[0]
        ref_q = model_ref.log_softmax(forward_ggml(cfg, as_q8_model(w), ids))
        compare("Q8_0", lp, ref_q, 0.5, 0.06)
        ref_fp = model_ref.log_softmax(model_ref.forward(cfg, w, ids))
        dq, dfp = (np.abs(lp - r)[r > -30].mean() for r in (ref_q, ref_fp))
        check(dq < 0.75 * dfp, f"Q8_0: closer to the Q8_0 reference ({dq:.3g}) than to the float model ({dfp:.3g})")

    check_quantized(npm_dir, work, cfg, w, ids)
    check_hf(npm_dir, work)
    check_tokenize(npm_dir, f32, work, ev[:8])
    check_bad_input(work)
    return aqtest.finish("export_gguf")


if __name__ == "__main__":
    sys.exit(main())
