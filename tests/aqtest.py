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
