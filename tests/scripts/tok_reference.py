#!/usr/bin/python3
"""tok_reference.py — an independent, pure-Python port of llama2.c run.c's
tokenizer (encode: dummy prefix, UTF-8 codepoint lookup, byte fallback,
quadratic greedy merge loop; decode: strip space after BOS, <0xXX> -> byte),
extended to vocabularies without byte fallback (unknown characters -> <unk>,
SentencePiece's rules), used to check src/text/l2c_tokenizer.c (through
test_tokenizer's tool mode) and `adaquant tokenize` (test_tokenize_cli.py
imports Ref).

usage: tok_reference.py TOOL TOKENIZER.bin VOCAB_SIZE TEXT.txt [N_LINES]

TOOL is the C test binary in `--encode-hex` mode: it reads lines
"BOS EOS HEX" on stdin and prints "IDS<TAB>HEX_OF_DECODED<TAB>N_UNKNOWN" per
line, or "ERR<TAB>message". This script feeds it the first N_LINES non-empty
lines of TEXT.txt (default 300) plus edge cases, with TOKENIZER.bin and then
with a 105-token character-level vocabulary it writes itself (with and
without <unk>), and asserts the ids and unknown-character counts equal this
reference exactly, errors come at the same byte offset, and the decoded text
equals the input (when BOS was added and nothing was unknown). Exits 1 on
any mismatch, 77 if an input file is absent.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def load_vocab(path, vocab_size):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off, pieces, scores = 4, [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    assert off == len(data), "tokenizer file has trailing bytes"
    assert max_len >= max(len(p) for p in pieces)
    return pieces, scores


class OutOfVocabulary(Exception):
    """A character that neither a piece, byte tokens nor <unk> can represent."""

    def __init__(self, offset):
        Exception.__init__(self, "character at byte offset %d is not in the vocabulary" % offset)
        self.offset = offset


def byte_piece(b):
    return b"<0x%02X>" % b


class Ref:
    """run.c semantics: pieces compared as C strings (cut at the first NUL),
    the lowest id wins among duplicate pieces.

    Vocabularies without byte fallback (no "<0xHH>" pieces at all, e.g.
    character-level ones): a codepoint that is not a piece becomes "<unk>",
    one <unk> per run of such codepoints, and <unk> takes part in no merge
    (SentencePiece's rules); with no "<unk>" piece either, OutOfVocabulary."""

    def __init__(self, pieces, scores):
        self.pieces = [p.split(b"\0")[0] for p in pieces]
        self.scores = scores
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            self.lookup.setdefault(p, i)
        self.byte_ids = [self.lookup.get(byte_piece(b)) for b in range(256)]
        n_bytes = sum(i is not None for i in self.byte_ids)
        assert n_bytes in (0, 256), "incomplete byte fallback (%d byte pieces)" % n_bytes
        self.byte_fallback = n_bytes == 256
        self.unk = None if self.byte_fallback else self.lookup.get(b"<unk>")
        self.best_score_init = struct.unpack("<f", struct.pack("<f", -1e10))[0]
        # Merges cannot cross the start of a token whose piece begins with a
        # space when no piece holds a space elsewhere: encode_long relies on it.
        self.space_segments = not any(b" " in p[1:] for p in self.pieces)
        self.memo = {}

    def initial(self, text):
        """Dummy prefix and one token per codepoint; returns (ids, n_unknown)."""
        toks, n_unk, in_unk = [], 0, False

        def unknown(chars, offset):
            nonlocal n_unk, in_unk
            if self.byte_fallback:
                toks.extend(self.byte_ids[b] for b in chars)
                return
            if self.unk is None:
                raise OutOfVocabulary(offset)
            n_unk += 1
            if not in_unk:
                toks.append(self.unk)
            in_unk = True

        if text:
            if b" " in self.lookup:
                toks.append(self.lookup[b" "])
            else:
                unknown(b" ", 0)
        buf, start = b"", 0
        for k, c in enumerate(text):
            if c & 0xC0 != 0x80:
                buf, start = b"", k
            buf += bytes([c])
            nxt = text[k + 1] if k + 1 < len(text) else 0
            if nxt & 0xC0 == 0x80 and len(buf) < 4:
                continue
            tid = self.lookup.get(buf)
            if tid is not None:
                toks.append(tid)
                in_unk = False
            else:
                unknown(buf, k + 1 - len(buf))
            buf = b""
        return toks, n_unk

    def merge(self, toks):
        """run.c's quadratic loop: the best-scoring pair, leftmost on ties."""
        toks = list(toks)
        while True:
            best, best_id, best_idx = self.best_score_init, -1, -1
            for i in range(len(toks) - 1):
                if self.unk is not None and self.unk in (toks[i], toks[i + 1]):
                    continue
                tid = self.lookup.get(self.pieces[toks[i]] + self.pieces[toks[i + 1]])
                if tid is not None and self.scores[tid] > best:
                    best, best_id, best_idx = self.scores[tid], tid, i
            if best_idx == -1:
                return toks
            toks[best_idx:best_idx + 2] = [best_id]

    def specials(self, toks, bos, eos):
        return ([1] if bos and len(self.pieces) > 1 else []) + toks + \
               ([2] if eos and len(self.pieces) > 2 else [])

    def encode(self, text, bos, eos):
        return self.encode_count(text, bos, eos)[0]

    def encode_count(self, text, bos, eos):
        toks, n_unk = self.initial(text)
        return self.specials(self.merge(toks), bos, eos), n_unk

    def encode_long(self, text, bos, eos):
        """encode_count for a long text: the merge loop runs per segment (a
        segment starts at each token whose piece begins with a space), which
        gives the same ids when merges cannot cross segments (checked), and
        each distinct segment is merged once."""
        toks, n_unk = self.initial(text)
        if not self.space_segments:
            return self.specials(self.merge(toks), bos, eos), n_unk
        out, seg = [], []
        for t in toks + [None]:
            if t is None or (seg and self.pieces[t].startswith(b" ")):
                key = tuple(seg)
                if key not in self.memo:
                    self.memo[key] = self.merge(seg)
                out += self.memo[key]
                seg = []
            if t is not None:
                seg.append(t)
        return self.specials(out, bos, eos), n_unk

    def decode(self, ids):
        out, prev = b"", -1
        for t in ids:
            if t not in (1, 2):
                p = self.pieces[t]
                if prev == 1 and p.startswith(b" "):
                    p = p[1:]
                if self.byte_fallback and len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
                    p = bytes([int(p[3:5], 16)])
                out += p
            prev = t
        return out


def char_vocab(with_unk=True):
    """A character-level llama2.c vocabulary of 105 tokens (BabyLlama-style):
    <unk> <s> </s>, newline, the 95 printable ASCII characters, and six
    merges with scores that exercise the merge order. Without <unk>, id 0 is
    "<pad>" (a vocabulary that cannot represent unknown characters)."""
    pieces = [b"<unk>" if with_unk else b"<pad>", b"\n<s>\n", b"\n</s>\n", b"\n"]
    pieces += [bytes([c]) for c in range(32, 127)]
    scores = [0.0] * 4 + [-float(i) for i in range(95)]
    merges = [(b" t", -1.0), (b"he", -2.0), (b" th", -3.0), (b"the", -3.0), (b" the", -4.0),
              (b"in", -2.0)]
    pieces += [m for m, _ in merges]
    scores += [s for _, s in merges]
    assert len(pieces) == 105
    return pieces, scores


def write_vocab(path, pieces, scores):
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for p, s in zip(pieces, scores):
            f.write(struct.pack("<fi", s, len(p)) + p)


EDGE_CASES = [
    b"",
    b" ",
    b"  ",
    b"Once upon a time",
    b" leading space",
    b"trailing space ",
    b"  two leading and two trailing  ",
    b"line one\nline two\n",
    b"\n",
    b"\n\n\ttab\r\n",
    "caf\u00e9 na\u00efve \u00fcber".encode(),
    "\u4f60\u597d\u4e16\u754c".encode(),                 # CJK: not in the 512 vocab
    "emoji \U0001F600\U0001F680!".encode(),               # 4-byte codepoints
    "\u2122 trade \u2122\u2122".encode(),                  # a multi-byte piece of the vocab
    "e\u0301 combining".encode(),
    b"\x7f\x01\x02 control bytes",
    b"lone continuation \x80\x81 and \xbf",
    b"truncated lead \xe4\xb8",
    b"overlong run \xc3\x80\x80\x80\x80\x80 ok",
    b"\xff\xfe invalid lead bytes",
    b"ALL CAPS SHOUTING 12345 67890",
    b"punctuation!?.,;:'\"()[]{}<>~`@#$%^&*-_=+|\\/",
    b"<0x41> literal byte-token text <s> </s> <unk>",
    b"a" * 300,
    b"the the the the the the the the",
    b"llll lll ll l tell all hello",                      # overlapping equal-score merges
]


OOV_CASES = [
    "tab\there and\ttwo\t\ttabs".encode(),
    "\u201cquoted\u201d \u2014 a dash, caf\u00e9 na\u00efve".encode(),
    "\u4f60\u597d the \u4e16\u754c".encode(),           # a run of unknowns between known text
    "\U0001F600".encode(),                                # only an unknown character
    "\u00e9 starts unknown, ends unknown \u00e9".encode(),
    b"the the then other thin",
]


def run_suite(name, tool, tok_path, vocab_size, ref, cases):
    """Feed cases (text, bos, eos) to the C tool; compare ids, unknown counts,
    decoded text, errors. Returns (mismatches, reference ids)."""
    stdin = "".join("%d %d %s\n" % (b, e, t.hex()) for t, b, e in cases)
    res = subprocess.run([tool, "--encode-hex", tok_path, str(vocab_size)], input=stdin.encode(),
                         stdout=subprocess.PIPE, check=True)
    out = res.stdout.decode(errors="replace").split("\n")
    bad = n_ids = n_unk_total = n_err = 0
    for k, (text, bos, eos) in enumerate(cases):
        fields = out[k].split("\t")
        try:
            want, n_unk = ref.encode_count(text, bos, eos)
        except OutOfVocabulary as e:
            n_err += 1
            if fields[0] != "ERR" or "byte offset %d " % e.offset not in fields[1]:
                bad += 1
                print("%s: case %d %r: want an error at byte offset %d, C says %r" %
                      (name, k, text[:60], e.offset, out[k][:200]))
            continue
        if fields[0] == "ERR":
            bad += 1
            print("%s: case %d %r: C failed: %s" % (name, k, text[:60], fields[1]))
            continue
        got = [int(x) for x in fields[0].split()]
        n_ids += len(want)
        n_unk_total += n_unk
        if got != want:
            bad += 1
            print("%s: MISMATCH case %d %r bos=%d eos=%d\n  C:   %s\n  ref: %s" %
                  (name, k, text[:80], bos, eos, got[:40], want[:40]))
            continue
        if int(fields[2]) != n_unk:
            bad += 1
            print("%s: case %d %r: C counts %s unknown characters, ref %d" %
                  (name, k, text[:60], fields[2], n_unk))
        dec = bytes.fromhex(fields[1])
        if dec != ref.decode(want):
            bad += 1
            print("%s: DECODE MISMATCH case %d %r: C %r ref %r" %
                  (name, k, text[:60], dec[:60], ref.decode(want)[:60]))
        if bos and n_unk == 0 and dec != text:
            bad += 1
            print("%s: ROUND TRIP FAILED case %d %r -> %r" % (name, k, text[:60], dec[:60]))
    print("%s: %d cases, %d reference ids, %d unknown characters, %d expected errors, "
          "%d mismatches" % (name, len(cases), n_ids, n_unk_total, n_err, bad))
    return bad, n_ids


def all_flags(texts):
    return [(t, b, e) for t in texts for b, e in ((1, 0), (0, 0), (1, 1), (0, 1))]


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    tool, tok_path, vocab_size, text_path = sys.argv[1:5]
    n_lines = int(sys.argv[5]) if len(sys.argv) > 5 else 300
    try:
        pieces, scores = load_vocab(tok_path, int(vocab_size))
        lines = [l for l in open(text_path, "rb").read().split(b"\n") if l.strip()][:n_lines]
    except FileNotFoundError as e:
        print("SKIP: %s" % e)
        return 77
    cases = all_flags(EDGE_CASES) + [(l, 1, 0) for l in lines]
    # A whole multi-line story in one string (newlines inside).
    cases.append((b"\n".join(lines[:8]), 1, 1))
    bad, _ = run_suite(tok_path, tool, tok_path, vocab_size, Ref(pieces, scores), cases)
    print("Once upon a time (bos):", Ref(pieces, scores).encode(b"Once upon a time", 1, 0))

    # The character-level vocabulary (no byte fallback), with and without <unk>:
    # TinyStories lines (some hold curly quotes and other characters outside
    # it) and texts made to fall outside it.
    tmp = tempfile.mkdtemp(prefix="tokref")
    try:
        char_cases = all_flags(EDGE_CASES + OOV_CASES) + [(l, 1, 0) for l in lines]
        for with_unk in (True, False):
            cp, cs = char_vocab(with_unk)
            path = os.path.join(tmp, "char%d.bin" % with_unk)
            write_vocab(path, cp, cs)
            b, _ = run_suite("char-level vocab%s" % ("" if with_unk else " without <unk>"), tool,
                             path, len(cp), Ref(cp, cs), char_cases)
            bad += b
    finally:
        shutil.rmtree(tmp)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
