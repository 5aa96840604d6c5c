#!/usr/bin/python3
"""test_generate_eval_hf.py — `adaquant generate` and `eval` with a
tokenizer.json, on the stories260K model.

The tokenizer.json is written here from tok512.bin's pieces in the Llama-2
layout (<unk> <s> </s>, byte_fallback <0xHH>, "▁" for the space, the Llama-2
normalizer and decoder chain, <s> from a TemplateProcessing post-processor),
without merges. Greedy generation from BOS does not depend on the encoder, so
the text must be exactly what the llama2.c tokenizer prints for the same
model (decoded by l2c_tokenizer.c, itself checked against a port of run.c).
Then: a prompt is printed back; a variant without BOS (like Qwen) needs a
prompt and says so; eval runs with both variants (without BOS, one predicted
token fewer per document); a tokenizer.json larger
than the model's vocabulary is refused naming both sizes.
Exits 1 on a failed check, 77 if an asset is absent."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aqtest  # noqa: E402
from aqtest import CLI, MODEL, TEXT, TOK, check  # noqa: E402

SP = "\u2581"


def tok512_pieces():
    data = open(TOK, "rb").read()
    off, pieces = 4, []
    for _ in range(512):
        _, n = struct.unpack_from("<fi", data, off)
        pieces.append(data[off + 8:off + 8 + n])
        off += 8 + n
    return pieces


def tokenizer_json(pieces, with_bos, extra=0):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i, p in enumerate(pieces[3:], 3):
        vocab.setdefault(p.decode().replace(" ", SP), i)
    for k in range(extra):  # ids beyond the model's vocabulary
        vocab["<extra_%d>" % k] = len(pieces) + k
    special = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))]
    post = None
    if with_bos:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP},
            {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
        "pre_tokenizer": None, "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                  "merges": []},
    }


def cli(*args):
    return subprocess.run([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def write_model_dir(path, tok):
    os.mkdir(path)
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "</s>"}, f)


def main():
    if aqtest.missing_asset():
        return 77
    pieces = tok512_pieces()
    tmp = tempfile.mkdtemp(prefix="genhf")
    try:
        bos_dir, nobos_dir = os.path.join(tmp, "bos"), os.path.join(tmp, "nobos")
        write_model_dir(bos_dir, tokenizer_json(pieces, True))
        write_model_dir(nobos_dir, tokenizer_json(pieces, False))

        want = cli("generate", MODEL, "--tokenizer", TOK, "--steps", "120")
        got = cli("generate", MODEL, "--tokenizer", bos_dir, "--steps", "120")
        check(want.returncode == 0 and got.returncode == 0 and got.stdout == want.stdout and len(want.stdout) > 200,
              "generate from BOS: the tokenizer.json prints what tok512.bin prints (%d bytes): %r" %
              (len(got.stdout), got.stdout[:60]))
        res = cli("generate", MODEL, "--tokenizer", bos_dir, "--steps", "40", "--prompt", "Lily found a \u4f60 box")
        check(res.returncode == 0 and res.stdout.startswith("Lily found a \u4f60 box".encode()),
              "generate with a prompt prints the prompt first: %r" % res.stdout[:60])
        res = cli("generate", MODEL, "--tokenizer", nobos_dir, "--steps", "20")
        check(res.returncode == 1 and b"no BOS token" in res.stderr and b"--prompt" in res.stderr,
              "generate without BOS and without a prompt: a clear error: %r" % res.stderr.strip()[-120:])
        res = cli("generate", MODEL, "--tokenizer", nobos_dir, "--steps", "20", "--prompt", "Once upon")
        check(res.returncode == 0 and res.stdout.startswith(b"Once upon") and len(res.stdout) > 12,
              "generate without BOS from a prompt: %r" % res.stdout[:60])

        # Without BOS a document's first token is context only: one predicted
        # token fewer per document (none of these 8 reaches the 512-token cut).
        pred = {}
        for name, d in (("BOS", bos_dir), ("no BOS", nobos_dir)):
            res = cli("eval", MODEL, "--tokenizer", d, "--text", TEXT, "--max-docs", "8", "--json")
            try:
                r = json.loads(res.stdout)
            except ValueError:
                r = {}
            pred[name] = r.get("predicted_tokens", -1)
            check(res.returncode == 0 and r.get("docs") == 8 and pred[name] > 0,
                  "eval with the tokenizer.json (%s): %s" % (name, res.stdout.strip()[:120]))
        check(pred["no BOS"] == pred["BOS"] - 8,
              "eval predicts one token fewer per document without BOS (%d vs %d)" % (pred["no BOS"], pred["BOS"]))

        big = os.path.join(tmp, "big")
        write_model_dir(big, tokenizer_json(pieces, True, extra=8))
        res = cli("generate", MODEL, "--tokenizer", big, "--steps", "5")
        check(res.returncode == 1 and re.search(rb"config/tokenizer vocabulary mismatch.*520 tokens.*vocab_size is 512",
                                                res.stderr) is not None,
              "a tokenizer.json of 520 tokens with a 512-token model: %r" % res.stderr.strip()[-160:])
    finally:
        shutil.rmtree(tmp)
    return aqtest.finish()


if __name__ == "__main__":
    sys.exit(main())
