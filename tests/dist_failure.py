#!/usr/bin/python3
"""dist_failure.py — failure handling of the distributed driver, from outside mpirun.

For each way a rank can die (MPI_Abort after an injected failure, _exit
without MPI_Finalize, SIGKILL of rank 1 or of rank 0, a task callback error,
a task that writes a file with the wrong fingerprint, SIGKILL in the middle of
writing a result file) it checks that:
  - the job ends non-zero and (for injected failures) stderr names the rank,
    the task, its layer and option;
  - every result file left behind is complete and byte-identical to the
    serially encoded one (checked by `test_dist_driver verify`), the failed
    task's file does not exist;
  - a --resume run reuses exactly the files left behind, computes the rest
    and ends with all files valid; its progress lines report 18/18 tasks.
Usage: dist_failure.py PATH/test_dist_driver

Time: 8 scenarios x 2 mpirun launches (+ 10 short non-MPI runs), 4 scenarios at a time. The tasks are
tiny: a launch is ~1 s on an idle machine, dominated by mpirun's start-up, and
~5 s on a 2-core machine loaded ~5x (ctest -j2 next to other MPI tests). Each
launch gets RUN_TIMEOUT, the whole script the ctest TIMEOUT of tests/dist.cmake.
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

EXE = sys.argv[1]
MPIRUN = [os.environ.get("AQ_MPIRUN", "mpirun"), "--allow-run-as-root", "--oversubscribe",
          "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
NTASKS = 18
# One launch normally takes ~1-5 s; 120 s only trips when a job hangs (the case
# these tests guard against: a rank waiting forever for a dead peer).
RUN_TIMEOUT = 120
WORKERS = 4  # scenarios at once (main)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("CHECK failed:", what, file=sys.stderr)


def plan(np):
    out = subprocess.run([EXE, "plan", str(np)], capture_output=True, text=True, check=True,
                         timeout=RUN_TIMEOUT).stdout
    ranks = {}
    for line in out.splitlines():
        head, _, rest = line.partition(":")
        ranks[int(head.split()[1])] = [int(x) for x in rest.split()]
    return ranks


def run(np, work, resume=False, env_extra=None):
    env = dict(os.environ)
    env.pop("AQ_FAIL_AT", None)
    for hook in ("AQ_TEST_KILL_MIDWRITE", "AQ_TEST_TASK_ERROR", "AQ_TEST_BAD_FP"):
        env.pop(hook, None)
    env["AQ_PROGRESS"] = "plain"  # the checks read the plain progress lines
    env.update(env_extra or {})
    cmd = MPIRUN + ["-np", str(np), EXE, "run", work] + (["--resume"] if resume else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)


def verify(work):
    out = subprocess.run([EXE, "verify", work], capture_output=True, text=True, check=True,
                         timeout=RUN_TIMEOUT).stdout
    m = re.search(r"valid=(\d+) missing=(\d+) different=(\d+)", out)
    missing = {int(i): name for i, name in re.findall(r"missing (\d+) (\S+)", out)}
    return int(m.group(1)), missing, int(m.group(3))


def scenario(name, np, env_extra, task, rank, expect_msg, reason="injected failure", left_bad=False):
    """left_bad: the failed task left a complete file that must be rejected
    (and recomputed) by the resume, instead of no file."""
    work = tempfile.mkdtemp(prefix="aqtest-distfail-")
    t0 = time.time()
    try:
        r = run(np, work, env_extra=env_extra)
        print(f"[{name}] exit {r.returncode}")
        check(r.returncode != 0, f"{name}: job exited 0")
        if expect_msg:
            pat = (rf"adaquant: rank {rank} failed at task {task} \(layer \S+, option \S+\): "
                   + reason)
            m = re.search(pat, r.stderr)
            check(m is not None, f"{name}: no failure message matching {pat!r} in:\n{r.stderr[-2000:]}")
            if m:
                print(f"[{name}] {m.group(0)}")
        valid, missing, different = verify(work)
        print(f"[{name}] left behind: {valid} valid, {len(missing)} missing, {different} corrupt")
        check(different == (1 if left_bad else 0), f"{name}: {different} result files are corrupt or partial")
        check((task in missing) != left_bad, f"{name}: result file of the failed task {task}")
        check(valid >= 1, f"{name}: no completed result file survived")
        temps = [f for f in os.listdir(os.path.join(work, "results")) if ".tmp." in f]
        stray = [f for f in os.listdir(os.path.join(work, "results"))
                 if not f.endswith(".aqr") and ".tmp." not in f]
        check(not stray, f"{name}: unexpected files {stray}")

        r2 = run(np, work, resume=True)
        check(r2.returncode == 0, f"{name}: resume failed:\n{r2.stderr[-2000:]}")
        m = re.search(r"stats total=(\d+) reused=(\d+) invalid=(\d+) computed=(\d+)", r2.stdout)
        check(m is not None, f"{name}: no stats line")
        if m:
            reused, invalid, computed = int(m.group(2)), int(m.group(3)), int(m.group(4))
            print(f"[{name}] resume: reused {reused}, invalid {invalid}, computed {computed}")
            check(reused == valid and computed == NTASKS - valid and invalid == (1 if left_bad else 0),
                  f"{name}: resume reused {reused}/invalid {invalid}/computed {computed}, expected {valid}/-/{NTASKS - valid}")
        check(f"adaquant: {NTASKS}/{NTASKS} tasks (100%" in r2.stderr, f"{name}: no final progress line")
        valid2, missing2, different2 = verify(work)
        check(valid2 == NTASKS and different2 == 0, f"{name}: after resume {valid2} valid, {different2} corrupt")
        print(f"[{name}] {time.time() - t0:.1f} s")
        return temps, missing.get(task)
    finally:
        if not failures:
            shutil.rmtree(work, ignore_errors=True)


def main():
    p2, p4 = plan(2), plan(4)
    k1 = p2[1][1]  # rank 1's second static task: its first one completes before
    k0 = p2[0][1]
    k3 = p4[3][1] if len(p4[3]) > 1 else p4[3][0]
    cases = [("abort", 2, {"AQ_FAIL_AT": f"1:{k1}"}, k1, 1, True),
             ("exit", 2, {"AQ_FAIL_AT": f"1:{k1}:exit"}, k1, 1, True),
             ("kill-rank1", 2, {"AQ_FAIL_AT": f"1:{k1}:kill"}, k1, 1, True),
             ("kill-rank0", 2, {"AQ_FAIL_AT": f"0:{k0}:kill"}, k0, 0, True),
             ("abort-np4", 4, {"AQ_FAIL_AT": f"3:{k3}"}, k3, 3, True),
             ("task-error", 2, {"AQ_TEST_TASK_ERROR": str(k1)}, k1, 1, True, r"synthetic task error"),
             ("bad-fingerprint", 2, {"AQ_TEST_BAD_FP": str(k1)}, k1, 1, True,
              r"the result file written by the task does not validate: .*fingerprint mismatch", True),
             ("kill-midwrite", 2, {"AQ_TEST_KILL_MIDWRITE": str(k1)}, k1, 1, False)]
    # The scenarios are independent (each its own work directory) and their
    # time is mpirun's start-up and tear-down latency, not CPU (measured: 29 s
    # wall, 6 s CPU in series): run them WORKERS at a time.
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda c: scenario(*c), cases))
    temps, name = results[-1]
    # The partial write is there under its temporary name (other ranks, killed
    # by mpirun at any moment, may have left temporaries too).
    check(name is not None and any(t.startswith(name + ".tmp.") for t in temps),
          f"kill-midwrite: no temporary file of {name} among {temps}")
    print(f"[kill-midwrite] partial write left as {[t for t in temps if name and t.startswith(name)]}")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
