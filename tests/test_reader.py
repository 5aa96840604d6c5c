#!/usr/bin/python3
"""test_reader.py — docs/FORMAT.md is exact: the independent reader
(tests/scripts/pipe_reader.py, Python + numpy, written from FORMAT.md alone)
reproduces what adaquant wrote, for four kinds of run:

  w4a16     asymmetric 4-bit weights (fractional zero points after tuning)
  a8menu    the menu w8a8,w4a8: every layer's activations quantized to 8 bits
  sym       the menu w4a16s,w3a16s (symmetric weights; 3-bit rows with padding
            bits), evaluated with --eval-len 48 so that documents are truncated
  qwen3     a random Qwen3-shaped HF checkpoint (synth_model.py: biases, q/k
            norms, head_dim != hidden / heads, BF16 shards), w4a16: the
            calibrated biases and float q/k norms in the output

Each run is `adaquant quantize` on stories260K with reduced settings (4
calibration windows of 64 tokens, 5 AdaQuant iterations, 3 tuning steps, 16
evaluation documents: ~1-3 CPU-seconds). For each:
  1. dequantised weights: the reader's equal adaquant's bit for bit;
  2. activation quantizers (a8menu): the reader's formula applied to every
     rounding tie, both clamp regions and a fine grid equals adaquant's bit
     for bit;
  3. evaluation: the reader's float64 forward of OUTDIR, with FORMAT.md's
     evaluation protocol, gives the report's document and token counts
     exactly, and its perplexities and KL within the tolerances argued below;
  4. the comparison can fail: a reader that misreads the spec on purpose
     (llama2.c's interleaved RoPE on the q/k rows; activation zero point 0) is
     outside the tolerance.

usage: test_reader.py DUMP_HELPER DIR   (DUMP_HELPER = build/tests/test_reader_dump)
Environment (set by ctest): AQ_CLI, AQ_SHARED_DIR, AQ_SOURCE_DIR.
Exit 77 (skip) when the stories260K assets or numpy are absent.
"""
import json
import os
import shutil
import subprocess
import sys

from aqtest import CLI, MODEL, SRC, TEXT, TOK, check, failures, missing_asset

READER = os.path.join(SRC, "tests", "scripts", "pipe_reader.py")
ENV = dict(os.environ, AQ_PROGRESS="plain")

# Reduced settings (docs/PIPELINE.md): enough to produce every feature of the
# format (tuned norms, fractional zero points, biases, activation parameters),
# not a good model. --kl-windows 0: the allocation uses the layer error, which
# needs no extra forwards.
COMMON = ["--calib-windows", "4", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "1",
          "--init", "rtn", "--kl-windows", "0", "--eval-docs", "16",
          "--tune-steps", "3", "--tune-docs", "6", "--tune-batch", "2", "--tune-len", "64"]
RUNS = [
    ("w4a16", ["--options", "w4a16", "--target-bits", "4"], 512),
    ("a8menu", ["--options", "w8a8,w4a8", "--target-bits", "6"], 512),
    ("sym", ["--options", "w4a16s,w3a16s", "--target-bits", "3.5", "--eval-len", "48"], 48),
    ("qwen3", ["--options", "w4a16", "--target-bits", "4"], 512),
]
# The "qwen3" run quantizes a random Qwen3-shaped HF checkpoint written by
# tests/scripts/synth_model.py (BF16, 2 shards, vocab 512 for tok512.bin):
# q/k/v/o biases (attention_bias), per-head q/k norms, head_dim 24 != 64 / 4.
# Its FP reference is tests/scripts/hf_ref.py's float64 forward.
SYNTH = os.path.join(SRC, "tests", "scripts", "synth_model.py")
QWEN3_ARGS = ["qwen3", "--vocab", "512", "--attention-bias", "--dtype", "bf16", "--shards", "2"]

# Tolerance of a continuous model (no quantized activations): adaquant
# evaluates in float32, the reader in float64 from the same float32 weights,
# so they differ only by the engine's float32 rounding. On the FP model the
# same difference is ~5e-8 relative in perplexity (checked below, engine vs
# model_ref.py's float64 forward, with this same tolerance); 1e-5 is 200x
# that, and 300x below the smallest effect of a misreading we tried
# (integer instead of fractional activation zero points: 3e-3; interleaved
# RoPE: perplexity x 30). Relative for perplexities; for the mean KL (~0.15
# nats) an absolute 1e-5 nats: each logit carries an error of order 1e-6 in
# float32 (|z| <= 20, a few ulp), and KL moves by at most twice that.
TOL_SMOOTH = 1e-5
# Quantized activations make the forward discontinuous: an input within
# float32 rounding of a rounding tie may go to either neighbour, and the flip
# propagates (one at the BOS position, the attention sink, moves every
# document). Both answers are correct readings of the spec: adaquant itself,
# evaluating one a8menu file with different BLIS kernels, spreads by up to
# 7e-4 relative. So the tolerance is measured: the reader re-runs its forward
# with every quantized layer's input multiplied by (1 + 1e-6 N(0,1)) (a few
# float32 ulp, the size of the engine's rounding errors) for PERTURB_SEEDS
# seeds, and we allow PERTURB_FACTOR times the RMS of the moves (RMS is
# steadier than the max: the moves are heavy-tailed). Measured on the a8menu
# files of four kernels: RMS 1.7e-3 to 2.6e-3, actual reader-vs-adaquant
# differences 6e-5 to 1.3e-3, i.e. at most 0.8 RMS. The misreadings below stay
# 30x outside; subtler misreadings of the quantizer itself are the bit-exact
# check's job (step 2).
PERTURB_SEEDS = 6
PERTURB_FACTOR = 5.0




def run(cmd, timeout=200):
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if p.returncode:
        print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}", flush=True)
    return p


def reader(*args):
    return run(["/usr/bin/python3", READER] + [str(a) for a in args])


def reader_eval(out, length, *extra):
    p = reader("eval", out, TOK, TEXT, "--docs", 16, "--len", length, *extra)
    return json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None


def rel(a, b):
    return abs(a - b) / abs(b)


def check_qwen3_output(out, model, tensors):
    """The output carries what the Qwen3 block needs: calibrated biases that
    started from the model's own (a calibration that ignored them would fit
    biases near 0: correlation ~0 with the originals), the float q/k norms
    unchanged, and the config's architecture fields."""
    import numpy as np
    import hf_ref
    orig = hf_ref.read_weights(model)
    for b in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            n = f"model.layers.{b}.self_attn.{proj}.bias"
            c = float(np.corrcoef(tensors[n].astype(np.float64), orig[n])[0, 1])
            check(c > 0.9, f"qwen3: calibrated {n} follows the model's bias (correlation {c:.3f} > 0.9)")
        for nm in ("q_norm", "k_norm"):
            n = f"model.layers.{b}.self_attn.{nm}.weight"
            check(n in tensors and np.array_equal(tensors[n].astype(np.float64), orig[n]),
                  f"qwen3: {n} copied unchanged (float)")
    cfg = json.load(open(os.path.join(out, "config.json")))
    check(cfg["model_type"] == "qwen3" and cfg["head_dim"] == 24 and cfg["attention_bias"] is True,
          f"qwen3: config.json keeps model_type, head_dim, attention_bias ({cfg.get('model_type')}, "
          f"{cfg.get('head_dim')}, {cfg.get('attention_bias')})")


def one_run(top, dump_helper, name, args, length):
    import numpy as np
    out, dump = os.path.join(top, name, "out"), os.path.join(top, name, "dump")
    for d in (out, out + ".work", dump):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(dump)
    model, fp = MODEL, ["--fp", MODEL]
    if name == "qwen3":
        model = os.path.join(top, name, "hf")
        check(run(["/usr/bin/python3", SYNTH] + QWEN3_ARGS[:1] + [model] + QWEN3_ARGS[1:]).returncode == 0,
              f"{name}: synth_model.py writes the checkpoint")
        fp = ["--fp-hf", model]
    p = run([CLI, "quantize", model, "--tokenizer", TOK, "--calib-text", TEXT, "--out", out] + COMMON + args)
    check(p.returncode == 0, f"{name}: quantize succeeds")
    if p.returncode:
        return
    rep = json.load(open(os.path.join(out, "report.json")))
    ev = rep["run"]["evaluation"]
    sys.path.insert(0, os.path.dirname(READER))
    import pipe_reader
    _, tensors, meta, layers = pipe_reader.quantized_layers(out)
    opts = set(layers.values())
    acts = [p for p, o in layers.items() if pipe_reader.parse_option(o)[1] < 16]
    # the premises: what each run is meant to exercise is really in the file
    if name == "w4a16":
        check(opts == {"w4a16"}, f"{name}: every layer w4a16 ({opts})")
    if name == "a8menu":
        check(opts == {"w8a8", "w4a8"} and len(acts) == len(layers),
              f"{name}: both options chosen, every layer with 8-bit activations ({sorted(opts)})")
        az = np.array([tensors[p + ".a_zero"][0] for p in acts])
        check((az != np.round(az)).any(), f"{name}: fractional activation zero points present")
    if name == "sym":
        check(opts == {"w4a16s", "w3a16s"}, f"{name}: both symmetric options chosen ({sorted(opts)})")
    else:
        wz = np.concatenate([tensors[p + ".w_zero"] for p in layers])
        check((wz != np.round(wz)).any(), f"{name}: fractional weight zero points present (global tuning ran)")
    if name == "qwen3":
        check_qwen3_output(out, model, tensors)
        # `adaquant eval --quantized` loads OUTDIR's layers (calibrated biases) onto
        # the source model: the report's figures, up to the order of float64 sums
        # (1e-9 relative is ~1e6 times that rounding, far below any modelling change)
        e = run([CLI, "eval", model, "--tokenizer", TOK, "--text", TEXT, "--quantized", out,
                 "--max-docs", "16", "--json"])
        ej = json.loads(e.stdout.strip().splitlines()[-1]) if e.returncode == 0 else {}
        check(e.returncode == 0 and rel(ej["ppl_q"], ev["ppl_quantized"]) < 1e-9
              and rel(ej["ppl_fp"], ev["ppl_fp"]) < 1e-9,
              f"{name}: adaquant eval --quantized reproduces the report ({ej.get('ppl_q')} vs {ev['ppl_quantized']})")

    # 1, 2: bit-exact dequantisation and activation quantizers
    if acts:
        check(reader("actq-inputs", out, dump).returncode == 0, f"{name}: reader writes activation inputs")
    d = run([dump_helper, out, dump])
    check(d.returncode == 0, f"{name}: adaquant's dequantisation / activation quantizers dumped: {d.stdout.strip()}")
    r = reader(out, dump)
    check(r.returncode == 0, f"{name}: reader's dequantisation equals adaquant's bit for bit: "
          + r.stdout.strip()[-300:])
    if acts:
        r = reader("actq", out, dump)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        check(r.returncode == 0, f"{name}: reader's activation quantizer equals adaquant's bit for bit: {last}")

    # 3: evaluation
    mine = reader_eval(out, length, *fp)
    check(mine is not None, f"{name}: reader evaluates OUTDIR")
    if mine is None:
        return
    print(f"  reader {mine}\n  report {ev}", flush=True)
    check(mine["documents"] == ev["documents"] and mine["predicted_tokens"] == ev["predicted_tokens"],
          f"{name}: evaluation protocol: {mine['documents']} documents, {mine['predicted_tokens']} predicted "
          f"tokens (report: {ev['documents']}, {ev['predicted_tokens']})")
    check(rel(mine["ppl_fp"], ev["ppl_fp"]) < TOL_SMOOTH,
          f"{name}: FP perplexity, float64 vs adaquant: {mine['ppl_fp']:.9f} vs {ev['ppl_fp']:.9f}")
    tol, tol_kl = TOL_SMOOTH, TOL_SMOOTH
    if acts:
        moves = [reader_eval(out, length, "--perturb", s) for s in range(1, PERTURB_SEEDS + 1)]
        check(all(m is not None for m in moves), f"{name}: perturbed evaluations run")
        if all(m is not None for m in moves):
            dp = [m["ppl_quantized"] / mine["ppl_quantized"] - 1 for m in moves]
            rms = (sum(x * x for x in dp) / len(dp)) ** 0.5
            tol = max(TOL_SMOOTH, PERTURB_FACTOR * rms)
            # KL = cross-entropy(FP, Q) - entropy(FP): it moves with log ppl, i.e. by ~ the relative ppl move
            tol_kl = tol
            print(f"  float32-sized perturbations move the perplexity by {', '.join(f'{x:.2g}' for x in dp)} "
                  f"(relative; RMS {rms:.3g}): tolerance {tol:.3g}; {mine['near_ties']} activation decisions "
                  "within 1e-4 of a tie", flush=True)
    d_ppl, d_kl = rel(mine["ppl_quantized"], ev["ppl_quantized"]), abs(mine["kl_mean"] - ev["kl_mean"])
    check(d_ppl < tol, f"{name}: quantized perplexity, reader vs adaquant: {mine['ppl_quantized']:.9f} vs "
          f"{ev['ppl_quantized']:.9f} (relative {d_ppl:.2g} < {tol:.2g})")
    check(d_kl < tol_kl, f"{name}: mean KL(FP || Q), reader vs adaquant: {mine['kl_mean']:.9f} vs "
          f"{ev['kl_mean']:.9f} (difference {d_kl:.2g} < {tol_kl:.2g})")

    # 4: the comparison catches misreadings
    for mis in (["rope", "azero"] if acts else ["rope"]):
        bad = reader_eval(out, length, "--misread", mis)
        check(bad is not None and rel(bad["ppl_quantized"], ev["ppl_quantized"]) > tol,
              f"{name}: a reader misreading '{mis}' is caught: perplexity "
              f"{bad['ppl_quantized'] if bad else None} vs {ev['ppl_quantized']:.6f}")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    if missing_asset():
        return 77
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("skip: numpy is absent (Debian python3-numpy; scripts/deps.sh installs it)")
        return 77
    dump_helper, top = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(top, exist_ok=True)
    for name, args, length in RUNS:
        one_run(top, dump_helper, name, args, length)
    n = len(failures)
    print(f"reader: {'all checks passed' if not n else f'{n} check(s) FAILED'}")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
