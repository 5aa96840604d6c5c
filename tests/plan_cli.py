#!/usr/bin/python3
"""plan_cli.py — `adaquant plan` from the command line on the public configs
of tests/configs (no weights): the task counts of Llama-2-7B/70B and
Llama-3.1-405B by hand (blocks x 7 linears x options), the F32 model size of
70B against 256 GB, valid JSON, the text report, and bad input (a zero rank
count, a config missing a field, contradictory heads) refused with a clear
message. The rates are our fixed numbers (tests/configs/plan_rates_fixed.json,
copied: plan caches the GEMM shapes it times), with --no-probe nothing
is measured, and no check looks at a time anyway.
usage: plan_cli.py ADAQUANT CONFIG_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

aq, cfg = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(prefix="aq_plan_cli.")
rates = os.path.join(tmp, "rates.json")
shutil.copy(os.path.join(cfg, "plan_rates_fixed.json"), rates)
fails = 0


def run(*args):
    # --no-probe: the ladder of the fixed file only (no GEMM timed on this machine)
    p = subprocess.run([aq, "plan", "--no-probe", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    global fails
    if not cond:
        print("FAIL:", what)
        fails += 1


# (config, blocks): tasks = blocks x 7 linears x 4 default options, plus the
# tensor menu: 5 default options (f32 f16 w8 w6 w4, --embed-options) for the
# embedding and, all three being untied, 5 for lm_head
EMBED = 2 * 5
for name, blocks, params in (("llama2_7b", 32, 6476005376), ("llama2_70b", 80, 68451041280),
                             ("llama3.1_405b", 126, 401646551040)):
    rc, out, err = run(os.path.join(cfg, name + ".json"), "--rates", rates, "-P", "64", "--mem-per-rank", "256G",
                       "--json")
    check(rc == 0, f"{name}: exit {rc}: {err}")
    p = json.loads(out) if rc == 0 else {}
    check(p.get("tasks") == blocks * 7 * 4 + EMBED, f"{name}: tasks {p.get('tasks')} != {blocks * 7 * 4 + EMBED}")
    check(p.get("layers") == blocks * 7, f"{name}: layers")
    check(p.get("params") == params, f"{name}: params {p.get('params')} != {params}")
    check(p.get("ranks") == 64, f"{name}: ranks")
    for ph in ("capture", "calibrate", "allocate", "tune", "eval", "write"):
        v = p.get("phases", {}).get(ph, {})
        check(v.get("seconds", -1) >= v.get("lower_bound", 0) * (1 - 1e-9), f"{name}: {ph} below its bound")
    # every rank holds the F32 model today: 70B (68.98e9 weights x 4 bytes) is over 256 GiB
    if name == "llama2_70b":
        check(p.get("fits") is False and p.get("model_bytes", 0) > 256 * 2**30, "70B reported to fit 256G")
    if name == "llama2_7b":
        check(p.get("fits") is True, "7B reported not to fit 256G")

rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "-P", "8")
check(rc == 0 and "+ 10 embedding/classifier tasks = 906 tasks" in out and "lower bound" in out and "down_proj" in out, "7B text report: " + out[:300])

# --calib-windows is not the data option --calib
rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "--calib-windows", "16", "--json")
check(rc == 0 and json.loads(out).get("tasks") == 906, f"--calib-windows without data: exit {rc}: {err}")

# --coop-ranks with a memory per rank (issue 14 item 2): a bound between down_proj's
# one-rank bytes and gate_proj's sends the 32 x 4 down_proj tasks (by hand: the only
# linear reading the 11008-wide input) to sub-grids, with their time on 8 ranks; an a8
# menu cannot go cooperative: refused, naming the first task over the bound
rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "-P", "16", "--json")
mem = {k["name"]: k["mem_bytes"] for k in json.loads(out)["classes"]} if rc == 0 else {}
check(rc == 0 and mem.get("down_proj", 0) > mem.get("gate_proj", 0) > mem.get("q_proj", 0), f"class memory: {mem}")
if rc == 0:
    mid = str(int((mem["down_proj"] + mem["gate_proj"]) / 2))
    rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "-P", "16", "--coop-ranks", "8",
                       "--coop-threshold", "1e9", "--mem-per-rank", mid, "--json")
    p = json.loads(out) if rc == 0 else {}
    coop = [k["name"] for k in p.get("classes", []) if k.get("coop_seconds", 0) > 0]
    check(rc == 0 and p.get("coop_tasks") == 128 and coop == ["down_proj"] and p.get("coop_phase_seconds", 0) > 0,
          f"--coop-ranks 8 under a bound: exit {rc}: {err} {coop} {p.get('coop_tasks')}")
rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "-P", "8", "--coop-ranks", "8",
                   "--mem-per-rank", "1G", "--options", "w4a8")
check(rc == 1 and "task model.layers.0.self_attn.q_proj w4a8 needs" in err and "a16" in err,
      f"no grid fits: exit {rc}: {err}")

rc, out, err = run(os.path.join(cfg, "llama2_7b.json"), "--rates", rates, "-P", "0")
check(rc == 2 and "-P/--ranks must be an integer" in err, f"-P 0: exit {rc}: {err}")
bad = os.path.join(tmp, "config.json")
with open(bad, "w") as f:
    json.dump({"model_type": "llama", "intermediate_size": 11008, "num_hidden_layers": 32,
               "num_attention_heads": 32, "vocab_size": 32000}, f)
rc, out, err = run(bad, "--rates", rates)
check(rc == 1 and 'missing field "hidden_size"' in err and bad in err, f"missing field: exit {rc}: {err}")
with open(bad, "w") as f:
    json.dump({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 6, "vocab_size": 32000}, f)
rc, out, err = run(tmp, "--rates", rates)  # the directory holding config.json
check(rc == 1 and "inconsistent heads" in err, f"kv heads not dividing heads: exit {rc}: {err}")

shutil.rmtree(tmp, ignore_errors=True)
print("all checks passed" if not fails else f"{fails} check(s) failed")
sys.exit(1 if fails else 0)
