#!/usr/bin/python3
"""test_capture_stream.py — the streaming capture's resume and P-independence
(docs/PIPELINE.md, stage 1) with `adaquant capture` on stories260K, tiny
settings (12 windows x 32 tokens: chunks of 8 + 4 windows; a w4a8 option so
the row samples are captured too):

  ref      P = 1, uninterrupted: the statistics every other run must equal
           byte for byte (deterministic files: the identity is the known answer)
  ranks    P = 2 and P = 4 (4 ranks for 2 chunks: idle ranks take part): identical
  kill     P = 2, rank 1 SIGKILLs itself before block 3 (AQ_FAIL_AT, as
           tests/test_pipeline.py does): non-zero exit, blocks 0..2 written, the
           residual checkpoints left in WORK/resid
  resume   --resume at P = 4 (another P: checkpoints are per chunk) says it
           resumes at block 3, ends identical to ref, and removes WORK/resid
  damaged  killed again before block 3, the checkpoint of block 3 corrupted: the
           resume names the file and the fault, falls back to block 2 (the other
           generation), and still ends identical to ref
  midwrite P = 2, rank 0's background writer SIGKILLs the process after the
           first of block 2's 4 files (AQ_FAIL_AT=capture_write:2:0:kill), while
           rank 0 has gone on to block 3: blocks 0..1 whole, one file of block 2,
           nothing of block 3; --resume at P = 1 resumes at block 2 (the first
           unfinished one) and ends identical to ref
  abort    P = 2, rank 1's writer hook in its default abort mode
           (AQ_FAIL_AT=capture_write:3:1): the writer thread records it and stops
           after one file of block 3, the main thread aborts the job
           (MPI_Abort is not called off the main thread: MPI_THREAD_FUNNELED)

usage: test_capture_stream.py DIR   (environment as test_pipeline.py; exit 77 without assets)
"""
import os
import re
import shutil
import subprocess
import sys
import time

from aqtest import CLI, MODEL, MPIRUN, TEXT, TOK, check, finish, missing_asset

CAL = ["--calib-windows", "12", "--calib-len", "32", "--options", "w8a16,w4a8"]
ENV = dict(os.environ, AQ_PROGRESS="none", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)


def capture(work, np, resume=False, fail_at=None, fresh=True):
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    env = dict(ENV, AQ_FAIL_AT=fail_at) if fail_at else ENV
    cmd = (MPIRUN + ["-np", str(np)] if np > 1 else []) + [CLI, "capture", MODEL, "--tokenizer", TOK, "--text", TEXT,
                                                          "--work", work] + CAL + (["--resume"] if resume else [])
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    return p


def same_stats(ref, work, what):
    a, b = (sorted(os.listdir(os.path.join(d, "stats"))) for d in (ref, work))
    diff = [f for f in a if f not in b or open(os.path.join(ref, "stats", f), "rb").read() !=
            open(os.path.join(work, "stats", f), "rb").read()]
    check(len(a) == 20 and a == b and not diff, f"{what}: the 20 statistics files byte-identical to P = 1 {diff}")


def killed(work, np):
    p = capture(work, np, fail_at="capture:3:1:kill")
    check(p.returncode != 0 and "rank 1 failed in capture at block 3 of 5" in p.stderr,
          "killed before block 3: non-zero exit naming the rank and block " + p.stderr[-300:])
    stats = sorted(os.listdir(os.path.join(work, "stats")))
    check(len(stats) == 12 and all(f[0] in "012" for f in stats), f"blocks 0..2 written, nothing after: {stats}")
    resid = sorted(os.listdir(os.path.join(work, "resid"))) if os.path.isdir(os.path.join(work, "resid")) else []
    check(resid == ["0.0", "0.1", "1.0", "1.1"], f"two generations of residual checkpoints for 2 chunks: {resid}")


def main(argv):
    if missing_asset():
        return 77
    top = argv[1]
    os.makedirs(top, exist_ok=True)
    ref = os.path.join(top, "ref")
    p = capture(ref, 1)
    check(p.returncode == 0 and "blocks 0..4 streamed" in p.stderr, "P = 1 capture " + p.stderr[-300:])
    check(not os.path.exists(os.path.join(ref, "resid")), "a finished capture leaves no residual checkpoint")
    for np in (2, 4):
        w = os.path.join(top, f"p{np}")
        p = capture(w, np)
        check(p.returncode == 0, f"P = {np} capture " + p.stderr[-300:])
        same_stats(ref, w, f"P = {np}")
    work = os.path.join(top, "killed")
    killed(work, 2)
    p = capture(work, 4, resume=True, fresh=False)
    check(p.returncode == 0 and "resuming at block 3 (blocks 0..2 captured)" in p.stderr,
          "--resume at P = 4 resumes at block 3 " + p.stderr[-300:])
    same_stats(ref, work, "killed at P = 2, resumed at P = 4")
    check(not os.path.exists(os.path.join(work, "resid")), "the resumed capture removed its checkpoints")
    killed(work, 2)
    victim = os.path.join(work, "resid", "1.1")  # chunk 1 at block 3's input (generation 3 mod 2)
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(victim, "wb").write(bytes(data))
    p = capture(work, 2, resume=True, fresh=False)
    check(p.returncode == 0 and re.search(r"cannot resume at block 3: \S*resid/1\.1: .*CRC mismatch", p.stderr)
          and "resuming at block 2 (blocks 0..1 captured)" in p.stderr,
          "a damaged checkpoint is named and the resume falls back to block 2 " + p.stderr[-400:])
    same_stats(ref, work, "resumed from the older checkpoint")
    p = capture(work, 2, fail_at="capture_write:2:0:kill")
    stats = sorted(os.listdir(os.path.join(work, "stats")))
    check(p.returncode != 0 and "rank 0 failed in capture_write at block 2 (1 of 4 files written)" in p.stderr,
          "killed while writing block 2: non-zero exit naming the rank and block " + p.stderr[-300:])
    check(len(stats) == 9 and sum(f[0] in "01" for f in stats) == 8 and sum(f[0] == "2" for f in stats) == 1,
          f"blocks 0..1 whole, one file of block 2, nothing after: {stats}")
    p = capture(work, 1, resume=True, fresh=False)
    check(p.returncode == 0 and "resuming at block 2 (blocks 0..1 captured)" in p.stderr,
          "--resume after a kill in the middle of block 2's files resumes at block 2 " + p.stderr[-300:])
    same_stats(ref, work, "killed while writing, resumed at P = 1")
    p = capture(work, 2, fail_at="capture_write:3:1")
    stats = sorted(os.listdir(os.path.join(work, "stats")))
    check(p.returncode != 0 and "rank 1 failed in capture_write at block 3 (1 of 4 files written)" in p.stderr,
          "aborted by rank 1's writer hook, from its main thread: non-zero exit naming the rank and block " +
          p.stderr[-300:])
    check(len(stats) == 13 and sum(f[0] == "3" for f in stats) == 1 and not any(f[0] == "4" for f in stats),
          f"the writer stopped after one file of block 3: {stats}")
    return finish("capture_stream")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
