"""test_gguf_solve.py — the GGUF output of the split stages, block pins that
cannot apply, and GGUF files scored by `adaquant eval` (issue 16; docs/EXPORT.md,
docs/SLURM.md), on stories260K with reduced settings.

  test_gguf_solve.py refuse WORKDIR
  test_gguf_solve.py solve WORKDIR

refuse (cheap: every refusal comes before any work):
1. `--keep down_proj=q4_0` on stories260K (rows of 172, q4_0's block is 32) is
   refused naming the layer, 172 and 32, and the work directory holds no
   statistics (nothing ran); the same for `--keep down_proj=q4_k` on a
   dim-256 model whose down_proj rows are 320 (not a multiple of 256).
2. A K-quant menu option on stories260K, where no row (64, 172) is a multiple
   of 256, is refused naming 256.
   `eval stories260K --quantized` a GGUF of another model is refused naming the
   hparam that differs (the file runs with MODEL's architecture), and one
   with a tensor in a type we do not decode (BF16) naming the tensor and type.

solve:
3. `capture --out-format gguf` + `calibrate` + `solve --out-format gguf
   --target-size B` writes the same model.gguf bytes as `quantize --out-format
   gguf --target-size B` with the same settings, and the file's size equals
   the size report.json predicted (the budget's measure). `capture
   --out-format gguf` alone picks the GGUF menus, fitted to the model's rows
   (no K-quant: no row of 256); solve --out-format gguf on a work directory
   whose menus GGUF cannot store is refused, naming them.
4. `eval MODEL --quantized FILE.gguf`:
   - our model.gguf and an RTN Q4_0 file (llama.cpp's own type and layout,
     from `export --type Q4_0`) scored against an independent float64
     reference: the GGUF read here (ggml docs/gguf.md), dequantized by
     ggml_ref.py, run by model_ref.py (llama2.c's forward, whose q/k row order
     is the GGUF's interleaved one);
   - the OUTDIR exported with its non-block layers in F32 scores exactly as
     eval of the OUTDIR (the same weights, the same engine: equal to the 10
     digits printed);
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

import aqtest
from aqtest import check

sys.path.insert(0, os.path.join(aqtest.SRC, "tests", "scripts"))
import ggml_ref  # noqa: E402
import model_ref  # noqa: E402
import test_gguf_native as tgn  # noqa: E402

MENU = "q8_0,q4_0,w8a16"
EMBED = "f16,q8_0,q4_0"
BUDGET = "290000"
CAPTURE = ["--options", MENU, "--embed-options", EMBED, "--calib-windows", "4", "--calib-len", "64", "--iters",
           "3", "--starts", "1", "--polish", "1", "--init", "rtn", "--kl-windows", "0", "--progress", "none"]
OUT = ["--eval-docs", "4", "--tune-steps", "0", "--target-size", BUDGET, "--out-format", "gguf"]
DOCS, LEN = 4, 128  # eval's documents and tokens for the float64 reference (numpy time)
TYPE_NAME = {2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
             13: "Q5_K", 14: "Q6_K"}
LIN = {"attn_q": "wq", "attn_k": "wk", "attn_v": "wv", "attn_output": "wo", "ffn_gate": "w1", "ffn_up": "w3",
       "ffn_down": "w2"}


def cli(*args):
    return subprocess.run([aqtest.CLI] + [str(a) for a in args], capture_output=True, text=True)


def src(*extra):
    return [aqtest.MODEL, "--tokenizer", aqtest.TOK, "--text", aqtest.TEXT] + list(extra)


def refused(r, what, *words):
    ok = r.returncode != 0 and all(w in r.stderr for w in words)
    check(ok, f"{what}: refused naming {', '.join(words)}")
    if not ok:
        print(r.stderr[-1200:])


def part_refuse(work):
    w = os.path.join(work, "w")
    r = cli("quantize", *src("--out", os.path.join(work, "o"), "--work", w, "--keep", "down_proj=q4_0"), *CAPTURE)
    refused(r, "--keep down_proj=q4_0 on stories260K", "model.layers.0.mlp.down_proj", "172", "q4_0", "32")
    check(not os.path.isdir(os.path.join(w, "stats")) or not os.listdir(os.path.join(w, "stats")),
          "... before any work (no statistics in the work directory)")
    r = cli("quantize", *src("--out", os.path.join(work, "o"), "--options", "q4_k,w8a16", "--progress", "none"))
    refused(r, "--options q4_k on stories260K (rows 64 and 172)", "q4_k", "256")
    hf = os.path.join(work, "hf")
    r = subprocess.run([sys.executable, os.path.join(aqtest.SRC, "tests", "scripts", "synth_model.py"), "llama", hf,
                        "--vocab", "512", "--dim", "256", "--hidden", "320", "--layers", "1", "--heads", "4"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "synth_model.py llama, dim 256, hidden 320")
    r = cli("quantize", hf, "--tokenizer", aqtest.TOK, "--text", aqtest.TEXT, "--out", os.path.join(work, "o2"),
            "--options", "q4_k,w8a16", "--keep", "down_proj=q4_k", "--progress", "none")
    refused(r, "--keep down_proj=q4_k on rows of 320", "model.layers.0.mlp.down_proj", "320", "q4_k", "256")
    g = os.path.join(work, "other.gguf")
    r = cli("export", hf, "--tokenizer", aqtest.TOK, "--type", "F32", "--out", g)
    r = cli("eval", *src("--max-docs", 1, "--quantized", g))
    refused(r, "eval of another model's GGUF against stories260K", "other.gguf", "llama.block_count is 1",
            "MODEL's is 5")
    g = os.path.join(work, "bf16.gguf")
    r = cli("export", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--type", "F32", "--out", g)
    b = bytearray(open(g, "rb").read())
    p = b.find(b"token_embd.weight") + len("token_embd.weight")  # its tensor info: n_dims, ne[], type
    struct.pack_into("<I", b, p + 4 + 8 * struct.unpack_from("<I", b, p)[0], 30)  # ggml's BF16: half the bytes
    open(g, "wb").write(b)
    r = cli("eval", *src("--max-docs", 1, "--quantized", g))
    refused(r, "eval of a GGUF with a type we do not decode (BF16)", "token_embd.weight", "BF16")


def gguf_model(path):
    """(cfg, w, bias) of a llama GGUF for model_ref.forward: every tensor
    dequantized by ggml_ref.py (F32/F16 read directly), rows as stored."""
    ts = tgn.gguf_tensors(path)

    def mat(name):
        t, ne, raw = ts[name]
        n = int(np.prod(ne))
        if t in (0, 1):
            a = np.frombuffer(raw[:n * (4 if t == 0 else 2)], dtype="<f4" if t == 0 else "<f2")
        else:
            qk, nb = ggml_ref.SIZE[TYPE_NAME[t]]
            a = ggml_ref.dequantize(TYPE_NAME[t], raw[:n // qk * nb])
        return a.astype(np.float64).reshape(tuple(reversed(ne)))

    L = 1 + max(int(k.split(".")[1]) for k in ts if k.startswith("blk."))
    w = {"emb": mat("token_embd.weight"), "rms_final": mat("output_norm.weight")}
    w["wcls"] = mat("output.weight") if "output.weight" in ts else w["emb"]
    w["rms_att"] = [mat(f"blk.{l}.attn_norm.weight") for l in range(L)]
    w["rms_ffn"] = [mat(f"blk.{l}.ffn_norm.weight") for l in range(L)]
    bias = {}
    for g, n in LIN.items():
        w[n] = [mat(f"blk.{l}.{g}.weight") for l in range(L)]
        bias.update({(n, l): mat(f"blk.{l}.{g}.bias") for l in range(L) if f"blk.{l}.{g}.bias" in ts})
    dim, V = w["emb"].shape[1], w["emb"].shape[0]
    H = 8 if dim == 64 else None  # stories260K: 8 heads, 4 kv heads (its header, checked below)
    cfg = dict(dim=dim, hidden=w["w1"][0].shape[0], L=L, H=H, KV=w["wk"][0].shape[0] // (dim // H), V=V,
               hs=dim // H)
    return cfg, w, bias


def reference(fp, q):
    """Perplexity of q, KL(fp || q) per token and top-1 agreement on eval's documents, in float64."""
    (cfg, w), (qcfg, qw, qb) = fp, q
    check(all(cfg[k] == qcfg[k] for k in cfg), "the GGUF's geometry is stories260K's")
    tok = model_ref.load_tokenizer(aqtest.TOK, cfg["V"])
    docs = model_ref.documents(aqtest.TEXT)
    nll, kl, agree, cnt = 0.0, 0.0, 0, 0
    for d in docs[len(docs) // 2:][:DOCS]:
        ids = model_ref.encode(tok, d)[:LEN]
        lf = model_ref.log_softmax(model_ref.forward(cfg, w, ids))[:-1]
        lq = model_ref.log_softmax(model_ref.forward(cfg, qw, ids, bias=qb))[:-1]
        nll -= sum(lq[t, ids[t + 1]] for t in range(len(ids) - 1))
        kl += float((np.exp(lf) * (lf - lq)).sum())
        agree += int((lf.argmax(1) == lq.argmax(1)).sum())
        cnt += len(ids) - 1
    return np.exp(nll / cnt), kl / cnt, agree / cnt


def score(quant):
    r = cli("eval", *src("--max-docs", DOCS, "--max-len", LEN, "--quantized", quant, "--json"))
    check(r.returncode == 0, f"eval --quantized {os.path.basename(quant)}")
    if r.returncode:
        print(r.stderr[-1200:])
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_against_reference(fp, path, what):
    ev = score(path)
    if not ev:
        return
    ppl, kl, agree = reference(fp, gguf_model(path))
    # float32 engine vs float64 reference: logits agree to ~1e-6 relative
    # (tests/test_model.c), so each token's NLL and the KL terms move by a few
    # 1e-5 at most; 1e-4 (relative on perplexity, absolute on KL) holds that.
    check(abs(ev["ppl_q"] - ppl) <= 1e-4 * ppl and abs(ev["kl_mean"] - kl) <= 1e-4,
          f"{what}: eval of the GGUF = float64 reference (ppl {ev['ppl_q']:.6f} vs {ppl:.6f}, "
          f"KL {ev['kl_mean']:.6f} vs {kl:.6f})")
    # top-1 can flip only on a near tie: allow one token in a hundred
    check(abs(ev["top1_agreement"] - agree) <= 0.01, f"{what}: top-1 agreement {ev['top1_agreement']:.4f} vs {agree:.4f}")


def part_solve(work):
    o1, o2, w1, w2 = (os.path.join(work, n) for n in ("o1", "o2", "w1", "w2"))
    r = cli("quantize", *src("--out", o1, "--work", w1), *CAPTURE, *OUT)
    check(r.returncode == 0, "quantize --out-format gguf")
    r2 = cli("capture", *src("--work", w2), *CAPTURE, "--out-format", "gguf")
    r3 = cli("calibrate", "--work", w2, "--shard", 0, "--shards", 1, "--progress", "none")
    r4 = cli("solve", "--work", w2, "--out", o2, "--progress", "none", *OUT)
    check(r2.returncode == 0 and r3.returncode == 0 and r4.returncode == 0,
          "capture --out-format gguf, calibrate, solve --out-format gguf")
    if r.returncode or r4.returncode:
        print(r.stderr[-1500:], r2.stderr[-800:], r3.stderr[-800:], r4.stderr[-1500:])
        return
    g1, g2 = (open(os.path.join(o, "model.gguf"), "rb").read() for o in (o1, o2))
    check(g1 == g2, f"solve's model.gguf is quantize's, byte for byte ({len(g2)} bytes)")
    pred = json.load(open(os.path.join(o2, "report.json"))).get("files", {})  # the budget's measure
    check(pred.get("format") == "gguf" and pred.get("bytes") == len(g2) <= int(BUDGET),
          f"solve's model.gguf is the predicted {pred.get('bytes')} bytes, within {BUDGET}")
    w3 = os.path.join(work, "w3")
    cli("capture", *src("--work", w3, "--calib-windows", 1, "--calib-len", 16, "--kl-windows", 0, "--progress",
                        "none", "--out-format", "gguf"))
    st = json.load(open(os.path.join(w3, "settings.json")))
    # the GGUF default menu less the K-quants (stories260K has no row of 256)
    check(st.get("options") == ["q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "w8a16"]
          and st.get("embed_options") == ["f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"],
          f"capture --out-format gguf picks the GGUF menus ({st.get('options')}, {st.get('embed_options')})")
    w4 = os.path.join(work, "w4")
    cli("capture", *src("--work", w4, "--calib-windows", 1, "--calib-len", 16, "--kl-windows", 0, "--progress",
                        "none", "--options", "w8a16,w4g32"))
    r = cli("solve", "--work", w4, "--out", os.path.join(work, "o4"), "--out-format", "gguf")
    refused(r, "solve --out-format gguf on a work with wKgG and wK embedding options", "w4g32",
            "w8 (--embed-options)", "capture with --out-format gguf")
    check(not os.path.exists(os.path.join(work, "o4")), "... and no OUTDIR")
    check_eval(work, o1)


def check_eval(work, o1):
    fp = model_ref.load_model(aqtest.MODEL)
    check_against_reference(fp, os.path.join(o1, "model.gguf"), "our model.gguf (q8_0/q4_0/F16, biases)")
    rtn = os.path.join(work, "rtn.gguf")
    r = cli("export", aqtest.MODEL, "--tokenizer", aqtest.TOK, "--type", "Q4_0", "--type-embd", "Q8_0", "--out", rtn)
    check(r.returncode == 0, "export --type Q4_0 --type-embd Q8_0 (llama.cpp's RTN)")
    check_against_reference(fp, rtn, "an RTN Q4_0 file")
    f32 = os.path.join(work, "f32.gguf")
    r = cli("export", aqtest.MODEL, "--quantized", o1, "--tokenizer", aqtest.TOK, "--type", "F32", "--out", f32)
    a, b = score(o1), score(f32)
    check(r.returncode == 0 and a and b and all(a[k] == b[k] for k in ("ppl_q", "nll_q", "kl_mean", "top1_agreement")),
          f"eval of the OUTDIR exported with F32 fallbacks = eval of the OUTDIR ({a.get('ppl_q')} vs {b.get('ppl_q')})")


def main():
    part, work = sys.argv[1], sys.argv[2]
    if aqtest.missing_asset():
        return 77
    aqtest.fresh_dir(work)
    (part_refuse if part == "refuse" else part_solve)(work)
    return aqtest.finish(f"gguf_solve {part}")


if __name__ == "__main__":
    sys.exit(main())
