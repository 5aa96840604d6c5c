#!/usr/bin/python3
"""test_adaquant_cli.py — `adaquant layer` end to end, checked independently with numpy.

Builds layer bundles (docs/BUNDLE.md) with numpy, runs the CLI, checks the JSON
fields, re-reads --out following docs/ADAQUANT.md ("qlayer format") with a
numpy safetensors parser and bit unpacker written here, and recomputes the
normalised output error from the rows in float64: it must reproduce
loss_final. Also checks that bad bundles fail with a clear message.
Exit 77 (skip) when numpy is missing."""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("numpy not available: skipping")
    sys.exit(77)

CLI = os.environ.get("AQ_CLI", "adaquant")
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("CHECK failed:", msg, file=sys.stderr)


DT = {np.float32: "F32", np.float64: "F64", np.uint8: "U8", np.float16: "F16"}


def write_st(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        header[name] = {"dtype": DT[arr.dtype.type], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base, out = 8 + n, {}
    rev = {"F32": np.float32, "U8": np.uint8}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype=rev[t["dtype"]]).reshape(t["shape"])
    return out, meta


def unpack_row(row, n, bits):
    # little-endian bit stream: code i occupies stream bits [i*bits, (i+1)*bits)
    stream = np.unpackbits(row, bitorder="little")
    idx = np.arange(n)[:, None] * bits + np.arange(bits)[None, :]
    return (stream[idx] * (1 << np.arange(bits))).sum(axis=1)


def run(args, expect_ok=True):
    p = subprocess.run([CLI, "layer"] + args, capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        print(p.stdout, p.stderr, file=sys.stderr)
    return p


def fq(x, s, z, bits):
    # the documented activation fake-quant, in float32
    x = x.astype(np.float32)
    s, z = np.float32(s), np.float32(z)
    t = np.clip(np.rint(x / s) + z, 0, 2 ** bits - 1).astype(np.float32)
    return (s * (t - z)).astype(np.float32)


def loss_from_file(q, meta, prefix, d_in, W, b, X, Xin):
    opt = meta["quant." + prefix]
    wb = int(opt[1:opt.index("a")])
    ab = int(opt[opt.index("a") + 1:].rstrip("s"))
    qw = q[prefix + ".qweight"]
    check(qw.shape[1] == (d_in * wb + 7) // 8, "row_bytes")
    U = np.stack([unpack_row(r, d_in, wb) for r in qw]).astype(np.float32)
    s, z = q[prefix + ".w_scale"], q[prefix + ".w_zero"]
    What = (s[:, None] * (U - z[:, None])).astype(np.float64)
    bq = q[prefix + ".bias"].astype(np.float64)
    Xq = Xin.astype(np.float32)
    if ab < 16:
        Xq = fq(Xq, q[prefix + ".a_scale"][0], q[prefix + ".a_zero"][0], ab)
    else:
        check(prefix + ".a_scale" not in q, "no a_scale at a16")
    Y = X.astype(np.float64) @ W.astype(np.float64).T + (b.astype(np.float64) if b is not None else 0)
    Yh = Xq.astype(np.float64) @ What.T + bq
    return ((Y - Yh) ** 2).sum() / (Y ** 2).sum(), U, wb


def main():
    rng = np.random.default_rng(1)
    tmp = tempfile.mkdtemp(prefix="aq_layer_cli_")
    d_out, d_in, N = 24, 40, 3000
    W = (rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(np.float32)
    b = (0.1 * rng.standard_normal(d_out)).astype(np.float32)
    X = rng.standard_t(4, (N, d_in)).astype(np.float32)
    X[:, 3] *= 6  # outlier channel
    X[:, 7] = 0.5  # constant channel: legal
    bundle = os.path.join(tmp, "b.safetensors")
    write_st(bundle, {"weight": W, "bias": b, "inputs": X})

    for opt in ["w4a8", "w3a16", "w4a4s"]:
        out = os.path.join(tmp, "q_%s.safetensors" % opt)
        p = run([bundle, "--option", opt, "--json", "--out", out, "--name", "blk.fc", "--iters", "40"])
        check(p.returncode == 0, "run %s: %s" % (opt, p.stderr))
        if p.returncode:
            continue
        r = json.loads(p.stdout)
        for k in ["option", "mode", "loss_rtn", "loss_gptq", "loss_init", "loss_final", "iterations", "seconds"]:
            check(k in r, "json field %s" % k)
        check(r["option"] == opt, "option echoed")
        check(r["mode"] == "gram", "auto mode picks gram for N > d_in")
        check(r["loss_final"] <= r["loss_init"] * (1 + 1e-12), "final <= init")
        check(r["loss_gptq"] <= r["loss_rtn"] * 1.05, "gptq not much worse than rtn")
        check(r["loss_final"] < r["loss_gptq"], "adaquant below gptq")
        q, meta = read_st(out)
        check(meta.get("quant.blk.fc") == opt, "metadata quant.P")
        loss, U, wb = loss_from_file(q, meta, "blk.fc", d_in, W, b, X, X)
        check(U.max() <= 2 ** wb - 1, "codes in range")
        rel = abs(loss - r["loss_final"]) / r["loss_final"]
        print("%s: loss_final %.6g, numpy from file %.6g (rel diff %.2e)" % (opt, r["loss_final"], loss, rel))
        check(rel < 1e-4, "numpy dequantisation reproduces loss_final (%s)" % opt)

    # determinism across processes: same command, same output bytes
    outs = []
    for k in range(2):
        out = os.path.join(tmp, "det%d.safetensors" % k)
        p = run([bundle, "--option", "w4a8", "--out", out, "--iters", "30", "--seed", "7"])
        check(p.returncode == 0, "determinism run %d" % k)
        outs.append(open(out, "rb").read() if p.returncode == 0 else b"")
    check(outs[0] == outs[1] and len(outs[0]) > 0, "two processes give identical --out bytes")

    # sequential mode: inputs_q differ from inputs
    Xin = (X + 0.05 * rng.standard_normal(X.shape)).astype(np.float32)
    seq = os.path.join(tmp, "seq.safetensors")
    write_st(seq, {"weight": W, "inputs": X, "inputs_q": Xin})
    out = os.path.join(tmp, "q_seq.safetensors")
    p = run([seq, "--option", "w4a8", "--json", "--out", out, "--iters", "0"])
    check(p.returncode == 0, "sequential run")
    if p.returncode == 0:
        r = json.loads(p.stdout)
        q, meta = read_st(out)
        loss, _, _ = loss_from_file(q, meta, "layer", d_in, W, None, X, Xin)
        check(abs(loss - r["loss_final"]) / r["loss_final"] < 1e-4, "sequential loss reproduced")

    # rows mode (N < d_in) and a conv bundle
    small = os.path.join(tmp, "small.safetensors")
    write_st(small, {"weight": W, "inputs": X[:30]})
    p = run([small, "--option", "w4a16", "--json", "--iters", "20"])
    check(p.returncode == 0 and json.loads(p.stdout)["mode"] == "rows", "auto picks rows for N < d_in")
    Wc = (0.3 * rng.standard_normal((6, 2, 3, 3))).astype(np.float32)
    Xc = rng.standard_normal((4, 4, 9, 9)).astype(np.float32)
    conv = os.path.join(tmp, "conv.safetensors")
    write_st(conv, {"weight": Wc, "inputs": Xc}, {"stride": "2", "padding": "1", "dilation": "1", "groups": "2"})
    p = run([conv, "--option", "w4a16", "--json", "--iters", "20"])
    check(p.returncode == 0, "conv bundle: %s" % p.stderr)

    # bad bundles: exit 1 and a message naming the problem
    cases = [
        ({"weight": W}, None, "inputs"),
        ({"weight": W, "inputs": X[:, :10]}, None, "shape"),
        ({"weight": W, "inputs": X[:0]}, None, "N = 0"),
        ({"weight": W, "inputs": np.where(np.arange(d_in) == 5, np.nan, X).astype(np.float32)}, None, "non-finite"),
        ({"weight": W, "inputs": np.zeros_like(X)}, None, "zero"),
        ({"weight": W, "bias": b[:3], "inputs": X}, None, "bias"),
    ]
    for i, (t, meta, word) in enumerate(cases):
        path = os.path.join(tmp, "bad%d.safetensors" % i)
        write_st(path, t, meta)
        p = run([path, "--option", "w4a16"], expect_ok=False)
        check(p.returncode == 1, "bad bundle %d exits 1 (got %d)" % (i, p.returncode))
        check(word in p.stderr, "bad bundle %d message mentions '%s': %s" % (i, word, p.stderr.strip()))
    p = run([bundle, "--option", "w5a8"], expect_ok=False)
    check(p.returncode == 2, "bad option is a usage error")
    if failures:
        print("%d check(s) failed" % failures, file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
