#!/usr/bin/env python3
"""ggml_ref.py -- an independent NumPy model of llama.cpp's (ggml's) block
formats, for tests/test_ggml_blocks.c.

Written from the layouts and algorithms as documented in docs/QUANT_FORMATS.md
(ggml's ggml-common.h block structs, ggml-quants.c quantize_row_*_ref and
dequantize_row_*), vectorised over blocks and groups rather than following the
C code's loops. Bit-exactness rests on three facts: NumPy float32 array
arithmetic rounds every operation like C float arithmetic; sums that ggml runs
in index order are run in index order here (np.add.accumulate, starting from
+0.0 as the C loops do); fp32 -> fp16 is NumPy's astype(float16), its own
round-to-nearest-even implementation.

usage: ggml_ref.py ROWS.f32 N RANDOM.bin OUTDIR
  ROWS.f32    float32 rows of N weights each (N a multiple of 256)
  RANDOM.bin  random bytes, dequantized as blocks of every type
  OUTDIR      gets TYPE.q (quantized rows), TYPE.deq (their dequantization),
              TYPE.rdeq (dequantized RANDOM.bin blocks, as many as fit) and
              fp16.bits (fp32 -> fp16 of ROWS.f32's values, uint16 each)
"""
import os
import sys

import numpy as np

F = np.float32
I32_MIN = -(2 ** 31)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def half_bits(a):
    with np.errstate(over="ignore"):  # overflow to inf is the rule being modelled
        return f32(a).astype(np.float16).view(np.uint16)


def half_val(bits):
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)


def le16(bits):
    """uint16 values (shape [B]) -> their little-endian bytes [B, 2]."""
    b = np.asarray(bits, dtype=np.uint16).astype(np.int64)
    return np.stack([b & 0xFF, b >> 8], axis=-1)


def rne(v):
    """ggml's nearest_int: add 1.5 * 2^23 in float32, read the low mantissa."""
    t = (f32(v) + F(12582912.0)).view(np.int32).astype(np.int64)
    return (t & 0x7FFFFF) - 0x400000


def seqsum(a):
    """Sum along the last axis in index order from +0.0, in float32."""
    a = f32(a)
    z = np.zeros(a.shape[:-1] + (1,), dtype=np.float32)
    return np.add.accumulate(np.concatenate([z, a], axis=-1), axis=-1)[..., -1]


def to_i8(v):
    """float32 -> int8 as C's cast compiles on x86 (cvttss2si, low byte)."""
    v = f32(v)
    out = np.full(v.shape, I32_MIN, dtype=np.int64)
    ok = (v > -2147483648.0) & (v < 2147483648.0)
    out[ok] = np.trunc(v[ok]).astype(np.int64)
    return ((out & 0xFF) ^ 0x80) - 0x80


def first_at(x, target):
    """Per row: the first element equal to target (ggml's strict-< scans)."""
    idx = np.argmax(x == target[:, None], axis=1)
    return x[np.arange(x.shape[0]), idx]


def signed_absmax(x):
    """The first value of largest magnitude per row; +0 if all are zero."""
    ax = np.abs(x)
    amax = ax.max(axis=1)
    val = x[np.arange(x.shape[0]), np.argmax(ax == amax[:, None], axis=1)]
    return np.where(amax > 0, val, F(0.0)).astype(np.float32), amax


def inv_or_zero(d):
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F(1.0) / d, F(0.0)).astype(np.float32)


def nib_plane(u):
    """[B, 32] 4-bit values -> [B, 16] bytes: j low nibble, j + 16 high."""
    return (u[:, :16] & 0xF) | ((u[:, 16:] & 0xF) << 4)


def high_bits32(u):
    """[B, 32] 5-bit values -> [B, 4] bytes of the LE uint32 of their bit 4."""
    bits = (u >> 4) & 1
    word = (bits << np.arange(32)).sum(axis=1)
    return np.stack([(word >> (8 * k)) & 0xFF for k in range(4)], axis=1)


# ---------------------------------------------------------------- 32-blocks

def q4_0(x):
    mx, _ = signed_absmax(x)
    d = f32(mx / F(-8.0))
    u = np.minimum(15, to_i8(x * inv_or_zero(d)[:, None] + F(8.5))) & 0xFF
    return np.concatenate([le16(half_bits(d)), nib_plane(u)], axis=1)


def q5_0(x):
    mx, _ = signed_absmax(x)
    d = f32(mx / F(-16.0))
    u = np.minimum(31, to_i8(x * inv_or_zero(d)[:, None] + F(16.5))) & 0xFF
    return np.concatenate([le16(half_bits(d)), high_bits32(u), nib_plane(u)], axis=1)


def minmax_first(x):
    return first_at(x, x.min(axis=1)), first_at(x, x.max(axis=1))


def q_1(x, bits):
    lo, hi = minmax_first(x)
    with np.errstate(over="ignore", invalid="ignore"):
        d = f32((hi - lo) / F((1 << bits) - 1))
        v = (x - lo[:, None]) * inv_or_zero(d)[:, None] + F(0.5)
    u = to_i8(v)
    if bits == 4:
        u = np.minimum(15, u)
    u = u & 0xFF
    head = [le16(half_bits(d)), le16(half_bits(lo))]
    if bits == 5:
        head.append(high_bits32(u))
    return np.concatenate(head + [nib_plane(u)], axis=1)


def round_away(v):
    """C's roundf: halves away from zero (exact for finite float32)."""
    r = np.trunc(v)
    with np.errstate(invalid="ignore"):
        frac = v - r
        r = np.where(np.abs(frac) >= F(0.5), r + np.sign(v), r)
    return f32(r)


def q8_0(x):
    amax = np.abs(x).max(axis=1)
    d = f32(amax / F(127.0))
    with np.errstate(invalid="ignore", over="ignore"):
        q = to_i8(round_away(x * inv_or_zero(d)[:, None])) & 0xFF
    return np.concatenate([le16(half_bits(d)), q], axis=1)


# --------------------------------------------------- the K-quant searches

def clampi(v, lo, hi):
    return np.clip(v, lo, hi)


def make_qx(x, nmax):
    """Symmetric search, weights x^2 (ggml's make_qx_quants, rmse_type 1)."""
    g = x.shape[0]
    mx, amax = signed_absmax(x)
    zero = amax < F(1e-15)
    mx = np.where(zero, F(1.0), mx).astype(np.float32)
    w = x * x

    def levels(iscale):
        l = clampi(rne(iscale[:, None] * x), -nmax, nmax - 1)
        lf = f32(l)
        return l, seqsum(w * x * lf), seqsum(w * lf * lf)

    l, slx, sl2 = levels(f32(F(-nmax) / mx))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(sl2 != 0, slx / sl2, F(0.0)).astype(np.float32)
    best = f32(scale * slx)
    L = l + nmax
    for k in list(range(-9, 0)) + list(range(1, 10)):
        iscale = f32(-(F(nmax) + F(0.1) * F(k)) / mx)
        l, slx, sl2 = levels(iscale)
        take = (sl2 > 0) & (slx * slx > best * sl2)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = f32(slx / sl2)
        L = np.where(take[:, None], l + nmax, L)
        scale = np.where(take, s, scale).astype(np.float32)
        best = np.where(take, f32(s * slx), best).astype(np.float32)
    L[zero] = 0
    scale[zero] = 0
    return scale, L


def make_q3(x, nmax):
    """Q3_K's search with its 5 single-level improvement sweeps."""
    g, n = x.shape
    mx, amax = signed_absmax(x)
    zero = amax < F(1e-15)
    mx = np.where(zero, F(1.0), mx).astype(np.float32)
    L = clampi(rne(f32(F(-nmax) / mx)[:, None] * x), -nmax, nmax - 1)
    w = x * x
    Lf = f32(L)
    slx_t, sl2_t = seqsum(w * x * Lf), seqsum(w * Lf * Lf)
    active = np.ones(g, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(5):
            changed = np.zeros(g, dtype=bool)
            for i in range(n):
                wi, xi, li = w[:, i], x[:, i], f32(L[:, i])
                slx = f32(slx_t - wi * xi * li)
                sl2 = f32(sl2_t - wi * li * li)
                nl = clampi(rne(f32(xi * sl2 / slx)), -nmax, nmax - 1)
                nlf = f32(nl)
                slx2 = f32(slx + wi * xi * nlf)
                sl22 = f32(sl2 + wi * nlf * nlf)
                acc = active & (slx > 0) & (nl != L[:, i]) & (sl22 > 0) & \
                    (slx2 * slx2 * sl2_t > slx_t * slx_t * sl22)
                L[:, i] = np.where(acc, nl, L[:, i])
                slx_t = np.where(acc, slx2, slx_t).astype(np.float32)
                sl2_t = np.where(acc, sl22, sl2_t).astype(np.float32)
                changed |= acc
            active &= changed
        scale = np.where(sl2_t > 0, slx_t / sl2_t, F(0.0)).astype(np.float32)
    L = L + nmax
    L[zero] = 0
    scale[zero] = 0
    return scale, L


def make_qkx(x, w, nmax, rmin, rdelta, nstep, mad):
    """Asymmetric search (ggml's make_qkx2_quants) -> (scale, the_min, L)."""
    lo, hi = minmax_first(x)
    sum_w = np.add.accumulate(w, axis=1)[:, -1]
    sum_x = np.add.accumulate(w * x, axis=1)[:, -1]
    lo = np.where(lo > 0, F(0.0), lo).astype(np.float32)
    flat = hi == lo
    rng = np.where(flat, F(1.0), hi - lo).astype(np.float32)

    def err(scale, mn, L):
        diff = scale[:, None] * f32(L) + mn[:, None] - x
        return seqsum(w * (np.abs(diff) if mad else diff * diff))

    def levels(iscale, mn):
        return clampi(rne(iscale[:, None] * (x - mn[:, None])), 0, nmax)

    iscale = f32(F(nmax) / rng)
    scale = f32(F(1.0) / iscale)
    mn = lo.copy()
    L = levels(iscale, mn)
    best = err(scale, mn, L)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(nstep + 1):
            # the range and the offset are the current best min's (it moves)
            isc = f32((F(rmin) + F(rdelta) * F(k) + F(nmax)) / (hi - mn))
            la = levels(isc, mn)
            lf = f32(la)
            s_l, s_l2, s_xl = seqsum(w * lf), seqsum(w * lf * lf), seqsum(w * lf * x)
            D = f32(sum_w * s_l2 - s_l * s_l)
            ts = f32((sum_w * s_xl - sum_x * s_l) / D)
            tm = f32((s_l2 * sum_x - s_l * s_xl) / D)
            pos = tm > 0
            tm = np.where(pos, F(0.0), tm).astype(np.float32)
            ts = np.where(pos, f32(s_xl / s_l2), ts).astype(np.float32)
            cur = err(ts, tm, la)
            take = (D > 0) & (cur < best)
            L = np.where(take[:, None], la, L)
            best = np.where(take, cur, best).astype(np.float32)
            scale = np.where(take, ts, scale).astype(np.float32)
            mn = np.where(take, tm, mn).astype(np.float32)
    L[flat] = 0
    scale[flat] = 0
    return scale, f32(-mn), L


# ------------------------------------------------------------ K-quants

def two_bit_plane(L):
    """[B, 256] 2-bit values -> [B, 64]: byte 32h+l holds 128h+32s+l at 2s."""
    out = []
    for h in range(2):
        v = L[:, 128 * h:128 * h + 128]
        out.append(v[:, 0:32] | (v[:, 32:64] << 2) | (v[:, 64:96] << 4) | (v[:, 96:128] << 6))
    return np.concatenate(out, axis=1)


def first_max_pos(v):
    """max(0, max v) as ggml's `if (s > max) max = s` scan from 0."""
    return np.maximum(v.max(axis=1), F(0.0)).astype(np.float32)


def q2_k(x):
    B = x.shape[0]
    g = x.reshape(B * 16, 16)
    scale, mins, L = make_qkx(g, np.abs(g), 3, -0.5, 0.1, 15, True)
    scale, mins, L = scale.reshape(B, 16), mins.reshape(B, 16), L.reshape(B, 256)
    ms, mm = first_max_pos(scale), first_max_pos(mins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sb = np.where(ms[:, None] > 0, rne(f32(F(15) / ms)[:, None] * scale) & 0xFF, 0)
        sb = sb | np.where(mm[:, None] > 0, (rne(f32(F(15) / mm)[:, None] * mins) << 4) & 0xFF, 0)
    d = half_bits(np.where(ms > 0, f32(ms / F(15)), F(0.0)))
    dm = half_bits(np.where(mm > 0, f32(mm / F(15)), F(0.0)))
    dl = half_val(d)[:, None] * f32(sb & 0xF)
    ml = half_val(dm)[:, None] * f32(sb >> 4)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        xs = x.reshape(B, 16, 16)
        req = clampi(rne((xs + ml[:, :, None]) / dl[:, :, None]), 0, 3).reshape(B, 256)
    L = np.where(np.repeat(dl != 0, 16, axis=1), req, L)
    return np.concatenate([sb, two_bit_plane(L), le16(d), le16(dm)], axis=1)


def q3_scale_bytes(u):
    """[B, 16] 6-bit values -> the 12 scale bytes of Q3_K."""
    s = np.zeros((u.shape[0], 12), dtype=np.int64)
    for j in range(16):
        s[:, j % 8] |= (u[:, j] & 0xF) << (0 if j < 8 else 4)
        s[:, 8 + j % 4] |= (u[:, j] >> 4) << (2 * (j // 4))
    return s


def q3_k(x):
    B = x.shape[0]
    scale, L = make_q3(x.reshape(B * 16, 16), 4)
    scale, L = scale.reshape(B, 16), L.reshape(B, 256)
    ms, amax = signed_absmax(scale)
    has = ms != 0
    msafe = np.where(has, ms, F(1.0)).astype(np.float32)
    iscale = f32(F(-32.0) / msafe)
    l = ((rne(iscale[:, None] * scale) & 0xFF) ^ 0x80) - 0x80
    u = np.where(has[:, None], clampi(l, -32, 31) + 32, 0)
    d = half_bits(np.where(has, f32(F(1.0) / iscale), F(0.0)))
    dl = half_val(d)[:, None] * f32(u - 32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        req = clampi(rne(x.reshape(B, 16, 16) / dl[:, :, None]), -4, 3).reshape(B, 256) + 4
    L = np.where(np.repeat(dl != 0, 16, axis=1), req, L)
    hbit = (L > 3).astype(np.int64)
    hmask = np.zeros((B, 32), dtype=np.int64)
    for k in range(8):
        hmask |= hbit[:, 32 * k:32 * k + 32] << k
    return np.concatenate([hmask, two_bit_plane(L - 4 * hbit), q3_scale_bytes(u), le16(d)], axis=1)


def k4_scale_bytes(ls, lm):
    s = np.zeros((ls.shape[0], 12), dtype=np.int64)
    for j in range(4):
        s[:, j] = ls[:, j] | ((ls[:, j + 4] >> 4) << 6)
        s[:, j + 4] = lm[:, j] | ((lm[:, j + 4] >> 4) << 6)
        s[:, j + 8] = (ls[:, j + 4] & 0xF) | ((lm[:, j + 4] & 0xF) << 4)
    return s


def q45_k(x, nmax):
    B = x.shape[0]
    g = x.reshape(B * 8, 32)
    av = np.sqrt(f32(seqsum(g * g) / F(32))).astype(np.float32)
    w = f32(av[:, None] + np.abs(g))
    rmin, nstep = (-1.0, 20) if nmax == 15 else (-0.5, 15)
    scale, mins, L = make_qkx(g, w, nmax, rmin, 0.1, nstep, False)
    scale, mins, L = scale.reshape(B, 8), mins.reshape(B, 8), L.reshape(B, 256)
    ms, mm = first_max_pos(scale), first_max_pos(mins)
    with np.errstate(divide="ignore"):
        inv_s = np.where(ms > 0, f32(F(63) / ms), F(0.0)).astype(np.float32)
        inv_m = np.where(mm > 0, f32(F(63) / mm), F(0.0)).astype(np.float32)
    ls = np.minimum(63, rne(inv_s[:, None] * scale) & 0xFF)
    lm = np.minimum(63, rne(inv_m[:, None] * mins) & 0xFF)
    d, dm = half_bits(f32(ms / F(63))), half_bits(f32(mm / F(63)))
    dl = half_val(d)[:, None] * f32(ls)
    ml = half_val(dm)[:, None] * f32(lm)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        req = clampi(rne((x.reshape(B, 8, 32) + ml[:, :, None]) / dl[:, :, None]), 0, nmax)
    L = np.where(np.repeat(dl != 0, 32, axis=1), req.reshape(B, 256), L)
    chunks = [L[:, 64 * c:64 * c + 64] for c in range(4)]
    qs = np.concatenate([(c[:, :32] & 0xF) | ((c[:, 32:] & 0xF) << 4) for c in chunks], axis=1)
    head = [le16(d), le16(dm), k4_scale_bytes(ls, lm)]
    if nmax == 31:
        qh = np.zeros((B, 32), dtype=np.int64)
        for k in range(8):
            qh |= (L[:, 32 * k:32 * k + 32] >> 4) << k
        head.append(qh)
    return np.concatenate(head + [qs], axis=1)


def q6_k(x):
    B = x.shape[0]
    scale, L = make_qx(x.reshape(B * 16, 16), 32)
    scale, L = scale.reshape(B, 16), L.reshape(B, 256)
    ms, amax = signed_absmax(scale)
    zero = amax < F(1e-15)
    ms = np.where(zero, F(1.0), ms).astype(np.float32)
    iscale = f32(F(-128.0) / ms)
    d = half_bits(f32(F(1.0) / iscale))
    sc = ((np.minimum(127, rne(iscale[:, None] * scale)) & 0xFF) ^ 0x80) - 0x80
    dl = half_val(d)[:, None] * f32(sc)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        req = clampi(rne(x.reshape(B, 16, 16) / dl[:, :, None]), -32, 31).reshape(B, 256) + 32
    L = np.where(np.repeat(dl != 0, 16, axis=1), req, L)
    ql, qh = [], []
    for h in range(2):
        v = L[:, 128 * h:128 * h + 128]
        ql += [(v[:, 0:32] & 0xF) | ((v[:, 64:96] & 0xF) << 4),
               (v[:, 32:64] & 0xF) | ((v[:, 96:128] & 0xF) << 4)]
        qh.append((v[:, 0:32] >> 4) | ((v[:, 32:64] >> 4) << 2) |
                  ((v[:, 64:96] >> 4) << 4) | ((v[:, 96:128] >> 4) << 6))
    out = np.concatenate(ql + qh + [sc & 0xFF, le16(d)], axis=1)
    out[zero] = 0
    return out


QUANT = {"Q4_0": q4_0, "Q4_1": lambda x: q_1(x, 4), "Q5_0": q5_0, "Q5_1": lambda x: q_1(x, 5),
         "Q8_0": q8_0, "Q2_K": q2_k, "Q3_K": q3_k, "Q4_K": lambda x: q45_k(x, 15),
         "Q5_K": lambda x: q45_k(x, 31), "Q6_K": q6_k}
# (weights per block, bytes per block)
SIZE = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
        "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
        "Q6_K": (256, 210)}


# ------------------------------------------------------------ dequantize

def nibbles32(qs):
    return np.concatenate([qs & 0xF, qs >> 4], axis=1)


def deq_32(name, b):
    d = half_val(b[:, 0] | (b[:, 1] << 8))[:, None]
    if name == "Q8_0":
        return f32(((b[:, 2:] ^ 0x80) - 0x80)) * d
    off = 4 if name in ("Q4_1", "Q5_1") else 2
    five = name in ("Q5_0", "Q5_1")
    q = nibbles32(b[:, off + 4 * five:])
    if five:
        word = sum(b[:, off + k] << (8 * k) for k in range(4))
        q = q | (((word[:, None] >> np.arange(32)) & 1) << 4)
    if off == 4:
        m = half_val(b[:, 2] | (b[:, 3] << 8))[:, None]
        return f32(f32(q) * d) + m
    return f32(q - (16 if five else 8)) * d


def two_bit_values(qs):
    """inverse of two_bit_plane: [B, 64] -> [B, 256]."""
    parts = []
    for h in range(2):
        p = qs[:, 32 * h:32 * h + 32]
        parts += [(p >> (2 * s)) & 3 for s in range(4)]
    return np.concatenate(parts, axis=1)


def k4_scales(s):
    sc = np.zeros((s.shape[0], 8), dtype=np.int64)
    mn = np.zeros_like(sc)
    for j in range(8):
        if j < 4:
            sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def deq_k(name, b):
    B = b.shape[0]
    h16 = lambda o: half_val(b[:, o] | (b[:, o + 1] << 8))[:, None]
    if name == "Q2_K":
        d, dm, sb = h16(80), h16(82), b[:, :16]
        dl, ml, q, sub = d * f32(sb & 0xF), dm * f32(sb >> 4), two_bit_values(b[:, 16:80]), 16
    elif name == "Q3_K":
        s = b[:, 96:108]
        u = np.stack([(s[:, j % 8] >> (0 if j < 8 else 4)) & 0xF | (((s[:, 8 + j % 4] >> (2 * (j // 4))) & 3) << 4)
                      for j in range(16)], axis=1)
        dl, ml, sub = h16(108) * f32(u - 32), None, 16
        hb = np.concatenate([(b[:, :32] >> k) & 1 for k in range(8)], axis=1)
        q = two_bit_values(b[:, 32:96]) - 4 * (1 - hb)
    elif name in ("Q4_K", "Q5_K"):
        sc, mn = k4_scales(b[:, 4:16])
        dl, ml, sub = h16(0) * f32(sc), h16(2) * f32(mn), 32
        qs = b[:, 48:] if name == "Q5_K" else b[:, 16:]
        q = np.concatenate([np.concatenate([qs[:, 32 * c:32 * c + 32] & 0xF, qs[:, 32 * c:32 * c + 32] >> 4], axis=1)
                            for c in range(4)], axis=1)
        if name == "Q5_K":
            q = q | (np.concatenate([(b[:, 16:48] >> k) & 1 for k in range(8)], axis=1) << 4)
    else:  # Q6_K
        ql, qh, sc = b[:, :128], b[:, 128:192], ((b[:, 192:208] ^ 0x80) - 0x80)
        parts = []
        for h in range(2):
            lo, hi = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            parts += [(lo[:, :32] & 0xF) | (((hi >> 0) & 3) << 4), (lo[:, 32:] & 0xF) | (((hi >> 2) & 3) << 4),
                      (lo[:, :32] >> 4) | (((hi >> 4) & 3) << 4), (lo[:, 32:] >> 4) | (((hi >> 6) & 3) << 4)]
        q = np.concatenate(parts, axis=1) - 32
        dl, ml, sub = h16(208) * f32(sc), None, 16
    prod = np.repeat(dl, sub, axis=1) * f32(q)
    return f32(prod - np.repeat(ml, sub, axis=1)) if ml is not None else f32(prod)


def dequantize(name, raw):
    qk, nb = SIZE[name]
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, nb).astype(np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = deq_32(name, b) if qk == 32 else deq_k(name, b)
    return f32(y).reshape(-1)


def main():
    rows_path, n, rand_path, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    x = np.fromfile(rows_path, dtype=np.float32)
    rnd = np.fromfile(rand_path, dtype=np.uint8).tobytes()
    assert n % 256 == 0 and x.size % n == 0
    for name, fn in QUANT.items():
        qk, nb = SIZE[name]
        with np.errstate(all="ignore"):
            q = fn(x.reshape(-1, qk)).astype(np.uint8)
        assert q.shape[1] == nb, (name, q.shape)
        q.tofile(os.path.join(outdir, name + ".q"))
        dequantize(name, q.tobytes()).tofile(os.path.join(outdir, name + ".deq"))
        usable = len(rnd) // nb * nb
        dequantize(name, rnd[:usable]).tofile(os.path.join(outdir, name + ".rdeq"))
    half_bits(x).tofile(os.path.join(outdir, "fp16.bits"))


if __name__ == "__main__":
    main()
