#!/usr/bin/python3
"""test_tune_group_ranks.py — global tuning of GGUF block layers (docs/TUNE.md
"Group and block formats") through `quantize --out-format gguf` on stories260K
with tiny settings: one capture + calibration at P = 1, then (--resume: solve +
tune + write only)

  - P = 1 and P = 2 give a byte-identical model.gguf (chunk-ordered gradient
    sums; the re-quantization is per rank, deterministic);
  - the tuned file differs from the untuned one (--no-tune) in the bytes of
    the block-format tensors (Q4_0 / Q8_0): their fp16 scales moved;
  - every block tensor's fp16 d is finite, and the file parses with the
    independent GGUF reader of test_gguf_native.py.

usage: test_tune_group_ranks.py DIR   (environment as test_pipeline.py; exit 77 without assets)
"""
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

import aqtest
from aqtest import CLI, MODEL, MPIRUN, TEXT, TOK, check, finish, missing_asset

sys.path.insert(0, os.path.join(aqtest.SRC, "tests", "scripts"))
import test_gguf_native as tgn  # noqa: E402

CAL = ["--calib-windows", "4", "--calib-len", "32", "--iters", "2", "--starts", "1", "--polish", "1",
       "--options", "q8_0,q4_0,w8a16", "--embed-options", "f16,q8_0,q4_0", "--kl-windows", "0", "--init", "rtn",
       "--target-size", "290000", "--out-format", "gguf", "--no-eval", "--progress", "none"]
TUNE = ["--tune-steps", "3", "--tune-docs", "4", "--tune-len", "32", "--tune-batch", "2", "--tune-lr", "5e-3",
        "--tune-mode", "global"]
ENV = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV.pop("AQ_FAIL_AT", None)
BLOCK_TYPES = {2: 18, 8: 34}  # Q4_0, Q8_0: bytes per 32-weight block (ggml docs/gguf.md)


def quantize(top, name, np_, extra):
    out = os.path.join(top, name)
    shutil.rmtree(out, ignore_errors=True)
    cmd = (MPIRUN + ["-np", str(np_)] if np_ > 1 else []) + [CLI, "quantize", MODEL, "--tokenizer", TOK,
                                                            "--calib-text", TEXT, "--out", out, "--work",
                                                            os.path.join(top, "work"), "--resume"] + CAL + extra
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    check(p.returncode == 0, f"{name}: quantize succeeds " + p.stderr[-400:])
    return os.path.join(out, "model.gguf")


def block_tensors(path):
    """{name: raw bytes} of the Q4_0 / Q8_0 tensors, and their fp16 d values."""
    out, ds = {}, []
    for name, (t, ne, data) in tgn.gguf_tensors(path).items():
        if t in BLOCK_TYPES:
            raw = data[:int(np.prod(ne)) // 32 * BLOCK_TYPES[t]]  # without the alignment padding
            out[name] = raw
            for o in range(0, len(raw), BLOCK_TYPES[t]):
                ds.append(struct.unpack_from("<e", raw, o)[0])
    return out, ds


def main(argv):
    if missing_asset():
        return 77
    top = argv[0]
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    untuned = quantize(top, "untuned", 1, ["--no-tune"])
    p1 = quantize(top, "p1", 1, TUNE)
    p2 = quantize(top, "p2", 2, TUNE)
    a, b, u = (open(f, "rb").read() if os.path.exists(f) else None for f in (p1, p2, untuned))
    check(a is not None and a == b, "global tuning with block layers: model.gguf byte-identical at P = 1 and P = 2")
    if a is None or u is None:
        return finish("test_tune_group_ranks")
    tb, td = block_tensors(p1)
    ub, _ = block_tensors(untuned)
    check(len(tb) > 0 and tb.keys() == ub.keys(), f"the same {len(tb)} block-format tensors in both files")
    moved = [n for n in tb if tb[n] != ub.get(n)]
    check(len(moved) > 0, f"tuning changed the bytes of block-format tensors ({len(moved)} of {len(tb)})")
    check(all(np.isfinite(td)), "every tuned block scale d is a finite fp16")
    return finish("test_tune_group_ranks")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
