#!/usr/bin/python3
"""test_pipeline.py — end-to-end tests of `adaquant quantize` and its stage
commands on stories260K with reduced settings (docs/PIPELINE.md).

usage: test_pipeline.py MODE DIR   (MODE: ref ranks resume failure errors stages sequential)
  ref      single-process run -> DIR/ref/out (the fixture the others compare with);
           eval / inspect read it; the independent numpy reader (pipe_reader.py,
           written from docs/FORMAT.md) dequantises it bit-identically to adaquant
  ranks    mpirun -np 2 and -np 4: byte-identical model.safetensors, quantization.json,
           config.json, and the same report.json values (evaluation included: more
           documents than AQ_EVAL_CHUNK x 4, so every rank evaluates)
  resume   one work directory, killed at a deterministic point of every other phase
           (AQ_FAIL_AT=capture:..., tune:..., write:...), each run resuming the last;
           a corrupted result file and a corrupted statistics file before the final
           resume are reported and recomputed; the end result equals the reference
  failure  AQ_FAIL_AT=1:55 (a task LPT gives rank 1), then SIGSEGV sent to rank 1 from
           outside in the middle of calibration: non-zero exit naming the rank, no
           OUTDIR; the completed results resume to the reference bytes
  errors   every bad input fails with a clear message before any work
  stages   capture (np 2) + calibrate shards + solve: missing shard reported with
           the resubmit command; then identical bytes to quantize; then a tampered
           settings.json, a damaged one, a changed model, a changed calibration text
           and a corrupted statistics file are each refused naming the file
  sequential  --mode sequential at P = 1 and P = 2: identical bytes, the parallel
           allocation is kept, the layers differ from the parallel ones
Environment (set by ctest): AQ_CLI, AQ_MPIRUN, AQ_SHARED_DIR, AQ_SOURCE_DIR.
Exit 77 (skip) when the stories260K assets are absent.

Time: each mode makes 1-5 runs of a few seconds to ~40 s each on a loaded 2-core
machine; run() gives each one RUN_TIMEOUT (see there) and tests/pipeline.cmake the
whole mode its ctest TIMEOUT.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

from aqtest import CLI, MODEL, MPIRUN, TEXT, TOK, check, failures, missing_asset

# reduced settings: 8 windows x 64 tokens, cheap AdaQuant, one layer pinned to
# w4a8 so that activation parameters are exercised
CAL = ["--calib-windows", "8", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "2",
       "--options", "w8a16,w4a16,w3a16,w4a8"]
BUD = ["--target-bits", "3.5", "--keep", r"layers\.0\.self_attn\.q_proj=w4a8"]
# global tuning: 20 steps of 18 documents, cut into fixed chunks of AQ_TUNE_CHUNK = 1
# document (mpi/pipeline/pipeline.h) spread over the ranks by length: every rank of 2 or 4
# computes chunks, and the sums cross ranks
TUNE = ["--tune-steps", "20", "--tune-docs", "40", "--tune-batch", "18", "--tune-lr", "3e-3"]
# evaluation: 160 documents = 5 fixed chunks of AQ_EVAL_CHUNK = 32 (mpi/pipeline/fixed_chunks.h;
# checked below): 3 + 2 chunks over 2 ranks, 2 + 1 + 1 + 1 over 4, so every rank
# evaluates and the chunk sums cross ranks
EVAL_DOCS = 160
OUT = ["--eval-docs", str(EVAL_DOCS)] + TUNE
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)
COMPARED = ["model.safetensors", "quantization.json", "config.json"]
# report.json keys whose values legitimately differ between runs of the same job:
# wall times, the rank count, how many tasks a (resumed) run reused or computed,
# and the per-rank memory (predicted for P ranks, measured: docs/MEMORY.md)
RUN_VARIABLE = ("seconds", "ranks", "tasks_reused", "tasks_computed", "memory")
# One quantize run of these settings takes ~35 s at P = 1 on an idle 2-core machine
# and ~100 s at load ~11 (measured); 450 s leaves room for a slower (sanitizer)
# build and still ends a hung run well inside the ctest TIMEOUT (pipeline.cmake).
RUN_TIMEOUT = 450



def run(args, np=0, env=None, timeout=RUN_TIMEOUT):
    cmd = (MPIRUN + ["-np", str(np)] if np else []) + [CLI] + args
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    return p


def quantize(out, np=0, extra=(), env=None):
    return run(["quantize", MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--out", out] + CAL + BUD + OUT
               + list(extra), np=np, env=env)


def report_values(d):
    """report.json without the run-dependent fields (RUN_VARIABLE), or None."""
    path = os.path.join(d, "report.json")
    if not os.path.exists(path):
        return None
    rep = json.load(open(path))
    for k in RUN_VARIABLE:
        rep.get("run", {}).pop(k, None)
    return rep


def same_output(a, b, what):
    for f in COMPARED:
        x = open(os.path.join(a, f), "rb").read() if os.path.exists(os.path.join(a, f)) else None
        y = open(os.path.join(b, f), "rb").read() if os.path.exists(os.path.join(b, f)) else None
        check(x is not None and x == y, f"{what}: {f} byte-identical")
    # the report's numbers (perplexity, KL, top-1 agreement, the layer table) are
    # printed with 17 significant digits, so equal values mean equal doubles
    ra, rb = report_values(a), report_values(b)
    diff = [] if ra is None or rb is None else \
        [k for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)] + \
        [f"run.{k}" for k in sorted(set(ra.get("run", {})) | set(rb.get("run", {})))
         if ra.get("run", {}).get(k) != rb.get("run", {}).get(k)]
    check(ra is not None and ra == rb, f"{what}: report.json values identical except "
          f"{', '.join('run.' + k for k in RUN_VARIABLE)} (differ: {diff})")


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(d + ".work", ignore_errors=True)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    for f in os.listdir(os.path.dirname(d)):  # temporaries of an earlier killed writer
        if f.startswith(os.path.basename(d) + ".tmp."):
            shutil.rmtree(os.path.join(os.path.dirname(d), f), ignore_errors=True)


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
    if os.environ.get("AQ_PIPE_REF_OUTPUT_ONLY") == "1":
        # scripts/test.sh's forced-kernel passes: only the P = 1 output that
        # pipeline_ranks compares with; the checks below (eval, --no-tune,
        # the independent reader) do not depend on the kernel and ran in pass 1
        print("ref: output only (AQ_PIPE_REF_OUTPUT_ONLY=1)")
        return
    ev = run(["eval", MODEL, "--tokenizer", TOK, "--text", TEXT, "--quantized", out, "--max-docs", str(EVAL_DOCS)])
    check(ev.returncode == 0 and "perplexity (Q)" in ev.stdout, "adaquant eval --quantized reads OUTDIR")
    rep = json.load(open(os.path.join(out, "report.json")))
    m = re.search(r"perplexity \(Q\):\s*([0-9.]+)", ev.stdout)
    check(rep["run"]["evaluation"]["documents"] == EVAL_DOCS, f"the report evaluates {EVAL_DOCS} documents")
    # eval prints 4 decimals: 1e-3 is the print rounding (5e-5) with a margin, far
    # below any change a wrong tuned parameter would make
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
    helper = os.path.join(os.path.dirname(CLI), "tests", "test_reader_dump")
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


def eval_chunk():
    """AQ_EVAL_CHUNK from the source: the test must keep covering every rank."""
    src = os.path.join(os.environ.get("AQ_SOURCE_DIR", "."), "mpi", "pipeline", "fixed_chunks.h")
    m = re.search(r"#define AQ_EVAL_CHUNK (\d+)", open(src).read())
    return int(m.group(1)) if m else None


def mode_ranks(top):
    ref = ref_out(top)
    chunk = eval_chunk()
    # > 4 chunks: at P = 4 every rank evaluates, and one of them more than one chunk
    check(chunk is not None and EVAL_DOCS > 4 * chunk,
          f"{EVAL_DOCS} evaluation documents are more than 4 chunks of AQ_EVAL_CHUNK = {chunk}")
    # scripts/test.sh's forced-kernel passes (AQ_PIPE_REF_OUTPUT_ONLY=1) compare P = 2
    # only: the kernel changes the floats, which P = 2 already splits differently
    # from P = 1; P = 4 (every rank evaluating, one of them two chunks) is the
    # split's control flow, checked once in pass 1
    nps = (2,) if os.environ.get("AQ_PIPE_REF_OUTPUT_ONLY") == "1" else (2, 4)
    for np in nps:
        out = os.path.join(top, f"ranks{np}", "out")
        fresh(out)
        p = quantize(out, np=np)
        check(p.returncode == 0, f"quantize P={np} succeeds: " + p.stderr[-500:])
        same_output(ref, out, f"P={np} vs P=1")


def count_results(work):
    d = os.path.join(work, "results")
    return len([f for f in os.listdir(d) if f.endswith(".aqr")]) if os.path.isdir(d) else 0


def flip_byte(path, where, bit):
    data = bytearray(open(path, "rb").read())
    data[where] ^= bit
    open(path, "wb").write(bytes(data))


def logged(p, pattern):
    """The first match of pattern in the run's stderr + stdout, or None."""
    return re.search(pattern, p.stderr + p.stdout)


def no_outdir(out):
    return not os.path.exists(out)


def mode_resume(top):
    """Kill and resume in every phase but calibration (mode failure does that): one
    work directory, each run stopped at a deterministic point by the AQ_FAIL_AT
    hook and resumed by the next; the last run must give the reference bytes. Tuning
    keeps no checkpoint: the resume after a kill in tuning tunes again from step 0."""
    ref = ref_out(top)
    out = os.path.join(top, "resume", "out")
    work = out + ".work"
    fresh(out)
    # capture: rank 1 SIGKILLs itself before block 2; blocks 0 and 1 are written
    p = quantize(out, np=2, env=dict(ENV, AQ_FAIL_AT="capture:2:1:kill"))
    check(p.returncode != 0 and logged(p, r"rank 1 failed in capture at block 2 of 5: injected failure"),
          "killed in capture: non-zero exit naming the rank and the block: " + p.stderr[-300:])
    stats = sorted(os.listdir(os.path.join(work, "stats"))) if os.path.isdir(os.path.join(work, "stats")) else []
    check(len(stats) == 8 and all(f[0] in "01" for f in stats),
          f"blocks 0 and 1 captured (8 statistics files), nothing after: {stats}")
    check(no_outdir(out), "no OUTDIR after the kill in capture")
    # calibrate completes, then tuning: rank 0 exits without MPI_Finalize before step 5
    p = quantize(out, np=2, extra=["--resume"], env=dict(ENV, AQ_FAIL_AT="tune:5:0:exit"))
    check(p.returncode != 0 and logged(p, r"rank 0 failed in tune at step 5 of 20: injected failure"),
          "killed in tuning: non-zero exit naming the rank and the step: " + p.stderr[-300:])
    check(logged(p, r"capture: 8 windows") is not None, "the incomplete capture is run again")
    check(count_results(work) == 140 and no_outdir(out), "all 140 results written, no OUTDIR")
    # writing: every output file written and synced, rank 0 SIGKILLed before the rename
    p = quantize(out, np=2, extra=["--resume"], env=dict(ENV, AQ_FAIL_AT="write:3:kill"))
    check(p.returncode != 0 and logged(p, r"rank 0 failed in write at file 3, all written, before the rename"),
          "killed in writing: non-zero exit naming the point: " + p.stderr[-300:])
    check(logged(p, r"capture: reusing the valid statistics") and logged(p, r"calibrate: 140 tasks, 140 reused"),
          "the resume after tuning reused the statistics and all 140 results")
    check(no_outdir(out), "no OUTDIR after the kill in writing")
    left = [f for f in os.listdir(os.path.dirname(out)) if f.startswith("out.tmp.")]
    check(len(left) == 1 and os.path.exists(os.path.join(os.path.dirname(out), left[0], "report.json")),
          f"the killed writer left its complete temporary directory (documented): {left}")
    for f in left:
        shutil.rmtree(os.path.join(os.path.dirname(out), f))
    # damage one result file (payload) and one statistics file before the last resume
    res = os.path.join(work, "results")
    victim = os.path.join(res, sorted(os.listdir(res))[7])
    flip_byte(victim, os.path.getsize(victim) // 2, 0x40)
    sfile = os.path.join(work, "stats", stats[3])
    flip_byte(sfile, os.path.getsize(sfile) // 2, 0x40)
    p = quantize(out, np=2, extra=["--resume"])
    check(p.returncode == 0, "the last --resume completes: " + p.stderr[-500:])
    check(logged(p, r"invalid statistics file, recomputing: \S*" + re.escape(stats[3]) + r": .*CRC"),
          "the corrupted statistics file is reported by name and captured again")
    check(logged(p, r"invalid result file, recomputing task \d+ .*CRC") is not None,
          "the corrupted result file is reported")
    check(logged(p, r"calibrate: 140 tasks, 139 reused, 1 invalid recomputed") is not None,
          "exactly the corrupted task is recomputed, the rest reused")
    same_output(ref, out, "killed in capture, tuning and writing, resumed each time vs uninterrupted")


def rank_pids(marker, rank):
    """The pids of MPI rank `rank` of the job whose environment holds `marker`
    (a unique string: other jobs on the machine are never touched)."""
    want = (marker.encode(), f"OMPI_COMM_WORLD_RANK={rank}".encode())
    pids = []
    for d in os.listdir("/proc"):
        try:
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0") if d.isdigit() else []
        except OSError:
            continue
        if all(w in env for w in want):
            pids.append(int(d))
    return pids


def quantize_and_kill(out, np, rank, sig, when):
    """quantize under mpirun; as soon as when() holds, send sig to MPI rank `rank`
    from outside (no cooperation from adaquant). The trigger is an event of the run
    (e.g. a result file appearing), not a time. Returns (CompletedProcess-like,
    killed pids)."""
    marker = "AQ_TEST_JOB=" + uuid.uuid4().hex
    env = dict(ENV, AQ_TEST_JOB=marker.split("=", 1)[1])
    cmd = MPIRUN + ["-np", str(np), CLI, "quantize", MODEL, "--tokenizer", TOK, "--calib-text", TEXT,
                    "--out", out] + CAL + BUD + OUT + ["--resume"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    try:
        while proc.poll() is None and not killed and time.time() - t0 < RUN_TIMEOUT:
            if when():
                killed = rank_pids(marker, rank)
                for pid in killed:
                    os.kill(pid, sig)
            time.sleep(0.02)
        so, se = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"$ {' '.join(cmd)}\n  -> {sig!r} to rank {rank} pids {killed}; rc {proc.returncode} "
          f"in {time.time() - t0:.1f} s", flush=True)
    return subprocess.CompletedProcess(cmd, proc.returncode, so, se), killed


def mode_failure(top):
    ref = ref_out(top)
    out = os.path.join(top, "failure", "out")
    work = out + ".work"
    fresh(out)
    # 1. the driver's own failure path (AQ_FAIL_AT in calibration)
    p = quantize(out, np=2, env=dict(ENV, AQ_FAIL_AT="1:55"))
    check(p.returncode != 0, "injected failure: non-zero exit")
    check("rank 1 failed at task 55" in p.stderr, "message names the rank and the task: "
          + [l for l in p.stderr.splitlines() if "failed" in l][:1].__repr__())
    check(no_outdir(out) and not [f for f in os.listdir(os.path.dirname(out)) if ".tmp." in f],
          "no OUTDIR (nor a temporary one)")
    n1 = count_results(work)
    # 2. a crash the code does not see coming: SIGSEGV sent to rank 1 from outside
    #    once 10 more result files exist (or half of what is left), i.e. mid-calibration
    goal = n1 + max(1, min(10, (140 - n1) // 2))
    p, killed = quantize_and_kill(out, 2, 1, signal.SIGSEGV, lambda: count_results(work) >= goal)
    n2 = count_results(work)
    check(len(killed) == 1 and n2 < 140, f"rank 1 (pid {killed}) killed by SIGSEGV mid-calibration "
          f"({n2} of 140 results)")
    check(p.returncode != 0, f"the job ends non-zero after a rank's SIGSEGV (rc {p.returncode})")
    # (the PID in the message is not compared: Open MPI 4.1 prints 0 for a local rank)
    m = logged(p, r"process rank 1 with PID \d+ on node \S+ exited on signal 11")
    check(m is not None, "mpirun names the rank and the signal: " + (m.group(0) if m else (p.stderr + p.stdout)[-400:]))
    check(no_outdir(out), "no OUTDIR after the crash")
    # 3. the completed results resume to the reference bytes
    p = quantize(out, np=2, extra=["--resume"])
    check(p.returncode == 0, "the crashed run resumes: " + p.stderr[-300:])
    m = logged(p, r"calibrate: 140 tasks, (\d+) reused, 0 invalid recomputed")
    check(m is not None and int(m.group(1)) >= n2,
          f"every result file left by the crash is complete and reused (>= {n2}): "
          + (m.group(0) if m else "no calibrate summary line"))
    same_output(ref, out, "failure + SIGSEGV + resume vs uninterrupted")


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
    # copies of the model and the text, changed below to check that the stages notice
    model, text = os.path.join(base, "model.bin"), os.path.join(base, "text.txt")
    shutil.copyfile(MODEL, model)
    shutil.copyfile(TEXT, text)
    p = run(["capture", model, "--tokenizer", TOK, "--calib-text", text, "--work", work] + CAL, np=2)
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
    changed_inputs(work, model, text)


def changed_inputs(work, model, text):
    """A work directory whose inputs or files changed since capture: each change
    is refused by the stage commands with an error naming the file (nothing is
    computed), or, for the statistics, reported and captured again."""
    settings = os.path.join(work, "settings.json")
    good = open(settings, "rb").read()

    def refused(what, needle, cmd=("calibrate",)):
        p = run(list(cmd) + ["--work", work] + (["--shard", "0", "--shards", "1"] if cmd[0] == "calibrate" else
                                                 ["--out", work + "/never"] + BUD + OUT))
        first = (p.stderr.strip().splitlines() or [""])[0]
        check(p.returncode != 0 and needle in p.stderr, f"{what}: {cmd[0]} refuses it ({first})")
        check(not os.path.exists(work + "/never"), f"{what}: no OUTDIR")

    # settings.json edited by hand (another iteration count than the results have)
    open(settings, "wb").write(good.replace(b'"iters": 5,', b'"iters": 6,'))
    refused("tampered settings.json", f"{settings}: the settings were changed after capture")
    # settings.json damaged (cut in half)
    open(settings, "wb").write(good[: len(good) // 2])
    refused("damaged settings.json", f"{settings}: not valid JSON")
    open(settings, "wb").write(good)
    # the model changed since capture: one weight byte near the end (still loadable)
    flip_byte(model, os.path.getsize(model) - 100, 0x01)
    refused("changed model", f"{model}: the model changed since capture")
    refused("changed model", f"{model}: the model changed since capture", cmd=("solve",))
    flip_byte(model, os.path.getsize(model) - 100, 0x01)
    # the calibration text changed since capture: a paragraph appended
    orig = open(text, "rb").read()
    open(text, "ab").write(b"\n\nOnce upon a time a test changed this text.\n")
    refused("changed calibration text", f"{text}: the calibration text changed since capture")
    # capture --resume names the changed input and captures again (then restore)
    p = run(["capture", model, "--tokenizer", TOK, "--calib-text", text, "--work", work, "--resume"] + CAL)
    check(p.returncode == 0 and f"the calibration text {text} changed since {work} was captured" in p.stderr,
          "capture --resume names the changed text and captures again: " + p.stderr[-300:])
    open(text, "wb").write(orig)
    # a corrupted statistics file: a task that reads it fails naming it; capture
    # --resume reports it and writes it again, byte for byte
    p = run(["capture", model, "--tokenizer", TOK, "--calib-text", text, "--work", work, "--resume"] + CAL)
    check(p.returncode == 0, "capture again with the original text")
    sdir = os.path.join(work, "stats")
    victim = os.path.join(sdir, sorted(os.listdir(sdir))[0])
    intact = open(victim, "rb").read()
    flip_byte(victim, len(intact) // 2, 0x40)
    assert victim.endswith("/0.attn_in.aqs")  # read by the q, k and v projections of block 0
    tasks = [f for f in os.listdir(os.path.join(work, "results"))
             if re.match(r"model\.layers\.0\.self_attn\.[qkv]_proj--", f)]
    for f in tasks:  # these tasks must run again (the rest is reused)
        os.unlink(os.path.join(work, "results", f))
    p = run(["calibrate", "--work", work, "--shard", "0", "--shards", "1"])
    check(p.returncode != 0 and re.search(r"rank 0 failed at task \d+ \(layer model\.layers\.0\.[^)]*\): "
                                          + re.escape(victim) + r": payload CRC mismatch", p.stderr),
          "a task reading the corrupted statistics file fails naming it: " + p.stderr.strip()[-300:])
    p = run(["capture", model, "--tokenizer", TOK, "--calib-text", text, "--work", work, "--resume"] + CAL)
    check(p.returncode == 0 and f"invalid statistics file, recomputing: {victim}" in p.stderr,
          "capture --resume reports the corrupted statistics file: " + p.stderr[-300:])
    check(open(victim, "rb").read() == intact, "and writes it again byte-identical")


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
    if missing_asset():
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
