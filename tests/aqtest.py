"""aqtest.py — what the Python CLI tests share (test_pipeline.py,
test_reader.py, test_progress_log.py): where the CLI, the sources and the
shared stories260K assets are, the mpirun command line for root on a 2-core
machine, and the check() that records a failure and goes on."""
import os

CLI = os.environ.get("AQ_CLI", "adaquant")
SRC = os.environ.get("AQ_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SHARED = os.environ.get("AQ_SHARED_DIR", os.path.join(SRC, "..", "shared"))
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
TOK = os.path.join(SHARED, "models/stories260K/tok512.bin")
TEXT = os.path.join(SHARED, "data/tinystories/validation.txt")
MPIRUN = [os.environ.get("AQ_MPIRUN", "mpirun"), "--allow-run-as-root", "--oversubscribe", "--mca", "pml", "ob1",
          "--mca", "btl", "self,vader"]

failures = []


def check(cond, what):
    """Print ok/FAIL for one check; a failure is recorded in `failures`."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def missing_asset():
    """The first stories260K asset that is absent (a skip message is printed),
    or None. Tests call it before any check, so a skip never follows checks."""
    for f in (MODEL, TOK, TEXT):
        if not os.path.exists(f):
            print(f"skip: test asset {f} is absent (set AQ_SHARED_DIR)")
            return f
    return None


def finish(name=""):
    """Print the summary line and return the exit code: 0, or 1 after a failed check."""
    n = len(failures)
    print(f"{name + ': ' if name else ''}{'all checks passed' if not n else f'{n} check(s) FAILED'}")
    return 1 if n else 0


def quantize_stories(top, name, np, args, env=None):
    """`adaquant quantize` of stories260K (under mpirun when np > 1) into
    TOP/NAME, the calibration text TEXT, sharing the work directory TOP/work
    (--resume) with the test's other runs, plus ARGS. A failure is a check.
    Returns (OUTDIR, stderr)."""
    import shutil
    import subprocess
    import time
    if env is None:
        env = dict(os.environ, AQ_PROGRESS="plain", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        env.pop("AQ_FAIL_AT", None)
    out = os.path.join(top, name)
    shutil.rmtree(out, ignore_errors=True)
    cmd = (MPIRUN + ["-np", str(np)] if np > 1 else []) + [CLI, "quantize", MODEL, "--tokenizer", TOK, "--calib-text",
                                                          TEXT, "--out", out, "--work", os.path.join(top, "work"),
                                                          "--resume"] + list(args)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    print(f"$ {' '.join(cmd)}\n  -> rc {p.returncode} in {time.time() - t0:.1f} s", flush=True)
    check(p.returncode == 0, f"{name}: quantize succeeds " + p.stderr[-400:])
    return out, p.stderr


def fresh_dir(path):
    """PATH emptied and created (a test's scratch directory); returns it."""
    import shutil
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path
