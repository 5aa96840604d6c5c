#!/usr/bin/python3
"""test_block_recon.py — block-wise tuning (docs/TUNE.md "Block-wise") judged by
an independent float64 reference: stories260K quantized with tiny calibration
settings (w3a16 and w8a16 layers at 4 bits), then

  untuned  --no-tune
  block    --tune-mode block: each block fitted to the FP block's output on
           the FP block's input

and tests/scripts/pipe_reader.py (FORMAT.md alone, float64, no adaquant code)
runs both written models and the FP llama2.c model over held-out evaluation
documents. Block-wise tuning must lower the mean KL(FP || quantized) per token
by at least MARGIN (5%). test_tune_scale.py checks that the bytes do not
depend on P; this checks that what is written is better, by a reader that
shares no code with adaquant.

usage: test_block_recon.py DIR   (environment as test_pipeline.py; exit 77 without assets)
"""
import json
import os
import subprocess
import sys

from aqtest import fresh_dir, MODEL, TEXT, TOK, check, finish, missing_asset, quantize_stories

READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "pipe_reader.py")
CAL = ["--calib-windows", "4", "--calib-len", "32", "--iters", "2", "--starts", "1", "--polish", "1",
       "--options", "w8a16,w3a16", "--kl-windows", "0", "--init", "rtn", "--target-bits", "4", "--no-eval"]
TUNE = ["--tune-steps", "40", "--tune-batch", "4", "--tune-docs", "32", "--tune-len", "64", "--tune-lr", "5e-3"]
MARGIN = 0.05
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)


def quantize(top, name, np, extra):
    return quantize_stories(top, name, np, CAL + TUNE + extra, ENV)[0]


def reference_kl(out):
    p = subprocess.run(["/usr/bin/python3", READER, "eval", out, TOK, TEXT, "--docs", "6", "--len", "96", "--fp",
                        MODEL], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"pipe_reader eval {out}: " + p.stderr[-400:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"  reference on {out}: {res}", flush=True)
    return res["kl_mean"]


def main(argv):
    if missing_asset():
        return 77
    top = fresh_dir(argv[0])
    untuned = quantize(top, "untuned", 1, ["--no-tune"])
    block = quantize(top, "block", 1, ["--tune-mode", "block"])
    kl_u, kl_b = reference_kl(untuned), reference_kl(block)
    # measured: 1.0035 -> 0.8956 (-10.8%); untouched parameters give 0%, and the
    # float32-vs-float64 difference of one model's KL is ~1e-6 of 1.0, so 5%
    # (MARGIN) fails only if tuning does not help. The sequential variants of
    # docs/TUNE.md (quantized upstream, Fisher weights) reached -5.1% here.
    check(kl_b < (1 - MARGIN) * kl_u,
          f"block-wise tuning lowers the reference KL by >= {MARGIN:.0%}: {kl_b:.5f} vs {kl_u:.5f}")
    return finish("test_block_recon")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
