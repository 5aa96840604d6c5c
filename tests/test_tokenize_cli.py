#!/usr/bin/python3
"""test_tokenize_cli.py — `adaquant tokenize` against the independent Python
port of run.c's tokenizer (tests/scripts/tok_reference.py):

- the whole TinyStories validation text, as one text, with the stories260K
  tokenizer (byte fallback), without and with --bos; the ids are compared
  exactly, and --decode of the --bos ids gives the file back byte for byte;
- the same text and a text of characters outside the vocabulary with a
  105-token character-level vocabulary (no byte fallback) written here: the
  ids and the count of characters mapped to <unk> on stderr; without <unk>,
  the error names the byte offset of the first such character;
- a model directory holding tokenizer.bin gives the same ids;
- errors: missing files, a bad id and an out-of-range id in --decode input
  (named with file and position), usage errors.
Exits 1 on a failed check, 77 if an asset is absent."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
import aqtest  # noqa: E402
import tok_reference  # noqa: E402
from aqtest import CLI, TEXT, TOK, check  # noqa: E402

OOV_TEXT = ("Tabs\tand \u201cquotes\u201d, caf\u00e9 \u4f60\u597d\u4e16\u754c the end \U0001F600\n"
            "second line with only ASCII\n").encode()


def tokenize(tok, path, *flags):
    return subprocess.run([CLI, "tokenize", "--tokenizer", tok, "--text", path, *flags],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ids_of(res):
    return [int(x) for x in res.stdout.split()]


def check_ids(res, want, what):
    got = ids_of(res) if res.returncode == 0 else None
    first = next((i for i, (a, b) in enumerate(zip(got or [], want)) if a != b), None)
    check(res.returncode == 0 and got == want and res.stdout.count(b"\n") == 1,
          "%s: %d ids identical to the reference (exit %d, %s ids, first difference at %s)" %
          (what, len(want), res.returncode, len(got) if got is not None else "no", first))


def unknown_logged(res):
    m = re.search(rb"(\d+) characters? outside the vocabulary mapped to <unk>", res.stderr)
    return int(m.group(1)) if m else 0


def test_stories(tmp, text):
    pieces, scores = tok_reference.load_vocab(TOK, 512)
    ref = tok_reference.Ref(pieces, scores)
    for flags, bos in (((), 0), (("--bos",), 1)):
        want, n_unk = ref.encode_long(text, bos, 0)
        res = tokenize(TOK, TEXT, *flags)
        check_ids(res, want, "tok512.bin, whole validation text %s" % " ".join(flags))
    ids_path = os.path.join(tmp, "ids.txt")
    with open(ids_path, "wb") as f:
        f.write(res.stdout)
    dec = tokenize(TOK, ids_path, "--decode")
    check(dec.returncode == 0 and dec.stdout == text,
          "--decode of the --bos ids gives the %d-byte text back (exit %d, %d bytes)" %
          (len(text), dec.returncode, len(dec.stdout)))
    model_dir = os.path.join(tmp, "model")
    os.mkdir(model_dir)
    shutil.copy(TOK, os.path.join(model_dir, "tokenizer.bin"))
    check_ids(tokenize(model_dir, TEXT), ref.encode_long(text, 0, 0)[0],
              "a model directory holding tokenizer.bin")


def test_char_vocab(tmp, text):
    oov_path = os.path.join(tmp, "oov.txt")
    with open(oov_path, "wb") as f:
        f.write(OOV_TEXT)
    pieces, scores = tok_reference.char_vocab(True)
    path = os.path.join(tmp, "char.bin")
    tok_reference.write_vocab(path, pieces, scores)
    ref = tok_reference.Ref(pieces, scores)
    for name, data, p in (("validation text", text, TEXT), ("out-of-vocabulary text", OOV_TEXT, oov_path)):
        want, n_unk = ref.encode_long(data, 1, 0)
        res = tokenize(path, p, "--bos")
        check_ids(res, want, "char-level vocab, %s" % name)
        check(n_unk > 0 and unknown_logged(res) == n_unk,
              "char-level vocab, %s: stderr says %d characters mapped to <unk>, the reference %d" %
              (name, unknown_logged(res), n_unk))
    pieces, scores = tok_reference.char_vocab(False)
    path = os.path.join(tmp, "char_nounk.bin")
    tok_reference.write_vocab(path, pieces, scores)
    try:
        tok_reference.Ref(pieces, scores).encode_long(OOV_TEXT, 0, 0)
        offset = None
    except tok_reference.OutOfVocabulary as e:
        offset = e.offset
    res = tokenize(path, oov_path)
    check(offset == 4 and res.returncode == 1 and b"byte offset %d " % offset in res.stderr
          and oov_path.encode() in res.stderr,
          "char-level vocab without <unk>: error at byte offset %s naming the file: %r" %
          (offset, res.stderr.strip()[-160:]))


def test_errors(tmp):
    res = tokenize(TOK, os.path.join(tmp, "absent.txt"))
    check(res.returncode == 1 and b"absent.txt" in res.stderr, "missing text file: exit 1 naming it")
    res = tokenize(os.path.join(tmp, "absent.bin"), TEXT)
    check(res.returncode == 1 and b"absent.bin" in res.stderr, "missing tokenizer: exit 1 naming it")
    bad = os.path.join(tmp, "bad_ids.txt")
    for content, needle, what in ((b"1 403 x7 2\n", b"id 2 at byte offset 6", "a non-integer id"),
                                  (b"1\n403 99999\n", b"id 2 at byte offset 6", "an id >= 512"),
                                  (b"1 -3", b"id 1 at byte offset 2", "a negative id")):
        with open(bad, "wb") as f:
            f.write(content)
        res = tokenize(TOK, bad, "--decode")
        check(res.returncode == 1 and needle in res.stderr and bad.encode() in res.stderr,
              "--decode of %s: exit 1 naming file and position: %r" % (what, res.stderr.strip()[-140:]))
    for args, what in ((["tokenize", "--text", TEXT], "no --tokenizer"),
                       (["tokenize", "--tokenizer", TOK], "no --text"),
                       (["tokenize", "--tokenizer", TOK, "--text", TEXT, "--bos", "--decode"], "--bos --decode")):
        res = subprocess.run([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(res.returncode == 2 and b"adaquant tokenize" in res.stderr, "usage error (%s): exit 2" % what)
    res = subprocess.run([CLI, "tokenize", "--help"], stdout=subprocess.PIPE)
    check(res.returncode == 0 and b"usage: adaquant tokenize" in res.stdout, "--help")


def main():
    if aqtest.missing_asset():
        return 77
    with open(TEXT, "rb") as f:
        text = f.read()
    tmp = tempfile.mkdtemp(prefix="tokcli")
    try:
        test_stories(tmp, text)
        test_char_vocab(tmp, text)
        test_errors(tmp)
    finally:
        shutil.rmtree(tmp)
    return aqtest.finish()


if __name__ == "__main__":
    sys.exit(main())
