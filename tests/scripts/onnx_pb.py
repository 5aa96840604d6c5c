"""onnx_pb.py — a minimal protobuf wire-format codec for the ONNX messages the
tests need, written from the protobuf encoding spec and onnx.proto's field
numbers. It is the tests' independent reader/writer of ONNX files: it shares
nothing with the C reader (which uses protobuf-c's generated code), and no
Python onnx/protobuf package is installed on the CI machine."""
import struct

import numpy as np

# onnx.proto field numbers (ONNX 1.12; UINT4/INT4 from ONNX 1.16)
FLOAT, UINT8, INT8, INT32, INT64 = 1, 2, 3, 6, 7
UINT4, INT4 = 21, 22
NP_OF = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, INT32: np.int32, INT64: np.int64}


def _varint(buf, pos):
    val = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return val, pos


def decode(buf):
    """{field number: [values]}: ints for varints, bytes for length-delimited,
    raw bytes for fixed32/fixed64."""
    out, pos = {}, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = bytes(buf[pos:pos + n]), pos + n
        elif wt == 5:
            val, pos = bytes(buf[pos:pos + 4]), pos + 4
        elif wt == 1:
            val, pos = bytes(buf[pos:pos + 8]), pos + 8
        else:
            raise ValueError(f"wire type {wt} at {pos}")
        out.setdefault(num, []).append(val)
    return out


def _s64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(vals):
    res = []
    for v in vals:
        if isinstance(v, bytes):  # packed
            p = 0
            while p < len(v):
                x, p = _varint(v, p)
                res.append(_s64(x))
        else:
            res.append(_s64(v))
    return res


def _str(m, f, default=""):
    return m[f][0].decode() if f in m else default


def tensor(buf):
    """(name, numpy array) of a TensorProto (raw_data, float_data, int64_data)."""
    m = decode(buf)
    dims = _packed_varints(m.get(1, []))
    dt = m[2][0]
    name = _str(m, 8)
    if 9 in m:
        raw = m[9][0]
        if dt in (UINT4, INT4):
            b = np.frombuffer(raw, np.uint8)
            u = np.stack([b & 15, b >> 4], 1).reshape(-1)[:int(np.prod(dims))].astype(np.int64)
            arr = np.where(u >= 8, u - 16, u) if dt == INT4 else u
            return name, arr.reshape(dims)
        return name, np.frombuffer(raw, NP_OF[dt]).reshape(dims).copy()
    if dt == FLOAT:
        vals = []
        for v in m.get(4, []):
            vals += list(struct.unpack(f"<{len(v) // 4}f", v))
        return name, np.array(vals, np.float32).reshape(dims)
    if dt == INT64:
        return name, np.array(_packed_varints(m.get(7, [])), np.int64).reshape(dims)
    if dt in (INT32, UINT8, INT8):
        return name, np.array(_packed_varints(m.get(5, [])), NP_OF[dt]).reshape(dims)
    raise ValueError(f"tensor {name}: data type {dt}")


def attribute(buf):
    m = decode(buf)
    name, t = _str(m, 1), m.get(20, [0])[0]
    if t == 1:
        return name, struct.unpack("<f", m[2][0])[0]
    if t == 2:
        return name, _s64(m[3][0])
    if t == 3:
        return name, m[4][0].decode()
    if t == 4:
        return name, tensor(m[5][0])[1]
    if t == 6:
        vals = []
        for v in m.get(7, []):
            vals += list(struct.unpack(f"<{len(v) // 4}f", v))
        return name, vals
    if t == 7:
        return name, _packed_varints(m.get(8, []))
    raise ValueError(f"attribute {name}: type {t}")


def model(buf):
    """A dict: opset, inputs, outputs, initializers {name: array}, dtypes
    {initializer name: ONNX element type}, nodes
    [(op_type, name, inputs, outputs, {attr: value})]."""
    m = decode(buf)
    opset = 1
    for o in m.get(8, []):
        om = decode(o)
        if _str(om, 1) in ("", "ai.onnx"):
            opset = om[2][0]
    g = decode(m[7][0])
    inits = dict(tensor(t) for t in g.get(5, []))
    dtypes = {_str(decode(t), 8): decode(t)[2][0] for t in g.get(5, [])}
    nodes = []
    for nb in g.get(1, []):
        n = decode(nb)
        nodes.append((_str(n, 4), _str(n, 3), [v.decode() for v in n.get(1, [])],
                      [v.decode() for v in n.get(2, [])], dict(attribute(a) for a in n.get(5, []))))
    vi = lambda f: [_str(decode(v), 1) for v in g.get(f, [])]
    return dict(ir_version=m.get(1, [0])[0], opset=opset, inputs=vi(11), outputs=vi(12),
                initializers=inits, dtypes=dtypes, nodes=nodes)


# --- encoding (bad-input files built by hand) ---
def _enc_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fv(num, v):
    """A varint field."""
    return _enc_varint(num << 3) + _enc_varint(v)


def fb(num, data):
    """A length-delimited field (bytes, str or encoded message)."""
    if isinstance(data, str):
        data = data.encode()
    return _enc_varint(num << 3 | 2) + _enc_varint(len(data)) + data


def ff(num, x):
    """A fixed32 float field."""
    return _enc_varint(num << 3 | 5) + struct.pack("<f", x)


def enc_tensor(name, arr, raw=True):
    arr = np.asarray(arr)
    dt = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}[arr.dtype]
    out = b"".join(fv(1, d) for d in arr.shape) + fv(2, dt) + fb(8, name)
    return out + (fb(9, arr.tobytes()) if raw else b"".join(fv(7, int(v)) for v in arr.ravel()))


def enc_node(op, inputs, outputs, name="", attrs=b""):
    return (b"".join(fb(1, i) for i in inputs) + b"".join(fb(2, o) for o in outputs)
            + (fb(3, name) if name else b"") + fb(4, op) + attrs)


def enc_attr_int(name, v):
    return fb(5, fb(1, name) + fv(20, 2) + fv(3, v))


def enc_attr_ints(name, vals):
    return fb(5, fb(1, name) + fv(20, 7) + b"".join(fv(8, v) for v in vals))


def enc_value_info(name, dims):
    shape = b"".join(fb(1, fv(1, d)) for d in dims)
    return fb(1, name) + fb(2, fb(1, fv(1, FLOAT) + fb(2, shape)))


def enc_model(nodes, inits, inputs, outputs, opset=13, ir=7):
    g = (b"".join(fb(1, n) for n in nodes) + fb(2, "g") + b"".join(fb(5, t) for t in inits)
         + b"".join(fb(11, enc_value_info(n, d)) for n, d in inputs)
         + b"".join(fb(12, enc_value_info(n, d)) for n, d in outputs))
    return fv(1, ir) + fb(8, fv(2, opset)) + fb(7, g)
