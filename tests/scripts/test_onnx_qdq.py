#!/usr/bin/env python3
"""test_onnx_qdq.py QDQTOOL NPM_DIR — the QDQ ONNX writer (io/onnx_write.c).
QDQTOOL (tests/test_onnx_qdq.c) writes RTN per-channel QDQ versions of both
shared models (weights 8 and 4 bits; with and without calibrated activation
QDQ). Each file is checked three ways, all independent of the writer:
 - its dequantized weights equal this script's own RTN of the float weights
   (NumPy, asymmetric min/max per output channel);
 - onnxruntime-node (NPM_DIR, graph optimisation 'disabled') runs it;
 - ORT's logits agree with a float64 NumPy evaluation of the file (onnx_np.py).
MNIST: eval images 5000-9999 (raw 0-255 pixels); fashion-resnet: Fashion-MNIST
test images, normalised as arch.json says (how many: main()). AQ_QDQ_ORT_LEVEL=basic
runs ORT at graph optimisation level 'basic' instead of 'disabled'."""
import gzip
import os
import struct
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy loads BLAS: CI runs tests in parallel
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import onnx_np  # noqa: E402
import onnx_pb as pb  # noqa: E402

sys.path.insert(0, os.path.join(HERE, ".."))
from aqtest import SHARED, check, finish  # noqa: E402

TOOL, NPM = sys.argv[1], sys.argv[2]


def idx_images(path, lo, hi):
    raw = gzip.open(path).read()
    n, r, c = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw[16:], np.uint8).reshape(n, 1, r, c)[lo:hi].astype(np.float32)


def rtn(w, bits):
    """Per-row asymmetric min/max RTN in float32 (the range includes 0)."""
    lo = np.minimum(w.min(1), 0).astype(np.float32)
    hi = np.maximum(w.max(1), 0).astype(np.float32)
    scale = ((hi - lo) / np.float32(2 ** bits - 1)).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, 2 ** bits - 1)
    u = np.clip(np.rint(w / scale[:, None]) + zero[:, None], 0, 2 ** bits - 1)
    return scale[:, None] * (u - zero[:, None])


def weight_rows(w, op, attrs):
    """The quantizer's [out, in] view of an ONNX weight."""
    if op == "MatMul" or (op == "Gemm" and not attrs.get("transB", 0)):
        return w.T
    return w.reshape(w.shape[0], -1)


def check_weights(orig, qdq, bits, tag):
    """Each quantized weight of the QDQ file against our own RTN of the float one."""
    consts, nodes = {}, {}
    consts.update(orig["initializers"])
    for op, name, ins, outs, a in orig["nodes"]:
        if op == "Constant":
            consts[outs[0]] = a["value"]
        elif op == "Reshape" and ins[0] in consts:
            consts[outs[0]] = consts[ins[0]].reshape(a["shape"])
        else:
            nodes[name] = (op, ins, a)
    q = qdq["initializers"]
    n_checked = 0
    for op, name, ins, outs, a in qdq["nodes"]:
        if op != "DequantizeLinear" or not name.endswith(".w_dq"):
            continue
        node = name[:-5]
        fop, fins, fa = nodes[node]
        ax = a.get("axis", 1)
        w = consts[fins[1]].astype(np.float32)
        deq = (q[ins[0]].astype(np.float64) - onnx_np._axis_shape(q[ins[2]], q[ins[0]], ax)) \
            * onnx_np._axis_shape(q[ins[1]].astype(np.float64), q[ins[0]], ax)
        want = rtn(weight_rows(w, fop, fa), bits)
        got = weight_rows(deq, fop, fa)
        want_t = {22: 4, 3: 8}[qdq["dtypes"][ins[0]]]
        check(want_t == (4 if bits <= 4 else 8), f"{tag} {node}: element type")
        # float32 product scale*(u-zero) vs float64: 1 ulp of the largest value
        ok = np.abs(got - want) <= 2e-7 * np.abs(want).max()
        check(ok.mean() >= 0.999, f"{tag} {node}: {np.sum(~ok)} of {ok.size} weights differ from RTN")
        n_checked += 1
    check(n_checked == sum(1 for v in nodes.values() if v[0] in ("Conv", "Gemm", "MatMul")), f"{tag}: all layers")


def qtypes(m):
    names = {2: "uint8", 3: "int8", 21: "uint4", 22: "int4"}
    return {k: names[t] for k, t in m["dtypes"].items() if t in names}


def act_params(qdq, x, bits):
    """Per-node input ranges (min/max over the calibration images x, with 0)
    taken from a weight-only QDQ model: the 'node scale zero bits' lines
    QDQTOOL reads. Layers are found by their weight's DequantizeLinear."""
    layers = {}
    for op, name, ins, outs, a in qdq["nodes"]:
        if op in ("Conv", "Gemm", "MatMul"):
            layers[name] = ins[0]
    _, vals = onnx_np.run(qdq, {qdq["inputs"][0]: x}, qtypes(qdq), keep=list(layers.values()), per_image=True)
    lines = []
    for name, inp in layers.items():
        v = vals[inp]
        lo, hi = min(v.min(), 0.0), max(v.max(), 0.0)
        scale = np.float32((hi - lo) / (2 ** bits - 1))
        zero = int(np.clip(np.rint(-lo / scale), 0, 2 ** bits - 1))
        lines.append(f"{name} {float(scale)!r} {zero} {bits}")
    return "\n".join(lines) + "\n"


def write_qdq(tmp, model, tag, wbits, act=None):
    out = os.path.join(tmp, f"{tag}.onnx")
    cmd = [TOOL, model, out, str(wbits)]
    if act:
        with open(out + ".act", "w") as f:
            f.write(act)
        cmd.append(out + ".act")
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, f"{tag}: {p.stderr}")
    return out


def ort_logits(tmp, files, x, batch, level=os.environ.get("AQ_QDQ_ORT_LEVEL", "disabled")):
    inp, out = os.path.join(tmp, "x.bin"), os.path.join(tmp, "ort.bin")
    x.astype(np.float32).tofile(inp)
    p = subprocess.run(["node", os.path.join(HERE, "onnx_ort_run.mjs"), NPM, level, out, inp, str(len(x)), str(batch)]
                       + files, capture_output=True, text=True)
    check(p.returncode == 0, f"onnxruntime-node: {p.stderr[-2000:]}")
    y = np.fromfile(out, np.float32) if p.returncode == 0 else np.zeros(len(files) * len(x) * 10, np.float32)
    return y.reshape(len(files), len(x), -1)


def compare(tag, ort, ref, act):
    """ORT (float32) against NumPy (float64) on one QDQ file."""
    top = np.mean(ort.argmax(1) == ref.argmax(1))
    err = np.abs(ort - ref).max() / np.abs(ref).max()
    print(f"{tag}: top-1 agreement {top:.4%}, max |logit diff| / max |logit| = {err:.2e}")
    check(top >= 0.999, f"{tag}: top-1 agreement {top:.4%} < 99.9%")
    if not act:
        # weights only: float32 rounding in dot products of <= 576 terms over <= 9 layers,
        # ~ 9 * 576 * 6e-8 = 3e-4 relative at worst; observed ~1e-6
        check(err <= 3e-4, f"{tag}: logits differ by {err:.2e} relative")
    else:
        # activation codes can flip where x / scale is within float32 rounding of a .5
        # boundary: each flip moves one activation by one step; bounded at 5% of the logit range
        check(err <= 5e-2, f"{tag}: logits differ by {err:.2e} relative")


def run_model(tmp, model, x, calib, batch, configs):
    """configs: (tag, weight bits, activation bits or 0, images compared)."""
    orig = pb.model(open(model, "rb").read())
    files, qdqs = [], []
    base = write_qdq(tmp, model, "w8_base", 8)
    base_m = pb.model(open(base, "rb").read())
    for tag, wbits, abits, _ in configs:
        act = act_params(base_m, calib, abits) if abits else None
        f = write_qdq(tmp, model, tag, wbits, act)
        m = pb.model(open(f, "rb").read())
        check(m["opset"] == (21 if wbits <= 4 or abits == 4 else 13), f"{tag}: opset {m['opset']}")
        check_weights(orig, m, wbits, tag)
        files.append(f)
        qdqs.append(m)
    t = time.time()
    n_img = max(c[3] for c in configs)
    ort = ort_logits(tmp, files, x[:n_img], batch)
    print(f"onnxruntime-node: {time.time() - t:.1f} s")
    for (tag, wbits, abits, n), m, o in zip(configs, qdqs, ort):
        t = time.time()
        ref = onnx_np.run(m, {m["inputs"][0]: x[:n]}, qtypes(m), per_image=batch == 1)
        o = o[:n]
        print(f"NumPy {tag}: {time.time() - t:.1f} s")
        compare(tag, o, ref, abits)


def main():
    mn = os.path.join(SHARED, "models/mnist-cnn/model.onnx")
    fr = os.path.join(SHARED, "models/fashion-resnet/model.onnx")
    fashion = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    for p in (mn, fr, fashion, os.path.join(NPM, "node_modules/onnxruntime-node/package.json")):
        if not os.path.exists(p):
            print(f"skip: {p} not found")
            return 77
    with tempfile.TemporaryDirectory() as tmp:
        mx = idx_images(os.path.join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz"), 5000, 10000)
        # The float64 NumPy forward is the slow part (CI runs tests in parallel on 2 cores):
        # weight-only files agree to float32 rounding and need few images; the
        # activation-QDQ agreement is measured on more. AQ_QDQ_FULL=1: all of
        # MNIST 5000-9999 and 500 Fashion-MNIST images (docs/ONNX.md has the results).
        full = os.environ.get("AQ_QDQ_FULL") == "1"
        nm, nf = (5000, 500) if full else (500, 100)
        run_model(tmp, mn, mx, mx[:256], 1, [("mnist_w8", 8, 0, nm // 5), ("mnist_w4", 4, 0, nm // 5),
                                             ("mnist_w8a8", 8, 8, nm)])
        fx = (idx_images(fashion, 0, nf) / 255 - 0.2860) / 0.3530
        run_model(tmp, fr, fx, fx[:64], 100, [("fashion_w8", 8, 0, nf // 2), ("fashion_w4", 4, 0, nf // 2),
                                              ("fashion_w8a8", 8, 8, nf), ("fashion_w4a4", 4, 4, nf),
                                              ("fashion_w8a6", 8, 6, nf)])
    return finish()


sys.exit(main())
