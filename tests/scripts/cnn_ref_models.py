#!/usr/bin/env python3
"""cnn_ref_models.py — the CNN engine end to end on the shared models, through
`adaquant eval MODEL.onnx` (AQ_CLI), against an independent float64 NumPy
interpreter of the ONNX graph (decoded by tests/scripts/onnx_pb.py, not by our
C reader).

usage: cnn_ref_models.py mnist|fashion

mnist:   the model-zoo MNIST CNN (opset 1, raw 0..255 pixels): the three
         test_data_*.npz inputs give the class of their reference outputs;
         logits of images 5000..5099 (a batch of 64 and a remainder) within
         the error bound of the float64 reference; images 5000..9999 give
         4976 correct (99.52%, issue 17); bad input: an idx file shorter than
         its header, labels of another count, a model with a shape mismatch
         and an unreadable --normalize all exit non-zero naming the problem.
fashion: fashion-resnet (opset 13, BatchNorm unfused) on Fashion-MNIST t10k
         with x = (u8/255 - 0.2860)/0.3530: logits of images 0..99 within the
         bound; all 10000 images give exactly 9122 correct (eval.txt).

Error bound: float32 sums of k terms err by at most gamma(k) * sum|terms|
(Higham), and linear layers carry earlier errors through with the weights'
absolute values, so the engine's logits satisfy |y - ref| <= gamma(K) * mag,
where mag is the same network run on |x| with |weights| (Relu as identity,
BN as (|x| + |mean|) * |scale/sqrt(var + eps)| + |B|) and K the sum of the
accumulation lengths along the network plus a few roundings per layer. That
worst case is very loose here (errors of random sign cancel, and the
magnitude network of a deep residual net with BatchNorm grows to ~1e8), so
the logits must also be within 1e-5 of each image's largest |logit|: eval.txt
measured a float32 interpreter of fashion-resnet 5.7e-6 away from float64 on
logits of size ~10, i.e. ~6e-7 relative; 1e-5 leaves a 15x margin.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import onnx_pb  # noqa: E402
from aqtest import CLI, SHARED, check, finish  # noqa: E402


# --- the float64 reference interpreter ---

def conv(x, w, b, at):
    N, C, H, W = x.shape
    M, cg, kh, kw = w.shape
    s = at.get("strides", [1, 1])
    d = at.get("dilations", [1, 1])
    g = at.get("group", 1)
    pads = list(at.get("pads", [0, 0, 0, 0]))
    ap = at.get("auto_pad", "NOTSET")
    if ap.startswith("SAME"):
        for i, (n, k) in enumerate([(H, kh), (W, kw)]):
            o = -(-n // s[i])
            tot = max(0, (o - 1) * s[i] + d[i] * (k - 1) + 1 - n)
            pads[i] = tot // 2 if ap == "SAME_UPPER" else tot - tot // 2
            pads[i + 2] = tot - pads[i]
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    OH = (H + pads[0] + pads[2] - d[0] * (kh - 1) - 1) // s[0] + 1
    OW = (W + pads[1] + pads[3] - d[1] * (kw - 1) - 1) // s[1] + 1
    cols = np.empty((N, C, kh, kw, OH, OW))
    for ky in range(kh):
        for kx in range(kw):
            cols[:, :, ky, kx] = xp[:, :, ky * d[0]:ky * d[0] + s[0] * (OH - 1) + 1:s[0],
                                    kx * d[1]:kx * d[1] + s[1] * (OW - 1) + 1:s[1]]
    mg = M // g
    y = np.concatenate([np.tensordot(cols[:, i * cg:(i + 1) * cg], w[i * mg:(i + 1) * mg], axes=([1, 2, 3], [1, 2, 3]))
                        for i in range(g)], axis=3).transpose(0, 3, 1, 2)
    return y + (b[None, :, None, None] if b is not None else 0), cg * kh * kw + 1


def maxpool(x, at):
    k, s = at["kernel_shape"], at.get("strides", [1, 1])
    p = at.get("pads", [0, 0, 0, 0])
    assert at.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and not at.get("ceil_mode", 0)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=-np.inf)
    OH = (xp.shape[2] - k[0]) // s[0] + 1
    OW = (xp.shape[3] - k[1]) // s[1] + 1
    return np.max([xp[:, :, i:i + s[0] * (OH - 1) + 1:s[0], j:j + s[1] * (OW - 1) + 1:s[1]]
                   for i in range(k[0]) for j in range(k[1])], axis=0)


def run(m, x, absmode):
    """The graph on x in float64; absmode: the magnitude network. Returns
    (output, K)."""
    f = abs if absmode else (lambda t: t)
    env = {k: f(v.astype(np.float64)) for k, v in m["initializers"].items()}
    env[m["inputs"][0]] = f(x)
    K = 0
    for op, name, ins, outs, at in m["nodes"]:
        a = [env[i] if i else None for i in ins]
        if op == "Constant":
            y = f(at["value"].astype(np.float64))
        elif op == "Conv":
            y, k = conv(a[0], a[1], a[2] if len(a) > 2 else None, at)
            K += k + 1
        elif op == "BatchNormalization":
            x0, sc, b, mu, var = a
            kk = sc / np.sqrt(var + np.float64(np.float32(at.get("epsilon", 1e-5))))
            e = lambda t: t.reshape(1, -1, *([1] * (x0.ndim - 2)))
            y = (x0 + e(mu)) * e(kk) + e(b) if absmode else (x0 - e(mu)) * e(kk) + e(b)
            K += 4
        elif op == "Relu":
            y = a[0] if absmode else np.maximum(a[0], 0)
        elif op == "Add":
            b = a[1]
            if at.get("broadcast", 0) and "axis" in at:  # opset < 7: align b at axis
                b = b.reshape(b.shape + (1,) * (a[0].ndim - at["axis"] - b.ndim))
            y = a[0] + b
            K += 1
        elif op == "MaxPool":
            y = maxpool(a[0], at)
        elif op == "GlobalAveragePool":
            y = a[0].mean(axis=(2, 3), keepdims=True)
            K += 1
        elif op == "Flatten":
            ax = at.get("axis", 1)
            y = a[0].reshape(int(np.prod(a[0].shape[:ax])), -1)
        elif op == "Reshape":
            y = a[0].reshape([int(v) for v in (at["shape"] if "shape" in at else m["initializers"][ins[1]])])
        elif op == "Gemm":
            A = a[0].T if at.get("transA", 0) else a[0]
            B = a[1].T if at.get("transB", 0) else a[1]
            y = at.get("alpha", 1.0) * A @ B + (at.get("beta", 1.0) * a[2] if len(a) > 2 else 0)
            K += A.shape[1] + 2
        elif op == "MatMul":
            y = a[0] @ a[1]
            K += a[0].shape[-1]
        else:
            raise ValueError(f"reference: op {op}")
        env[outs[0]] = y
    return env[m["outputs"][0]], K


def reference(model_path, x, one_at_a_time=False):
    """(logits, bound) in float64 for images x [N, C, H, W]; one_at_a_time
    for a model exported for batch 1 (MNIST's fixed Reshape to [1, 256])."""
    m = onnx_pb.model(open(model_path, "rb").read())
    parts = [x[i:i + 1] for i in range(len(x))] if one_at_a_time else [x]
    ys, mags = [], []
    for p in parts:
        y, K = run(m, p, False)
        ys.append(y)
        mags.append(run(m, p, True)[0])
    u, K = 2.0 ** -24, K + 4
    y = np.concatenate(ys)
    rel = 1e-5 * abs(y).max(axis=1, keepdims=True)  # see the module comment
    return y, (K * u / (1 - K * u) * np.concatenate(mags), rel)


# --- files and the CLI ---

def write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


def read_idx(path):
    data = gzip.open(path).read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def cli(*args):
    r = subprocess.run([CLI, "eval", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def eval_json(*args):
    rc, out, err = cli(*args, "--json")
    check(rc == 0, f"eval {args} exit {rc}: {err.strip()}")
    print(err.strip().splitlines()[-1] if err.strip() else "")
    return json.loads(out) if rc == 0 else {}


def cli_logits(tmp, model, images, norm, rng):
    out = os.path.join(tmp, "logits.bin")
    rc, _, err = cli(model, "--eval-images", images, "--normalize", norm, "--eval-range", rng, "--logits", out)
    check(rc == 0, f"logits run exit {rc}: {err.strip()}")
    return np.fromfile(out, np.float32).reshape(-1, 10) if rc == 0 else None


def compare_logits(name, y, ref, bounds):
    if y is None:
        return
    check(y.shape == ref.shape, f"{name}: logits shape {y.shape} vs {ref.shape}")
    err = abs(y.astype(np.float64) - ref)
    for what, b in zip(("worst-case", "relative"), bounds):
        check(np.all(err <= b), f"{name}: |logit - ref| up to {err.max():.3g} exceeds the {what} bound")
    check(np.array_equal(y.argmax(1), ref.argmax(1)), f"{name}: argmax differs from the reference")
    print(f"{name}: {len(y)} images, max |logit - float64 ref| {err.max():.3g}, "
          f"max ratio to the worst-case bound {np.max(err / bounds[0]):.2e}, to the relative one {np.max(err / bounds[1]):.3f}")


def bad_inputs(tmp, model, images):
    """Each must exit 1 with a message naming what is wrong."""
    px = read_idx(images)[:3]
    short = os.path.join(tmp, "short.idx")
    write_idx(short, px)
    with open(short, "r+b") as fh:  # the header says 3 images; cut the last one short
        fh.truncate(os.path.getsize(short) - 100)
    rc, _, err = cli(model, "--eval-images", short, "--normalize", "none")
    check(rc == 1 and "short.idx" in err, f"truncated idx: exit {rc}, {err.strip()}")
    good = os.path.join(tmp, "three.idx")
    write_idx(good, px)
    labels = os.path.join(tmp, "two.idx1")
    write_idx(labels, [1, 2])
    rc, _, err = cli(model, "--eval-images", good, "--eval-labels", labels, "--normalize", "none")
    check(rc == 1 and "2 labels" in err and "3 images" in err, f"label count: exit {rc}, {err.strip()}")
    rc, _, err = cli(model, "--eval-images", good, "--normalize", "0.5")
    check(rc == 2 and "MEAN,STD" in err, f"--normalize 0.5: exit {rc}, {err.strip()}")
    # a model whose second conv expects 2 input channels where the first gives 4
    P = onnx_pb
    w1, w2 = np.ones((4, 1, 3, 3), np.float32), np.ones((2, 2, 3, 3), np.float32)
    nodes = [P.enc_node("Conv", ["x", "w1"], ["h"], "conv_a"), P.enc_node("Conv", ["h", "w2"], ["y"], "conv_b")]
    bad = os.path.join(tmp, "bad_shape.onnx")
    with open(bad, "wb") as fh:
        fh.write(P.enc_model(nodes, [P.enc_tensor("w1", w1), P.enc_tensor("w2", w2)], [("x", [1, 1, 28, 28])],
                             [("y", [1, 2, 24, 24])]))
    rc, _, err = cli(bad, "--eval-images", good, "--normalize", "none")
    check(rc == 1 and "conv_b" in err and "does not fit input [" in err, f"shape mismatch: exit {rc}, {err.strip()}")


def mnist():
    d = os.path.join(SHARED, "models/mnist-cnn")
    model = os.path.join(d, "model.onnx")
    images = os.path.join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz")
    labels = os.path.join(SHARED, "data/mnist/t10k-labels-idx1-ubyte.gz")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            z = np.load(os.path.join(d, f"test_data_{i}.npz"))
            x, want = z["inputs"].reshape(1, 28, 28), z["outputs"].reshape(-1)
            path = os.path.join(tmp, f"npz{i}.idx")
            write_idx(path, x)
            y = cli_logits(tmp, model, path, "none", "0:1")
            ref, bound = reference(model, x.reshape(1, 1, 28, 28).astype(np.float64), True)
            compare_logits(f"test_data_{i}.npz", y, ref, bound)
            check(y is not None and y.argmax() == want.argmax(),
                  f"test_data_{i}.npz: class {None if y is None else y.argmax()}, reference {want.argmax()}")
        x = read_idx(images)[5000:5100].reshape(-1, 1, 28, 28).astype(np.float64)
        ref, bound = reference(model, x, True)
        compare_logits("mnist 5000..5099", cli_logits(tmp, model, images, "none", "5000:5100"), ref, bound)
        # agreement: our own predictions with three of them changed agree on 97 of 100
        pred, other = os.path.join(tmp, "pred.txt"), os.path.join(tmp, "other.txt")
        rc, _, err = cli(model, "--eval-images", images, "--normalize", "none", "--eval-range", "5000:5100",
                         "--predictions", pred)
        check(rc == 0, f"--predictions: exit {rc}, {err.strip()}")
        p = np.loadtxt(pred, dtype=int) if rc == 0 else np.zeros(100, int)
        check(np.array_equal(p, ref.argmax(1)), "--predictions differ from the reference classes")
        p[[3, 50, 99]] = (p[[3, 50, 99]] + 1) % 10
        np.savetxt(other, p, fmt="%d")
        r = eval_json(model, "--eval-images", images, "--normalize", "none", "--eval-range", "5000:5100",
                      "--compare", other)
        check(r.get("agree") == 97 and abs(r.get("agreement", 0) - 0.97) < 1e-12, f"agreement: {r}")
        np.savetxt(other, p[:99], fmt="%d")
        rc, _, err = cli(model, "--eval-images", images, "--normalize", "none", "--eval-range", "5000:5100",
                         "--compare", other)
        check(rc == 1 and "99 predictions" in err, f"--compare with 99 lines: exit {rc}, {err.strip()}")
        r = eval_json(model, "--eval-images", images, "--eval-labels", labels, "--normalize", "none",
                      "--eval-range", "5000:10000")
        check(r.get("images") == 5000 and r.get("correct") == 4976, f"mnist 5000..9999: {r} (want 4976/5000)")
        print(f"mnist 5000..9999 top-1: {r.get('correct')}/{r.get('images')}")
        bad_inputs(tmp, model, images)


def fashion():
    model = os.path.join(SHARED, "models/fashion-resnet/model.onnx")
    fm = "/usr/share/datasets/fashion-mnist"
    images, labels = f"{fm}/t10k-images-idx3-ubyte.gz", f"{fm}/t10k-labels-idx1-ubyte.gz"
    if not os.path.exists(images):
        print("skip: dataset-fashion-mnist is not installed")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        u8 = read_idx(images)[:100].reshape(-1, 1, 28, 28)
        x = ((u8.astype(np.float64) / 255 - 0.2860) / 0.3530).astype(np.float32).astype(np.float64)
        ref, bound = reference(model, x)
        compare_logits("fashion 0..99", cli_logits(tmp, model, images, "0.2860,0.3530", "0:100"), ref, bound)
        r = eval_json(model, "--eval-images", images, "--eval-labels", labels, "--normalize", "0.2860,0.3530")
        check(r.get("images") == 10000 and r.get("correct") == 9122, f"fashion t10k: {r} (want 9122/10000)")
        print(f"fashion t10k top-1: {r.get('correct')}/{r.get('images')}")


def main():
    for need in [os.path.join(SHARED, "models/mnist-cnn/model.onnx"), os.path.join(SHARED, "models/fashion-resnet")]:
        if not os.path.exists(need):
            print(f"skip: {need} is absent")
            sys.exit(77)
    {"mnist": mnist, "fashion": fashion}[sys.argv[1]]()
    sys.exit(finish(f"cnn_models_{sys.argv[1]}"))


if __name__ == "__main__":
    main()
