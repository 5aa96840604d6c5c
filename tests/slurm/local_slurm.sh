#!/usr/bin/env bash
# local_slurm.sh — a private single-node Slurm for tests (see ../shared/TOOLCHAIN.md).
#   source tests/slurm/local_slurm.sh; aq_slurm_start DIR; ...; aq_slurm_stop DIR
# Starts munged (if none is running), slurmctld and slurmd with a config in DIR,
# exports SLURM_CONF, waits until the node is idle. aq_slurm_stop kills exactly
# the daemons it started, by the PIDs in their pid files.
# MinJobAge=3600 keeps finished jobs visible to `scontrol show job` (there is
# no accounting database, so sacct cannot be used). Ports: the first free pair
# from 16817/16818 up. DIR/owner.pid records the shell that started it.
# Every wait polls a state against a wall-clock deadline (aq_slurm_poll), with
# the bound given and explained where it is used: iteration counts would
# stretch with the load, and fixed sleeps are either too short or too slow.

# aq_slurm_poll SECONDS CMD...: run CMD every 0.2 s until it succeeds (0) or
# SECONDS of wall time have passed (1).
aq_slurm_poll() {
  local end=$((SECONDS + $1))
  shift
  while :; do
    "$@" && return 0
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
aq_slurm_node_idle() { [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]; }
aq_slurm_gone() { ! kill -0 "$1" 2>/dev/null; }

aq_slurm_start() {
  local dir=$1 host
  host=$(hostname -s)
  # Two free ports (slurmctld, slurmd) from 16817 upwards, so that concurrent
  # local Slurms (e.g. two build trees testing at once) do not collide.
  local port=16817
  while (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null ||
        (exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null; do
    port=$((port + 2))
    if [ $port -gt 16917 ]; then echo "local_slurm: no free port pair in 16817..16918" >&2; return 1; fi
  done
  mkdir -p "$dir"/{state,spool,log}
  echo $$ >"$dir/owner.pid"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=aqtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmix
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName=$host CPUs=$(nproc) RealMemory=20000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged ||
      { echo "local_slurm: munged failed to start" >&2; return 1; }
    pgrep -n -x munged >"$dir/munged.pid"
    echo started >"$dir/munged.started"
  fi
  slurmctld -f "$SLURM_CONF" || { echo "local_slurm: slurmctld failed" >&2; return 1; }
  slurmd -f "$SLURM_CONF" || { echo "local_slurm: slurmd failed" >&2; return 1; }

  # slurmd registers and the node turns idle in about 1 s on an idle machine;
  # 60 s leaves room for a 2-core machine busy with parallel builds and tests.
  aq_slurm_poll 60 aq_slurm_node_idle && return 0
  echo "local_slurm: node did not become idle within 60 s; logs in $dir/log" >&2
  sinfo >&2 || true
  return 1
}

# aq_slurm_reap_stale GLOB: stop the daemons of earlier runs whose test was
# killed before its EXIT trap ran (e.g. a ctest timeout): for each DIR in GLOB
# whose owner shell is gone and whose pid files name live processes started
# with DIR's own slurm.conf (or, for munged, recorded as started by that run),
# stop them by PID and remove the pid files. Nothing else is touched.
aq_slurm_reap_stale() {
  local dir f pid
  for dir in $1; do
    [ -f "$dir/slurm.conf" ] && [ -f "$dir/owner.pid" ] || continue
    if kill -0 "$(cat "$dir/owner.pid")" 2>/dev/null; then continue; fi
    for f in slurmd slurmctld; do
      [ -f "$dir/$f.pid" ] || continue
      pid=$(cat "$dir/$f.pid")
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/slurm.conf"; then
        echo "local_slurm: stopping $f (pid $pid) left by an interrupted run in $dir" >&2
        aq_slurm_stop "$dir"
        break
      fi
    done
    if [ -f "$dir/munged.started" ] && [ -f "$dir/munged.pid" ]; then
      pid=$(cat "$dir/munged.pid")
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = munged ]; then kill "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir"/*.pid "$dir/munged.started"
  done
}

aq_slurm_stop() {
  local dir=$1 f pid
  for f in slurmd slurmctld; do
    if [ -f "$dir/$f.pid" ]; then
      pid=$(cat "$dir/$f.pid")
      kill "$pid" 2>/dev/null || true
      # a daemon exits well within 1 s of SIGTERM (slurmctld saves its small
      # state first); after 20 s of a loaded machine it is killed outright
      aq_slurm_poll 20 aq_slurm_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
  done
  # munged is shared: if another local Slurm (started meanwhile by another
  # run, from its own DIR/slurm.conf) still runs, hand munged over to it
  if [ -f "$dir/munged.started" ] && [ -f "$dir/munged.pid" ]; then
    local other conf
    for other in $(pgrep -x slurmctld); do
      conf=$(tr '\0' '\n' <"/proc/$other/cmdline" 2>/dev/null | sed -n '/^-f$/{n;p;q}')
      if [ -n "$conf" ] && [ -f "$(dirname "$conf")/owner.pid" ]; then
        cp "$dir/munged.pid" "$dir/munged.started" "$(dirname "$conf")/" && rm -f "$dir/munged.started"
        break
      fi
    done
  fi
  if [ -f "$dir/munged.started" ] && [ -f "$dir/munged.pid" ]; then
    pid=$(cat "$dir/munged.pid")
    kill "$pid" 2>/dev/null || true
    # munged exits at once on SIGTERM; wait (bounded as above) so that the next
    # start does not find the old one still running and skip starting its own
    aq_slurm_poll 20 aq_slurm_gone "$pid" || true
  fi
}
