#!/usr/bin/python3
"""hf_ref.py — an independent float64 reference of the Llama-family decoders
(Llama 1/2/3.x, TinyLlama, SmolLM, Mistral, Qwen2, Qwen3), written from the
published modelling equations of transformers (modeling_llama, modeling_mistral,
modeling_qwen2, modeling_qwen3 and modeling_rope_utils). It reads config.json
and the safetensors files ITSELF (json + struct + numpy; no project code) and
computes in float64 from the stored weights (BF16/F16/F32 widened exactly).

  hf_ref.py MODELDIR OUT.f64 TOKEN...   write the logits [T, vocab] (float64)
  options before MODELDIR:
    --ignore-rope-scaling   pretend rope_scaling is absent (a deliberately wrong
                            reference: the test shows it is out of tolerance)

The block, per layer l (HF names):
  h = RMSNorm(x) * input_layernorm
  q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv        (biases where the model has them)
  Qwen3: q, k = RMSNorm over each head's head_dim * q_norm / k_norm
  q, k = q cos + rotate_half(q) sin,  cos/sin of position * inv_freq (rotate-half
         layout: the frequencies repeated over both halves)
  attention per head (kv head = head // (H / KV)), scores / sqrt(head_dim),
         causal; a sliding window keeps keys with 0 <= i - j < window
         (Mistral sliding_window; Qwen use_sliding_window for layers >= max_window_layers)
  x += attn Wo^T + bo
  x += down(silu(gate(h2)) * up(h2)) with h2 = RMSNorm(x) * post_attention_layernorm
then logits = (RMSNorm(x) * norm) lm_head^T (the embedding when tied).
"""
import json
import math
import os
import struct
import sys

import numpy as np

DT = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def read_st(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    hdr.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, e in hdr.items():
        b, en = e["data_offsets"]
        a = np.frombuffer(data[b:en], DT[e["dtype"]])
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(np.float64).reshape(e["shape"])
    return out


def read_weights(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return read_st(os.path.join(d, "model.safetensors"))
    w = {}
    for fn in sorted(set(json.load(open(idx))["weight_map"].values())):
        w.update(read_st(os.path.join(d, fn)))
    return w


def inv_freq(c, hs, T, ignore_scaling):
    """modeling_rope_utils: default / linear / dynamic / llama3."""
    base = float(c.get("rope_theta", 10000.0))
    rs = None if ignore_scaling else c.get("rope_scaling")
    kind = (rs.get("rope_type", rs.get("type")) if rs else None) or "default"
    i = np.arange(0, hs, 2, dtype=np.float64)
    if kind == "dynamic":
        mp = c.get("max_position_embeddings", 2048)
        f = rs["factor"]
        seq = T if T > mp else mp
        base = base * ((f * seq / mp) - (f - 1)) ** (hs / (hs - 2))
    inv = 1.0 / base ** (i / hs)
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":
        f, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        scaled = np.where(wl > old / lo, inv / f, inv)
        smooth = (old / wl - lo) / (hi - lo)
        mid = (wl >= old / hi) & (wl <= old / lo)
        return np.where(mid, (1 - smooth) * scaled / f + smooth * scaled, scaled)
    if kind not in ("default", "dynamic"):
        raise SystemExit(f"hf_ref: rope type {kind} not modelled")
    return inv


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def window_of(c, layer):
    mt = c.get("model_type", "llama")
    sw = c.get("sliding_window")
    if mt == "mistral":
        return sw
    if mt in ("qwen2", "qwen3") and c.get("use_sliding_window") and sw:
        return sw if layer >= c.get("max_window_layers", 28) else None
    return None


def geometry(c):
    mt = c.get("model_type", "llama")
    d, H = c["hidden_size"], c["num_attention_heads"]
    KV = c.get("num_key_value_heads") or H
    hs = c.get("head_dim") or (128 if mt == "qwen3" else d // H)
    return mt, H, KV, hs, c.get("rms_norm_eps", 1e-6)


def rope_tables(c, T, ignore_scaling=False):
    hs = geometry(c)[3]
    fr = np.outer(np.arange(T, dtype=np.float64), inv_freq(c, hs, T, ignore_scaling))
    emb = np.concatenate([fr, fr], axis=-1)  # rotate-half layout
    return np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]


def block(c, w, x, l, cos, sin):
    """Block l on the residual stream x [T, dim] of one sequence: its output."""
    mt, H, KV, hs, eps = geometry(c)
    T = x.shape[0]

    def lin(x, p):
        y = x @ w[p + ".weight"].T
        return y + w[p + ".bias"] if p + ".bias" in w else y

    p = f"model.layers.{l}."
    h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
    q = lin(h, p + "self_attn.q_proj").reshape(T, H, hs)
    k = lin(h, p + "self_attn.k_proj").reshape(T, KV, hs)
    v = lin(h, p + "self_attn.v_proj").reshape(T, KV, hs)
    if mt == "qwen3":
        q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    allowed = j <= i
    win = window_of(c, l)
    if win:
        allowed &= (i - j) < win
    att = np.empty((T, H, hs))
    for hh in range(H):
        kv = hh // (H // KV)
        s = q[:, hh, :] @ k[:, kv, :].T / math.sqrt(hs)
        s = np.where(allowed, s, -np.inf)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        att[:, hh, :] = s @ v[:, kv, :]
    x = x + lin(att.reshape(T, H * hs), p + "self_attn.o_proj")
    h2 = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
    g = lin(h2, p + "mlp.gate_proj")
    u = lin(h2, p + "mlp.up_proj")
    return x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")


def head(c, w, x):
    """The final norm and the classifier: logits [T, vocab]."""
    x = rmsnorm(x, w["model.norm.weight"], geometry(c)[4])
    hw = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ hw.T


def forward(c, w, toks, ignore_scaling=False):
    cos, sin = rope_tables(c, len(toks), ignore_scaling)
    x = w["model.embed_tokens.weight"][np.array(toks)]
    for l in range(c["num_hidden_layers"]):
        x = block(c, w, x, l, cos, sin)
    return head(c, w, x)


def main(argv):
    ignore = False
    while argv and argv[0].startswith("--"):
        if argv[0] == "--ignore-rope-scaling":
            ignore = True
        else:
            raise SystemExit(f"hf_ref: unknown option {argv[0]}")
        argv = argv[1:]
    if len(argv) < 3:
        print(__doc__)
        return 2
    d, out, toks = argv[0], argv[1], [int(t) for t in argv[2:]]
    c = json.load(open(os.path.join(d, "config.json")))
    z = forward(c, read_weights(d), toks, ignore)
    z.astype("<f8").tofile(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
