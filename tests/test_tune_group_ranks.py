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
    independent GGUF reader of test_gguf_native.py;
  - llama.cpp (node-llama-cpp, fixture npm_llamacpp; skipped when absent)
    loads the tuned file and its log-probs on 64 tokens match the float64
    reader of the file's values within gguf_budget's tolerances.

usage: test_tune_group_ranks.py DIR [NPM_DIR]   (environment as test_pipeline.py; exit 77 without assets)
"""
import json
import os
import struct
import sys

import numpy as np

import aqtest
from aqtest import fresh_dir, check, finish, missing_asset, quantize_stories

sys.path.insert(0, os.path.join(aqtest.SRC, "tests", "scripts"))
import model_ref  # noqa: E402
import test_export_gguf as teg  # noqa: E402
import test_gguf_budget as tgb  # noqa: E402
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
    return os.path.join(quantize_stories(top, name, np_, CAL + extra, ENV)[0], "model.gguf")


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
    top = fresh_dir(argv[0])
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
    if len(argv) > 1:
        llama_check(argv[1], os.path.dirname(p1))
    return finish("test_tune_group_ranks")


def llama_check(npm_dir, out):
    """llama.cpp runs the tuned file: test_gguf_budget.py's step 4 on it."""
    if not os.path.exists(os.path.join(npm_dir, "node_modules", "node-llama-cpp", "package.json")):
        print("skip: node-llama-cpp not installed (fixture npm_llamacpp): llama.cpp step not run")
        return
    qj = json.load(open(os.path.join(out, "quantization.json")))
    emb = {t["tensor"]: t["option"] for t in qj.get("tensors", [])}.get("model.embed_tokens", "f32")
    cfgm, _ = model_ref.load_model(aqtest.MODEL)
    tok = model_ref.load_tokenizer(aqtest.TOK, cfgm["V"])
    docs = model_ref.documents(aqtest.TEXT)
    ids = next(t for t in (model_ref.encode(tok, d) for d in docs[len(docs) // 2:]) if len(t) >= 64)[:64]
    res = teg.llamacpp(npm_dir, os.path.join(out, "model.gguf"), ids)
    check(res is not None, "llama.cpp loads the tuned GGUF")
    if not res:
        return
    chosen = {l["layer"]: l["option"] for l in qj["layers"]}
    ref_model = tgb.BudgetRef(out, {p for p, o in chosen.items() if o in tgn.GGML_ID},
                              {p for p, o in chosen.items() if tgb.TYPE_OF[o] == 1})
    ref_model.head_q8 = emb in tgn.GGML_ID
    h = ref_model.head
    if ref_model.head_q8:  # the tied classifier in a block type: ggml rounds its input to Q8
        ref_model.head = np.eye(h.shape[1])
        ref = model_ref.log_softmax(teg.q8_act(ref_model.forward(ids)) @ h.T)
    else:
        ref = model_ref.log_softmax(ref_model.forward(ids))
    # gguf_budget's tolerances (max 0.5, mean 0.08: ggml's Q8 activation rounding)
    teg.compare("tuned GGUF", res[0], ref, 0.5, 0.08)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
