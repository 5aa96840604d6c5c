#!/usr/bin/python3
"""pipe_reader.py — an independent reader of adaquant's quantized output,
written from docs/FORMAT.md alone (no adaquant code): parses
OUTDIR/model.safetensors by hand, checks the container rules, unpacks and
dequantises every quantized layer with numpy, and compares the weights with
the raw float32 dumps of adaquant's own dequantisation (DUMPDIR/<P>.f32).

usage: pipe_reader.py OUTDIR DUMPDIR      exit 0 = all layers equal bit for bit
"""
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "header not padded to a multiple of 8"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    sizes = {"F32": 4, "U8": 1, "F64": 8, "I64": 8}
    kinds = {"F32": "<f4", "U8": "u1", "F64": "<f8", "I64": "<i8"}
    spans, tensors = [], {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        count = int(np.prod(t["shape"])) if t["shape"] else 1
        assert e - b == count * sizes[t["dtype"]], name
        spans.append((b, e))
        tensors[name] = np.frombuffer(data[b:e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    spans.sort()
    pos = 0
    for b, e in spans:
        assert b == pos, "offsets are not contiguous"
        pos = e
    assert pos == len(data), "trailing bytes"
    return tensors, meta


def unpack_row(row, n, bits):
    """codes of one packed row: code c = bits [c*bits, (c+1)*bits) of the
    little-endian bit stream (stream bit k = bit k%8 of byte k//8)."""
    stream = np.unpackbits(row, bitorder="little")
    idx = np.arange(n)[:, None] * bits + np.arange(bits)[None, :]
    weights = (1 << np.arange(bits)).astype(np.uint32)
    codes = (stream[idx].astype(np.uint32) * weights).sum(axis=1)
    assert not stream[n * bits:].any(), "padding bits are not zero"
    return codes


def d_in_of(prefix, cfg):
    if prefix.endswith("down_proj"):
        return cfg["intermediate_size"]
    if prefix.endswith("o_proj"):
        return cfg["num_attention_heads"] * (cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg["hidden_size"]


def main():
    outdir, dumpdir = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(outdir, "config.json")))
    tensors, meta = read_safetensors(os.path.join(outdir, "model.safetensors"))
    assert meta["format"] == "adaquant-quantized" and meta["format_version"] == "1", meta
    qj = json.load(open(os.path.join(outdir, "quantization.json")))
    by_layer = {l["layer"]: l for l in qj["layers"]}
    layers = sorted(k[6:] for k in meta if k.startswith("quant."))
    assert layers, "no quantized layer"
    for p in layers:
        opt = meta["quant." + p]
        wb, ab = int(opt[1:opt.index("a")]), int(opt[opt.index("a") + 1:].rstrip("s"))
        assert by_layer[p]["option"] == opt, (p, opt)
        assert p + ".weight" not in tensors
        q, scale, zero = tensors[p + ".qweight"], tensors[p + ".w_scale"], tensors[p + ".w_zero"]
        assert p + ".bias" in tensors
        assert (p + ".a_scale" in tensors) == (ab < 16)
        d_out, d_in = q.shape[0], d_in_of(p, cfg)
        assert q.shape[1] == (d_in * wb + 7) // 8, (p, q.shape)
        u = np.stack([unpack_row(q[r], d_in, wb) for r in range(d_out)])
        assert u.max() < (1 << wb)
        w = scale[:, None] * (u.astype(np.float32) - zero[:, None])  # float32, as specified
        assert w.dtype == np.float32
        ref = np.fromfile(os.path.join(dumpdir, p + ".f32"), dtype="<f4").reshape(d_out, d_in)
        if not np.array_equal(w.view(np.uint32), ref.view(np.uint32)):
            bad = np.argwhere(w != ref)[0]
            print(f"MISMATCH {p} at {tuple(bad)}: reader {w[tuple(bad)]!r} adaquant {ref[tuple(bad)]!r}")
            return 1
    print(f"pipe_reader: {len(layers)} quantized layers dequantised, equal to adaquant's bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
