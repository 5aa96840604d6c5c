#!/usr/bin/python3
"""test_tune_scale.py — tuning that scales (docs/TUNE.md), on stories260K with
tiny settings: one capture + calibration at P = 1, then only solve + tune +
write (`--resume` reuses every task result; --no-eval) for each case:

  block   --tune-mode block at P = 1, 2 and 4: byte-identical model.safetensors
          and quantization.json (the blocks are tuned independently, each on the
          rank aq_dist_block_range gives it; 5 blocks over 4 ranks puts two on
          rank 0); every rank logs its blocks and all 5 are covered; the tuned
          scales differ from the untuned ones (the tuning did something)
  global  --tune-mode global with 6 documents per step at P = 6: every rank
          computes chunks (the old fixed chunks of 4 documents kept ranks 2..5
          idle), and the bytes equal the P = 1 run (chunk-ordered sums)

usage: test_tune_scale.py DIR   (environment as test_pipeline.py; exit 77 without assets)
"""
import os
import re
import sys

from aqtest import fresh_dir, check, finish, missing_asset, quantize_stories

# 4 windows of 32 tokens, the cheapest AdaQuant: the calibration only has to
# produce some quantized layers; what is compared is the tuning after it
CAL = ["--calib-windows", "4", "--calib-len", "32", "--iters", "2", "--starts", "1", "--polish", "1",
       "--options", "w8a16,w3a16", "--kl-windows", "0", "--init", "rtn", "--target-bits", "4", "--no-eval"]
TUNE = ["--tune-steps", "4", "--tune-docs", "12", "--tune-len", "48", "--tune-lr", "3e-3"]
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)
COMPARED = ["model.safetensors", "quantization.json"]


def quantize(top, name, np, extra):
    return quantize_stories(top, name, np, CAL + TUNE + extra, ENV)


def same(a, b, what):
    for f in COMPARED:
        x, y = (open(os.path.join(d, f), "rb").read() if os.path.exists(os.path.join(d, f)) else None for d in (a, b))
        check(x is not None and x == y, f"{what}: {f} byte-identical")


def block_mode(top):
    ref, log = quantize(top, "block1", 1, ["--tune-mode", "block", "--tune-batch", "3"])
    check("tuning mode block (--tune-mode)" in log, "block mode announced")
    for np in (2, 4):
        out, log = quantize(top, f"block{np}", np, ["--tune-mode", "block", "--tune-batch", "3"])
        same(ref, out, f"block-wise tuning P = {np} vs P = 1")
        got = sorted((int(a), int(b)) for a, b in re.findall(r"rank \d+ of %d tunes blocks (\d+)\.\.(\d+)" % np, log))
        blocks = [b for lo, hi in got for b in range(lo, hi + 1)]
        check(len(got) == np and blocks == list(range(5)), f"P = {np}: every rank tunes blocks, all 5 once: {got}")
    untuned, _ = quantize(top, "untuned", 1, ["--no-tune"])
    a = open(os.path.join(ref, "model.safetensors"), "rb").read()
    b = open(os.path.join(untuned, "model.safetensors"), "rb").read()
    check(len(a) == len(b) and a != b, "block-wise tuning changed the stored parameters")


def global_mode(top):
    ref, _ = quantize(top, "global1", 1, ["--tune-mode", "global", "--tune-batch", "6"])
    out, log = quantize(top, "global6", 6, ["--tune-mode", "global", "--tune-batch", "6"])
    same(ref, out, "global tuning P = 6 vs P = 1")
    work = {int(r): int(c) for r, c in re.findall(r"tune: rank (\d+) of 6 computed (\d+) chunks", log)}
    check(sorted(work) == list(range(6)) and min(work.values()) > 0,
          f"P = 6 > 4: every rank computed tuning chunks: {work}")


def main(argv):
    if missing_asset():
        return 77
    top = fresh_dir(argv[0])
    block_mode(top)
    global_mode(top)
    return finish("test_tune_scale")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
