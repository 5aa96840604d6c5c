#!/usr/bin/python3
"""gguf_data.py — the text files of bench/gguf.sh, from adaquant's split of a
text source (docs/DATA.md): documents are the pieces between "\\n\\n" byte
pairs, stripped of ASCII whitespace, empty ones dropped; the first floor(n/2)
calibrate, the rest evaluate. llama.cpp's tools read one text file each and
tokenize it as one stream, so each half is written as its documents joined by
"\\n\\n" (the separator the source itself uses).

usage: gguf_data.py TEXT CALIB_OUT EVAL_OUT
prints: documents calib eval
"""
import sys

WS = b" \t\n\v\f\r"  # DATA.md's ASCII whitespace (str.strip() would also strip Unicode spaces)


def documents(raw):
    docs = (p.strip(WS) for p in raw.split(b"\n\n"))
    return [d for d in docs if d]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    docs = documents(open(sys.argv[1], "rb").read())
    n_calib = len(docs) // 2
    for path, part in ((sys.argv[2], docs[:n_calib]), (sys.argv[3], docs[n_calib:])):
        with open(path, "wb") as f:
            f.write(b"\n\n".join(part) + b"\n")
    print(len(docs), n_calib, len(docs) - n_calib)


if __name__ == "__main__":
    main()
