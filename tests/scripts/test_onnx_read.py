#!/usr/bin/env python3
"""test_onnx_read.py DUMPER — the ONNX reader (io/onnx_*.c) against independent
references. DUMPER (tests/test_onnx_dump.c) prints the graph aq_onnx_read makes.
 - both shared models: the node list, attributes and every constant compared
   exactly with this script's own protobuf decoding (onnx_pb.py); for
   fashion-resnet also with model.safetensors (same weights by PyTorch name)
   and arch.json's modules (kernel, stride, padding, eps);
 - small models written here byte by byte: opset-1 vs opset-13 spellings of
   Reshape/Clip/broadcast, an unsorted graph, Constant forms, Dropout;
 - bad files: each must fail with a message naming the node or what is wrong."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import onnx_pb as pb  # noqa: E402
from aqtest import SHARED, check, finish  # noqa: E402

DUMPER = sys.argv[1]


def dump_many(paths):
    """[(graph or None, error message)] for each file, from one DUMPER run."""
    p = subprocess.run([DUMPER] + paths, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and len(lines) == len(paths), f"dumper: exit {p.returncode}, {p.stderr[-500:]}")
    out = [json.loads(line) for line in lines] + [{"error": "no output"}] * (len(paths) - len(lines))
    return [(None, d["error"]) if "error" in d else (d, "") for d in out]


def dump(path):
    return dump_many([path])[0]


def expected_graph(m):
    """Constants and nodes the reader must produce, derived from the decoded
    protobuf: Constant nodes and Reshape/Identity of constants disappear."""
    consts = dict(m["initializers"])
    nodes = []
    for op, name, ins, outs, attrs in m["nodes"]:
        if op == "Constant":
            consts[outs[0]] = np.asarray(attrs["value"])
        elif op in ("Reshape", "Identity") and ins[0] in consts:
            shape = attrs.get("shape") or list(consts[ins[1]]) if op == "Reshape" else consts[ins[0]].shape
            consts[outs[0]] = consts[ins[0]].reshape(shape)
        else:
            nodes.append((op, name, ins, outs, attrs))
    return consts, nodes


def check_model(path, legacy_shapes, extra_ref=None):
    m = pb.model(open(path, "rb").read())
    d, msg = dump(path)
    check(d is not None, f"{path}: {msg}")
    if d is None:
        return None
    consts, nodes = expected_graph(m)
    vals = d["values"]
    check(d["opset"] == m["opset"], "opset")
    check(vals[d["input"]]["name"] == m["inputs"][0], "input name")
    check(vals[d["output"]]["name"] == m["outputs"][0], "output name")
    got = {n["name"]: n for n in d["nodes"]}
    check(sorted(got) == sorted(n[1] for n in nodes), f"node set {sorted(got)}")
    produced = {d["input"]} | {i for i, v in enumerate(vals) if v["const"]}
    for n in d["nodes"]:  # a topological order
        check(all(i in produced for i in n["in"]), f"{n['name']} before its inputs")
        produced.add(n["out"])
    for op, name, ins, outs, attrs in nodes:
        n = got.get(name)
        if n is None:
            continue
        check(n["op"] == op, f"{name}: op {n['op']}")
        keep = ins[:1] if op in ("Reshape", "Clip", "Dropout") else ins
        check([vals[i]["name"] for i in n["in"]] == keep, f"{name}: inputs")
        check(vals[n["out"]]["name"] == outs[0], f"{name}: output")
        for k, key in (("kernel_shape", "kernel"), ("strides", "strides"), ("pads", "pads"), ("dilations", "dilations")):
            if k in attrs:
                check(n[key] == attrs[k], f"{name}: {k}")
        for k in ("group", "axis", "epsilon", "alpha", "beta"):
            if k in attrs and not (k == "axis" and op in ("Add", "Mul")):
                check(abs(n[k] - attrs[k]) <= 1e-12, f"{name}: {k}")
        check(n["auto_pad"] == attrs.get("auto_pad", "NOTSET"), f"{name}: auto_pad")
        check(n["trans_b"] == attrs.get("transB", 0), f"{name}: transB")
        if op == "Reshape":
            check(n["shape"] == list(attrs.get("shape") or consts[ins[1]]), f"{name}: shape")
    byname = {v["name"]: v for v in vals}
    used = {vals[i]["name"] for n in d["nodes"] for i in n["in"]}
    for name, arr in consts.items():
        if name not in used:
            continue
        v = byname[name]
        want = legacy_shapes.get(name, list(arr.shape))
        check(v["shape"] == want, f"{name}: shape {v['shape']} != {want}")
        data = np.array(v["data"], np.float32)
        check(np.array_equal(data, arr.astype(np.float32).ravel()), f"{name}: data differs")
        if extra_ref and name in extra_ref:
            check(np.array_equal(data, extra_ref[name].ravel()), f"{name}: differs from model.safetensors")
    return d


def safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k != "__metadata__":
            a, b = v["data_offsets"]
            out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(v["shape"])
    return out


def shared_models():
    mn = os.path.join(SHARED, "models/mnist-cnn/model.onnx")
    # opset-1 Add(broadcast=1, axis=1) of a [C] bias onto NCHW: NumPy needs [C, 1, 1]
    d = check_model(mn, {"Parameter6": [8, 1, 1], "Parameter88": [16, 1, 1]})
    if d:
        check([n["op"] for n in d["nodes"]] == ["Conv", "Add", "Relu", "MaxPool"] * 2 + ["Reshape", "MatMul", "Add"],
              "mnist node list")
        mm = d["nodes"][9]
        check(d["values"][mm["in"][1]]["const"] == 1, "mnist MatMul weight folded into a constant")
        check(d["in_shape"] == [1, 1, 28, 28], "mnist input shape")
    fr = os.path.join(SHARED, "models/fashion-resnet")
    st = safetensors(os.path.join(fr, "model.safetensors"))
    d = check_model(os.path.join(fr, "model.onnx"), {}, st)
    if d:
        names = {v["name"] for v in d["values"] if v["const"]}
        check(set(st) <= names, f"safetensors tensors missing: {set(st) - names}")
        arch = json.load(open(os.path.join(fr, "arch.json")))
        for mod in arch["modules"]:
            if mod["type"] == "Conv2d":
                n = [x for x in d["nodes"] if x["op"] == "Conv" and d["values"][x["in"][1]]["name"] == mod["params"][0]]
                check(len(n) == 1, f"{mod['name']}: one Conv")
                if n:
                    p = mod["padding"]
                    check(n[0]["kernel"] == mod["kernel"] and n[0]["strides"] == mod["stride"]
                          and n[0]["pads"] == [p[0], p[1], p[0], p[1]] and n[0]["group"] == mod["groups"],
                          f"{mod['name']}: conv attributes")
            elif mod["type"] == "BatchNorm2d":
                n = [x for x in d["nodes"] if x["op"] == "BatchNormalization"
                     and d["values"][x["in"][1]]["name"] == mod["params"][0]]
                check(len(n) == 1 and abs(n[0]["epsilon"] - mod["eps"]) < 1e-9, f"{mod['name']}: BN eps")
        check(d["nodes"][-1]["op"] == "Gemm" and d["nodes"][-1]["trans_b"] == 1, "fashion-resnet ends in Gemm transB")


F32 = np.float32


def write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def small_models(tmp):
    """The same network in an opset-1 and an opset-13 spelling, nodes in
    reverse (unsorted) order: both must give the same graph."""
    w = np.arange(6, dtype=F32).reshape(3, 2)
    bias = np.array([1, 2, 3], F32)
    ins, outs = [("x", [2, 3, 4, 4])], [("y", [2, 6])]
    # opset 1: Mul(broadcast, axis=1) of a [3] constant, Clip with attributes,
    # Reshape with a shape attribute, Dropout, a Constant node
    n1 = [pb.enc_node("Constant", [], ["c"], "k", pb.fb(5, pb.fb(1, "value") + pb.fv(20, 4) + pb.fb(5, pb.enc_tensor("", bias)))),
          pb.enc_node("Mul", ["x", "c"], ["m"], "mul", pb.enc_attr_int("broadcast", 1) + pb.enc_attr_int("axis", 1)),
          pb.enc_node("Clip", ["m"], ["cl"], "clip", pb.fb(5, pb.fb(1, "min") + pb.fv(20, 1) + pb.ff(2, 0.5))
                      + pb.fb(5, pb.fb(1, "max") + pb.fv(20, 1) + pb.ff(2, 6.0))),
          pb.enc_node("Dropout", ["cl"], ["dr"], "drop", pb.fb(5, pb.fb(1, "is_test") + pb.fv(20, 2) + pb.fv(3, 1))),
          pb.enc_node("Reshape", ["dr"], ["y"], "resh", pb.enc_attr_ints("shape", [2, -1]))]
    m1 = pb.enc_model(n1[::-1], [], ins, outs, opset=1, ir=3)
    # opset 13: a [3,1,1] initializer, Clip with constant inputs, Reshape with an int64 input
    n13 = [pb.enc_node("Mul", ["x", "c"], ["m"], "mul"),
           pb.enc_node("Clip", ["m", "lo", "hi"], ["cl"], "clip"),
           pb.enc_node("Identity", ["cl"], ["dr"], "drop"),
           pb.enc_node("Reshape", ["dr", "shp"], ["y"], "resh")]
    inits = [pb.enc_tensor("c", bias.reshape(3, 1, 1)), pb.enc_tensor("lo", np.array(0.5, F32)),
             pb.enc_tensor("hi", np.array(6, F32)), pb.enc_tensor("shp", np.array([2, -1], np.int64), raw=False),
             pb.enc_tensor("unused_w", w)]
    m13 = pb.enc_model(n13[::-1], inits, ins, outs, opset=13)
    graphs = [d for d, _ in dump_many([write(tmp, f"small{o}.onnx", m) for o, m in ((1, m1), (13, m13))])]
    for d in graphs:
        check(d is not None, "small model read")
        if d is None:
            return
        v = {x["name"]: x for x in d["values"]}
        check([n["op"] for n in d["nodes"]] == ["Mul", "Clip", "Identity", "Reshape"], f"opset {d['opset']}: sorted ops")
        check(v["c"]["shape"] == [3, 1, 1] and v["c"]["data"] == [1, 2, 3], f"opset {d['opset']}: broadcast constant")
        check(d["nodes"][1]["clip"] == [0.5, 6.0] and len(d["nodes"][1]["in"]) == 1, f"opset {d['opset']}: clip")
        check(d["nodes"][3]["shape"] == [2, -1] and len(d["nodes"][3]["in"]) == 1, f"opset {d['opset']}: reshape")


def attr_defaults(tmp):
    """ONNX's attribute defaults where a model leaves them out (the operator spec):
    Softmax's axis is 1 before opset 13 and -1 from 13; HardSigmoid alpha 0.2, beta 0.5;
    Gemm alpha = beta = 1; Conv's kernel from its weight; BatchNormalization epsilon 1e-5."""
    ins, outs = [("x", [1, 2, 4, 4])], [("y", [1, 3])]
    nodes = [pb.enc_node("Conv", ["x", "w"], ["c"], "conv"),
             pb.enc_node("BatchNormalization", ["c", "s", "s", "s", "s"], ["b"], "bn"),
             pb.enc_node("HardSigmoid", ["b"], ["h"], "hs"),
             pb.enc_node("GlobalAveragePool", ["h"], ["p"], "gap"),
             pb.enc_node("Flatten", ["p"], ["f"], "flat"),
             pb.enc_node("Gemm", ["f", "fc"], ["g"], "fc"),
             pb.enc_node("Softmax", ["g"], ["y"], "sm")]
    inits = [pb.enc_tensor("w", np.ones((2, 2, 3, 5), F32)), pb.enc_tensor("s", np.ones(2, F32)),
             pb.enc_tensor("fc", np.ones((2, 3), F32))]
    cases = ((11, 1), (13, -1))
    res = dump_many([write(tmp, f"defaults{o}.onnx", pb.enc_model(nodes, inits, ins, outs, opset=o)) for o, _ in cases])
    for (opset, axis), (d, msg) in zip(cases, res):
        check(d is not None, f"defaults opset {opset}: {msg}")
        if d is None:
            continue
        n = {x["name"]: x for x in d["nodes"]}
        check(n["sm"]["axis"] == axis, f"opset {opset}: Softmax axis {n['sm']['axis']}")
        check(n["conv"]["kernel"] == [3, 5] and n["conv"]["pads"] == [0, 0, 0, 0], "Conv kernel from the weight")
        check(abs(n["hs"]["alpha"] - 0.2) < 1e-7 and n["hs"]["beta"] == 0.5, "HardSigmoid defaults")
        check(n["fc"]["alpha"] == 1 and n["fc"]["beta"] == 1 and n["fc"]["trans_b"] == 0, "Gemm defaults")
        check(abs(n["bn"]["epsilon"] - 1e-5) < 1e-12 and n["flat"]["axis"] == 1, "BN epsilon, Flatten axis")


def nested(depth):
    """A model whose If-node subgraphs nest `depth` deep (built inside out)."""
    g = b""
    for _ in range(depth):
        g = pb.fb(1, pb.fb(4, "If") + pb.fb(5, pb.fb(1, "then_branch") + pb.fv(20, 5) + pb.fb(6, g)))
    return pb.fv(1, 7) + pb.fb(8, pb.fv(2, 13)) + pb.fb(7, g)


def bad_models(tmp):
    """Each bad file and the words its error must contain."""
    ins, outs = [("x", [1, 1, 4, 4])], [("y", [1, 1, 4, 4])]
    w = pb.enc_tensor("w", np.ones((1, 1, 3, 3), F32))
    relu = lambda name, attrs=b"": pb.enc_node("Relu", ["x"], ["y"], name, attrs)
    ext = bytearray(pb.enc_tensor("w", np.ones((1, 1, 3, 3), F32)))
    ext += pb.fv(14, 1)  # data_location = EXTERNAL
    mnist = open(os.path.join(SHARED, "models/mnist-cnn/model.onnx"), "rb").read()
    cases = [
        ("truncated", mnist[:len(mnist) // 2], ["not a valid ONNX protobuf"]),
        ("garbage", b"\xff" * 64, ["not a valid ONNX protobuf"]),
        # protobuf-c unpacks recursively: a deep file must be refused before it overflows the stack
        ("deep", nested(100), ["nested more than 64 deep"]),
        ("unknown_op", pb.enc_model([pb.enc_node("FancyOp", ["x"], ["y"], "my_node")], [], ins, outs),
         ["node 'my_node'", "unsupported operator 'FancyOp'"]),
        ("unnamed_node", pb.enc_model([pb.enc_node("Relu", ["x"], ["t"]), pb.enc_node("Erf", ["t"], ["y"])], [], ins, outs),
         ["node 'Erf_1'", "unsupported operator 'Erf'"]),
        ("bad_attr", pb.enc_model([relu("r1", pb.enc_attr_int("alpha_typo", 1))], [], ins, outs),
         ["node 'r1' (Relu)", "attribute 'alpha_typo'"]),
        ("dangling", pb.enc_model([pb.enc_node("Add", ["x", "nowhere"], ["y"], "add1")], [], ins, outs),
         ["node 'add1' (Add)", "'nowhere' is produced by no node"]),
        ("external", pb.enc_model([pb.enc_node("Conv", ["x", "w"], ["y"], "c1")], [bytes(ext)], ins, outs),
         ["tensor 'w'", "external"]),
        ("conv3d", pb.enc_model([pb.enc_node("Conv", ["x", "w"], ["y"], "c3", pb.enc_attr_ints("kernel_shape", [3, 3, 3]))],
                                [w], ins, outs), ["node 'c3' (Conv)", "kernel_shape", "2-D"]),
        ("cycle", pb.enc_model([pb.enc_node("Add", ["x", "b"], ["a"], "n_a"), pb.enc_node("Relu", ["a"], ["b"], "n_b"),
                                relu("r")], [], ins, outs), ["cycle"]),
        ("opset22", pb.enc_model([relu("r")], [], ins, outs, opset=22), ["opset 22"]),
        ("raw_size", pb.enc_model([pb.enc_node("Conv", ["x", "w"], ["y"], "c1")],
                                  [pb.enc_tensor("w", np.ones((1, 1, 3, 3), F32))[:-4 * 9 - 2] + pb.fb(9, b"\0" * 8)],
                                  ins, outs), ["tensor 'w'", "raw_data"]),
        ("mask_used", pb.enc_model([pb.enc_node("Dropout", ["x"], ["d", "mask"], "dr"),
                                    pb.enc_node("Add", ["d", "mask"], ["y"], "add2")], [], ins, outs),
         ["node 'add2'", "secondary output"]),
        ("no_output", pb.enc_model([relu("r")], [], ins, [("zz", [1])]), ["output 'zz'"]),
        ("bn_training", pb.enc_model([pb.enc_node("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"], "bn",
                                                  pb.enc_attr_int("training_mode", 1))],
                                     [pb.enc_tensor("s", np.ones(1, F32))], ins, outs, opset=15),
         ["node 'bn' (BatchNormalization)", "training"]),
        ("int8_weight", pb.enc_model([pb.enc_node("Conv", ["x", "w"], ["y"], "c1")],
                                     [pb.fv(1, 1) + pb.fv(2, 3) + pb.fb(8, "w") + pb.fb(9, b"\1")], ins, outs),
         ["node 'c1' (Conv)", "integer tensor"]),
    ]
    res = dump_many([write(tmp, name + ".onnx", data) for name, data, _ in cases])
    for (name, data, words), (d, msg) in zip(cases, res):
        check(d is None, f"{name}: accepted")
        check(all(wd in msg for wd in words) and name + ".onnx" in msg, f"{name}: message {msg!r} lacks {words}")


for asset in ("models/mnist-cnn/model.onnx", "models/fashion-resnet/model.safetensors"):
    if not os.path.exists(os.path.join(SHARED, asset)):
        print(f"skip: asset {asset} not found under {SHARED}")
        sys.exit(77)
with tempfile.TemporaryDirectory() as tmp:
    shared_models()
    small_models(tmp)
    attr_defaults(tmp)
    bad_models(tmp)
sys.exit(finish())
