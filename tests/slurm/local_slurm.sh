#!/usr/bin/env bash
# local_slurm.sh — a private single-node Slurm for tests (see ../shared/TOOLCHAIN.md).
#   source tests/slurm/local_slurm.sh; aq_slurm_start DIR; ...; aq_slurm_stop DIR
# Starts munged (if none is running), slurmctld and slurmd with a config in DIR,
# exports SLURM_CONF, waits until the node is idle. aq_slurm_stop kills exactly
# the daemons it started, by the PIDs in their pid files.
# MinJobAge=3600 keeps finished jobs visible to `scontrol show job` (there is
# no accounting database, so sacct cannot be used). Ports 16817/16818: one
# local Slurm at a time; a second start fails with a clear message.

aq_slurm_start() {
  local dir=$1 host
  host=$(hostname -s)
  if (exec 3<>/dev/tcp/127.0.0.1/16817) 2>/dev/null; then
    echo "local_slurm: port 16817 is in use (another local Slurm running?)" >&2
    return 1
  fi
  mkdir -p "$dir"/{state,spool,log}
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
SlurmctldPort=16817
SlurmdPort=16818
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
  local i
  for i in $(seq 1 100); do
    if [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]; then return 0; fi
    sleep 0.2
  done
  echo "local_slurm: node did not become idle; logs in $dir/log" >&2
  sinfo >&2 || true
  return 1
}

aq_slurm_stop() {
  local dir=$1 f pid
  for f in slurmd slurmctld; do
    if [ -f "$dir/$f.pid" ]; then
      pid=$(cat "$dir/$f.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ -f "$dir/munged.started" ] && [ -f "$dir/munged.pid" ]; then
    pid=$(cat "$dir/munged.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
