#!/usr/bin/env python3
"""test_cnn_pipe.py MODE DIR [NPM_DIR] — `adaquant quantize MODEL.onnx` and
`adaquant export OUTDIR --format onnx-qdq` (mpi/cmd_quantize_cnn.c,
mpi/pipeline/cnn_*.c) on the model-zoo MNIST CNN (calibration images 0-255,
evaluation 5000-9999, raw pixels). Modes:
  bad     errors before any work: an infeasible budget (the smallest feasible
          one named), an unknown option, --keep matching no layer, a --keep
          option outside the menu, a missing image file; no OUTDIR, no work.
  ranks   P = 1, 2 and 4 (--oversubscribe) give identical OUTDIR bytes (the
          report without its run-dependent fields); the report's figures
          recomputed here from predictions.txt and the idx labels (gzip +
          struct); the allocation meets the budget.
  resume  a rank killed in the middle of the tasks (AQ_FAIL_AT, SIGKILL) and
          rank 0 killed before the rename of OUTDIR: non-zero exit, no
          OUTDIR; --resume then gives the bytes of an uninterrupted run.
  ort     w8a8 RTN top-1 >= 99.4 (FP 99.52, docs/CNN.md: an 8-bit grid costs
          at most a few images; no BN/bias tuning involved), a mixed W/A export
          at opset >= 7 run in onnxruntime-node (graph optimisation
          'disabled') agreeing with our predictions on >= 99.9% of images.
  seq     --mode sequential at P = 1 and 2: identical OUTDIR bytes; its top-1
          not below the parallel run's of the same w2a8 setting (within the
          run-to-run spread, see SEQ_SLACK).
  size    --target-size BYTES: the allocation's bytes, recomputed here from
          quantization.json with the documented formula, within the bound
          and mixed; an infeasible size names the smallest feasible one,
          computed here; `adaquant eval OUTDIR` reproduces report.json's
          run.evaluation, and its --predictions are recounted against the
          labels here.
Without npm/onnxruntime-node, `ort` skips (77) with a message."""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from aqtest import CLI, MPIRUN, SHARED, check, finish  # noqa: E402

MODE, DIR = sys.argv[1], sys.argv[2]
NPM = sys.argv[3] if len(sys.argv) > 3 else ""
MODEL = os.path.join(SHARED, "models/mnist-cnn/model.onnx")
IMG = os.path.join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz")
LAB = os.path.join(SHARED, "data/mnist/t10k-labels-idx1-ubyte.gz")
BASE = ["--calib-images", IMG, "--calib-count", "256", "--eval-images", IMG, "--eval-labels", LAB,
        "--eval-range", "5000:10000", "--normalize", "none", "--progress", "none"]
# A mixed menu the allocation has to choose from, on 32 calibration images
# with 5 Adam iterations per step and 1000 evaluation images: ~1.5 s of CPU
# per run (what is checked is the machinery, not AdaQuant's quality).
MIXED = ["--options", "w8a8,w4a8,w2a8", "--target-bits", "3.0", "--iters", "5", "--calib-count", "32"]
FAST_EVAL = ["--eval-range", "5000:6000"]
FP_5000_6000 = 998  # `adaquant eval` of the FP model, whose logits cnn_models_mnist checks against float64


def run(args, ranks=1, env=None, out=None):
    cmd = ([*MPIRUN, "-np", str(ranks)] if ranks > 1 else []) + [CLI, "quantize", MODEL, *BASE, *args]
    if out:
        cmd += ["--out", out]
    e = dict(os.environ, **(env or {}))
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)
    return p.returncode, p.stdout + p.stderr


def labels():
    raw = gzip.open(LAB).read()
    n = struct.unpack(">I", raw[4:8])[0]
    return list(raw[8:8 + n])


def canonical(outdir):
    """Every file's bytes; report.json without what depends on the run
    (wall and CPU times, rank count, reused/computed tasks, the command line)."""
    files = {}
    for f in sorted(os.listdir(outdir)):
        data = open(os.path.join(outdir, f), "rb").read()
        if f == "report.json":
            r = json.loads(data)
            for k in ("timing", "timing_cpu", "ranks", "tasks", "command"):
                r["run"].pop(k)
            data = json.dumps(r, sort_keys=True).encode()
        files[f] = data
    return files


def same(a, b, what):
    ca, cb = canonical(a), canonical(b)
    diff = [f for f in sorted(set(ca) | set(cb)) if ca.get(f) != cb.get(f)]
    check(not diff, f"{what}: identical OUTDIR bytes (differing: {diff})")


def mode_bad():
    cases = [
        (["--options", "w8a8,w2a8", "--target-bits", "1.5"], "infeasible budget",
         ["smallest feasible is 2.0000 bits/weight"]),
        (["--options", "w8a8,w5a8"], "unknown option", ["w5a8"]),
        (["--options", "w8a8,w4a8", "--keep", "^NoSuchLayer$=w8a8"], "--keep matching nothing",
         ["NoSuchLayer", "matches no layer"]),
        (["--options", "w4a8", "--keep", "Conv=w8a8"], "--keep option outside the menu", ["not in --options"]),
        (["--options", "w8a8", "--eval-images", "/nonexistent/x.idx"], "missing image file", ["/nonexistent/x.idx"]),
    ]
    for i, (args, what, needles) in enumerate(cases):
        out = os.path.join(DIR, f"bad{i}")
        rc, text = run(args, out=out)
        found = all(n in text for n in needles)
        check(rc != 0 and found, f"{what}: exit {rc}, message names {needles}: {text.strip().splitlines()[-1:]}")
        check(not os.path.exists(out) and not os.path.exists(out + ".work/results")
              or not os.listdir(out + ".work/results"), f"{what}: no OUTDIR, no task ran")


def check_report(outdir, budget_bits):
    r = json.load(open(os.path.join(outdir, "report.json")))
    ev = r["run"]["evaluation"]
    n = ev["images"]
    lab = labels()[5000:5000 + n]
    pred = [int(x) for x in open(os.path.join(outdir, "predictions.txt")).read().split()]
    correct = sum(p == l for p, l in zip(pred, lab))
    check(n == 1000 and len(pred) == n and abs(ev["top1_quantized"] - correct / n) < 1e-12,
          f"top1_quantized {ev['top1_quantized']} = predictions.txt vs labels {correct}/{n}")
    # FP: the engine's known answer on 5000..5999 (`adaquant eval`, docs/CNN.md)
    check(ev["correct_fp"] == FP_5000_6000, f"FP {ev['correct_fp']}/1000 correct")
    check(0 <= ev["agreement"] <= 1 and "agreement" in ev, f"agreement {ev['agreement']}")
    for k in ("load", "capture", "tasks", "solve", "tune", "eval", "write"):
        check(k in r["run"]["timing"], f"run.timing.{k}")
    for k in ("load", "capture", "tasks", "tune", "eval"):
        check(r["run"]["timing_cpu"][k] >= 0, f"run.timing_cpu.{k}")
    params = sum(l["params"] for l in r["layers"])
    wbits = sum(l["params"] * l["w_bits"] for l in r["layers"])
    if budget_bits:
        check(wbits <= budget_bits * params, f"allocation {wbits / params:.3f} bits <= {budget_bits}")
        check(len({l["option"] for l in r["layers"]}) > 1, "a mixed allocation")
    for k in ("bn_reestimate", "bias_correct", "bias_tune", "bn_folds"):
        check(k in r["tune"], f"tune.{k} reported")


def mode_ranks():
    outs = []
    for p in (1, 2, 4):
        out = os.path.join(DIR, f"ranks{p}")
        rc, text = run(MIXED + FAST_EVAL + ["--work", os.path.join(DIR, f"ranks{p}.work")], ranks=p, out=out)
        check(rc == 0, f"P = {p}: exit {rc} {text[-400:] if rc else ''}")
        outs.append(out)
    if all(os.path.isdir(o) for o in outs):
        same(outs[0], outs[1], "P = 2 vs 1")
        same(outs[0], outs[2], "P = 4 vs 1")
        check_report(outs[0], 3.0)


def mode_resume():
    ref = os.path.join(DIR, "ref")
    rc, text = run(MIXED + FAST_EVAL, out=ref)
    check(rc == 0, f"reference run: exit {rc}")
    out, work = os.path.join(DIR, "res"), os.path.join(DIR, "res.work")
    for fail, what in (("calibrate:4:1:kill", "rank 1 killed at task 4"),
                       ("write:3:0:kill", "rank 0 killed before the rename")):
        rc, text = run(MIXED + FAST_EVAL + ["--work", work, "--resume"], ranks=2, env={"AQ_FAIL_AT": fail}, out=out)
        check(rc != 0 and "injected failure" in text, f"{what}: exit {rc}, the point named")
        check(not os.path.exists(out), f"{what}: no OUTDIR")
        for f in os.listdir(DIR):  # a killed write leaves OUTDIR.tmp.<pid> (docs/PIPELINE.md)
            if f.startswith("res.tmp."):
                shutil.rmtree(os.path.join(DIR, f))
    rc, text = run(MIXED + FAST_EVAL + ["--work", work, "--resume"], ranks=2, out=out)
    check(rc == 0, f"resume: exit {rc}")
    r = json.load(open(os.path.join(out, "report.json"))) if rc == 0 else {"run": {"tasks": {}}}
    check(r["run"]["tasks"].get("reused") == 9, f"resume reused every task: {r['run']['tasks']}")
    if rc == 0:
        same(ref, out, "killed twice and resumed vs uninterrupted")


def ort_predictions(model, n_first, n):
    import numpy as np
    raw = gzip.open(IMG).read()
    x = np.frombuffer(raw[16:], np.uint8).reshape(-1, 1, 28, 28)[n_first:n_first + n].astype(np.float32)
    inp, outp = os.path.join(DIR, "x.bin"), os.path.join(DIR, "y.bin")
    x.tofile(inp)
    # batch 1: the zoo model's input is fixed at [1, 1, 28, 28]
    p = subprocess.run(["node", os.path.join(HERE, "onnx_ort_run.mjs"), NPM, "disabled", outp, inp, str(n), "1", model],
                       capture_output=True, text=True, timeout=300)
    if p.returncode:
        print(p.stdout + p.stderr)
        return None
    return np.fromfile(outp, np.float32).reshape(n, -1).argmax(1)


# Sequential vs parallel w2a8 (64 calibration images, 10 Adam iterations, no
# bias tuning, images 5000-6999): measured 1977 vs 1975 correct with the
# skx kernel. Sequential AdaQuant feeds each layer the quantized model's
# input, which on this 3-layer model helps by a few images at most; 4 images
# (0.2 points) is the spread the BLIS kernels give one run (docs/CNN.md).
SEQ = ["--options", "w2a8", "--iters", "10", "--calib-count", "64", "--bias-tune", "0", "--bias-correct", "0",
       "--eval-range", "5000:7000"]
SEQ_SLACK = 4


def correct_of(outdir):
    return json.load(open(os.path.join(outdir, "report.json")))["run"]["evaluation"]["correct_quantized"]


def mode_seq():
    outs = []
    for p in (1, 2):
        out = os.path.join(DIR, f"seq{p}")
        rc, text = run(SEQ + ["--mode", "sequential"], ranks=p, out=out)
        check(rc == 0, f"sequential P = {p}: exit {rc} {text[-400:] if rc else ''}")
        outs.append(out)
    par = os.path.join(DIR, "par")
    rc, text = run(SEQ, out=par)
    check(rc == 0, f"parallel: exit {rc}")
    if rc or not all(os.path.isdir(o) for o in outs):
        return
    same(outs[0], outs[1], "sequential P = 2 vs 1")
    cs, cp = correct_of(outs[0]), correct_of(par)
    check(cs >= cp - SEQ_SLACK, f"sequential {cs}/2000 correct vs parallel {cp}/2000 (slack {SEQ_SLACK})")
    q = json.load(open(os.path.join(outs[0], "quantization.json")))
    check(all(l["option"] == "w2a8" for l in q["layers"]), "sequential: every layer at the one option")


def layer_bytes(l):
    # docs/CNN.md: codes packed, f32 scale, zero and bias per output channel,
    # the activation scale/zero pair when the input is quantized
    bits = l["d_out"] * l["d_in"] * l["w_bits"] + l["d_out"] * 3 * 32 + (64 if l["a_bits"] < 16 else 0)
    return bits / 8


def mode_size():
    menu = ["--options", "w8a8,w4a8,w2a8", "--iters", "5", "--calib-count", "32"] + FAST_EVAL
    out = os.path.join(DIR, "size")
    rc, text = run(menu + ["--target-size", "3000"], out=out)
    check(rc == 0, f"--target-size 3000: exit {rc} {text[-400:] if rc else ''}")
    if rc == 0:
        q = json.load(open(os.path.join(out, "quantization.json")))
        total = sum(layer_bytes(l) for l in q["layers"])
        check(total <= 3000, f"allocation {total} bytes <= 3000")
        check(len({l["option"] for l in q["layers"]}) > 1, "a mixed allocation")
        smallest = sum(layer_bytes(dict(l, w_bits=2, a_bits=8)) for l in q["layers"])
        bad = os.path.join(DIR, "size_bad")
        rc2, text2 = run(menu + ["--target-size", str(int(smallest) - 1)], out=bad)
        need = f"smallest feasible is {int(smallest)} bytes"
        check(rc2 != 0 and need in text2, f"--target-size {int(smallest) - 1}: refused naming '{need}'")
        check(not os.path.exists(bad), "infeasible size: no OUTDIR")
        check_eval(out)


def check_eval(out):
    """`adaquant eval OUTDIR` against the run's report and the labels."""
    pred = os.path.join(DIR, "eval_pred.txt")
    p = subprocess.run([CLI, "eval", out, "--eval-images", IMG, "--eval-labels", LAB, "--eval-range", "5000:6000",
                        "--json", "--predictions", pred], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"eval OUTDIR: exit {p.returncode} {p.stderr[-300:] if p.returncode else ''}")
    if p.returncode:
        return
    got = json.loads(p.stdout)
    ev = json.load(open(os.path.join(out, "report.json")))["run"]["evaluation"]
    for k in ("top1_fp", "top1_quantized", "agreement", "correct_fp", "correct_quantized", "agree", "images", "first"):
        check(got.get(k) == ev[k], f"eval OUTDIR {k} {got.get(k)} = report's {ev[k]}")
    mine = [int(x) for x in open(pred).read().split()]
    lab = labels()[5000:6000]
    check(sum(a == b for a, b in zip(mine, lab)) == got["correct_quantized"], "eval OUTDIR: its predictions recounted")
    check(open(pred).read() == open(os.path.join(out, "predictions.txt")).read(), "eval OUTDIR: predictions.txt")


def mode_ort():
    if not os.path.isfile(os.path.join(NPM, "node_modules/onnxruntime-node/package.json")):
        print(f"skip: onnxruntime-node is not installed in {NPM} (npm unreachable?)")
        return 77
    import onnx_pb as pb
    out8 = os.path.join(DIR, "w8")
    rc, text = run(["--options", "w8a8", "--method", "rtn"], out=out8)
    check(rc == 0, f"w8a8 RTN: exit {rc}")
    if rc == 0:
        r = json.load(open(os.path.join(out8, "report.json")))
        # FP 4976/5000; an 8-bit per-channel grid moves a few images at most
        check(r["run"]["evaluation"]["top1_quantized"] >= 0.994, f"w8a8 top-1 {r['run']['evaluation']['top1_quantized']}")
    for tag, args in (("w8a8", None), ("mixed", MIXED)):
        out = out8 if args is None else os.path.join(DIR, "mixed")
        if args is not None:
            rc, text = run(args, out=out)
            check(rc == 0, f"{tag}: exit {rc}")
        qdq = os.path.join(DIR, f"{tag}.onnx")
        p = subprocess.run([CLI, "export", out, "--format", "onnx-qdq", "--out", qdq], capture_output=True, text=True)
        check(p.returncode == 0, f"{tag}: export exit {p.returncode} {p.stderr[-300:] if p.returncode else ''}")
        if p.returncode:
            continue
        m = pb.model(open(qdq, "rb").read())
        check(m["opset"] >= 7, f"{tag}: exported opset {m['opset']} >= 7 (the input model is opset 1)")
        pred = [int(x) for x in open(os.path.join(out, "predictions.txt")).read().split()]
        ort = ort_predictions(qdq, 5000, 5000)
        check(ort is not None, f"{tag}: onnxruntime-node ran the export")
        if ort is not None:
            agree = sum(int(a) == b for a, b in zip(ort, pred)) / 5000
            check(agree >= 0.999, f"{tag}: ORT vs our evaluation, top-1 agreement {agree:.4f} >= 0.999")


def main():
    if not os.path.exists(MODEL) or not os.path.exists(IMG):
        print(f"skip: test asset {MODEL} or {IMG} is absent")
        return 77
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    rc = {"bad": mode_bad, "ranks": mode_ranks, "resume": mode_resume, "ort": mode_ort, "seq": mode_seq,
          "size": mode_size}[MODE]()
    return rc if rc == 77 else finish(f"cnn_pipe {MODE}")


if __name__ == "__main__":
    sys.exit(main())
