#!/usr/bin/python3
"""l2c_convert_check.py — an independent check of `adaquant convert`.

usage: l2c_convert_check.py MODEL.bin TOKENIZER.bin   (env AQ_CLI = the adaquant binary)

1. CLI behaviour: --help, a missing input, a truncated input, an existing
   OUTDIR (refused without --force, replaced with it), a tokenizer whose size
   does not match the vocab: non-zero exits with a message, no OUTDIR left behind.
2. Converts MODEL.bin, then reads the ORIGINAL .bin itself (numpy), applies the
   HF q/k permutation itself (HF's reshape/transpose form, not the C loop),
   parses OUTDIR/model.safetensors by hand (struct + json: header length,
   8-byte alignment, dtype, shape, contiguous offsets, metadata) and
   OUTDIR/config.json, and asserts every tensor is bit-identical.
3. Checks the permutation direction functionally: RoPE'd attention scores
   with llama2.c's adjacent-pair rotation on the original weights equal HF's
   rotate-half rotation on the converted weights.
Exit 0 pass, 1 fail, 77 skip (no asset, or no numpy for parts 2-3).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


def run(args):
    p = subprocess.run([os.environ["AQ_CLI"]] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def cli_checks(model, tok, tmp):
    rc, out, _ = run(["convert", "--help"])
    check(rc == 0 and "--tokenizer" in out and "--force" in out and "q_proj" in out, "convert --help")
    rc, _, err = run(["convert"])
    check(rc == 2 and "expected IN.bin and OUTDIR" in err, "convert without arguments is a usage error")
    out_dir = os.path.join(tmp, "missing-out")
    rc, _, err = run(["convert", os.path.join(tmp, "nope.bin"), out_dir])
    check(rc == 1 and "nope.bin" in err and "cannot open" in err, "missing input: %r" % err)
    check(not os.path.exists(out_dir), "no OUTDIR after a failure")
    trunc = os.path.join(tmp, "trunc.bin")
    with open(model, "rb") as f, open(trunc, "wb") as g:
        g.write(f.read()[:-10])
    rc, _, err = run(["convert", trunc, out_dir])
    check(rc == 1 and "trunc.bin" in err and "1056530 bytes" in err and "1056540" in err,
          "truncated input: %r" % err)
    check(not os.path.exists(out_dir), "no OUTDIR after a truncated input")
    bad_tok = os.path.join(tmp, "bad_tok.bin")
    with open(tok, "rb") as f, open(bad_tok, "wb") as g:
        g.write(f.read()[:-1])
    rc, _, err = run(["convert", "--tokenizer", bad_tok, model, out_dir])
    check(rc == 1 and "bad_tok.bin" in err and "token 511" in err, "truncated tokenizer: %r" % err)
    check(not os.path.exists(out_dir) and not [n for n in os.listdir(tmp) if ".tmp." in n],
          "no OUTDIR or temporary directory after a failed tokenizer copy")
    # Existing directories: refused, then replaced with --force.
    existing = os.path.join(tmp, "existing")
    os.mkdir(existing)
    rc, _, err = run(["convert", model, existing])
    check(rc == 1 and "already exists" in err and "--force" in err, "existing OUTDIR refused: %r" % err)
    rc, _, err = run(["convert", "--force", model, existing])
    check(rc == 1 and "does not look like a model directory" in err, "--force on a non-model dir: %r" % err)
    open(os.path.join(existing, "config.json"), "w").write("{}")
    open(os.path.join(existing, "stale.txt"), "w").write("old")
    rc, out, err = run(["convert", "--force", model, existing + "/"])
    check(rc == 0 and sorted(os.listdir(existing)) == ["config.json", "model.safetensors"],
          "--force replaces a model dir: rc %d %r %s" % (rc, err, os.listdir(existing)))
    check("260032 parameters" in out, "summary line: %r" % out)
    check(not [n for n in os.listdir(tmp) if ".tmp." in n], "no temporary directory left: %s" % os.listdir(tmp))


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", data, 0)
    check(n % 8 == 0, "header length %d is a multiple of 8" % n)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    body = data[8 + n:]
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    pos = 0
    for name, info in items:
        b, e = info["data_offsets"]
        check(b == pos, "%s starts at %d, contiguous would be %d" % (name, b, pos))
        check(info["dtype"] == "F32", "%s dtype %s" % (name, info["dtype"]))
        numel = 1
        for s in info["shape"]:
            numel *= s
        check(e - b == 4 * numel, "%s byte range matches its shape" % name)
        pos = e
    check(pos == len(body), "data ends at the end of the file")
    return header, meta, body, [name for name, _ in items]


def main():
    if len(sys.argv) != 3 or "AQ_CLI" not in os.environ:
        print(__doc__)
        return 2
    model, tok = sys.argv[1:3]
    if not (os.path.exists(model) and os.path.exists(tok)):
        print("SKIP: test asset %s or %s is absent" % (model, tok))
        return 77
    tmp = tempfile.mkdtemp(prefix="aqtest-l2c-convert-")
    try:
        cli_checks(model, tok, tmp)
        try:
            import numpy as np
        except ImportError:
            print("SKIP: /usr/bin/python3 has no numpy; only the CLI checks ran (%d failures)" % len(FAILS))
            return 1 if FAILS else 77
        out_dir = os.path.join(tmp, "hf")
        rc, out, err = run(["convert", "--tokenizer", tok, model, out_dir])
        check(rc == 0, "convert succeeded: %s" % err)
        if rc != 0:
            return 1
        print(out.strip())
        check(sorted(os.listdir(out_dir)) == ["config.json", "model.safetensors", "tokenizer.bin"],
              "OUTDIR files: %s" % os.listdir(out_dir))
        check(open(tok, "rb").read() == open(os.path.join(out_dir, "tokenizer.bin"), "rb").read(),
              "tokenizer.bin is a byte copy")
        compare(np, model, out_dir)
    finally:
        shutil.rmtree(tmp)
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


def compare(np, model, out_dir):
    raw = open(model, "rb").read()
    dim, hidden, L, nh, nkv, vocab, seq = struct.unpack_from("<7i", raw, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // nh
    f = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = [0]

    def take(*shape):
        n = int(np.prod(shape))
        a = f[pos[0]:pos[0] + n].reshape(shape)
        pos[0] += n
        return a

    emb = take(vocab, dim)
    rms_att = take(L, dim)
    wq = take(L, nh * hs, dim)
    wk = take(L, nkv * hs, dim)
    wv = take(L, nkv * hs, dim)
    wo = take(L, dim, nh * hs)
    rms_ffn = take(L, dim)
    w1 = take(L, hidden, dim)
    w2 = take(L, dim, hidden)
    w3 = take(L, hidden, dim)
    rms_final = take(dim)
    take(seq * hs // 2)
    take(seq * hs // 2)
    wcls = None if shared else take(vocab, dim)
    check(pos[0] == len(f), "the .bin holds exactly the arrays of its header")

    def permute(w, heads):  # HF convert_llama_weights_to_hf.py
        return w.reshape(heads, hs // 2, 2, dim).transpose(0, 2, 1, 3).reshape(heads * hs, dim)

    want = [("model.embed_tokens.weight", emb)]
    for l in range(L):
        p = "model.layers.%d." % l
        want += [(p + "input_layernorm.weight", rms_att[l]),
                 (p + "self_attn.q_proj.weight", permute(wq[l], nh)),
                 (p + "self_attn.k_proj.weight", permute(wk[l], nkv)),
                 (p + "self_attn.v_proj.weight", wv[l]),
                 (p + "self_attn.o_proj.weight", wo[l]),
                 (p + "post_attention_layernorm.weight", rms_ffn[l]),
                 (p + "mlp.gate_proj.weight", w1[l]),
                 (p + "mlp.up_proj.weight", w3[l]),
                 (p + "mlp.down_proj.weight", w2[l])]
    want.append(("model.norm.weight", rms_final))
    if wcls is not None:
        want.append(("lm_head.weight", wcls))

    header, meta, body, order = read_safetensors(os.path.join(out_dir, "model.safetensors"))
    check(meta == {"format": "pt", "source": "llama2.c"}, "metadata %r" % meta)
    check(order == [n for n, _ in want], "tensor order in the file")
    n_params = 0
    got = {}
    for name, ref in want:
        info = header.get(name)
        check(info is not None, "%s present" % name)
        if info is None:
            continue
        check(list(info["shape"]) == list(ref.shape), "%s shape %s vs %s" % (name, info["shape"], ref.shape))
        b, e = info["data_offsets"]
        a = np.frombuffer(body[b:e], dtype="<f4").reshape(info["shape"])
        got[name] = a
        check(np.array_equal(a.view("<u4"), np.ascontiguousarray(ref).view("<u4")), "%s bit-identical" % name)
        n_params += ref.size
    check(n_params == 260032, "parameter count %d" % n_params)

    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    for key, val in (("hidden_size", dim), ("intermediate_size", hidden), ("num_hidden_layers", L),
                     ("num_attention_heads", nh), ("num_key_value_heads", nkv), ("vocab_size", vocab),
                     ("max_position_embeddings", seq), ("tie_word_embeddings", shared)):
        check(cfg.get(key) == val, "config %s = %r, want %r" % (key, cfg.get(key), val))
    # the decimal 1e-5 through JSON: exact up to the decimal's own rounding
    check(abs(cfg.get("rms_norm_eps", 0) - 1e-5) < 1e-12, "rms_norm_eps")
    check(cfg.get("rope_theta") == 10000, "rope_theta")
    check(cfg.get("model_type") == "llama", "model_type")

    # The permutation direction: attention scores agree across the conventions.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, dim))
    pos_ = (3, 17)
    group = nh // nkv

    def rope_l2c(v, p):  # llama2.c run.c: pairs (2i, 2i+1), freq 10000^(-2i/hs)
        v = v.reshape(-1, hs).copy()
        for i in range(hs // 2):
            th = p * 10000.0 ** (-2.0 * i / hs)
            a, b = v[:, 2 * i].copy(), v[:, 2 * i + 1].copy()
            v[:, 2 * i], v[:, 2 * i + 1] = a * np.cos(th) - b * np.sin(th), a * np.sin(th) + b * np.cos(th)
        return v

    def rope_hf(v, p):  # HF: halves (i, i + hs/2)
        v = v.reshape(-1, hs).copy()
        for i in range(hs // 2):
            th = p * 10000.0 ** (-2.0 * i / hs)
            a, b = v[:, i].copy(), v[:, i + hs // 2].copy()
            v[:, i], v[:, i + hs // 2] = a * np.cos(th) - b * np.sin(th), a * np.sin(th) + b * np.cos(th)
        return v

    for l in range(L):
        p = "model.layers.%d.self_attn." % l
        q1 = rope_l2c(wq[l].astype(np.float64) @ x[0], pos_[0])
        k1 = rope_l2c(wk[l].astype(np.float64) @ x[1], pos_[1])
        q2 = rope_hf(got[p + "q_proj.weight"].astype(np.float64) @ x[0], pos_[0])
        k2 = rope_hf(got[p + "k_proj.weight"].astype(np.float64) @ x[1], pos_[1])
        s1 = np.array([q1[h] @ k1[h // group] for h in range(nh)])
        s2 = np.array([q2[h] @ k2[h // group] for h in range(nh)])
        # the same float64 products after a row permutation: summation order
        # only (hs = 8 terms of O(1): ~1e-15); 1e-9 is wide
        check(np.allclose(s1, s2, rtol=1e-9, atol=1e-9), "layer %d RoPE scores agree: %s vs %s" % (l, s1, s2))
        # and they would not without the permutation
        q3 = rope_hf(wq[l].astype(np.float64) @ x[0], pos_[0])
        k3 = rope_hf(wk[l].astype(np.float64) @ x[1], pos_[1])
        s3 = np.array([q3[h] @ k3[h // group] for h in range(nh)])
        # without the permutation the scores differ by O(1); 1e-3 separates
        check(not np.allclose(s1, s3, rtol=1e-3, atol=1e-3), "layer %d: the permutation matters" % l)
    print("checked %d tensors, %d parameters, bit-identical" % (len(want), n_params))


if __name__ == "__main__":
    sys.exit(main())
