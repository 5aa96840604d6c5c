#!/usr/bin/env python3
"""cnn_ref.py — test cases for the CNN engine (tests/test_cnn.c) with float64
NumPy reference outputs, written from the ONNX operator definitions
independently of src/cnn.

usage: cnn_ref.py SEED > cases.txt

Each case is a small graph (usually one node) on float32 inputs drawn from
the seed, its reference output computed in float64 from those float32 values,
and per element a magnitude `mag` for the error bound: the engine's float32
result must satisfy |y - ref| <= gamma(K + 4) * mag, gamma(n) = n u / (1 - n u),
u = 2^-24 (Higham's bound for a K-term float32 sum is gamma(K) * sum|terms|;
+4 covers the few roundings around the sum). For products mag is the same
computation on absolute values (sum of |terms|); for element-wise ops |ref| or
the sum of the magnitudes the formula adds.

Text format, whitespace separated (read by test_cnn.c):
  case NAME OPSET K
  value NAME const NDIM DIMS... VALUES...    (float32 as %.9g: exact)
  value NAME input NDIM DIMS...              (the graph input, declared shape)
  node OP NAME NIN IN... OUT NATTR (KEY COUNT VALUES...)...   ("-" = omitted input)
  output NAME
  feed NUMEL VALUES...                       (the input tensor; dim 0 = batch)
  expect NDIM DIMS... VALUES...
  mag VALUES...
  end
"""
import sys

import numpy as np

OUT = []


def emit(*tok):
    OUT.append(" ".join(str(t) for t in tok))


def fl(a):
    return " ".join("%.9g" % v for v in np.asarray(a, dtype=np.float32).ravel())


def dbl(a):
    return " ".join("%.17g" % v for v in np.asarray(a, dtype=np.float64).ravel())


class Case:
    def __init__(self, name, opset=13, K=0):
        self.name, self.opset, self.K = name, opset, K
        self.lines = []

    def const(self, name, arr):
        arr = np.asarray(arr, dtype=np.float32)
        self.lines.append(("value", name, "const", arr.ndim, *arr.shape, fl(arr)))
        return arr.astype(np.float64)

    def input(self, name, declared):
        self.lines.append(("value", name, "input", len(declared), *declared))

    def node(self, op, name, ins, out, **attrs):
        toks = ["node", op, name, len(ins), *[i if i else "-" for i in ins], out, len(attrs)]
        for k, v in attrs.items():
            v = list(v) if isinstance(v, (list, tuple)) else [v]
            toks += [k, len(v), *v]
        self.lines.append(tuple(toks))

    def finish(self, output, feed, expect, mag):
        emit("case", self.name, self.opset, self.K)
        for ln in self.lines:
            emit(*ln)
        emit("output", output)
        feed = np.asarray(feed, dtype=np.float32)
        emit("feed", feed.size, fl(feed))
        expect = np.asarray(expect, dtype=np.float64)
        emit("expect", expect.ndim, *expect.shape, dbl(expect))
        emit("mag", dbl(np.broadcast_to(np.asarray(mag, dtype=np.float64), expect.shape)))
        emit("end")


rng = None


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- reference operators, float64, straight from the ONNX definitions ---

def out_size(n, k, s, d, pb, pe, ceil):
    ek = d * (k - 1) + 1
    span = n + pb + pe - ek
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + pb:  # window starting in the end padding: dropped
        o -= 1
    return o


def same_pads(n, k, s, d, upper):
    o = -(-n // s)
    total = max(0, (o - 1) * s + d * (k - 1) + 1 - n)
    b = total // 2 if upper else total - total // 2
    return b, total - b


def conv_ref(x, w, b, strides, pads, dil, group):
    """Direct loops over the definition: y[n,m,oy,ox] = b[m] + sum over the
    group's channels and taps of w * x (zero outside the input)."""
    N, C, H, W = x.shape
    M, cg, kh, kw = w.shape
    OH = out_size(H, kh, strides[0], dil[0], pads[0], pads[2], 0)
    OW = out_size(W, kw, strides[1], dil[1], pads[1], pads[3], 0)
    xp = np.zeros((N, C, H + pads[0] + pads[2], W + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + H, pads[1]:pads[1] + W] = x
    y = np.zeros((N, M, OH, OW))
    mg = M // group
    for m in range(M):
        g = m // mg
        for oy in range(OH):
            for ox in range(OW):
                ys, xs = oy * strides[0], ox * strides[1]
                patch = xp[:, g * cg:(g + 1) * cg, ys:ys + dil[0] * (kh - 1) + 1:dil[0],
                           xs:xs + dil[1] * (kw - 1) + 1:dil[1]]
                y[:, m, oy, ox] = (patch * w[m]).sum(axis=(1, 2, 3))
    if b is not None:
        y += b[None, :, None, None]
    return y


def pool_ref(x, kind, k, strides, pads, dil, ceil, cip):
    N, C, H, W = x.shape
    OH = out_size(H, k[0], strides[0], dil[0], pads[0], pads[2], ceil)
    OW = out_size(W, k[1], strides[1], dil[1], pads[1], pads[3], ceil)
    y = np.zeros((N, C, OH, OW))
    for oy in range(OH):
        for ox in range(OW):
            ys = [oy * strides[0] - pads[0] + t * dil[0] for t in range(k[0])]
            xs = [ox * strides[1] - pads[1] + t * dil[1] for t in range(k[1])]
            iy = [v for v in ys if 0 <= v < H]
            ix = [v for v in xs if 0 <= v < W]
            win = x[:, :, iy][:, :, :, ix]
            if kind == "max":
                y[:, :, oy, ox] = win.max(axis=(2, 3))
            else:
                if cip:  # taps inside the padded input count (PyTorch, onnxruntime)
                    cnt = sum(-pads[0] <= v < H + pads[2] for v in ys) * \
                        sum(-pads[1] <= v < W + pads[3] for v in xs)
                else:
                    cnt = len(iy) * len(ix)
                y[:, :, oy, ox] = win.sum(axis=(2, 3)) / cnt
    return y


def softmax_ref(x, axis, opset):
    if opset < 13:  # coerced to 2-D at axis
        shp = x.shape
        x2 = x.reshape(int(np.prod(shp[:axis])), -1)
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).reshape(shp)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- the cases ---

def conv_case(name, N, C, H, W, M, k, strides=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), group=1, bias=True,
              auto_pad=None):
    xs = randn(N, C, H, W)
    w = randn(M, C // group, *k)
    b = randn(M) if bias else None
    K = (C // group) * k[0] * k[1] + 1
    c = Case(name, K=K)
    c.input("X", (-1, C, H, W))
    wd = c.const("W", w)
    bd = c.const("B", b) if bias else None
    attrs = dict(kernel_shape=k, strides=strides, dilations=dil, group=group)
    rpads = list(pads)
    if auto_pad:
        attrs["auto_pad"] = auto_pad
        if auto_pad.startswith("SAME"):
            ph = same_pads(H, k[0], strides[0], dil[0], auto_pad == "SAME_UPPER")
            pw = same_pads(W, k[1], strides[1], dil[1], auto_pad == "SAME_UPPER")
            rpads = [ph[0], pw[0], ph[1], pw[1]]
        else:
            rpads = [0, 0, 0, 0]
    else:
        attrs["pads"] = pads
    c.node("Conv", "conv0", ["X", "W", "B" if bias else None], "Y", **attrs)
    x = xs.astype(np.float64)
    y = conv_ref(x, wd, bd, strides, rpads, dil, group)
    mag = conv_ref(abs(x), abs(wd), abs(bd) if bias else None, strides, rpads, dil, group)
    c.finish("Y", xs, y, mag)


def conv_cases():
    conv_case("conv_3x3_pad1", 2, 3, 7, 6, 4, (3, 3), pads=(1, 1, 1, 1))
    conv_case("conv_stride2_dil2_asym", 2, 3, 9, 8, 5, (3, 2), strides=(2, 1), pads=(1, 0, 2, 1), dil=(2, 2),
              bias=False)
    conv_case("conv_groups2", 1, 4, 6, 7, 6, (2, 3), pads=(0, 1, 1, 0), group=2)
    conv_case("conv_depthwise_same_upper", 2, 5, 8, 7, 10, (2, 2), strides=(2, 2), group=5,
              auto_pad="SAME_UPPER")
    conv_case("conv_same_lower", 1, 3, 6, 6, 2, (4, 3), auto_pad="SAME_LOWER")
    conv_case("conv_1x1", 3, 6, 5, 4, 7, (1, 1))
    conv_case("conv_1x1_stride2_valid", 2, 4, 7, 6, 3, (1, 1), strides=(2, 2), auto_pad="VALID")
    conv_case("conv_5x5_same_upper", 2, 1, 12, 12, 8, (5, 5), auto_pad="SAME_UPPER")


def bn_case():
    N, C, H, W = 2, 4, 3, 5
    xs = randn(N, C, H, W)
    c = Case("batchnorm", K=4)
    c.input("X", (-1, C, H, W))
    s = c.const("scale", randn(C))
    b = c.const("B", randn(C))
    m = c.const("mean", randn(C))
    v = c.const("var", rng.uniform(0.1, 2.0, C))
    c.node("BatchNormalization", "bn0", ["X", "scale", "B", "mean", "var"], "Y", epsilon=1e-3)
    x = xs.astype(np.float64)
    k = (s / np.sqrt(v + np.float64(np.float32(1e-3))))[None, :, None, None]
    y = (x - m[None, :, None, None]) * k + b[None, :, None, None]
    mag = (abs(x) + abs(m[None, :, None, None])) * abs(k) + abs(b[None, :, None, None])
    c.finish("Y", xs, y, mag)


def unary_cases():
    shape = (2, 3, 4, 5)
    for name, op, attrs, f, magf, K in [
        ("relu", "Relu", {}, lambda x: np.maximum(x, 0), abs, 0),
        ("clip", "Clip", dict(min=-0.5, max=0.75), lambda x: np.clip(x, -0.5, 0.75), abs, 0),
        ("clip_min_only", "Clip", dict(min=0.25), lambda x: np.maximum(x, 0.25), abs, 0),
        ("hardsigmoid", "HardSigmoid", dict(alpha=0.3, beta=0.4),
         lambda x: np.clip(np.float32(0.3) * x + np.float32(0.4), 0, 1),
         lambda x: abs(np.float32(0.3) * x) + 0.4, 2),
        ("hardswish", "HardSwish", {}, lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
         lambda x: abs(x) * (abs(x) / 6 + 0.5), 3),
        ("sigmoid", "Sigmoid", {}, lambda x: 1 / (1 + np.exp(-x)), lambda x: 1 / (1 + np.exp(-x)), 1),
        ("identity", "Identity", {}, lambda x: x, abs, 0),
    ]:
        xs = randn(*shape) * 3
        c = Case(name, K=K)
        c.input("X", (-1,) + shape[1:])
        c.node(op, name + "0", ["X"], "Y", **attrs)
        x = xs.astype(np.float64)
        c.finish("Y", xs, f(x), magf(x))


def binary_cases():
    for name, op, sa, sb in [
        ("add_channel_bias", "Add", (2, 3, 4, 5), (3, 1, 1)),
        ("mul_bcast_both", "Mul", (2, 1, 4, 1), (3, 1, 5)),
        ("add_same", "Add", (3, 4), (3, 4)),
        ("mul_scalar", "Mul", (2, 3, 2), ()),
        ("add_rank_lower_input", "Add", (4, 5), (2, 3, 4, 5)),
    ]:
        xs = randn(*sa)
        c = Case(name, K=1)
        c.input("X", (-1,) + sa[1:])
        b = c.const("B", randn(*sb))
        c.node(op, name + "0", ["X", "B"], "Y")
        x = xs.astype(np.float64)
        y = x + b if op == "Add" else x * b
        c.finish("Y", xs, y, abs(y))
    # one activation read twice: x * x + x (the value freed after its last reader)
    xs = randn(2, 3, 3)
    c = Case("mul_add_same_value", K=2)
    c.input("X", (-1, 3, 3))
    c.node("Mul", "sq", ["X", "X"], "S")
    c.node("Add", "plus", ["S", "X"], "Y")
    x = xs.astype(np.float64)
    c.finish("Y", xs, x * x + x, x * x + abs(x))


def pool_case(name, kind, shape, k, strides, pads=(0, 0, 0, 0), dil=(1, 1), ceil=0, cip=0, auto_pad=None):
    xs = randn(*shape)
    c = Case(name, opset=19 if dil != (1, 1) else 13, K=1)
    c.input("X", (-1,) + shape[1:])
    attrs = dict(kernel_shape=k, strides=strides, ceil_mode=ceil)
    if dil != (1, 1):
        attrs["dilations"] = dil
    rp = list(pads)
    if auto_pad:
        attrs["auto_pad"] = auto_pad
        ph = same_pads(shape[2], k[0], strides[0], dil[0], auto_pad == "SAME_UPPER")
        pw = same_pads(shape[3], k[1], strides[1], dil[1], auto_pad == "SAME_UPPER")
        rp = [ph[0], pw[0], ph[1], pw[1]]
    else:
        attrs["pads"] = pads
    if kind == "avg":
        attrs["count_include_pad"] = cip
    c.node("MaxPool" if kind == "max" else "AveragePool", name + "0", ["X"], "Y", **attrs)
    y = pool_ref(xs.astype(np.float64), kind, k, strides, rp, dil, ceil, cip)
    mag = pool_ref(abs(xs.astype(np.float64)), kind, k, strides, rp, dil, ceil, cip)
    c.finish("Y", xs, y, mag)


def pool_cases():
    pool_case("maxpool_3x3_s2_p1", "max", (2, 3, 7, 8), (3, 3), (2, 2), (1, 1, 1, 1))
    pool_case("maxpool_2x2_ceil", "max", (1, 2, 7, 7), (2, 2), (2, 2), ceil=1)
    pool_case("maxpool_dil2", "max", (1, 2, 9, 8), (2, 3), (1, 2), (0, 1, 1, 0), dil=(2, 2))
    pool_case("maxpool_same_upper", "max", (1, 2, 5, 6), (2, 2), (2, 2), auto_pad="SAME_UPPER")
    pool_case("avgpool_excl_pad", "avg", (2, 3, 6, 7), (3, 3), (2, 2), (1, 1, 1, 1), cip=0)
    pool_case("avgpool_incl_pad", "avg", (2, 3, 6, 7), (3, 3), (2, 2), (1, 1, 1, 1), cip=1)
    pool_case("avgpool_ceil_incl_pad", "avg", (1, 2, 7, 6), (3, 2), (2, 2), (1, 0, 1, 1), ceil=1, cip=1)
    pool_case("avgpool_ceil_excl_pad", "avg", (1, 2, 8, 7), (3, 3), (3, 2), (0, 1, 0, 1), ceil=1, cip=0)
    # GlobalAveragePool
    xs = randn(2, 5, 4, 3)
    c = Case("globalavgpool", K=1)
    c.input("X", (-1, 5, 4, 3))
    c.node("GlobalAveragePool", "gap0", ["X"], "Y")
    x = xs.astype(np.float64)
    c.finish("Y", xs, x.mean(axis=(2, 3), keepdims=True), abs(x).mean(axis=(2, 3), keepdims=True))


def shape_cases():
    xs = randn(2, 3, 4, 5)
    x = xs.astype(np.float64)
    for name, axis, shp in [("flatten_axis1", 1, (2, 60)), ("flatten_axis2", 2, (6, 20)),
                            ("flatten_axis_neg1", -1, (24, 5))]:
        c = Case(name)
        c.input("X", (-1, 3, 4, 5))
        c.node("Flatten", name + "0", ["X"], "Y", axis=axis)
        c.finish("Y", xs, x.reshape(shp), abs(x).reshape(shp))
    c = Case("reshape_zero_minus1")
    c.input("X", (-1, 3, 4, 5))
    c.node("Reshape", "rs0", ["X"], "Y", shape=(0, -1, 10))
    c.finish("Y", xs, x.reshape(2, 6, 10), abs(x).reshape(2, 6, 10))
    c = Case("concat_axis1")
    c.input("X", (-1, 3, 4, 5))
    b = c.const("B", randn(2, 2, 4, 5))
    c.node("Relu", "r0", ["X"], "R")
    c.node("Concat", "cat0", ["X", "B", "R"], "Y", axis=1)
    y = np.concatenate([x, b, np.maximum(x, 0)], axis=1)
    c.finish("Y", xs, y, abs(y))
    c = Case("concat_axis_neg1")
    c.input("X", (-1, 3, 4, 5))
    b = c.const("B", randn(2, 3, 4, 2))
    c.node("Concat", "cat0", ["X", "B"], "Y", axis=-1)
    y = np.concatenate([x, b], axis=-1)
    c.finish("Y", xs, y, abs(y))


def gemm_case(name, M, K, N, ta=0, tb=0, alpha=1.0, beta=1.0, cshape=None):
    a_s = randn(*((K, M) if ta else (M, K)))
    c = Case(name, K=K + 2)
    c.input("A", (-1, a_s.shape[1]))
    b = c.const("B", randn(*((N, K) if tb else (K, N))))
    cc = c.const("C", randn(*cshape)) if cshape is not None else None
    c.node("Gemm", name + "0", ["A", "B", "C" if cshape is not None else None], "Y", alpha=alpha, beta=beta,
           transA=ta, transB=tb)
    a = a_s.astype(np.float64)
    al, be = np.float64(np.float32(alpha)), np.float64(np.float32(beta))
    A, B = (a.T if ta else a), (b.T if tb else b)
    y = al * A @ B + (be * cc if cc is not None else 0)
    mag = abs(al) * abs(A) @ abs(B) + (abs(be) * abs(cc) if cc is not None else 0)
    c.finish("Y", a_s, y, mag)


def dense_cases():
    gemm_case("gemm_plain", 4, 7, 5)
    gemm_case("gemm_transB_bias", 3, 16, 10, tb=1, cshape=(10,))
    gemm_case("gemm_transA_alpha_beta_col", 5, 6, 4, ta=1, alpha=0.5, beta=-2.0, cshape=(5, 1))
    gemm_case("gemm_both_scalar_c", 2, 9, 3, ta=1, tb=1, alpha=1.5, beta=0.25, cshape=())
    gemm_case("gemm_full_c", 3, 4, 6, cshape=(3, 6))
    for name, sa, sb in [("matmul_2d", (4, 6), (6, 3)), ("matmul_batched_const", (2, 3, 4, 5), (5, 6)),
                         ("matmul_bcast", (2, 1, 3, 4), (3, 4, 2)), ("matmul_vec", (3, 4), (4,))]:
        xs = randn(*sa)
        c = Case(name, K=sa[-1])
        c.input("A", (-1,) + sa[1:])
        b = c.const("B", randn(*sb))
        c.node("MatMul", name + "0", ["A", "B"], "Y")
        x = xs.astype(np.float64)
        c.finish("Y", xs, x @ b, abs(x) @ abs(b))
    for name, opset, axis, shape in [("softmax_opset11_coerce", 11, 1, (2, 3, 4)),
                                     ("softmax_opset13_axis1", 13, 1, (2, 3, 4)),
                                     ("softmax_opset13_last", 13, -1, (2, 3, 4)),
                                     ("softmax_opset1_default_axis", 1, 1, (3, 7))]:
        xs = randn(*shape) * 2
        c = Case(name, opset=opset, K=2)
        c.input("X", (-1,) + shape[1:])
        c.node("Softmax", name + "0", ["X"], "Y", axis=axis)
        y = softmax_ref(xs.astype(np.float64), axis if axis >= 0 else len(shape) + axis, opset)
        c.finish("Y", xs, y, y)


def graph_cases():
    """Small networks: error bound from the same network on absolute values,
    K = the sum of the accumulation lengths along the path."""
    # conv -> bn -> relu -> maxpool -> flatten -> gemm -> softmax, batch 3
    N = 3
    xs = randn(N, 2, 8, 8)
    c = Case("net_conv_bn_pool_gemm", K=2 * 9 + 1 + 4 + 3 * 4 * 4 + 2 + 2)
    c.input("X", (-1, 2, 8, 8))
    w = c.const("W", randn(3, 2, 3, 3))
    cb = c.const("Cb", randn(3))
    s = c.const("s", randn(3))
    bb = c.const("b", randn(3))
    m = c.const("m", randn(3))
    v = c.const("v", rng.uniform(0.5, 1.5, 3))
    fw = c.const("FW", randn(4, 48))
    fb = c.const("Fb", randn(4))
    c.node("Conv", "c1", ["X", "W", "Cb"], "C1", kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    c.node("BatchNormalization", "b1", ["C1", "s", "b", "m", "v"], "B1")
    c.node("Relu", "r1", ["B1"], "R1")
    c.node("MaxPool", "p1", ["R1"], "P1", kernel_shape=(2, 2), strides=(2, 2))
    c.node("Flatten", "f1", ["P1"], "F1", axis=1)
    c.node("Gemm", "g1", ["F1", "FW", "Fb"], "G1", transB=1)
    c.node("Softmax", "sm", ["G1"], "Y", axis=1)

    def net(x, a):
        f = abs if a else (lambda t: t)
        y = conv_ref(x, f(w), f(cb), (1, 1), (1, 1, 1, 1), (1, 1), 1)
        k = s / np.sqrt(v + np.float64(np.float32(1e-5)))
        if a:
            y = (abs(y) + abs(m)[None, :, None, None]) * abs(k)[None, :, None, None] + abs(bb)[None, :, None, None]
        else:
            y = (y - m[None, :, None, None]) * k[None, :, None, None] + bb[None, :, None, None]
            y = np.maximum(y, 0)
        y = pool_ref(y, "max", (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0, 0).reshape(N, -1)
        return y @ f(fw).T + f(fb)

    x = xs.astype(np.float64)
    logits, lmag = net(x, False), net(abs(x), True)
    y = softmax_ref(logits, 1, 13)
    # softmax: d y_i = y_i (d z_i - sum_j y_j d z_j), so |dy| <= 2 max|dz| (plus its own rounding)
    c.finish("Y", xs, y, 2 * lmag.max(axis=1, keepdims=True) + y)

    # The MNIST zoo pattern: a model exported for batch 1 reshapes to [1, 12]
    # and multiplies by a weight that is itself Reshape(constant) (folded at
    # plan time); run with batch 4, the Reshape keeps the batch.
    N = 4
    xs = randn(N, 3, 2, 2)
    c = Case("net_batch1_reshape_folded", opset=1, K=12)
    c.input("X", (1, 3, 2, 2))
    wf = c.const("Wflat", randn(12 * 5))
    c.node("Reshape", "wr", ["Wflat"], "W2", shape=(12, 5))
    c.node("Reshape", "xr", ["X"], "X2", shape=(1, 12))
    c.node("MatMul", "mm", ["X2", "W2"], "Y")
    x = xs.astype(np.float64).reshape(N, 12)
    c.finish("Y", xs, x @ wf.reshape(12, 5), abs(x) @ abs(wf).reshape(12, 5))


def main():
    global rng
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 17)
    conv_cases()
    bn_case()
    unary_cases()
    binary_cases()
    pool_cases()
    shape_cases()
    dense_cases()
    graph_cases()
    sys.stdout.write("\n".join(OUT) + "\n")


if __name__ == "__main__":
    main()
