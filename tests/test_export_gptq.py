#!/usr/bin/python3
"""test_export_gptq.py — `adaquant export OUTDIR --format gptq` checked by a GPTQ
reader written here from docs/EXPORT.md ("GPTQ checkpoints") alone: its own
safetensors parser, the bit-stream unpacking, and GPTQModel's 10|1|10|1|10
word layout for 3 bits, separately.

usage: test_export_gptq.py DUMP_HELPER WORKDIR   (DUMP_HELPER = build/tests/test_reader_dump)

One reduced `adaquant quantize` of stories260K (symmetric menu, one layer
pinned at 2 and one at 8 bits: every exported width 2, 3, 4, 8 and 6 -> 8)
makes OUTDIR; the other OUTDIRs are derived from it by rewriting its
model.safetensors with NumPy (docs/FORMAT.md): fp16 scales, asymmetric zero
points (fractional and integer), zero points outside GPTQ's 1..2^K (shifted
with the codes, or refused), an activation-quantized layer. adaquant's own dequantized weights come from DUMP_HELPER (the qlayer
reader the engine loads OUTDIR with), OUTDIR's codes from pipe_reader.py
(written from docs/FORMAT.md).
"""
import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
import aqtest  # noqa: E402
import pipe_reader  # noqa: E402
from aqtest import check  # noqa: E402

F32 = np.float32
# The layout, not the model's quality, is under test: the cheapest calibration
# (~1.5 s CPU), no tuning (symmetric zeros stay 2^(K-1) anyway), no evaluation.
QUANTIZE = ["--options", "w8a16s,w6a16s,w4a16s,w3a16s,w2a16s", "--target-bits", "3.9",
            "--keep", r"layers\.0\.self_attn\.v_proj=w2a16s", "--keep", r"layers\.1\.mlp\.down_proj=w8a16s",
            "--calib-windows", "2", "--calib-len", "32", "--iters", "1", "--starts", "1", "--polish", "0",
            "--init", "rtn", "--kl-windows", "0", "--no-eval", "--no-tune"]


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


# ---- the GPTQ reader (docs/EXPORT.md) ------------------------------------------

def read_st(path):
    """{name: array} in file order and __metadata__; dtypes I32, F16, F32."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    kinds = {"I32": "<i4", "F16": "<f2", "F32": "<f4"}
    out, pos = {}, 0
    for name, t in header.items():
        b, e = t["data_offsets"]
        assert b == pos, name
        pos = e
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    assert 8 + n + pos == len(raw), "trailing bytes"
    return out, meta


def stream_values(words, count, bits):
    """Values of a little-endian bit stream over int32 words [nwords, cols] (one
    stream per column): [cols, count]; the bits past the last value must be 0."""
    w = np.ascontiguousarray(words.T).astype("<u4")
    s = np.unpackbits(w.view(np.uint8), axis=1, bitorder="little")  # stream bit k = bit k%32 of word k//32
    assert not s[:, count * bits:].any(), "padding bits are not zero"
    s = s[:, :count * bits].reshape(w.shape[0], count, bits).astype(np.int64)
    return (s << np.arange(bits)).sum(axis=2)


def words3_values(col):
    """GPTQModel's 3-bit word layout, per 3 words of 32 values (10 | 1 | 10 | 1 | 10):
    word-by-word decode of one column (uint32 words), for d_in a multiple of 32."""
    out, w = [], [int(x) for x in col.astype(np.uint32)]
    for a, b, c in zip(w[0::3], w[1::3], w[2::3]):
        v = [(a >> (3 * j)) & 7 for j in range(10)]
        v.append(((a >> 30) & 3) | ((b & 1) << 2))
        v += [(b >> (3 * j + 1)) & 7 for j in range(10)]
        v.append(((b >> 31) & 1) | ((c & 3) << 1))
        v += [(c >> (3 * j + 2)) & 7 for j in range(10)]
        out += v
    return np.array(out, dtype=np.int64)


def module_config(qc, name):
    """(bits, sym) of a module under GPTQModel's dynamic rule: the first key whose
    regex (after "+:") re.match-es the name overrides the top level."""
    for k, v in (qc["dynamic"] or {}).items():
        assert k.startswith("+:"), k
        if re.match(k[2:], name):
            return v.get("bits", qc["bits"]), v.get("sym", qc["sym"])
    return qc["bits"], qc["sym"]


def gptq_layer(t, qc, p, v2=False):
    """(W float32 [d_out, d_in], q [d_out, d_in], z [d_out], bits): docs/EXPORT.md's
    dequantization (v2=True misreads the zeros as stored z, on purpose)."""
    bits, _ = module_config(qc, p)
    qw, qz, sc, gi = t[p + ".qweight"], t[p + ".qzeros"], t[p + ".scales"], t[p + ".g_idx"]
    d_out, d_in = qw.shape[1], gi.shape[0]
    assert qw.shape[0] == -(-d_in * bits // 32) and qz.shape == (1, -(-d_out * bits // 32)), p
    assert sc.shape == (1, d_out) and sc.dtype == np.float16 and (gi == 0).all(), p
    q = stream_values(qw, d_in, bits)
    z = stream_values(qz.T, d_out, bits)[0] + (0 if v2 else 1)
    s = sc[0].astype(F32)
    w = s[:, None] * (q - z[:, None]).astype(F32)
    assert w.dtype == F32
    return w, q, z, bits


# ---- OUTDIR variants (docs/FORMAT.md) ------------------------------------------

def write_st(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs, off = [], 0
    kinds = {np.dtype("<f4"): "F32", np.dtype("uint8"): "U8"}
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": kinds[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def variant(src, dst, edit):
    """Copy OUTDIR src to dst and let edit(tensors, meta) change its model."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    t, meta = pipe_reader.read_safetensors(os.path.join(src, "model.safetensors"))
    t = {k: np.array(v) for k, v in t.items()}
    edit(t, meta)
    write_st(os.path.join(dst, "model.safetensors"), t, meta)
    return dst


def to_fp16_scales(t, meta):
    for k in t:
        if k.endswith(".w_scale"):
            t[k] = t[k].astype(np.float16).astype(F32)


def make_asym(t, meta):
    """Block 0 asymmetric: integer zeros shifted by -1 .. +1 and every third row
    fractional (+0.25, +0.5: a tie that rounds to even, -0.375)."""
    for p in [k[6:] for k in meta if k.startswith("quant.model.layers.0.")]:
        meta["quant." + p] = meta["quant." + p].rstrip("s")
        z = t[p + ".w_zero"]
        r = np.arange(z.size)
        z += (r % 3 - 1).astype(F32)
        z[r % 3 == 0] += np.array([0.25, 0.5, -0.375], dtype=F32)[(r[r % 3 == 0] // 3) % 3]


# ---- checks ----------------------------------------------------------------------

def export(outdir, dest, *extra):
    return run([aqtest.CLI, "export", outdir, "--format", "gptq", "--out", dest, *extra])


def logged(stderr):
    m = re.search(r"max relative scale error (\S+) .*max \|dW\|/\|W\| (\S+) .*max \|dW\|/scale (\S+)",
                  stderr.replace("\n", " "))
    return [float(x) for x in m.groups()] if m else None


def dump(helper, outdir):
    d = outdir + ".dump"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = run([helper, outdir, d])
    check(r.returncode == 0, f"{os.path.basename(outdir)}: adaquant's dequantized weights dumped")
    return d


def adq_weights(dumpdir, p, shape):
    return np.fromfile(os.path.join(dumpdir, p + ".f32"), dtype="<f4").reshape(shape)


def check_layout(outdir, gdir, name):
    """Tensors, names, codes, zeros, biases, configs against OUTDIR (pipe_reader)."""
    cfg = json.load(open(os.path.join(outdir, "config.json")))
    src, meta = pipe_reader.read_safetensors(os.path.join(outdir, "model.safetensors"))
    layers = {k[6:]: v for k, v in meta.items() if k.startswith("quant.")}
    t, gmeta = read_st(os.path.join(gdir, "model.safetensors"))
    qc = json.load(open(os.path.join(gdir, "quantize_config.json")))
    gcfg = json.load(open(os.path.join(gdir, "config.json")))
    check(gmeta == {"format": "pt"}, f"{name}: safetensors metadata format pt")
    check(gcfg.get("quantization_config") == qc and gcfg["torch_dtype"] == "float16"
          and gcfg["hidden_size"] == cfg["hidden_size"], f"{name}: config.json carries quantize_config")
    check({k: qc[k] for k in ("group_size", "desc_act", "lm_head", "quant_method", "checkpoint_format")}
          == {"group_size": -1, "desc_act": False, "lm_head": False, "quant_method": "gptq",
              "checkpoint_format": "gptq"}, f"{name}: quantize_config fixed keys")
    check(open(os.path.join(gdir, "tokenizer.bin"), "rb").read() == open(os.path.join(outdir, "tokenizer.bin"),
                                                                          "rb").read(), f"{name}: tokenizer copied")
    expect = []
    for k in src:
        p, leaf = k.rsplit(".", 1)
        if p not in layers:
            expect.append(k)
        elif leaf == "qweight":
            expect += [p + s for s in (".qweight", ".qzeros", ".scales", ".g_idx", ".bias")]
    check(list(t) == expect, f"{name}: tensor names and order")
    plain = [k for k in src if k.rsplit(".", 1)[0] not in layers]
    check(all(t[k].dtype == np.float16 and np.array_equal(t[k], src[k].astype(np.float16)) for k in plain),
          f"{name}: {len(plain)} non-quantized tensors are fp16 of OUTDIR's")
    ok_codes = ok_bits = True
    for p, opt in layers.items():
        k, _, sym = pipe_reader.parse_option(opt)
        u = pipe_reader.unpack(src[p + ".qweight"], pipe_reader.d_in_of(p, cfg), k)
        _, q, z, bits = gptq_layer(t, qc, p)
        # codes and zero move together only where round(z) is outside 1..2^b
        zr = np.rint(src[p + ".w_zero"])
        shift = z - zr
        ok_codes &= ((shift == 0) | (zr < 1) | (zr > 2 ** bits)).all() and np.array_equal(q, u + shift[:, None])
        ok_codes &= np.array_equal(t[p + ".bias"], src[p + ".bias"].astype(np.float16))
        ok_codes &= np.array_equal(t[p + ".scales"][0], src[p + ".w_scale"].astype(np.float16))
        ok_bits &= module_config(qc, p) == ({6: 8}.get(k, k), sym)
        if bits == 3 and q.shape[1] % 32 == 0:
            words = t[p + ".qweight"].view(np.uint32)
            ok_codes &= all(np.array_equal(words3_values(words[:, o]), q[o]) for o in range(q.shape[0]))
    check(ok_codes, f"{name}: codes (3-bit also word by word), biases and fp16 scales are OUTDIR's")
    keys = list((qc["dynamic"] or {}))
    fused = [k for k in keys if "qkv_proj" in k or "gate_up_proj" in k]
    one = all(sum(bool(re.match(k[2:], p)) for p in layers) == (0 if k in fused else 1) for k in keys)
    check(ok_bits and one, f"{name}: dynamic gives each of {len(layers)} modules its bits/sym "
                           f"({len(keys) - len(fused)} entries, each matching one module)")
    return cfg, src, layers, t, qc


def check_fused(gdir, outdir, res, name):
    """vLLM looks up the fused qkv_proj / gate_up_proj: where the parts agree it
    must get their (bits, sym); where they differ the export says so."""
    qc = json.load(open(os.path.join(gdir, "quantize_config.json")))
    cfg = json.load(open(os.path.join(outdir, "config.json")))
    ok, mixed = True, 0
    for b in range(cfg["num_hidden_layers"]):
        for fused, parts in (("self_attn.qkv_proj", ("q", "k", "v")), ("mlp.gate_up_proj", ("gate", "up"))):
            base = f"model.layers.{b}." + fused.split(".")[0] + "."
            got = {module_config(qc, base + p + "_proj") for p in parts}
            if len(got) == 1:
                ok &= module_config(qc, f"model.layers.{b}.{fused}") == got.pop()
            else:
                mixed += 1
    nf = sum("qkv_proj" in k or "gate_up_proj" in k for k in qc["dynamic"] or {})
    check(ok and nf > 0 and res.stderr.count("cannot load this checkpoint") == mixed,
          f"{name}: vLLM's fused names get their parts' bits ({nf} fused entries); {mixed} mixed groups reported")


def check_weights(outdir, gdir, dumpdir, name, res, exact):
    """GPTQ weights against fp16(s)*(u - round(z)) bit for bit, against adaquant's
    own (exact=True: bit for bit), and the logged error maxima against ours."""
    cfg, src, layers, t, qc = check_layout(outdir, gdir, name)
    ok_formula, ok_adq, mism_v2, rel_s, rel_w, steps = True, True, 0, 0.0, 0.0, 0.0
    for p, opt in layers.items():
        k = pipe_reader.parse_option(opt)[0]
        w, q, z, _ = gptq_layer(t, qc, p)
        s, z0 = src[p + ".w_scale"], src[p + ".w_zero"]
        u = pipe_reader.unpack(src[p + ".qweight"], w.shape[1], k)
        ok_formula &= np.array_equal(q - z[:, None], u - np.rint(z0)[:, None]) and np.array_equal(
            w.view(np.uint32), pipe_reader.dequantize(u, s.astype(np.float16).astype(F32), np.rint(z0)).view(np.uint32))
        ref = adq_weights(dumpdir, p, w.shape)
        ok_adq &= np.array_equal(w.view(np.uint32), ref.view(np.uint32)) if exact else True
        mism_v2 += int((gptq_layer(t, qc, p, v2=True)[0] != ref).sum())
        d = np.abs(w.astype(np.float64) - ref)
        rel_s = max(rel_s, float((np.abs(s.astype(np.float16).astype(np.float64) - s) / s).max()))
        rel_w = max(rel_w, float((d[ref != 0] / np.abs(ref[ref != 0])).max()))
        steps = max(steps, float((d / s[:, None]).max()))
    check(ok_formula, f"{name}: q - z = u - round(z), weights fp16(s)*(u - round(z)) bit for bit")
    if exact:
        check(ok_adq, f"{name}: GPTQ weights equal adaquant's own dequantized weights bit for bit")
    check(mism_v2 > 0, f"{name}: a reader taking the zeros as v2 (no +1) fails ({mism_v2} weights differ)")
    got = logged(res.stderr)
    # the log prints 7 significant digits: 1e-6 relative
    check(got is not None and np.allclose(got, [rel_s, rel_w, steps], rtol=1e-6, atol=0),
          f"{name}: logged maxima {got} equal the reader's {[rel_s, rel_w, steps]}")
    return rel_w, steps


def no_output(dest):
    return not os.path.exists(dest) and not glob.glob(dest + ".tmp.*")


def up_rows(t, m):
    """layers.2.mlp.up_proj made asymmetric (same bits): its name, K, codes."""
    p = "model.layers.2.mlp.up_proj"
    m["quant." + p] = m["quant." + p].rstrip("s")
    k = pipe_reader.parse_option(m["quant." + p])[0]
    return p, k, pipe_reader.unpack(t[p + ".qweight"], t["model.embed_tokens.weight"].shape[1], k)


def zero_fold(t, m):
    """fp16 scales, and up_proj's zero points 0 on a row whose codes stay below
    2^K - 1 and 2^K + 1 on a row whose codes are >= 1: outside GPTQ's 1..2^K,
    exportable exactly by shifting the row's codes with its zero."""
    to_fp16_scales(t, m)
    p, k, u = up_rows(t, m)
    a = np.flatnonzero(u.max(axis=1) < 2 ** k - 1)[0]
    b = np.flatnonzero((u.min(axis=1) >= 1) & (np.arange(len(u)) != a))[0]
    t[p + ".w_zero"][a], t[p + ".w_zero"][b] = 0.0, 2.0 ** k + 1


def zero_0(t, m):
    """up_proj's zero point 0 on a row that uses code 2^K - 1: no room to shift."""
    p, k, u = up_rows(t, m)
    r = np.flatnonzero(u.max(axis=1) == 2 ** k - 1)[0]
    m["zero0_row"] = str(r)
    t[p + ".w_zero"][r] = 0.0


def act_8(t, m):
    """layers.3.self_attn.o_proj with 8-bit activations (same weight bits)."""
    p = "model.layers.3.self_attn.o_proj"
    m["quant." + p] = m["quant." + p].replace("a16", "a8")
    t[p + ".a_scale"] = np.array([0.05], dtype=F32)
    t[p + ".a_zero"] = np.array([128.0], dtype=F32)


def bad_input(work, base):
    zero0 = variant(base, os.path.join(work, "zero0"), zero_0)
    actq = variant(base, os.path.join(work, "actq"), act_8)
    asym = os.path.join(work, "asym")
    empty = os.path.join(work, "empty")
    os.makedirs(empty, exist_ok=True)
    existing = os.path.join(work, "existing")
    os.makedirs(existing, exist_ok=True)
    blocker = os.path.join(work, "blocker")
    open(blocker, "w").close()
    cases = [
        ("an unknown format", [aqtest.CLI, "export", base, "--format", "awq", "--out", "x"], 2, "gguf, gptq or onnx-qdq", None),
        ("a fractional zero without --round-zeros", None, 1, "is not an integer", asym),
        ("a zero point 0 and codes up to 2^K - 1", None, 1,
         f"row {pipe_reader.read_safetensors(os.path.join(zero0, 'model.safetensors'))[1]['zero0_row']}: "
         "zero point 0 is outside 1..", zero0),
        ("an activation-quantized layer", None, 1, "o_proj quantizes its activations", actq),
        ("a float model as OUTDIR", None, 1, "not a quantized model", aqtest.MODEL),
        ("an empty directory as OUTDIR", None, 1, "not a quantized model directory", empty),
        ("an existing --out", [aqtest.CLI, "export", base, "--format", "gptq", "--out", existing], 1,
         "already exists", None),
        ("an unwritable --out", [aqtest.CLI, "export", base, "--format", "gptq", "--out", blocker + "/g"], 1,
         "cannot create", None),
    ]
    for what, cmd, code, msg, src in cases:
        dest = os.path.join(work, "bad_out")
        r = run(cmd) if cmd else export(src, dest)
        clean = no_output(dest) and no_output(blocker + "/g") and not os.listdir(existing)
        check(r.returncode == code and msg in r.stderr and clean,
              f"bad input, {what}: exit {r.returncode}, "
              f"'{[l for l in r.stderr.splitlines() if 'adaquant export' in l][0][:150]}', no output")


def embed_w4(t, meta):
    """The embedding at the tensor-menu option w4 (docs/FORMAT.md "Embedding and
    classifier", format version 2): per-row round-to-nearest codes, low nibble
    first, F32 scale and integer zero. Returns nothing; the test keeps the
    dequantized matrix it implies in EMBED_W4."""
    w = t.pop("model.embed_tokens.weight").astype(np.float64)
    lo, hi = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
    s = ((hi - lo) / 15).astype(F32)
    z = np.round(-lo / s).astype(F32)
    u = np.clip(np.round(w / s[:, None]) + z[:, None], 0, 15).astype(np.uint8)
    t["model.embed_tokens.qweight"] = (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)
    t["model.embed_tokens.w_scale"], t["model.embed_tokens.w_zero"] = s, z
    meta["quant.model.embed_tokens"] = "w4"
    meta["format_version"] = "2"
    EMBED_W4.append((s[:, None] * (u.astype(F32) - z[:, None])).astype(F32))


EMBED_W4 = []


def main():
    helper, work = sys.argv[1], os.path.abspath(sys.argv[2])
    if aqtest.missing_asset():
        return 77
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = os.path.join(work, "sym")
    r = run([aqtest.CLI, "quantize", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--calib-text", aqtest.TEXT,
             "--out", base] + QUANTIZE)
    check(r.returncode == 0, "quantize stories260K (symmetric 2/3/4/6/8-bit mix, reduced settings)")
    if r.returncode:
        print(r.stderr[-2000:])
        return aqtest.finish("export_gptq")
    # fp16 scales (and two zero points outside 1..2^K, shifted with their codes):
    # GPTQ holds OUTDIR exactly -> adaquant's weights bit for bit
    f16 = variant(base, os.path.join(work, "f16"), zero_fold)
    res = export(f16, os.path.join(work, "g_f16"))
    check(res.returncode == 0, "export f16")
    if res.returncode == 0:
        rel_w, steps = check_weights(f16, os.path.join(work, "g_f16"), dump(helper, f16), "f16", res, True)
        check(rel_w == 0 and steps == 0 and "2 rows had a zero point outside" in res.stderr,
              "f16: logged error 0, the 2 shifted rows logged")
    # as quantized: fp16 rounding of the scales is the only difference
    res = export(base, os.path.join(work, "g_sym"))
    check(res.returncode == 0, "export sym")
    if res.returncode == 0:
        rel_w, _ = check_weights(base, os.path.join(work, "g_sym"), dump(helper, base), "sym", res, False)
        # fp16 round-to-nearest: |fp16(s) - s| <= 2^-11 s (normal range); adaquant's
        # float32 product adds at most 2^-24 relative, twice for safety
        check(0 < rel_w <= 2.0 ** -11 + 2.0 ** -23, f"sym: max |dW|/|W| {rel_w:.3g} <= 2^-11 + 2^-23")
        check_fused(os.path.join(work, "g_sym"), base, res, "sym")
    # asymmetric block 0: fractional zeros rounded on request
    asym = variant(base, os.path.join(work, "asym"), make_asym)
    res = export(asym, os.path.join(work, "g_asym"), "--round-zeros")
    check(res.returncode == 0, "export asym --round-zeros")
    if res.returncode == 0:
        _, steps = check_weights(asym, os.path.join(work, "g_asym"), dump(helper, asym), "asym", res, False)
        at = pipe_reader.read_safetensors(os.path.join(asym, "model.safetensors"))[0]
        n = sum(int((at[k] % 1 != 0).sum()) for k in at if k.endswith(".w_zero"))
        check(f"{n} of " in res.stderr, f"asym: the log counts the {n} rounded rows")
        # the largest fractional part is 0.5 (a tie): half a step, plus or minus fp16's
        # 2^-11 relative scale error times |u - z| <= 16 (4 bits), plus float32 rounding
        check(abs(steps - 0.5) <= 17 * 2.0 ** -11, f"asym: max |dW| {steps:.4g} steps, 0.5 within 17 * 2^-11")
        qc = json.load(open(os.path.join(work, "g_asym", "quantize_config.json")))
        check(qc["sym"] is False and sum(v.get("sym") is True for k, v in qc["dynamic"].items()
                                         if "qkv" not in k and "gate_up" not in k) == 28,
              "asym: sym false at the top, the 28 symmetric modules marked sym true in dynamic")
        check_fused(os.path.join(work, "g_asym"), asym, res, "asym")
    # a format-2 OUTDIR whose embedding is allocated (w4): GPTQ quantizes only
    # the linears, so the embedding goes out as fp16 of its dequantized matrix
    emb = variant(base, os.path.join(work, "emb"), embed_w4)
    res = export(emb, os.path.join(work, "g_emb"))
    check(res.returncode == 0, "export of a w4 embedding: " + res.stderr[-300:])
    if res.returncode == 0:
        g, _ = read_st(os.path.join(work, "g_emb", "model.safetensors"))
        e = g.get("model.embed_tokens.weight")
        check(e is not None and e.dtype == np.float16 and np.array_equal(e, EMBED_W4[0].astype(np.float16))
              and not any(k.startswith("model.embed_tokens.") and k != "model.embed_tokens.weight" for k in g),
              "w4 embedding: exported as fp16 of its dequantized rows, bit for bit, and nothing else")
    bad_input(work, base)
    return aqtest.finish("export_gptq")


if __name__ == "__main__":
    sys.exit(main())
