#!/usr/bin/python3
"""tok_reference.py — an independent, pure-Python port of llama2.c run.c's
tokenizer (encode: dummy prefix, UTF-8 codepoint lookup, byte fallback,
quadratic greedy merge loop; decode: strip space after BOS, <0xXX> -> byte),
used to check src/text/tokenizer.c.

usage: tok_reference.py TOOL TOKENIZER.bin VOCAB_SIZE TEXT.txt [N_LINES]

TOOL is the C test binary in `--encode-hex` mode: it reads lines
"BOS EOS HEX" on stdin and prints "IDS<TAB>HEX_OF_DECODED" per line. This
script feeds it the first N_LINES non-empty lines of TEXT.txt (default 300)
plus edge cases, and asserts the ids equal this reference exactly and the
decoded text equals the input (when BOS was added). Exits 1 on any mismatch,
77 if an input file is absent.
"""
import struct
import subprocess
import sys


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


class Ref:
    """run.c semantics: pieces compared as C strings (cut at the first NUL),
    the lowest id wins among duplicate pieces."""

    def __init__(self, pieces, scores):
        self.pieces = [p.split(b"\0")[0] for p in pieces]
        self.scores = scores
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            self.lookup.setdefault(p, i)

    def encode(self, text, bos, eos):
        toks = []
        if bos:
            toks.append(1)
        if text:
            toks.append(self.lookup.get(b" ", ord(" ") + 3))
        buf = b""
        for k, c in enumerate(text):
            if c & 0xC0 != 0x80:
                buf = b""
            buf += bytes([c])
            nxt = text[k + 1] if k + 1 < len(text) else 0
            if nxt & 0xC0 == 0x80 and len(buf) < 4:
                continue
            tid = self.lookup.get(buf)
            if tid is not None:
                toks.append(tid)
            else:
                toks.extend(b + 3 for b in buf)
            buf = b""
        best_score_init = struct.unpack("<f", struct.pack("<f", -1e10))[0]
        while True:
            best, best_id, best_idx = best_score_init, -1, -1
            for i in range(len(toks) - 1):
                tid = self.lookup.get(self.pieces[toks[i]] + self.pieces[toks[i + 1]])
                if tid is not None and self.scores[tid] > best:
                    best, best_id, best_idx = self.scores[tid], tid, i
            if best_idx == -1:
                break
            toks[best_idx:best_idx + 2] = [best_id]
        if eos:
            toks.append(2)
        return toks

    def decode(self, ids):
        out, prev = b"", -1
        for t in ids:
            if t not in (1, 2):
                p = self.pieces[t]
                if prev == 1 and p.startswith(b" "):
                    p = p[1:]
                if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
                    p = bytes([int(p[3:5], 16)])
                out += p
            prev = t
        return out


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
    ref = Ref(pieces, scores)
    cases = []
    for text in EDGE_CASES:
        for bos, eos in ((1, 0), (0, 0), (1, 1), (0, 1)):
            cases.append((text, bos, eos))
    cases += [(l, 1, 0) for l in lines]
    # A whole multi-line story in one string (newlines inside).
    cases.append((b"\n".join(lines[:8]), 1, 1))
    stdin = "".join("%d %d %s\n" % (b, e, t.hex()) for t, b, e in cases)
    res = subprocess.run([tool, "--encode-hex", tok_path, vocab_size], input=stdin.encode(),
                         stdout=subprocess.PIPE, check=True)
    out = res.stdout.decode().split("\n")
    bad = 0
    n_ids = 0
    for k, (text, bos, eos) in enumerate(cases):
        ids_s, _, dec_hex = out[k].partition("\t")
        got = [int(x) for x in ids_s.split()]
        want = ref.encode(text, bos, eos)
        n_ids += len(want)
        if got != want:
            bad += 1
            print("MISMATCH case %d %r bos=%d eos=%d\n  C:   %s\n  ref: %s" % (k, text[:80], bos, eos, got[:40],
                                                                           want[:40]))
            continue
        dec = bytes.fromhex(dec_hex)
        if dec != ref.decode(want):
            bad += 1
            print("DECODE MISMATCH case %d %r: C %r ref %r" % (k, text[:60], dec[:60], ref.decode(want)[:60]))
        if bos and dec != text:
            bad += 1
            print("ROUND TRIP FAILED case %d %r -> %r" % (k, text[:60], dec[:60]))
    print("%d cases (%d text lines), %d reference ids, %d mismatches" % (len(cases), len(lines), n_ids, bad))
    print("Once upon a time (bos):", ref.encode(b"Once upon a time", 1, 0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
