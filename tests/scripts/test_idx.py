#!/usr/bin/env python3
"""test_idx.py DUMPER — the idx reader (io/idx.c) against Python's gzip + struct
on the real files (MNIST t10k from ../shared/data/mnist, Fashion-MNIST from the
Debian package dataset-fashion-mnist), gzip and plain, plus known answers
(10000 test items of 28x28; the first MNIST test labels are 7 2 1 0 4 1 4 9 5 9,
the first Fashion-MNIST test labels 9 2 1 1 6 1 4 6 5 7), and bad files whose
errors must name the file and what disagrees."""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from aqtest import SHARED, check, finish  # noqa: E402

DUMPER = sys.argv[1]
FASHION = "/usr/share/datasets/fashion-mnist"


def dump_many(jobs):
    """[(summary or None, error message)] for each (mode, path), from one DUMPER run."""
    p = subprocess.run([DUMPER] + [a for job in jobs for a in job], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and len(lines) == len(jobs), f"dumper: exit {p.returncode}, {p.stderr[-500:]}")
    out = [json.loads(line) for line in lines] + [{"error": "no output"}] * (len(jobs) - len(lines))
    return [(None, d["error"]) if "error" in d else (d, "") for d in out]


def reference(raw):
    """Our own decoding: big-endian header, then bytes."""
    zero, typ, nd = struct.unpack(">HBB", raw[:4])
    dims = list(struct.unpack(f">{nd}I", raw[4:4 + 4 * nd])) + [1] * (3 - nd)
    body = raw[4 + 4 * nd:]
    item = dims[1] * dims[2]
    return dict(ndim=nd, n=dims[0], rows=dims[1], cols=dims[2], sum=sum(body), first=list(body[:32]),
                item_sums=[sum(body[:item]), sum(body[len(body) - item:])])


def real_files(tmp):
    files = [(os.path.join(SHARED, "data/mnist", f), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]) for f in
             ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    files += [(os.path.join(FASHION, f), [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]) for f in
              ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    jobs, wants = [], []
    for path, first_labels in files:
        raw = gzip.open(path).read()
        plain = os.path.join(tmp, os.path.basename(path)[:-3])
        if SHARED in path:
            with open(plain, "wb") as f:
                f.write(raw)
        want = reference(raw)
        mode = "images" if "images" in path else "labels"
        # the plain (uncompressed) path once per kind is enough: it is the same parser
        for p in (path, plain) if SHARED in path else (path,):
            jobs.append((mode, p))
            wants.append(want)
        check(want["n"] == 10000, f"{path}: 10000 items")
        if mode == "labels":
            check(want["first"][:10] == first_labels, f"{path}: first labels {want['first'][:10]}")
        else:
            check(want["rows"] == 28 and want["cols"] == 28, f"{path}: 28x28")
    for (mode, p), want, (got, msg) in zip(jobs, wants, dump_many(jobs)):
        check(got == want, f"{p}: {got if got is None else {k: got[k] for k in ('ndim', 'n', 'sum')}} {msg}")


def bad_files(tmp):
    hdr3 = struct.pack(">HBBIII", 0, 8, 3, 2, 3, 4)
    cases = [
        ("short.idx", "images", hdr3 + bytes(23), ["header says 2 x 3 x 4 = 24 bytes", "has 23"]),
        ("long.idx", "images", hdr3 + bytes(25), ["24 bytes", "more than 24"]),
        ("magic.idx", "any", b"\x01\x02\x08\x03" + bytes(20), ["not an idx file"]),
        ("float.idx", "any", struct.pack(">HBBI", 0, 0x0D, 1, 2) + bytes(8), ["element type 0x0d"]),
        ("tiny.idx", "any", b"\x00\x00", ["shorter than the 4-byte magic"]),
        ("hdr.idx", "any", struct.pack(">HBB", 0, 8, 3) + bytes(6), ["truncated idx header"]),
        ("labels_as_images.idx", "images", struct.pack(">HBBI", 0, 8, 1, 3) + bytes(3), ["3 dimensions", "this one 1"]),
        ("label_range.idx", "labels", struct.pack(">HBBI", 0, 8, 1, 3) + bytes([1, 10, 2]), ["label 1 is 10"]),
        ("short.idx.gz", "images", gzip.compress(hdr3 + bytes(20)), ["24 bytes", "has 20"]),
        ("cut.idx.gz", "images", gzip.compress(hdr3 + bytes(range(24)) * 40)[:30], ["truncated or corrupt gzip"]),
        ("huge.idx", "images", struct.pack(">HBBIII", 0, 8, 3, 0xFFFFFFFF, 0xFFFF, 0xFFFF), ["implausibly large"]),
    ]
    jobs = []
    for name, mode, data, words in cases:
        jobs.append((mode, os.path.join(tmp, name)))
        with open(jobs[-1][1], "wb") as f:
            f.write(data)
    cases.append(("absent.idx", "any", b"", ["cannot open"]))
    jobs.append(("any", os.path.join(tmp, "absent.idx")))
    for (name, mode, data, words), (got, msg) in zip(cases, dump_many(jobs)):
        check(got is None, f"{name}: accepted")
        check(name in msg and all(w in msg for w in words), f"{name}: message {msg!r} lacks {words}")


for p in (os.path.join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz"), os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
    if not os.path.exists(p):
        print(f"skip: {p} not found (../shared, or Debian's dataset-fashion-mnist)")
        sys.exit(77)
with tempfile.TemporaryDirectory() as tmp:
    real_files(tmp)
    bad_files(tmp)
sys.exit(finish())
