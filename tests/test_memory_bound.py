#!/usr/bin/python3
"""test_memory_bound.py — the per-rank memory bound (issue 13, docs/MEMORY.md)
on a small synth_model.py checkpoint (bf16, 2 shards, dim 192, 2 blocks):

  refusal  `quantize --max-rank-memory 75M` is refused before any work: exit
           non-zero, the message names the phase and what would fit, and
           neither the work directory nor OUTDIR exists afterwards
  bound    a full quantize at P = 2 (capture, calibrate with the lazy model,
           tune, eval): report.json lists every rank's predicted and measured
           peak RSS; each measured peak is within the prediction, and the
           prediction is not vacuous (at most 3x the measured peak)
  eager    calibrate again on the same statistics with AQ_MODEL_EAGER=1: the
           solved model.safetensors is byte-identical to the lazy run's

usage: test_memory_bound.py DIR   (environment as test_pipeline.py; exit 77 without assets)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

from aqtest import fresh_dir, CLI, MPIRUN, TEXT, TOK, check, finish, missing_asset

SRC = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, AQ_PROGRESS="none", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)
# tiny AdaQuant, 8 windows of 64 tokens, 2 KL windows, 2 tuning steps: every phase runs
RUN = ["--calib-windows", "8", "--calib-len", "64", "--iters", "2", "--starts", "1", "--polish", "1",
       "--options", "w4a16", "--init", "rtn", "--kl-windows", "2", "--target-bits", "4", "--tune-steps", "2",
       "--tune-docs", "4", "--tune-len", "64", "--eval-docs", "4", "--eval-len", "64"]


def quantize(model, top, np, extra):
    out, work = os.path.join(top, "out"), os.path.join(top, "work")
    cmd = (MPIRUN + ["-np", str(np)] if np > 1 else []) + [CLI, "quantize", model, "--tokenizer", TOK, "--text",
                                                          TEXT, "--out", out, "--work", work] + RUN + extra
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    return p, out, work


def main(argv):
    if missing_asset():
        return 77
    top = fresh_dir(argv[1])
    model = os.path.join(top, "model")
    subprocess.run(["/usr/bin/python3", os.path.join(SRC, "scripts", "synth_model.py"), "llama", model, "--dtype",
                    "bf16", "--shards", "2", "--dim", "192", "--layers", "2", "--vocab", "512", "--heads", "6",
                    "--kv-heads", "2", "--hidden", "512", "--max-pos", "256", "--seed", "1"], check=True)

    p, out, work = quantize(model, top, 1, ["--max-rank-memory", "75M"])
    check(p.returncode != 0, "--max-rank-memory 75M is refused")
    # the phase over the bound is named (calibrate since the capture holds half-size Grams)
    check("--max-rank-memory" in p.stderr and re.search(r"the (capture|calibrate) phase is predicted", p.stderr)
          and "would fit with" in p.stderr,
          "the refusal names the phase and what would fit: " + p.stderr[-600:])
    check(not os.path.exists(out) and not os.path.exists(work), "nothing written before the refusal")

    p, out, work = quantize(model, top, 2, [])
    check(p.returncode == 0, "quantize at P = 2 succeeds " + p.stderr[-400:])
    check("memory per rank: predicted peak" in p.stdout and "rank 1: measured peak RSS" in p.stdout,
          "the end-of-run log prints the predicted and measured peaks")
    mem = json.load(open(os.path.join(out, "report.json")))["run"]["memory"]
    ranks = mem["ranks"]
    check(len(ranks) == 2, f"report.json lists both ranks: {ranks}")
    for r in ranks:
        pred, got = r["predicted_peak_bytes"], r["measured_peak_rss_bytes"]
        print(f"rank {r['rank']}: predicted {pred / 2**20:.1f} MiB, measured {got / 2**20:.1f} MiB")
        # The prediction is meant as a bound: every term is an upper estimate
        # of an allocation, plus a fixed 24 MiB runtime allowance (BLIS packing,
        # MPI buffers, fragmentation). The 1.25 factor is the generous margin
        # the issue asks for: RSS also holds pages the allocator keeps after a
        # free (glibc trims lazily), which no formula of the settings sees.
        check(0 < got <= 1.25 * pred, f"rank {r['rank']}: measured peak within the prediction")
        # and not vacuous: the formula's terms are the phase's real allocations
        check(pred <= 3 * got, f"rank {r['rank']}: prediction at most 3x the measured peak")
    same_as_eager(top, work)
    return finish()


def same_as_eager(top, work):
    """The calibration with the lazy model (the run above) and with the eager
    one (AQ_MODEL_EAGER=1) on the same statistics give the same quantized
    model bytes (result files hold timings, so compare what solve writes)."""
    w2 = os.path.join(top, "work_eager")
    shutil.copytree(work, w2, ignore=shutil.ignore_patterns("results"))
    env = dict(ENV, AQ_MODEL_EAGER="1")
    p = subprocess.run([CLI, "calibrate", "--work", w2, "--shard", "0", "--shards", "1"], capture_output=True,
                       text=True, env=env, timeout=300)
    check(p.returncode == 0, "eager calibrate succeeds " + p.stderr[-400:])
    outs = []
    for w in (work, w2):
        out = w + ".out"
        p = subprocess.run([CLI, "solve", "--work", w, "--out", out, "--target-bits", "4", "--no-eval", "--no-tune"],
                           capture_output=True, text=True, env=ENV, timeout=300)
        check(p.returncode == 0, "solve succeeds " + p.stderr[-400:])
        outs.append(open(os.path.join(out, "model.safetensors"), "rb").read() if p.returncode == 0 else None)
    check(outs[0] is not None and outs[0] == outs[1], "lazy and eager calibration: identical model.safetensors")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
