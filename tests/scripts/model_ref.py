#!/usr/bin/python3
"""model_ref.py — an independent float64 reference for the transformer engine.

Reads a llama2.c model .bin and tokenizer .bin ITSELF (no project code) and runs
llama2.c's own forward pass (run.c: adjacent-pair RoPE, no q/k permutation) in
float64 with numpy. Used by tests/test_model.c (logits) and for checking the
evaluation figures.

  model_ref.py logits MODEL.bin OUT.f64 TOKEN...   write float64 logits [T, vocab]
  model_ref.py ppl MODEL.bin TOK.bin TEXT [MAXDOCS]  print docs, tokens, perplexity
"""
import heapq
import struct
import sys

import numpy as np


def load_model(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(raw, dtype="<f4", offset=28).astype(np.float64)
    hs = dim // n_heads
    kvd = n_kv * hs
    w = {}
    off = 0

    def take(name, *shape):
        nonlocal off
        n = int(np.prod(shape))
        w[name] = f[off:off + n].reshape(shape)
        off += n

    take("emb", vocab, dim)
    take("rms_att", n_layers, dim)
    take("wq", n_layers, dim, dim)
    take("wk", n_layers, kvd, dim)
    take("wv", n_layers, kvd, dim)
    take("wo", n_layers, dim, dim)
    take("rms_ffn", n_layers, dim)
    take("w1", n_layers, hidden, dim)
    take("w2", n_layers, dim, hidden)
    take("w3", n_layers, hidden, dim)
    take("rms_final", dim)
    off += seq_len * hs  # two unused RoPE tables of seq_len*hs/2
    if shared:
        w["wcls"] = w["emb"]
    else:
        take("wcls", vocab, dim)
    assert off == f.size, "model size does not match its header"
    cfg = dict(dim=dim, hidden=hidden, L=n_layers, H=n_heads, KV=n_kv, V=vocab, hs=hs)
    return cfg, w


def rmsnorm(x, g):
    # 1e-5 is the model's RMSNorm epsilon (config), not a tolerance
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g


def rope_pairs(x, hs):
    """llama2.c: rotate adjacent pairs (x[2i], x[2i+1]) of each head, freq 10000^(-2i/hs)."""
    T, nh, _ = x.shape
    i = np.arange(0, hs, 2, dtype=np.float64)
    freq = 1.0 / (10000.0 ** (i / hs))
    ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def fake_quant(x, scale, zero, bits):
    """qlayer.h: x^ = s * (clamp(round_half_even(x / s) + z, 0, 2^b - 1) - z)."""
    u = np.clip(np.rint(x / scale) + zero, 0, 2 ** bits - 1)
    return scale * (u - zero)


def forward(cfg, w, tokens, act=None, bias=None):
    """act: optional {(layer, "w2"): (a_scale, a_zero, a_bits)} input fake-quantisers
    (only the down projection is supported here); bias: optional {(name, layer):
    vector} added to that linear's output (name wq ... w3, a GGUF's blk.N.*.bias)."""
    act = act or {}
    bias = bias or {}

    def lin(h, name, l):
        return h @ w[name][l].T + bias.get((name, l), 0.0)

    T, hs, H, KV = len(tokens), cfg["hs"], cfg["H"], cfg["KV"]
    x = w["emb"][np.asarray(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["L"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = rope_pairs(lin(h, "wq", l).reshape(T, H, hs), hs)
        k = rope_pairs(lin(h, "wk", l).reshape(T, KV, hs), hs)
        v = lin(h, "wv", l).reshape(T, KV, hs)
        att = np.empty((T, H, hs))
        for hh in range(H):
            kh = hh // (H // KV)
            sc = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(hs) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            sc /= sc.sum(axis=1, keepdims=True)
            att[:, hh, :] = sc @ v[:, kh, :]
        x = x + lin(att.reshape(T, -1), "wo", l)
        h = rmsnorm(x, w["rms_ffn"][l])
        g = lin(h, "w1", l)
        hb = (g / (1 + np.exp(-g))) * lin(h, "w3", l)
        if (l, "w2") in act:
            hb = fake_quant(hb, *act[(l, "w2")])
        x = x + lin(hb, "w2", l)
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def load_tokenizer(path, vocab):
    raw = open(path, "rb").read()
    off = 4
    pieces, scores = [], []
    for _ in range(vocab):
        sc, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off:off + n])
        off += n
        scores.append(sc)
    return pieces, scores


def encode(tok, text):
    """llama2.c run.c encode(): BOS, dummy-prefix space, codepoints / byte fallback,
    then merge the best-scoring pair (leftmost on ties) until none is left."""
    pieces, scores = tok
    index = {p: i for i, p in enumerate(pieces)}
    data = text.encode("utf-8")
    if data:
        data = b" " + data
    ids, i = [], 0
    while i < len(data):
        j = i + 1
        while j < len(data) and (data[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = data[i:j]
        if cp in index:
            ids.append(index[cp])
        else:
            ids.extend(b + 3 for b in cp)
        i = j
    # Linked list + heap keyed by (-score, left position) == run.c's scan order.
    n = len(ids)
    nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
    heap = []

    def push(a):
        b = nxt[a]
        if b < n:
            m = index.get(pieces[ids[a]] + pieces[ids[b]])
            if m is not None:
                heapq.heappush(heap, (-scores[m], a, ids[a], ids[b], m))

    for a in range(n - 1):
        push(a)
    while heap:
        _, a, ia, ib, m = heapq.heappop(heap)
        b = nxt[a] if alive[a] else n
        if not alive[a] or b >= n or ids[a] != ia or ids[b] != ib:
            continue
        ids[a] = m
        alive[b] = False
        nxt[a] = nxt[b]
        if nxt[b] < n:
            prv[nxt[b]] = a
        push(a)
        if prv[a] >= 0:
            push(prv[a])
    return [1] + [ids[a] for a in range(n) if alive[a]]


def documents(path):
    text = open(path, "r", encoding="utf-8").read()
    return [d.strip() for d in text.split("\n\n") if d.strip()]


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def main():
    if sys.argv[1] == "logits":
        cfg, w = load_model(sys.argv[2])
        toks = [int(t) for t in sys.argv[4:]]
        forward(cfg, w, toks).astype("<f8").tofile(sys.argv[3])
    elif sys.argv[1] == "ppl":
        cfg, w = load_model(sys.argv[2])
        tok = load_tokenizer(sys.argv[3], cfg["V"])
        docs = documents(sys.argv[4])
        ev = docs[len(docs) // 2:]
        if len(sys.argv) > 5:
            ev = ev[:int(sys.argv[5])]
        nll, cnt = 0.0, 0
        for d in ev:
            ids = encode(tok, d)[:512]
            lp = log_softmax(forward(cfg, w, ids))
            nll -= sum(lp[t, ids[t + 1]] for t in range(len(ids) - 1))
            cnt += len(ids) - 1
        print(len(docs), len(ev), cnt, "%.6f" % np.exp(nll / cnt))


if __name__ == "__main__":
    main()
