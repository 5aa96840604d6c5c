#!/usr/bin/python3
"""gguf_l2c.py — dequantizes a llama.cpp GGUF of a llama2.c model (made by
llama-convert-llama2c-to-ggml, then llama-quantize) into a llama2.c .bin
(float32, classifier stored separately: negative vocab_size,
docs/LLAMA2C.md), so that `adaquant eval` scores llama.cpp's quantized weights
with our evaluation protocol (bench/gguf.sh's safetensors-side table).

The converter copies llama2.c's matrices as they are (llama.cpp's LLAMA RoPE
is llama2.c's adjacent-pair RoPE: no q/k permutation), so each GGUF tensor is
the llama2.c matrix row for row. The blocks are dequantized by
tests/scripts/ggml_ref.py (our NumPy model of ggml's formats, checked bit for
bit against ggml's C code by test_ggml_blocks); the container is parsed here
from ggml's docs/gguf.md.

usage: gguf_l2c.py IN.gguf OUT.bin [SEQ_LEN]
  SEQ_LEN  the header's seq_len (default: the GGUF's llama.context_length;
           llama-convert-llama2c-to-ggml writes 128 there for stories260K,
           whose own seq_len is 512: pass the source model's)
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "scripts"))
import ggml_ref  # noqa: E402

TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
         12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # metadata value type -> bytes


class Reader:
    def __init__(self, path):
        self.b = open(path, "rb").read()
        if self.b[:4] != b"GGUF" or struct.unpack_from("<I", self.b, 4)[0] != 3:
            sys.exit(f"{path}: not a GGUF v3 file")
        self.p = 24
        self.kv = {}

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        (n,) = self.take("<Q")
        s = self.b[self.p:self.p + n]
        self.p += n
        return s.decode("utf-8", "replace")

    def value(self, t):
        if t in FIXED:
            raw = self.b[self.p:self.p + FIXED[t]]
            self.p += FIXED[t]
            return raw
        if t == 8:
            return self.string()
        et, n = self.take("<IQ")
        for _ in range(n):
            self.value(et)
        return None

    def tensors(self):
        nt, nkv = struct.unpack_from("<QQ", self.b, 8)
        for _ in range(nkv):
            key = self.string()
            (t,) = self.take("<I")
            self.kv[key] = (t, self.value(t))
        align = struct.unpack("<I", self.kv["general.alignment"][1])[0] if "general.alignment" in self.kv else 32
        infos = []
        for _ in range(nt):
            name = self.string()
            (nd,) = self.take("<I")
            ne = self.take(f"<{nd}Q")
            t, off = self.take("<IQ")
            infos.append((name, t, ne, off))
        data = (self.p + align - 1) // align * align
        out = {}
        for name, t, ne, off in infos:
            if t not in TYPES:
                sys.exit(f"{name}: ggml type {t} not handled by gguf_l2c.py")
            n = int(np.prod(ne))
            kind = TYPES[t]
            if kind == "F32":
                v = np.frombuffer(self.b, "<f4", n, data + off)
            elif kind == "F16":
                v = np.frombuffer(self.b, "<f2", n, data + off).astype(np.float32)
            else:
                qk, nb = ggml_ref.SIZE[kind]
                v = ggml_ref.dequantize(kind, self.b[data + off:data + off + n // qk * nb])
            out[name] = (kind, v.reshape(tuple(reversed(ne))).astype(np.float32))
        return out

    def u32(self, key):
        t, raw = self.kv[key]
        return struct.unpack("<I" if t == 4 else "<i", raw)[0]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    r = Reader(sys.argv[1])
    t = r.tensors()
    L = r.u32("llama.block_count")
    dim, hidden = r.u32("llama.embedding_length"), r.u32("llama.feed_forward_length")
    heads, kv = r.u32("llama.attention.head_count"), r.u32("llama.attention.head_count_kv")
    vocab = t["token_embd.weight"][1].shape[0]
    ctx = int(sys.argv[3]) if len(sys.argv) == 4 else r.u32("llama.context_length")
    w = lambda name: t[name][1]  # noqa: E731
    per = lambda key: np.stack([w(f"blk.{i}.{key}.weight") for i in range(L)])  # noqa: E731
    out_w = w("output.weight") if "output.weight" in t else w("token_embd.weight")
    parts = [w("token_embd.weight"), per("attn_norm"), per("attn_q"), per("attn_k"), per("attn_v"),
             per("attn_output"), per("ffn_norm"), per("ffn_gate"), per("ffn_down"), per("ffn_up"),
             w("output_norm.weight"), np.zeros(ctx * (dim // heads), np.float32), out_w]
    with open(sys.argv[2], "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, L, heads, kv, -vocab, ctx))
        for p in parts:
            f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())
    kinds = sorted({k for k, _ in t.values()})
    print(f"{len(t)} tensors ({', '.join(kinds)}) -> {sys.argv[2]}")


if __name__ == "__main__":
    main()
