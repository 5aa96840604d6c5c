"""onnx_np.py — a float64 NumPy evaluation of an ONNX model decoded by
onnx_pb.py, for the ops the shared models and their QDQ exports use: Conv,
BatchNormalization, Relu, Clip, Add, Mul, MaxPool, GlobalAveragePool, Flatten,
Reshape, Gemm, MatMul, Identity, QuantizeLinear, DequantizeLinear. Written from
the ONNX operator specification (opset 13+ spellings); it is the tests'
independent reference for the QDQ writer and onnxruntime."""
import numpy as np

QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint4": (0, 15), "int4": (-8, 7)}


def _pads(attrs, hw, k, s, d):
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(2):
            out = -(-hw[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i], 0)
            pads.append((total - total // 2, total // 2) if auto == "SAME_LOWER" else (total // 2, total - total // 2))
        return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
    return attrs.get("pads", [0, 0, 0, 0]) if auto != "VALID" else [0, 0, 0, 0]


def _shifted(x, k, s, d, pads, fill):
    """Yield (i, j, x[:, :, i*d0 :: s0, j*d1 :: s1]) over the kernel positions
    of the padded input, each [N, C, OH, OW] (no im2col copy of the whole input)."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    oh = (x.shape[2] - (k[0] - 1) * d[0] - 1) // s[0] + 1
    ow = (x.shape[3] - (k[1] - 1) * d[1] - 1) // s[1] + 1
    for i in range(k[0]):
        for j in range(k[1]):
            yield i, j, x[:, :, i * d[0]:i * d[0] + (oh - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (ow - 1) * s[1] + 1:s[1]]


def conv(x, w, b, attrs):
    k = attrs.get("kernel_shape", list(w.shape[2:]))
    s, d, g = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1]), attrs.get("group", 1)
    cg, og = x.shape[1] // g, w.shape[0] // g
    y = None
    for i, j, xs in _shifted(x, k, s, d, _pads(attrs, x.shape[2:], k, s, d), 0.0):
        xs = np.ascontiguousarray(xs.transpose(0, 2, 3, 1))  # NHWC: one BLAS product per group
        # [N, OH, OW, cg] @ [cg, og] per group -> [N, OH, OW, O]
        part = np.concatenate([xs[..., gi * cg:(gi + 1) * cg] @ w[gi * og:(gi + 1) * og, :, i, j].T
                               for gi in range(g)], -1)
        y = part if y is None else y + part
    y = y.transpose(0, 3, 1, 2)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def maxpool(x, attrs):
    k, s = attrs["kernel_shape"], attrs.get("strides", [1, 1])
    d = attrs.get("dilations", [1, 1])
    assert not attrs.get("ceil_mode", 0)
    y = None
    for _, _, xs in _shifted(x, k, s, d, _pads(attrs, x.shape[2:], k, s, d), -np.inf):
        y = xs.copy() if y is None else np.maximum(y, xs)
    return y


def _axis_shape(scale, x, axis):
    if np.ndim(scale) == 0:
        return scale
    shape = [1] * x.ndim
    shape[axis] = -1
    return scale.reshape(shape)


def run(model, inputs, qtypes, keep=(), per_image=False):
    """Evaluate model (onnx_pb.model dict) on {name: array}; qtypes maps each
    integer initializer's name to its ONNX type name ('int8', 'uint4', ...),
    which QuantizeLinear needs for its saturation range. With keep: also
    {name: value} of those intermediate values. per_image: the inputs are a
    stack of images for a batch-1 model (the MNIST model reshapes to [1, 256]);
    a Reshape to a leading 1 keeps the stack's size instead."""
    env = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in model["initializers"].items()}
    env.update({k: v.astype(np.float64) for k, v in inputs.items()})
    for op, name, ins, outs, a in model["nodes"]:
        x = [env[i] if i else None for i in ins]
        if op == "Conv":
            y = conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        elif op == "BatchNormalization":
            sh = (1, -1, 1, 1)
            y = (x[0] - x[3].reshape(sh)) / np.sqrt(x[4].reshape(sh) + a.get("epsilon", 1e-5)) * x[1].reshape(sh) \
                + x[2].reshape(sh)
        elif op == "Relu":
            y = np.maximum(x[0], 0)
        elif op == "Clip":
            lo = x[1] if len(x) > 1 and x[1] is not None else -np.inf
            hi = x[2] if len(x) > 2 and x[2] is not None else np.inf
            y = np.clip(x[0], lo, hi)
        elif op in ("Add", "Mul"):
            y = x[0] + x[1] if op == "Add" else x[0] * x[1]
        elif op == "MaxPool":
            y = maxpool(x[0], a)
        elif op == "GlobalAveragePool":
            y = x[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
        elif op == "Reshape":
            shp = [x[0].shape[i] if v == 0 else v for i, v in enumerate(x[1])]
            if per_image and shp[0] == 1:  # a batch-1 model run on a stack of images, image by image
                shp[0] = x[0].shape[0]
            y = x[0].reshape(shp)
        elif op == "Gemm":
            A = x[0].T if a.get("transA", 0) else x[0]
            B = x[1].T if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * A @ B + (a.get("beta", 1.0) * x[2] if len(x) > 2 and x[2] is not None else 0)
        elif op == "MatMul":
            y = x[0] @ x[1]
        elif op == "Identity":
            y = x[0]
        elif op == "DequantizeLinear":
            ax = a.get("axis", 1)
            y = (x[0].astype(np.float64) - _axis_shape(x[2], x[0], ax)) * _axis_shape(x[1], x[0], ax)
        elif op == "QuantizeLinear":
            lo, hi = QRANGE[qtypes[ins[2]]]
            y = np.clip(np.rint(x[0] / x[1]) + x[2], lo, hi)  # rint: round half to even, as ONNX
        else:
            raise ValueError(f"onnx_np: op {op} ({name})")
        env[outs[0]] = y
    out = env[model["outputs"][0]]
    return (out, {k: env[k] for k in keep}) if keep else out
