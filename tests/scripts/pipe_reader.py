#!/usr/bin/python3
"""pipe_reader.py — an independent reader of adaquant's quantized output
(OUTDIR), written from docs/FORMAT.md alone: no adaquant code and no
adaquant output other than OUTDIR itself. Python + numpy.

usage:
  pipe_reader.py OUTDIR DUMPDIR
      parse OUTDIR/model.safetensors by hand, check the container rules,
      unpack and dequantise every quantized layer exactly as FORMAT.md states
      (float32, its order of operations) and compare with the raw float32
      dumps of adaquant's own dequantisation (DUMPDIR/<P>.f32) bit for bit.
      Exit 0 = every layer equal.
  pipe_reader.py actq OUTDIR DUMPDIR
      for every layer with quantized activations: DUMPDIR/<P>.in.f32 are
      inputs, DUMPDIR/<P>.out.f32 adaquant's fake-quantised outputs; compare
      FORMAT.md's activation formula (float32) with them bit for bit.
  pipe_reader.py actq-inputs OUTDIR DUMPDIR
      write the inputs DUMPDIR/<P>.in.f32 used by `actq` (every rounding tie,
      both clamp regions, a fine grid over the range).
  pipe_reader.py eval OUTDIR TOKENIZER TEXT [--docs N] [--len N] [--fp MODEL.bin]
                 [--fp-hf HFDIR] [--perturb SEED] [--misread rope|azero]
      run FORMAT.md's evaluation protocol on the quantized model read from
      OUTDIR, with an independent float64 forward (HF Llama: rotate-half RoPE,
      grouped-query attention, the quantized layers' biases and activation
      quantizers) and print one JSON line: documents, predicted_tokens,
      ppl_quantized, near_ties (activation rounding decisions within 1e-4 of a
      tie), and with --fp (the llama2.c source, run by model_ref.py in its own
      interleaved-RoPE convention) or --fp-hf (an HF checkpoint directory, run
      by hf_ref.py: Qwen/Mistral/Llama-3 variants) ppl_fp, kl_mean,
      top1_agreement. The forward follows config.json: head_dim, rope_scaling
      (hf_ref.py's frequencies), Qwen3's q/k norms, the biases of float layers.
      --perturb SEED multiplies every quantized layer's input by
      (1 + 1e-6 N(0,1)) (seeded): how much float32-sized errors move the
      result. --misread makes a plausible reading error on purpose (rope: the
      llama2.c interleaved RoPE on the q/k rows; azero: activation zero point
      taken as 0), to show the comparison can fail.

The tokenizer is not part of OUTDIR: `eval` uses model_ref.py's independent
port of llama2.c's run.c encoder (docs/LLAMA2C.md).
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

F32, F64 = np.float32, np.float64


# ---- container -------------------------------------------------------------

def read_safetensors(path):
    """(tensors in file order, __metadata__). Checks: header padded to a
    multiple of 8, data contiguous from offset 0 in header order, no trailing
    bytes, sizes match dtype x shape."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "header not padded to a multiple of 8"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    sizes = {"F32": 4, "U8": 1, "F16": 2}
    kinds = {"F32": "<f4", "U8": "u1", "F16": "<f2"}
    tensors, pos = {}, 0
    for name, t in header.items():  # json keeps the header's order
        b, e = t["data_offsets"]
        assert t["dtype"] in sizes, (name, t["dtype"])
        count = int(np.prod(t["shape"])) if t["shape"] else 1
        assert e - b == count * sizes[t["dtype"]], name
        assert b == pos, f"{name}: offsets are not contiguous in header order"
        pos = e
        tensors[name] = np.frombuffer(data[b:e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    assert pos == len(data), "trailing bytes"
    return tensors, meta


def parse_option(opt):
    """'w<K>a<M>[s]' -> (K, M, symmetric)."""
    assert opt[0] == "w" and "a" in opt, opt
    sym = opt.endswith("s")
    body = opt[1:-1] if sym else opt[1:]
    k, m = body.split("a")
    return int(k), int(m), sym


def head_dim(cfg):
    if cfg.get("head_dim"):
        return cfg["head_dim"]
    assert cfg["hidden_size"] % cfg["num_attention_heads"] == 0
    return cfg["hidden_size"] // cfg["num_attention_heads"]


def d_in_of(prefix, cfg):
    if prefix.endswith("down_proj"):
        return cfg["intermediate_size"]
    if prefix.endswith("o_proj"):
        return cfg["num_attention_heads"] * head_dim(cfg)
    return cfg["hidden_size"]


def unpack(q, n, bits):
    """codes [rows, n] of packed rows q [rows, row_bytes]: code c = bits
    [c*bits, (c+1)*bits) of each row's little-endian bit stream (stream bit k
    = bit k%8 of byte k//8); the padding bits must be zero."""
    stream = np.unpackbits(q, axis=1, bitorder="little")
    assert not stream[:, n * bits:].any(), "padding bits are not zero"
    s = stream[:, :n * bits].reshape(q.shape[0], n, bits).astype(np.uint32)
    return (s << np.arange(bits, dtype=np.uint32)).sum(axis=2).astype(np.uint8)


def dequantize(u, scale, zero):
    """FORMAT.md: d = fl32(float(u) - w_zero), then W = fl32(w_scale * d)."""
    d = u.astype(F32) - zero[:, None]
    w = scale[:, None] * d
    assert w.dtype == F32
    return w


def act_quant(x, a_scale, a_zero, bits):
    """FORMAT.md's activation fake-quantiser, float32 throughout:
    t = fl32(x / s); r = round_half_even(t); q = clamp(fl32(r + z), 0, 2^M - 1);
    x^ = fl32(s * fl32(q - z))."""
    x = np.asarray(x, dtype=F32)
    s, z, qmax = F32(a_scale), F32(a_zero), F32(2 ** bits - 1)
    with np.errstate(over="ignore"):  # |x| / s beyond FLT_MAX is +-inf, then clamped
        t = x / s
    r = np.rint(t)  # numpy rounds half to even
    q = np.minimum(np.maximum(r + z, F32(0)), qmax)
    out = s * (q - z)
    assert out.dtype == F32
    return out


def quantized_layers(outdir):
    """cfg, tensors, meta, {prefix: option}, with the file-level checks."""
    cfg = json.load(open(os.path.join(outdir, "config.json")))
    tensors, meta = read_safetensors(os.path.join(outdir, "model.safetensors"))
    assert meta["format"] == "adaquant-quantized" and meta["format_version"] in ("1", "2"), meta
    qj = json.load(open(os.path.join(outdir, "quantization.json")))
    by_layer = {l["layer"]: l for l in qj["layers"]}
    # version 2: the embedding / an untied classifier at a tensor option (f16, wK)
    stored = {k[6:]: v for k, v in meta.items()
              if k in ("quant.model.embed_tokens", "quant.lm_head") and (v == "f16" or "a" not in v)}
    assert bool(stored) == (meta["format_version"] == "2"), (meta["format_version"], stored)
    for t in qj.get("tensors", []):
        assert stored.get(t["tensor"], "f32") == t["option"], (t, stored)
    layers = {k[6:]: v for k, v in meta.items() if k.startswith("quant.") and k[6:] not in stored}
    assert layers, "no quantized layer"
    assert sorted(layers) == sorted(by_layer), "metadata and quantization.json list different layers"
    menu = meta["options"].split(",")
    assert menu == qj["options"], (menu, qj["options"])
    for p, opt in layers.items():
        assert opt in menu and by_layer[p]["option"] == opt, (p, opt)
    return cfg, tensors, meta, layers


def load_matrix(tensors, meta, base, cols, misread=None):
    """FORMAT.md "Embedding and classifier": B.weight F32 (f32, no metadata) or
    F16 (f16), a ggml block type's B.qblocks, or the wK codes with W = fl32(w_scale * fl32(u - w_zero))."""
    opt = meta.get("quant." + base)
    if opt is None or opt == "f16":
        w = tensors[base + ".weight"]
        assert w.dtype == (F32 if opt is None else np.float16), (base, w.dtype)
        return w.astype(F32)
    if opt in GGML_TYPES:  # a ggml block type: B.qblocks, ggml's bytes of each row (ggml_ref.py)
        import ggml_ref
        qb = tensors[base + ".qblocks"]
        assert base + ".weight" not in tensors and qb.dtype == np.uint8, base
        return ggml_ref.dequantize(opt.upper(), qb.tobytes()).reshape(qb.shape[0], cols)
    bits = int(opt[1:])
    q, scale, zero = tensors[base + ".qweight"], tensors[base + ".w_scale"], tensors[base + ".w_zero"]
    assert base + ".weight" not in tensors and np.all(zero == np.rint(zero)) and np.all(scale > 0), base
    assert q.dtype == np.uint8 and q.shape[1] == (cols * bits + 7) // 8, (base, q.shape)
    if misread == "embed-zero":  # a deliberate misreading (tests): the zero point ignored
        zero = np.zeros_like(zero)
    return dequantize(unpack(q, cols, bits), scale, zero)


# llama.cpp's block types as options (the K-quants' super-blocks of 256 too);
# ggml_ref.py dequantises every one of them from ggml's documented layouts.
GGML_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")


def load_group_layer(tensors, cfg, p, opt):
    """FORMAT.md "Group formats": a ggml block type (P.qblocks, the bytes ggml
    stores, dequantised by ggml_ref.py, the independent NumPy model of ggml) or
    wKgG (W = fl32(s * fl32(u - z)) with fp16 s and integer z per G weights)."""
    import ggml_ref
    bias = tensors[p + ".bias"]
    d_out, d_in = bias.shape[0], d_in_of(p, cfg)
    assert p + ".weight" not in tensors and p + ".a_scale" not in tensors, p
    if opt in GGML_TYPES:
        qb = tensors[p + ".qblocks"]
        qk, nb = ggml_ref.SIZE[opt.upper()]
        assert qb.dtype == np.uint8 and qb.shape == (d_out, d_in // qk * nb) and d_in % qk == 0, (p, qb.shape)
        w = ggml_ref.dequantize(opt.upper(), qb.tobytes()).reshape(d_out, d_in)
        return w.astype(F32), bias, None
    k, g = (int(v) for v in opt[1:].split("g"))
    q, scale, zero = tensors[p + ".qweight"], tensors[p + ".w_scale"], tensors[p + ".w_zero"]
    assert scale.dtype == np.float16 and zero.dtype == np.uint8 and scale.shape == (d_out, d_in // g), p
    assert (zero < 2 ** k).all() and (scale > 0).all() and q.shape[1] == (d_in * k + 7) // 8, p
    u = unpack(q, d_in, k).reshape(d_out, d_in // g, g).astype(F32)
    w = scale.astype(F32)[:, :, None] * (u - zero.astype(F32)[:, :, None])
    assert w.dtype == F32
    return w.reshape(d_out, d_in), bias, None


def load_layer(tensors, cfg, p, opt):
    """Dequantised float32 weight, bias, and (a_scale, a_zero, M) or None."""
    if opt in GGML_TYPES or "g" in opt:
        return load_group_layer(tensors, cfg, p, opt)
    wb, ab, sym = parse_option(opt)
    assert p + ".weight" not in tensors, p
    q, scale, zero = tensors[p + ".qweight"], tensors[p + ".w_scale"], tensors[p + ".w_zero"]
    d_out, d_in = q.shape[0], d_in_of(p, cfg)
    assert q.dtype == np.uint8 and q.shape[1] == (d_in * wb + 7) // 8, (p, q.shape)
    assert scale.shape == (d_out,) and zero.shape == (d_out,) and (scale > 0).all()
    if sym:
        assert (zero == 2 ** (wb - 1)).all(), f"{p}: symmetric zero point is not 2^(K-1)"
    bias = tensors[p + ".bias"]
    assert bias.shape == (d_out,)
    assert (p + ".a_scale" in tensors) == (ab < 16) == (p + ".a_zero" in tensors), p
    act = None
    if ab < 16:
        a_s, a_z = tensors[p + ".a_scale"], tensors[p + ".a_zero"]
        assert a_s.shape == (1,) and a_z.shape == (1,) and a_s[0] > 0
        act = (a_s[0], a_z[0], ab)
    return dequantize(unpack(q, d_in, wb), scale, zero), bias, act


# ---- mode: bit-exact dequantisation / activation quantizer ------------------

def mode_dequant(outdir, dumpdir):
    cfg, tensors, _, layers = quantized_layers(outdir)
    other = [0, 0]  # weights another order of operations would change (information)
    total = 0
    for p in sorted(layers):
        w, _, _ = load_layer(tensors, cfg, p, layers[p])
        total += w.size
        if not (layers[p] in GGML_TYPES or "g" in layers[p]):  # per-row: the order-of-operations statistics
            u = unpack(tensors[p + ".qweight"], w.shape[1], parse_option(layers[p])[0])
            s, z = tensors[p + ".w_scale"][:, None], tensors[p + ".w_zero"][:, None]
            once = (s.astype(F64) * (u.astype(F64) - z.astype(F64))).astype(F32)
            other[0] += int((once != w).sum())
            other[1] += int((s * u.astype(F32) - s * z != w).sum())
        ref = np.fromfile(os.path.join(dumpdir, p + ".f32"), dtype="<f4").reshape(w.shape)
        if not np.array_equal(w.view(np.uint32), ref.view(np.uint32)):
            bad = tuple(np.argwhere(w.view(np.uint32) != ref.view(np.uint32))[0])
            print(f"MISMATCH {p} at {bad}: reader {w[bad]!r} adaquant {ref[bad]!r}")
            return 1
    print(f"pipe_reader: {len(layers)} quantized layers dequantised, equal to adaquant's bit for bit "
          f"(of {total} weights, {other[0]} differ from the float64 value rounded once, "
          f"{other[1]} from fl32(s*u) - fl32(s*z): the order of operations matters)")
    return 0


def act_layers(outdir):
    cfg, tensors, _, layers = quantized_layers(outdir)
    out = {}
    for p in sorted(layers):
        _, _, act = load_layer(tensors, cfg, p, layers[p])
        if act is not None:
            out[p] = act
    return out


def mode_actq_inputs(outdir, dumpdir):
    for p, (s, z, bits) in act_layers(outdir).items():
        qmax = 2 ** bits - 1
        k = np.arange(-np.ceil(z) - 3, qmax - np.floor(z) + 4)
        ties = (F32(s) * (k + 0.5).astype(F32)).astype(F32)          # t near k + 1/2
        ties_up = np.nextafter(ties, F32(np.inf))                     # and either side
        ties_dn = np.nextafter(ties, F32(-np.inf))
        grid = (F32(s) * np.linspace(-z - 5, qmax - z + 5, 20001).astype(F32)).astype(F32)
        ext = np.array([0.0, -0.0, 1e3, -1e3, 3e38, -3e38], dtype=F32)
        np.concatenate([ties, ties_up, ties_dn, grid, ext]).astype("<f4").tofile(
            os.path.join(dumpdir, p + ".in.f32"))
    return 0


def mode_actq(outdir, dumpdir):
    layers = act_layers(outdir)
    assert layers, "no layer with quantized activations"
    for p, (s, z, bits) in layers.items():
        x = np.fromfile(os.path.join(dumpdir, p + ".in.f32"), dtype="<f4")
        ref = np.fromfile(os.path.join(dumpdir, p + ".out.f32"), dtype="<f4")
        mine = act_quant(x, s, z, bits)
        if not np.array_equal(mine.view(np.uint32), ref.view(np.uint32)):
            i = int(np.argwhere(mine.view(np.uint32) != ref.view(np.uint32))[0, 0])
            print(f"MISMATCH {p} (a_scale {s!r}, a_zero {z!r}) at x = {x[i]!r}: "
                  f"reader {mine[i]!r} adaquant {ref[i]!r}")
            return 1
        print(f"{p}: a_scale {s!r} a_zero {z!r} ({bits} bits): {x.size} inputs equal bit for bit")
    print(f"pipe_reader: activation quantizers of {len(layers)} layers equal to adaquant's bit for bit")
    return 0


# ---- mode: evaluation ---------------------------------------------------------

class QuantModel:
    """The quantized model of OUTDIR as float64 arrays (dequantised weights are
    exactly the float32 values of FORMAT.md, widened)."""

    def __init__(self, outdir, perturb=None, misread=None):
        cfg, tensors, meta, layers = quantized_layers(outdir)
        self.rng = np.random.default_rng(perturb) if perturb is not None else None
        self.misread = misread
        self.cfg = cfg
        self.H, self.KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
        self.hd = head_dim(cfg)
        self.eps = cfg["rms_norm_eps"]
        self.L = cfg["num_hidden_layers"]
        f = {k: v.astype(F64) for k, v in tensors.items() if v.dtype == F32 and v.ndim >= 1}
        D = cfg["hidden_size"]
        self.embed = load_matrix(tensors, meta, "model.embed_tokens", D, misread).astype(F64)
        self.head = (self.embed if cfg["tie_word_embeddings"]
                     else load_matrix(tensors, meta, "lm_head", D, misread).astype(F64))
        self.norm = f["model.norm.weight"]
        self.lin = {}
        for b in range(self.L):
            for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                p = f"model.layers.{b}.{name}"
                if p in layers:
                    w, bias, act = load_layer(tensors, cfg, p, layers[p])
                    if act is not None and misread == "azero":
                        act = (act[0], F32(0), act[2])
                    self.lin[p] = (w.astype(F64), bias.astype(F64), act)
                else:  # a float layer, with its bias if the model has one
                    self.lin[p] = (f[p + ".weight"], f.get(p + ".bias"), None)
        self.g1 = [f[f"model.layers.{b}.input_layernorm.weight"] for b in range(self.L)]
        self.g2 = [f[f"model.layers.{b}.post_attention_layernorm.weight"] for b in range(self.L)]
        # Qwen3: per-head RMSNorm of q and k before RoPE (float tensors, when present)
        self.qn = [f.get(f"model.layers.{b}.self_attn.q_norm.weight") for b in range(self.L)]
        self.kn = [f.get(f"model.layers.{b}.self_attn.k_norm.weight") for b in range(self.L)]
        # RoPE frequencies of config.json (rope_theta, rope_scaling), as HF computes them
        import hf_ref
        self.inv_freq = hf_ref.inv_freq(cfg, self.hd, 0, False)
        self.near_ties = 0

    def linear(self, p, x):
        w, bias, act = self.lin[p]
        if self.rng is not None:
            x = x * (1.0 + 1e-6 * self.rng.standard_normal(x.shape))
        if act is not None:
            s, z, bits = act
            t = x / F64(s)
            self.near_ties += int((np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-4).sum())
            x = act_quant(x.astype(F32), s, z, bits).astype(F64)
        y = x @ w.T
        return y + bias if bias is not None else y

    def rmsnorm(self, x, g):
        return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps))

    def rope(self, x):
        """rotate-half: (a, b) = (x[i], x[i + hd/2]) -> (a cos - b sin, b cos + a sin)."""
        T, half = x.shape[0], self.hd // 2
        ang = np.arange(T, dtype=F64)[:, None] * self.inv_freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.misread == "rope":  # llama2.c: adjacent pairs (x[2i], x[2i+1])
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * c - b * s, b * c + a * s
            return out
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    def forward(self, tokens):
        T, H, KV, hd = len(tokens), self.H, self.KV, self.hd
        x = self.embed[np.asarray(tokens)]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for b in range(self.L):
            pre = f"model.layers.{b}."
            h = self.rmsnorm(x, self.g1[b])
            q = self.linear(pre + "self_attn.q_proj", h).reshape(T, H, hd)
            k = self.linear(pre + "self_attn.k_proj", h).reshape(T, KV, hd)
            if self.qn[b] is not None:
                q, k = self.rmsnorm(q, self.qn[b]), self.rmsnorm(k, self.kn[b])
            q, k = self.rope(q), self.rope(k)
            v = self.linear(pre + "self_attn.v_proj", h).reshape(T, KV, hd)
            att = np.empty((T, H, hd))
            for hh in range(H):
                kv = hh // (H // KV)
                sc = q[:, hh] @ k[:, kv].T / np.sqrt(hd) + mask
                sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                att[:, hh] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kv]
            x = x + self.linear(pre + "self_attn.o_proj", att.reshape(T, H * hd))
            h = self.rmsnorm(x, self.g2[b])
            g = self.linear(pre + "mlp.gate_proj", h)
            u = self.linear(pre + "mlp.up_proj", h)
            x = x + self.linear(pre + "mlp.down_proj", g / (1.0 + np.exp(-g)) * u)
        return self.rmsnorm(x, self.norm) @ self.head.T


def documents(raw):
    """FORMAT.md evaluation protocol: split the bytes on "\\n\\n" (scanned left
    to right), strip ASCII whitespace, drop empty pieces."""
    return [d for d in (p.strip(b" \t\n\v\f\r") for p in raw.split(b"\n\n")) if d]


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def mode_eval(argv):
    import model_ref  # the independent llama2.c tokenizer (and FP model for --fp)
    outdir, tok_path, text = argv[0], argv[1], argv[2]
    opts = dict(zip(argv[3::2], argv[4::2]))
    max_docs, max_len = int(opts.get("--docs", 0)), int(opts.get("--len", 512))
    m = QuantModel(outdir, int(opts["--perturb"]) if "--perturb" in opts else None, opts.get("--misread"))
    tok = model_ref.load_tokenizer(tok_path, m.cfg["vocab_size"])
    docs = documents(open(text, "rb").read())
    ev = docs[len(docs) // 2:]
    if max_docs > 0:
        ev = ev[:max_docs]
    fp = model_ref.load_model(opts["--fp"]) if "--fp" in opts else None
    if "--fp-hf" in opts:  # an HF directory, run by hf_ref.py's float64 forward
        import hf_ref
        hf_cfg = json.load(open(os.path.join(opts["--fp-hf"], "config.json")))
        fp = ("hf", hf_cfg, hf_ref.read_weights(opts["--fp-hf"]))
    nll_q = nll_fp = kl = 0.0
    agree = n = 0
    for d in ev:
        ids = model_ref.encode(tok, d.decode("utf-8"))[:max_len]  # BOS first
        lq = log_softmax(m.forward(ids))[:-1]
        tgt = np.asarray(ids[1:])
        nll_q -= lq[np.arange(len(tgt)), tgt].sum()
        n += len(tgt)
        if fp is not None:
            z = hf_ref.forward(fp[1], fp[2], ids) if fp[0] == "hf" else model_ref.forward(fp[0], fp[1], ids)
            lf = log_softmax(z)[:-1]
            nll_fp -= lf[np.arange(len(tgt)), tgt].sum()
            kl += (np.exp(lf) * (lf - lq)).sum()
            agree += int((lf.argmax(axis=1) == lq.argmax(axis=1)).sum())
    res = {"documents": len(ev), "predicted_tokens": n, "ppl_quantized": float(np.exp(nll_q / n)),
           "near_ties": m.near_ties}
    if fp is not None:
        res.update(ppl_fp=float(np.exp(nll_fp / n)), kl_mean=kl / n, top1_agreement=agree / n)
    print(json.dumps(res))
    return 0


def main():
    a = sys.argv[1:]
    if len(a) == 2:
        return mode_dequant(a[0], a[1])
    if len(a) == 3 and a[0] == "actq":
        return mode_actq(a[1], a[2])
    if len(a) == 3 and a[0] == "actq-inputs":
        return mode_actq_inputs(a[1], a[2])
    if len(a) >= 4 and a[0] == "eval":
        return mode_eval(a[1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
