#!/usr/bin/python3
"""test_pipeline.py — end-to-end tests of `adaquant quantize` and its stage
commands on stories260K with reduced settings (docs/PIPELINE.md).

usage: test_pipeline.py MODE DIR   (MODE: ref ranks resume failure errors stages)
  ref      single-process run -> DIR/ref/out (the fixture the others compare with);
           eval / inspect read it; the independent numpy reader (pipe_reader.py,
           written from docs/FORMAT.md) dequantises it bit-identically to adaquant
  ranks    mpirun -np 2 and -np 4: byte-identical model.safetensors, quantization.json
  resume   SIGKILL mid-run, --resume: identical bytes, reuse logged; a corrupted
           result file is detected, reported and recomputed
  failure  AQ_FAIL_AT=1:55 (a task LPT gives rank 1): non-zero exit naming rank and task, no OUTDIR; resumable
  errors   every bad input fails with a clear message before any work
  stages   capture (np 2) + calibrate shards + solve: missing shard reported with
           the resubmit command; then identical bytes to quantize
  sequential  --mode sequential at P = 1 and P = 2: identical bytes, the parallel
           allocation is kept, the layers differ from the parallel ones
Environment (set by ctest): AQ_CLI, AQ_MPIRUN, AQ_SHARED_DIR, AQ_SOURCE_DIR.
Exit 77 (skip) when the stories260K assets are absent.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

CLI = os.environ.get("AQ_CLI", "adaquant")
SHARED = os.environ.get("AQ_SHARED_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
TOK = os.path.join(SHARED, "models/stories260K/tok512.bin")
TEXT = os.path.join(SHARED, "data/tinystories/validation.txt")
MPIRUN = [os.environ.get("AQ_MPIRUN", "mpirun"), "--allow-run-as-root", "--oversubscribe", "--mca", "pml", "ob1",
          "--mca", "btl", "self,vader"]
# reduced settings: 8 windows x 64 tokens, cheap AdaQuant, one layer pinned to
# w4a8 so that activation parameters are exercised
CAL = ["--calib-windows", "8", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "2",
       "--options", "w8a16,w4a16,w3a16,w4a8"]
BUD = ["--target-bits", "3.5", "--keep", r"layers\.0\.self_attn\.q_proj=w4a8"]
# global tuning: 20 steps of 20 documents (chunks of 8, 8, 4: uneven over 2 and 4 ranks)
TUNE = ["--tune-steps", "20", "--tune-docs", "40", "--tune-batch", "20", "--tune-lr", "3e-3"]
OUT = ["--eval-docs", "16"] + TUNE
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
COMPARED = ["model.safetensors", "quantization.json", "config.json"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(args, np=0, env=None, timeout=300):
    cmd = (MPIRUN + ["-np", str(np)] if np else []) + [CLI] + args
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    return p


def quantize(out, np=0, extra=(), env=None):
    return run(["quantize", MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--out", out] + CAL + BUD + OUT
               + list(extra), np=np, env=env)


def same_output(a, b, what):
    for f in COMPARED:
        x = open(os.path.join(a, f), "rb").read() if os.path.exists(os.path.join(a, f)) else None
        y = open(os.path.join(b, f), "rb").read() if os.path.exists(os.path.join(b, f)) else None
        check(x is not None and x == y, f"{what}: {f} byte-identical")


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(d + ".work", ignore_errors=True)
    os.makedirs(os.path.dirname(d), exist_ok=True)


def mode_ref(top):
    out = os.path.join(top, "ref", "out")
    fresh(out)
    p = quantize(out)
    check(p.returncode == 0, "quantize P=1 succeeds: " + p.stderr[-500:])
    if p.returncode:
        return
    for f in COMPARED + ["report.md", "report.json", "pareto.svg", "bits.svg"]:
        check(os.path.exists(os.path.join(out, f)), f"OUTDIR has {f}")
    check("perplexity: FP" in p.stdout and out in p.stdout, "prints FP/quantized perplexity and where the output is")
    ev = run(["eval", MODEL, "--tokenizer", TOK, "--text", TEXT, "--quantized", out, "--max-docs", "16"])
    check(ev.returncode == 0 and "perplexity (Q)" in ev.stdout, "adaquant eval --quantized reads OUTDIR")
    rep = json.load(open(os.path.join(out, "report.json")))
    m = re.search(r"perplexity \(Q\):\s*([0-9.]+)", ev.stdout)
    check(m is not None and abs(float(m.group(1)) - rep["run"]["evaluation"]["ppl_quantized"]) < 1e-3,
          "eval --quantized OUTDIR (tuned norms, scales, biases read from the file) reproduces the report's "
          f"perplexity: {m.group(1) if m else ev.stdout[-300:]} vs {rep['run']['evaluation']['ppl_quantized']}")
    tune = json.load(open(os.path.join(out, "quantization.json")))["tune"]
    check(tune["steps"] == 20 and tune["docs"] == 40 and tune["kl_last_step"] < tune["kl_first_step"],
          f"global tuning ran and lowered the batch KL: {tune}")
    # the same allocation without tuning (results reused): tuning lowers the evaluation KL
    nt = os.path.join(top, "ref", "notune")
    fresh(nt)
    p = quantize(nt, extra=["--work", out + ".work", "--resume", "--no-tune"])
    check(p.returncode == 0, "--no-tune run succeeds: " + p.stderr[-300:])
    if p.returncode == 0:
        kl_nt = json.load(open(os.path.join(nt, "report.json")))["run"]["evaluation"]["kl_mean"]
        kl_t = rep["run"]["evaluation"]["kl_mean"]
        check(kl_t < kl_nt, f"tuning lowers the evaluation KL (held-out documents): {kl_t:.5f} < {kl_nt:.5f}")
        check(json.load(open(os.path.join(nt, "quantization.json")))["tune"] == {"steps": 0}, "--no-tune recorded")
    ins = run(["inspect", out])
    check(ins.returncode == 0 and "q_proj.qweight" in ins.stdout, "adaquant inspect reads OUTDIR")
    # independent reader vs adaquant's own dequantisation
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("skip reader: numpy is absent (needs Debian python3-numpy)")
        return
    dump = os.path.join(top, "ref", "dump")
    shutil.rmtree(dump, ignore_errors=True)
    os.makedirs(dump)
    helper = os.path.join(os.path.dirname(CLI), "tests", "test_pipeline_dequant")
    d = subprocess.run([helper, out, dump], capture_output=True, text=True)
    check(d.returncode == 0, "adaquant's dequantisation dumped: " + d.stderr)
    reader = os.path.join(os.environ.get("AQ_SOURCE_DIR", "."), "tests", "scripts", "pipe_reader.py")
    r = subprocess.run([sys.executable, reader, out, dump], capture_output=True, text=True)
    print(r.stdout + r.stderr)
    check(r.returncode == 0, "independent numpy reader (docs/FORMAT.md) equals adaquant bit for bit")


def ref_out(top):
    out = os.path.join(top, "ref", "out")
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        print("the reference output is missing: run the 'ref' mode (ctest fixture pipeline_ref) first")
        sys.exit(1)
    return out


def mode_ranks(top):
    ref = ref_out(top)
    for np in (2, 4):
        out = os.path.join(top, f"ranks{np}", "out")
        fresh(out)
        p = quantize(out, np=np)
        check(p.returncode == 0, f"quantize P={np} succeeds: " + p.stderr[-500:])
        same_output(ref, out, f"P={np} vs P=1")


def count_results(work):
    d = os.path.join(work, "results")
    return len([f for f in os.listdir(d) if f.endswith(".aqr")]) if os.path.isdir(d) else 0


def mode_resume(top):
    ref = ref_out(top)
    out = os.path.join(top, "resume", "out")
    fresh(out)
    cmd = MPIRUN + ["-np", "2", CLI, "quantize", MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--out", out] \
        + CAL + BUD + OUT
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while count_results(out + ".work") < 30 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    n_before = count_results(out + ".work")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    check(n_before >= 30 and n_before < 140, f"killed with SIGKILL mid-calibration ({n_before} of 140 results)")
    check(not os.path.exists(out), "no OUTDIR after the kill")
    p = quantize(out, np=2, extra=["--resume"])
    check(p.returncode == 0, "--resume completes: " + p.stderr[-500:])
    m = re.search(r"calibrate: 140 tasks, (\d+) reused", p.stderr)
    check(m is not None and int(m.group(1)) >= n_before, "resume logs the reused results: "
          + (m.group(0) if m else "no calibrate summary line"))
    same_output(ref, out, "kill -9 + resume vs uninterrupted")
    # corrupt one result file: detected, reported, recomputed, same bytes
    res = os.path.join(out + ".work", "results")
    victim = sorted(os.listdir(res))[7]
    path = os.path.join(res, victim)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(path, "wb").write(bytes(data))
    p = quantize(out, extra=["--resume", "--force"])
    check(p.returncode == 0, "resume with a corrupted result succeeds")
    check("invalid result file" in p.stderr and "CRC" in p.stderr, "corrupted result file detected and reported")
    check("1 invalid recomputed" in p.stderr, "exactly the corrupted task is recomputed")
    same_output(ref, out, "after recomputing the corrupted result")


def mode_failure(top):
    ref = ref_out(top)
    out = os.path.join(top, "failure", "out")
    fresh(out)
    p = quantize(out, np=2, env=dict(ENV, AQ_FAIL_AT="1:55"))
    check(p.returncode != 0, "injected failure: non-zero exit")
    check("rank 1 failed at task 55" in p.stderr, "message names the rank and the task: "
          + [l for l in p.stderr.splitlines() if "failed" in l][:1].__repr__())
    check(not os.path.exists(out) and not [f for f in os.listdir(os.path.dirname(out)) if ".tmp." in f],
          "no OUTDIR (nor a temporary one)")
    p = quantize(out, np=2, extra=["--resume"])
    check(p.returncode == 0, "the failed run resumes")
    same_output(ref, out, "failure + resume vs uninterrupted")


def bad_tokenizer(path):
    """A valid llama2.c tokenizer with 259 tokens (the model has 512)."""
    import struct
    with open(path, "wb") as f:
        f.write(struct.pack("<i", 8))
        pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)]
        for s in pieces:
            f.write(struct.pack("<fi", 0.0, len(s)) + s)


def mode_errors(top):
    base = os.path.join(top, "errors")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    out = os.path.join(base, "out")
    short = os.path.join(base, "short.txt")
    open(short, "w").write("Once upon a time there was a cat.\n\nIt sat.\n\nThe end.\n\nBye.\n")
    tok259 = os.path.join(base, "tok259.bin")
    bad_tokenizer(tok259)
    existing = os.path.join(base, "exists")
    os.makedirs(existing)
    afile = os.path.join(base, "afile")
    open(afile, "w").write("x")

    def q(args, out_dir=out):
        return run(["quantize"] + args + ["--out", out_dir] + OUT)

    std = [MODEL, "--tokenizer", TOK, "--calib-text", TEXT] + CAL
    cases = [
        ("existing OUTDIR", q(std + BUD, existing), "already exists"),
        ("unwritable --out (parent is a file)", q(std + BUD, os.path.join(afile, "out")), "does not exist"),
        ("unknown option name", q([MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--options", "w4a16,w5a16"]),
         "unknown option name 'w5a16'"),
        ("infeasible budget", q([MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--options", "w8a16,w4a16",
                                 "--target-bits", "3"]), "smallest feasible budget"),
        ("calibration text too short", q([MODEL, "--tokenizer", TOK, "--calib-text", short] + CAL + BUD),
         "too short for 8 windows x 64 tokens"),
        ("model/tokenizer mismatch", q([MODEL, "--tokenizer", tok259, "--calib-text", TEXT] + CAL + BUD),
         "model/tokenizer mismatch"),
    ]
    for what, p, needle in cases:
        msg = p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""
        check(p.returncode != 0 and needle in p.stderr, f"{what}: clear error ({msg})")
    check(not os.path.exists(out) and not os.path.exists(out + ".work"), "no work started (no OUTDIR, no work dir)")
    check(sorted(os.listdir(existing)) == [], "the existing OUTDIR is untouched")


def mode_stages(top):
    ref = ref_out(top)
    base = os.path.join(top, "stages")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    work, out = os.path.join(base, "work"), os.path.join(base, "out")
    p = run(["capture", MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--work", work] + CAL, np=2)
    check(p.returncode == 0, "capture under mpirun -np 2: " + p.stderr[-300:])
    for s in (0, 2):
        p = run(["calibrate", "--work", work, "--shard", str(s), "--shards", "3"])
        check(p.returncode == 0, f"calibrate shard {s} of 3")
    p = run(["solve", "--work", work, "--out", out] + BUD + OUT)
    check(p.returncode != 0 and "missing shards 1 of 3" in p.stderr
          and f"submit.sh --resubmit 1 --shards 3 --work {work} " in p.stderr
          and f"adaquant calibrate --work {work} --shard 1 --shards 3" in p.stderr,
          "solve reports the missing shard and the resubmit command: " + p.stderr.strip()[-300:])
    check(not os.path.exists(out), "no OUTDIR while shards are missing")
    p = run(["calibrate", "--work", work, "--shard", "1", "--shards", "3"])
    check(p.returncode == 0, "calibrate the missing shard")
    p = run(["solve", "--work", work, "--out", out] + BUD + OUT, np=2)
    check(p.returncode == 0, "solve succeeds: " + p.stderr[-300:])
    same_output(ref, out, "capture + calibrate shards + solve vs quantize")


def mode_sequential(top):
    ref = ref_out(top)
    outs = []
    for np in (0, 2):
        out = os.path.join(top, f"seq{np}", "out")
        fresh(out)
        p = quantize(out, np=np, extra=["--mode", "sequential"])
        check(p.returncode == 0 and "sequential pass: block 5 of 5" in p.stderr,
              f"--mode sequential P={max(np, 1)} runs the 5 blocks: " + p.stderr[-300:])
        outs.append(out)
    same_output(outs[0], outs[1], "sequential P=2 vs P=1")
    import json
    a = json.load(open(os.path.join(ref, "quantization.json")))
    b = json.load(open(os.path.join(outs[0], "quantization.json")))
    check([l["option"] for l in a["layers"]] == [l["option"] for l in b["layers"]],
          "the sequential pass keeps the parallel allocation")
    check(b["calibration"]["mode"] == "sequential", "quantization.json records the mode")
    x = open(os.path.join(ref, "model.safetensors"), "rb").read()
    y = open(os.path.join(outs[0], "model.safetensors"), "rb").read()
    check(x != y, "sequential layers differ from the parallel ones (recalibrated on quantized inputs)")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    for f in (MODEL, TOK, TEXT):
        if not os.path.exists(f):
            print(f"skip: test asset {f} is absent (set AQ_SHARED_DIR)")
            return 77
    mode, top = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(top, exist_ok=True)
    {"ref": mode_ref, "ranks": mode_ranks, "resume": mode_resume, "failure": mode_failure,
     "errors": mode_errors, "stages": mode_stages, "sequential": mode_sequential}[mode](top)
    n = len(failures)
    print(f"{mode}: {'all checks passed' if not n else f'{n} check(s) FAILED'}")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
