"""test_gguf_budget.py — `quantize --out-format gguf --target-size BYTES`: the
budget measures OUTDIR/model.gguf to the byte (docs/PIPELINE.md "GGUF
budget"), on stories260K with reduced settings.

  test_gguf_budget.py WORKDIR NPM_DIR

1. A run at 290,000 bytes: model.gguf <= the budget; its size recomputed here
   from the file's own tensor infos and ggml's block table (header + metadata
   + infos padded to 32, each tensor's bytes padded to 32) equals the file and
   report.json's "files"; every tensor in a GGUF type: each linear in its
   chosen option's type (F16 for the per-row fallback w8a16), the embedding in
   its option's type, norms and biases F32.
2. Exactness: re-solved (--resume) at the file's size minus one byte, the new
   file is <= that bound (an allocation counted one byte short would land
   above it); at the smallest feasible size, which an infeasible budget's
   error names, the file has exactly that many bytes.
3. Options GGUF cannot store (wKgG, activation quantization, a wK embedding)
   are refused before any work, each named.
4. llama.cpp (node-llama-cpp) loads the file; its log-probs on 64 tokens match
   the float64 forward of OUTDIR read by tests/scripts/pipe_reader.py (the
   embedding's q8_0/q4_0 rows by ggml_ref.py), with ggml's Q8 rounding of the
   block matmuls' inputs (tolerance of test_gguf_native.py, argued there).
   Step 4 skips when node-llama-cpp is not installed (fixture npm_llamacpp).
"""
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np

import aqtest
from aqtest import check

sys.path.insert(0, os.path.join(aqtest.SRC, "tests", "scripts"))
import model_ref  # noqa: E402
import test_export_gguf as teg  # noqa: E402
import test_gguf_native as tgn  # noqa: E402

MENU = "q8_0,q4_0,w8a16"
EMBED = "f16,q8_0,q4_0"
BUDGET = 290000
QUANTIZE = ["--options", MENU, "--embed-options", EMBED, "--calib-windows", "4", "--calib-len", "64", "--iters",
            "3", "--starts", "1", "--polish", "1", "--init", "rtn", "--kl-windows", "0", "--eval-docs", "4",
            "--tune-steps", "0", "--progress", "none", "--out-format", "gguf"]
# ggml docs/gguf.md: type id -> (weights per block, bytes per block)
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34)}
TYPE_OF = {"q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "w8a16": 1, "f16": 1, "f32": 0}


class BudgetRef(tgn.GgmlActModel):
    """test_gguf_native's reference, plus the F16 fallback layers as llama.cpp
    runs them: weights rounded to F16 (the file's values) and inputs too
    (an F16 matmul's vec_dot_type is F16)."""

    def __init__(self, outdir, ggml_layers, f16_layers):
        super().__init__(outdir, ggml_layers)
        self.f16 = f16_layers
        for p in f16_layers:
            w, bias, act = self.lin[p]
            self.lin[p] = (w.astype(np.float16).astype(np.float64), bias, act)

    def linear(self, p, x):
        return super().linear(p, teg.f16_act(x) if p in self.f16 else x)


def quantize(work, out, size, extra=()):
    return subprocess.run([aqtest.CLI, "quantize", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--text", aqtest.TEXT,
                           "--out", out, "--force", "--work", os.path.join(work, "w"), "--target-size", str(size)]
                          + QUANTIZE + list(extra), capture_output=True, text=True)


def layout_size(path):
    """The file's size from its tensor infos and the block table (ggml's rules)."""
    b = open(path, "rb").read()
    nt, nkv = struct.unpack_from("<QQ", b, 8)
    pos = 24
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, p):
        if t in fixed:
            return p + fixed[t]
        if t == 8:
            return p + 8 + struct.unpack_from("<Q", b, p)[0]
        et, n = struct.unpack_from("<IQ", b, p)
        p += 12
        for _ in range(n):
            p = skip(et, p)
        return p

    for _ in range(nkv):
        pos += 8 + struct.unpack_from("<Q", b, pos)[0]
        pos = skip(struct.unpack_from("<I", b, pos)[0], pos + 4)
    size = 0
    for _ in range(nt):
        pos += 8 + struct.unpack_from("<Q", b, pos)[0]
        nd = struct.unpack_from("<I", b, pos)[0]
        ne = struct.unpack_from(f"<{nd}Q", b, pos + 4)
        t = struct.unpack_from("<I", b, pos + 4 + 8 * nd)[0]
        pos += 4 + 8 * nd + 12
        qk, nb = BLOCK[t]
        size += (int(np.prod(ne)) // qk * nb + 31) // 32 * 32
    return (pos + 31) // 32 * 32 + size


def check_types(outdir):
    qj = json.load(open(os.path.join(outdir, "quantization.json")))
    gt = tgn.gguf_tensors(os.path.join(outdir, "model.gguf"))
    ok = True
    for l in qj["layers"]:
        b, lin = l["layer"].split(".")[2], ".".join(l["layer"].split(".")[3:])
        name = f"blk.{b}.{tgn.LIN[lin]}"
        ok &= gt[name + ".weight"][0] == TYPE_OF[l["option"]] and gt[name + ".bias"][0] == 0
    emb = {t["tensor"]: t["option"] for t in qj.get("tensors", [])}.get("model.embed_tokens", "f32")
    ok &= gt["token_embd.weight"][0] == TYPE_OF[emb]
    ok &= all(t == 0 for n, (t, _, _) in gt.items() if "norm" in n)
    ok &= all(t in BLOCK for t, _, _ in gt.values())
    check(ok, f"every tensor in a GGUF type: linears as chosen, embedding {emb}, norms and biases F32")
    return qj, emb


def main():
    work, npm_dir = sys.argv[1], sys.argv[2]
    if aqtest.missing_asset():
        return 77
    aqtest.fresh_dir(work)
    out = os.path.join(work, "q")
    r = quantize(work, out, BUDGET)
    check(r.returncode == 0, f"quantize --out-format gguf --target-size {BUDGET}")
    if r.returncode:
        print(r.stderr[-2000:])
        return aqtest.finish("gguf_budget")
    gguf = os.path.join(out, "model.gguf")
    size = os.path.getsize(gguf)
    rep = json.load(open(os.path.join(out, "report.json")))
    check(size <= BUDGET, f"model.gguf {size} bytes <= {BUDGET}")
    check(layout_size(gguf) == size == rep["files"]["bytes"],
          f"the file's size from its own layout ({layout_size(gguf)}) = the file ({size}) = the report's")
    files = rep["files"]
    check(files["weights"] == sum(int(np.prod(ne)) for _, ne, _ in tgn.gguf_tensors(gguf).values()) and
          abs(files["bits_per_weight"] - 8 * files["tensor_bytes"] / files["weights"]) < 1e-9,
          f"llama.cpp's BPW over all {files['weights']} weights: {files['bits_per_weight']:.4f}")
    qj, emb = check_types(out)
    check(emb != "f32", f"the embedding is allocated ({emb})")

    # 2. one byte less: another allocation, under its bound
    out2 = os.path.join(work, "q2")
    r = quantize(work, out2, size - 1, ["--resume", "--no-eval"])
    s2 = os.path.getsize(os.path.join(out2, "model.gguf")) if r.returncode == 0 else None
    check(s2 is not None and s2 <= size - 1, f"at {size - 1} bytes the file is {s2} bytes")
    r = quantize(work, os.path.join(work, "q3"), 1000, ["--resume"])
    m = re.search(r"smallest feasible size of model.gguf \(--out-format gguf\) with the options and pins given "
                  r"is (\d+) bytes",
                  r.stderr)
    check(r.returncode != 0 and m is not None, "an infeasible budget names the smallest feasible size")
    if m:
        least = int(m.group(1))
        r = quantize(work, os.path.join(work, "q4"), least, ["--resume", "--no-eval"])
        s4 = os.path.getsize(os.path.join(work, "q4", "model.gguf")) if r.returncode == 0 else None
        check(s4 == least, f"at the smallest feasible size {least} the file has exactly {s4} bytes")

    # 3. refused before any work (no work directory created), every such option named
    wd = os.path.join(work, "refused")
    r = subprocess.run([aqtest.CLI, "quantize", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--text", aqtest.TEXT,
                        "--out", os.path.join(work, "r"), "--work", wd, "--out-format", "gguf", "--options",
                        "q4_0,w4g32,w4a8,w8a16", "--embed-options", "f16,w4"], capture_output=True, text=True)
    check(r.returncode == 2 and "GGUF cannot store option(s) w4g32 w4a8 w4 (--embed-options)" in r.stderr
          and not os.path.exists(wd), "--out-format gguf refuses w4g32, w4a8 and a w4 embedding before any work")

    # 4. llama.cpp runs the file
    if not os.path.exists(os.path.join(npm_dir, "node_modules", "node-llama-cpp", "package.json")):
        print("skip: node-llama-cpp not installed (fixture npm_llamacpp): llama.cpp step not run")
        return aqtest.finish("gguf_budget")
    cfgm, _ = model_ref.load_model(aqtest.MODEL)
    tok = model_ref.load_tokenizer(aqtest.TOK, cfgm["V"])
    docs = model_ref.documents(aqtest.TEXT)
    ids = next(t for t in (model_ref.encode(tok, d) for d in docs[len(docs) // 2:]) if len(t) >= 64)[:64]
    res = teg.llamacpp(npm_dir, gguf, ids)
    check(res is not None, "llama.cpp loads the budgeted GGUF")
    if res:
        chosen = {l["layer"]: l["option"] for l in qj["layers"]}
        ref_model = BudgetRef(out, {p for p, o in chosen.items() if o in tgn.GGML_ID},
                              {p for p, o in chosen.items() if TYPE_OF[o] == 1})
        ref_model.head_q8 = emb in tgn.GGML_ID
        # the tied classifier runs on token_embd in its block type: ggml rounds
        # its input to Q8 as for every block matmul
        h = ref_model.head
        ref = model_ref.log_softmax(ref_model.forward(ids)) if not ref_model.head_q8 else None
        if ref is None:
            ref_model.head = np.eye(h.shape[1])
            hid = ref_model.forward(ids)
            ref = model_ref.log_softmax(teg.q8_act(hid) @ h.T)
        teg.compare("budgeted GGUF", res[0], ref, 0.5, 0.08)
    return aqtest.finish("gguf_budget")


if __name__ == "__main__":
    sys.exit(main())
