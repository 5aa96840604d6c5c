#!/usr/bin/python3
"""write_data.py — the data files of test_textdata (tests/model.cmake), written
independently of adaquant: the documents by Python's own bytes.split(b"\\n\\n") +
strip, JSONL by the json module, pre-tokenized files by struct/numpy from the
ids of tests/scripts/tok_reference.py (an independent port of llama2.c's
tokenizer), in the layout of docs/DATA.md.

usage: write_data.py TOKENIZER.bin VOCAB_SIZE TEXT.txt OUTDIR

Files in OUTDIR (documents of TEXT.txt, n = all of them):
  full.jsonl           every document as {"id": i, "text": doc} (non-ASCII \\u-escaped,
                       a blank line, a CRLF line end, keys in varying order)
  story.jsonl          the first HEAD documents under the field "story" (with a numeric "text")
  part-0.txt..part-6.txt  the documents in 7 parts, joined by blank lines
  calib-0..2.txt       the first n/2 documents in 3 parts; eval.jsonl the rest
  head.txt             the first HEAD documents, joined by blank lines
  head.u16.tok         their ids (no BOS), uint16
  head-a.u32.tok, head-b.u32.tok  the same split 70 + the rest, uint32
  small.tok            3 documents, 9 uint16 ids (test_textdata damages copies of it)
  bad-*.{tok,jsonl}    broken inputs (see BAD below)
Exits 77 if an input is absent.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_reference  # noqa: E402

HEAD = 200  # documents of the pre-tokenized files (the Python encoder is slow)
MAGIC = b"AQTOKENS"


def tok_file(docs, width):
    """docs/DATA.md: 32-byte header (magic, version 1, id width, documents,
    ids), uint64 offsets[n + 1], then the ids, all little-endian."""
    offsets = np.zeros(len(docs) + 1, dtype="<u8")
    offsets[1:] = np.cumsum([len(d) for d in docs])
    ids = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if docs else np.zeros(0, np.int64)
    assert ids.size == 0 or ids.max() < 2 ** (8 * width)
    head = MAGIC + struct.pack("<IIQQ", 1, width, len(docs), int(offsets[-1]))
    return head + offsets.tobytes() + ids.astype("<u2" if width == 2 else "<u4").tobytes()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def jsonl_line(i, doc, field):
    obj = {field: doc, "id": i} if i % 2 else {"id": i, field: doc}
    if field != "text":
        obj["text"] = i
    return json.dumps(obj, ensure_ascii=True)


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    tok_path, vocab, text_path, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    try:
        raw = open(text_path, "rb").read()
        pieces, scores = tok_reference.load_vocab(tok_path, vocab)
    except FileNotFoundError as e:
        print("SKIP: %s" % e)
        return 77
    os.makedirs(out, exist_ok=True)
    docs = [d.strip(b" \t\n\v\f\r") for d in raw.split(b"\n\n")]
    docs = [d for d in docs if d]
    n = len(docs)
    text = [d.decode("utf-8") for d in docs]
    lines = [jsonl_line(i, t, "text") for i, t in enumerate(text)]
    lines.insert(3, "   ")  # blank lines are skipped
    write(os.path.join(out, "full.jsonl"), ("\n".join(lines[:10]) + "\r\n" + "\n".join(lines[10:])).encode())
    write(os.path.join(out, "story.jsonl"), "".join(jsonl_line(i, t, "story") + "\n"
                                                     for i, t in enumerate(text[:HEAD])).encode())
    bounds = np.linspace(0, n, 8).astype(int)
    for k in range(7):
        write(os.path.join(out, "part-%d.txt" % k), b"\n\n".join(docs[bounds[k]:bounds[k + 1]]) + b"\n")
    half = n // 2
    cb = np.linspace(0, half, 4).astype(int)
    for k in range(3):
        write(os.path.join(out, "calib-%d.txt" % k), b"\n\n".join(docs[cb[k]:cb[k + 1]]))
    write(os.path.join(out, "eval.jsonl"), "".join(jsonl_line(i, t, "text") + "\n"
                                                    for i, t in enumerate(text[half:])).encode())
    ref = tok_reference.Ref(pieces, scores)
    ids = [ref.encode(d, 0, 0) for d in docs[:HEAD]]
    write(os.path.join(out, "head.txt"), b"\n\n".join(docs[:HEAD]))
    write(os.path.join(out, "head.u16.tok"), tok_file(ids, 2))
    write(os.path.join(out, "head-a.u32.tok"), tok_file(ids[:70], 4))
    write(os.path.join(out, "head-b.u32.tok"), tok_file(ids[70:], 4))
    # BAD: each names its flaw for test_textdata
    write(os.path.join(out, "small.tok"), tok_file([[5, 6, 7], [8], [9, 10, 11, 12, 13]], 2))  # test_damaged
    good = tok_file(ids[:3], 2)
    write(os.path.join(out, "bad-header.tok"), good[:20])          # cut inside the header
    write(os.path.join(out, "bad-body.tok"), good[:-1])            # cut inside the ids
    write(os.path.join(out, "bad-magic.tok"), b"XX" + good[2:])
    write(os.path.join(out, "bad-id.tok"), tok_file([[5, 6, 7], [8, vocab]], 4))  # id = vocab at position 4
    write(os.path.join(out, "bad-field.jsonl"), b'{"text": "a"}\n\n{"title": "b"}\n')        # line 3
    write(os.path.join(out, "bad-json.jsonl"), b'{"text": "a"}\n{"text": "unterminated}\n')  # line 2
    write(os.path.join(out, "bad-array.jsonl"), b'["a"]\n')                                 # line 1
    write(os.path.join(out, "bad-nul.jsonl"), b'{"text": "a"}\n{"text": "\\u0000b"}\n')      # line 2
    write(os.path.join(out, "bad-nul.txt"), b"Once upon a time.\n\n\x00\x01binary")   # NUL at byte 19
    print("%d documents, %d in the pre-tokenized files (%d ids)" % (n, HEAD, sum(len(i) for i in ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
