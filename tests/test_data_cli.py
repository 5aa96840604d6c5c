#!/usr/bin/python3
"""test_data_cli.py — the data options of `adaquant quantize` and `eval`
(docs/DATA.md) end to end on stories260K.

The reference is today's form: `--text validation.txt`, whose first half
calibrates and second half evaluates. The same documents are then given as
separate sources in the other containers, written here by Python (json,
struct/numpy; ids from tests/scripts/tok_reference.py, an independent port of
llama2.c's tokenizer):
  --calib head.tok           the first HEAD calibration documents, pre-tokenized
  --calib calib-rest.jsonl   the other calibration documents, JSONL
  --eval 'eval-*.txt'        the evaluation half in 3 text files (a glob)
and the run must write byte-identical files with the same perplexities. Then:
a data file changed after capture is refused by the stage commands (and
recomputed, not reused, by quantize --resume); `adaquant eval --eval` agrees
with `--text`; a model directory with tokenizer.bin needs no --tokenizer; the
usage errors of the data options.

usage: test_data_cli.py TOPDIR   (AQ_CLI = the adaquant binary)
Exit 0 pass, 1 fail, 77 skip (stories260K assets absent). Reduced settings
(cheap AdaQuant, --loss layer, short tuning and evaluation) keep a quantize
run to ~5 s on an idle 2-core machine.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
import tok_reference  # noqa: E402
from aqtest import CLI, MODEL, TEXT, TOK, check, failures, missing_asset  # noqa: E402

SETTINGS = ["--calib-windows", "8", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "1",
            "--options", "w8a16,w4a16,w4a8", "--init", "rtn", "--kl-windows", "2", "--target-bits", "6",
            "--tune-steps", "4", "--tune-docs", "8", "--tune-batch", "4", "--eval-docs", "40", "--eval-len", "128"]
HEAD = 40  # calibration documents given pre-tokenized (covers the 8 x 64 windows and the 8 tuning documents)
ENV = dict(os.environ, AQ_PROGRESS="plain")
ENV.pop("AQ_FAIL_AT", None)
COMPARED = ["model.safetensors", "quantization.json", "config.json"]
RUN_TIMEOUT = 300  # one run takes ~5 s idle, ~20 s at load ~11 (measured)


def run(args):
    t0 = time.time()
    p = subprocess.run([CLI] + args, capture_output=True, text=True, env=ENV, timeout=RUN_TIMEOUT)
    print(f"$ adaquant {' '.join(args)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    return p


def msg(p):
    """The command's own message: stderr without BLIS's CPU notice."""
    return " | ".join(l for l in p.stderr.strip().splitlines() if "BLIS" not in l)[:300]


def tok_file(docs):
    """docs/DATA.md, uint16 ids: magic, version 1, width 2, documents, ids, offsets."""
    off = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype("<u8")
    ids = np.concatenate([np.asarray(d) for d in docs]).astype("<u2")
    return b"AQTOKENS" + struct.pack("<IIQQ", 1, 2, len(docs), int(off[-1])) + off.tobytes() + ids.tobytes()


def write_sources(top):
    raw = open(TEXT, "rb").read()
    docs = [d.strip(b" \t\n\v\f\r") for d in raw.split(b"\n\n")]
    docs = [d for d in docs if d]
    half = len(docs) // 2
    ref = tok_reference.Ref(*tok_reference.load_vocab(TOK, 512))
    open(os.path.join(top, "head.tok"), "wb").write(tok_file([ref.encode(d, 0, 0) for d in docs[:HEAD]]))
    with open(os.path.join(top, "calib-rest.jsonl"), "w") as f:
        for d in docs[HEAD:half]:
            f.write(json.dumps({"text": d.decode()}) + "\n")
    cut = np.linspace(half, len(docs), 4).astype(int)
    for k in range(3):
        open(os.path.join(top, f"eval-{k}.txt"), "wb").write(b"\n\n".join(docs[cut[k]:cut[k + 1]]))
    return ["--calib", os.path.join(top, "head.tok"), "--calib", os.path.join(top, "calib-rest.jsonl"),
            "--eval", os.path.join(top, "eval-*.txt")]


def quantize(out, data, extra=()):
    return run(["quantize", MODEL, "--tokenizer", TOK, "--out", out] + data + SETTINGS + list(extra))


def evaluation(d):
    return json.load(open(os.path.join(d, "report.json")))["run"]["evaluation"]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if missing_asset():
        return 77
    top = os.path.abspath(sys.argv[1])
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    data = write_sources(top)
    ref, new = os.path.join(top, "ref"), os.path.join(top, "new")
    p = quantize(ref, ["--text", TEXT])
    check(p.returncode == 0, "quantize --text (the reference) succeeds" + (": " + msg(p) if p.returncode else ""))
    p = quantize(new, data)
    check(p.returncode == 0, "quantize --calib .tok --calib .jsonl --eval glob succeeds" + (": " + msg(p) if p.returncode else ""))
    if failures:
        return 1
    for f in COMPARED:
        a, b = (open(os.path.join(d, f), "rb").read() for d in (ref, new))
        check(a == b, f"{f} byte-identical to the --text run")
    check(evaluation(ref) == evaluation(new), f"the same evaluation (documents, perplexities, KL, top-1): "
          f"{evaluation(new)}")
    settings = json.load(open(os.path.join(new + ".work", "settings.json")))
    check([s["role"] for s in settings["data"]["sources"]] == ["calib", "calib", "eval"],
          "settings.json records the three sources")
    # adaquant eval: --eval (all evaluated) = --text (second half evaluated)
    ev = [run(["eval", MODEL, "--tokenizer", TOK, "--quantized", new, "--max-docs", "40", "--max-len", "128",
               "--json"] + d) for d in (["--text", TEXT], data[-2:])]
    check(all(p.returncode == 0 for p in ev) and ev[0].stdout == ev[1].stdout,
          f"eval --eval 'eval-*.txt' = eval --text: {ev[1].stdout.strip()}")
    got = json.loads(ev[1].stdout) if ev[1].returncode == 0 else {}
    check(abs(got.get("ppl_q", 0) - evaluation(new)["ppl_quantized"]) < 1e-9 * evaluation(new)["ppl_quantized"],
          "eval --quantized reproduces the report's perplexity (same documents, same code: equal up to "
          "the printed 10 digits)")
    changed_data(top, new)
    default_tokenizer(top)
    usage_errors(top, data)
    return 1 if failures else 0


def changed_data(top, new):
    """A data file changed after capture: the stage commands refuse the work
    directory naming the data; quantize --resume recomputes everything."""
    work = new + ".work"
    jl = os.path.join(top, "calib-rest.jsonl")
    orig = open(jl, "rb").read()
    open(jl, "ab").write(b'{"text": "Once upon a time a test changed this file."}\n')
    for cmd in (["calibrate", "--work", work, "--shard", "0", "--shards", "1"],
                ["solve", "--work", work, "--out", os.path.join(top, "never"), "--target-bits", "6"]):
        p = run(cmd)
        check(p.returncode != 0 and "the data changed since capture" in p.stderr and "--calib" in p.stderr,
              f"{cmd[0]} refuses changed data: {msg(p)}")
    check(not os.path.exists(os.path.join(top, "never")), "no OUTDIR written")
    p = quantize(new, ["--calib", os.path.join(top, "head.tok"), "--calib", jl, "--eval",
                       os.path.join(top, "eval-*.txt")], ["--resume", "--force"])
    rep = json.load(open(os.path.join(new, "report.json")))["run"] if p.returncode == 0 else {}
    check(p.returncode == 0 and "changed since" in p.stderr and rep.get("tasks_reused") == 0,
          f"quantize --resume with changed data reuses nothing (reused {rep.get('tasks_reused')})")
    open(jl, "wb").write(orig)


def default_tokenizer(top):
    """A model directory holding tokenizer.bin needs no --tokenizer."""
    d = os.path.join(top, "hfmodel")
    p = run(["convert", "--tokenizer", TOK, MODEL, d])
    check(p.returncode == 0 and os.path.exists(os.path.join(d, "tokenizer.bin")), "convert writes tokenizer.bin")
    ev = [run(["eval", d, "--text", TEXT, "--max-docs", "20", "--max-len", "64", "--json"] + t)
          for t in (["--tokenizer", TOK], [])]
    check(ev[1].returncode == 0 and ev[0].stdout == ev[1].stdout,
          "eval of a model directory without --tokenizer uses its tokenizer.bin" + (": " + msg(ev[1]) if ev[1].returncode else ""))
    p = run(["eval", MODEL, "--text", TEXT])
    check(p.returncode == 2 and "--tokenizer is required" in p.stderr, "a .bin model still needs --tokenizer")


def usage_errors(top, data):
    cases = [
        (["--eval", TEXT], "--eval needs --calib"),
        (["--calib", TEXT], "--calib without --eval"),
        (["--text", TEXT, "--calib", TEXT], "cannot be combined"),
        ([], "the data is required"),
        (["--text", TEXT, "--data-format", "csv"], "--data-format must be"),
    ]
    for args, needle in cases:
        p = run(["quantize", MODEL, "--tokenizer", TOK, "--out", os.path.join(top, "never")] + args)
        check(p.returncode == 2 and needle in p.stderr, f"usage error '{needle}': {msg(p)}")
    p = run(["quantize", MODEL, "--tokenizer", TOK, "--out", os.path.join(top, "never"),
             "--calib", os.path.join(top, "nothing-*.jsonl"), "--eval", TEXT] + SETTINGS)
    check(p.returncode != 0 and "nothing-*.jsonl: no file matches" in p.stderr,
          "an empty glob is an error naming it: " + msg(p))
    check(not os.path.exists(os.path.join(top, "never")), "no OUTDIR written")


if __name__ == "__main__":
    sys.exit(main())
