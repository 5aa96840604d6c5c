"""test_progress_log.py — the batch log of a real distributed run (issue 12
item 5, docs/PIPELINE.md "Progress").

  log     `mpirun -np 2 adaquant quantize ... > log 2>&1` with AQ_PROGRESS
          unset (the auto rule decides): rank 0's stdout is Open MPI's pty, yet
          the log holds no control character (nothing below 0x20 but \\n and \\t,
          no DEL), its header says plain was chosen because mpirun writes to
          that file, and there is exactly one line per task, each with an ETA,
          covering every (layer, option) of the model (5 blocks x 7 linears x
          4 options, listed here independently of the code), then a final line.
  flag    --progress overrides AQ_PROGRESS: `--progress none` with
          AQ_PROGRESS=plain prints no progress line; `--progress fancy` is a
          usage error (exit 2) naming the accepted values.
  tty     the run resumed inside a terminal (util-linux `script` gives mpirun
          a pty): auto picks the bar, so the rule really looks at mpirun's
          streams; a single process (no mpirun) draws the bar on a terminal
          and writes plain lines to a file (skipped with a note when
          `script` is absent).
Usage: test_progress_log.py WORKDIR. Environment (ctest): AQ_CLI, AQ_MPIRUN,
AQ_SHARED_DIR. Exit 77 (skip) when the stories260K assets are absent.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys

from aqtest import CLI, MODEL, MPIRUN, TEXT, TOK, check, failures, missing_asset

OPTIONS = ["w8a16", "w4a16", "w3a16", "w4a8"]
# test_pipeline.py's reduced settings; no tuning and 4 evaluation documents
# (this test is about the log, not the model)
CAL = ["--calib-windows", "8", "--calib-len", "64", "--iters", "5", "--starts", "1", "--polish", "2",
       "--options", ",".join(OPTIONS)]
BUD = ["--target-bits", "3.5", "--keep", r"layers\.0\.self_attn\.q_proj=w4a8"]
OUT = ["--eval-docs", "4", "--no-tune"]
# stories260K: 5 blocks of the 7 llama linears (docs/LLAMA2C.md names them in HF form)
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
KEYS = {(f"model.layers.{b}.{lin}", o) for b in range(5) for lin in LINEARS for o in OPTIONS}
TASK_LINE = re.compile(r"^adaquant: (\d+)/(\d+) tasks \((\d+)%, (\d+) reused\) \| last (\S+) (\S+) loss (\S+) "
                       r"\| (\d+\.\d\d) task/s \| ETA (\d+:\d\d(?::\d\d)?)$")
FINAL_LINE = re.compile(r"^adaquant: (\d+)/(\d+) tasks \(100%, (\d+) reused\) \| .* \| done in \d+:\d\d")



def env(**kw):
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e.pop("AQ_PROGRESS", None)
    e.pop("TERM", None)
    e.update(kw)
    return e


def quantize_cmd(out, extra=()):
    return MPIRUN + ["-np", "2", CLI, "quantize", MODEL, "--tokenizer", TOK, "--calib-text", TEXT, "--out", out] \
        + CAL + BUD + OUT + list(extra)


def run_to_log(cmd, log, e):
    """cmd > log 2>&1, as a shell user would type it."""
    with open(log, "wb") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=e, timeout=240)
    with open(log, "rb") as f:
        return p.returncode, f.read()


def mode_log(top):
    log = os.path.join(top, "quantize.log")
    rc, data = run_to_log(quantize_cmd(os.path.join(top, "out")), log, env())
    text = data.decode("utf-8", "replace")
    check(rc == 0, f"mpirun -np 2 quantize > log 2>&1 succeeds (rc {rc}): {text[-400:]}")
    bad = [(i, b) for i, b in enumerate(data) if (b < 0x20 and b not in (0x0A, 0x09)) or b == 0x7F]
    check(not bad, f"the log has no control character (first: {bad[:3]})")
    lines = text.splitlines()
    check(any("(progress plain: mpirun's output goes to " + log in ln for ln in lines),
          "the header says plain was chosen because mpirun writes to the log")
    tasks = [m for m in (TASK_LINE.match(ln) for ln in lines) if m]
    n = len(KEYS)
    check(len(tasks) == n, f"one progress line per task: {len(tasks)} lines for {n} tasks")
    check(sorted(int(m.group(1)) for m in tasks) == list(range(1, n + 1)),
          "the lines count the tasks 1..N, each once")
    check(all(int(m.group(2)) == n and m.group(4) == "0" for m in tasks), f"every line says {n} tasks, 0 reused")
    check({(m.group(5), m.group(6)) for m in tasks} == KEYS, "the lines name every (layer, option) of the model")
    check(all(m.group(9) for m in tasks), "every task line has an ETA (h:mm:ss or m:ss)")
    finals = [ln for ln in lines if FINAL_LINE.match(ln)]
    check(len(finals) == 1 and finals[0].startswith(f"adaquant: {n}/{n} tasks"), f"one final line: {finals}")
    check(any(ln.startswith("perplexity: FP") for ln in lines), "the run's summary is in the log")


def mode_flag(top):
    # resume the finished work directory: every task reused, only the display differs
    out = os.path.join(top, "out")
    if not os.path.isdir(out + ".work"):
        mode_log(top)
    log = os.path.join(top, "none.log")
    rc, data = run_to_log(quantize_cmd(out, ["--resume", "--force", "--progress", "none"]), log,
                          env(AQ_PROGRESS="plain"))
    text = data.decode("utf-8", "replace")
    check(rc == 0, f"--progress none --resume succeeds: {text[-300:]}")
    shown = [ln for ln in text.splitlines() if re.match(r"^adaquant: \d+/\d+ tasks \(", ln)
             or "reused from the work directory" in ln]
    check(not shown, f"--progress none beats AQ_PROGRESS=plain: no progress line ({shown[:2]})")
    log = os.path.join(top, "fancy.log")
    rc, data = run_to_log(quantize_cmd(out, ["--resume", "--force", "--progress", "fancy"]), log, env())
    text = data.decode("utf-8", "replace")
    check(rc == 2 and "--progress must be bar, plain, none or auto, not 'fancy'" in text,
          f"a bad --progress is a usage error (rc {rc}): {text[:300]}")


def mode_tty(top):
    script = shutil.which("script")
    if not script:
        print("note: util-linux `script` not found; the terminal case is not checked")
        return
    # resumed (all tasks reused): the final line is still drawn as a bar
    out = os.path.join(top, "out")
    if not os.path.isdir(out + ".work"):
        mode_log(top)
    cmd = " ".join(shlex.quote(a) for a in quantize_cmd(out, ["--resume", "--force"]))
    # script runs the command on a fresh pty and copies what it shows to stdout
    p = subprocess.run([script, "-qec", cmd, "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=env(TERM="xterm"), timeout=240)
    check(p.returncode == 0, f"quantize under a terminal succeeds (rc {p.returncode})")
    check(b"\r\x1b[K[" in p.stdout, "auto draws the bar when mpirun's stdout and stderr are a terminal")
    check(b"(progress plain:" not in p.stdout, "no plain header on a terminal")
    # one process, no mpirun: Open MPI's singleton MPI_Init exports
    # OMPI_MCA_orte_launch too, yet the process owns its streams
    single = quantize_cmd(out, ["--resume", "--force"])[len(MPIRUN) + 2:]
    p = subprocess.run([script, "-qec", " ".join(shlex.quote(a) for a in single), "/dev/null"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       env=env(TERM="xterm"), timeout=240)
    check(p.returncode == 0 and b"\r\x1b[K[" in p.stdout, "a single process on a terminal draws the bar")
    rc, data = run_to_log(single, os.path.join(top, "single.log"), env())
    check(rc == 0 and b"(progress plain: stderr is not a terminal" in data and b"\r" not in data,
          "a single process > log 2>&1 writes plain lines")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_progress_log.py WORKDIR")
    if missing_asset():
        sys.exit(77)
    top = sys.argv[1]
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    mode_log(top)
    mode_flag(top)
    mode_tty(top)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
