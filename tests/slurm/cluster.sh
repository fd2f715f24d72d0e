#!/usr/bin/env bash
# A throwaway Slurm cluster on this machine, for the Slurm tests and for trying jobs/ by hand:
#   tests/slurm/cluster.sh start DIR [--nodes N]   munged + slurmctld + N slurmd "nodes" (default 1), all
#                                                  state under DIR; returns once every node is idle
#   tests/slurm/cluster.sh stop DIR                cancel jobs, shut the daemons down, kill leftovers
#   tests/slurm/cluster.sh status DIR              daemons alive? nodes (sinfo); exit 1 when down
#   tests/slurm/cluster.sh check                   can a cluster start here? (root, daemons installed);
#                                                  prints the reason and exits 1 when it cannot
# Then `export SLURM_CONF=DIR/etc/slurm.conf` for sbatch, squeue, scontrol. Runs as root without systemd or
# cgroups (proctrack/linuxproc, task/none, no accounting); N > 1 starts one slurmd per fake node
# (`slurmd -N nI`), all on 127.0.0.1, each claiming every core of the host.
# Environment: HSC_SLURM_PORT (slurmctld port, default 16817; the nodes use the next N ports), so that it
# never collides with a system Slurm on 6817. `start` on a running cluster and `stop` on a stopped one do
# nothing. See /usr/share/doc/slurm* and docs/slurm.md for what the settings mean.
set -euo pipefail

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,13p' "$0" >&2
  exit 2
}

# check: prints why no cluster can start, or nothing.
why_not() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "not root (slurmd must run as root to launch jobs; run the tests as root)"
    return
  fi
  local p
  for p in munged mungekey slurmctld slurmd sbatch srun squeue scontrol sinfo scancel; do
    if ! command -v "$p" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$p" ]; then
      echo "'$p' not installed (scripts/deps.sh --slurm installs slurmctld slurmd slurm-client munge)"
      return
    fi
  done
}

[ $# -ge 1 ] || usage
cmd=$1
shift
if [ "$cmd" = check ]; then
  reason=$(why_not)
  [ -z "$reason" ] || {
    echo "$reason"
    exit 1
  }
  exit 0
fi
[ $# -ge 1 ] || usage
dir=$1
shift
nodes=1
while [ $# -gt 0 ]; do
  case $1 in
  --nodes)
    [ $# -ge 2 ] || usage
    nodes=$2
    shift 2
    ;;
  *) usage ;;
  esac
done
[[ $nodes =~ ^[1-9][0-9]?$ ]] || die "--nodes wants a count from 1 to 99 (got '$nodes')"
export PATH=$PATH:/usr/sbin:/sbin
port=${HSC_SLURM_PORT:-16817}
[[ $port =~ ^[0-9]+$ ]] || die "HSC_SLURM_PORT='$port' is not a port number"
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf

pid_alive() { # pidfile
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "cluster.sh: timed out after ${secs}s waiting for $what" >&2
  return 1
}

nodes_idle() { # every node of the cluster idle (or mixed/alloc: up and usable)
  local states
  states=$(sinfo -h -N -o '%t' 2>/dev/null) || return 1
  [ -n "$states" ] || return 1
  ! grep -qvE '^(idle|mix|alloc)$' <<<"$states"
}

no_jobs() { [ -z "$(squeue -h -o %A 2>/dev/null)" ]; }

show_logs() {
  local f
  for f in "$dir"/log/*.log "$dir"/munge/log/munged.log; do
    [ -f "$f" ] || continue
    echo "---- $f (last 15 lines)" >&2
    tail -n 15 "$f" >&2
  done
}

write_conf() {
  local host mem cpus nodeline
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mem=$((mem / nodes))
  nodeline="NodeName=n[1-$nodes] NodeHostname=$host NodeAddr=127.0.0.1 Port=[$((port + 1))-$((port + nodes))]"
  [ "$nodes" -eq 1 ] && nodeline="NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((port + 1))"
  cat >"$conf" <<EOF
# Written by tests/slurm/cluster.sh: a throwaway cluster of $nodes fake node(s) on $host, state in $dir
ClusterName=hsctest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$dir/munge/run/munge.sock,cred_expire=${HSC_SLURM_CRED_EXPIRE:-5}
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
# per-node TmpFS: PMIx puts spmix_appdir_<job>.<step> there; one shared /tmp breaks fake nodes
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# an afterok on a failed job cancels the dependant instead of leaving it pending forever
SchedulerParameters=kill_invalid_depend,bf_interval=1
# fake nodes each claim every core of the host
SlurmdParameters=config_overrides
MpiDefault=pmix
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
MailProg=/bin/true
$nodeline CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local reason
  reason=$(why_not)
  [ -z "$reason" ] || die "cannot start a Slurm cluster: $reason"
  if pid_alive "$dir/run/slurmctld.pid"; then
    echo "cluster.sh: already running in $dir"
    return 0
  fi
  mkdir -p "$dir"/{etc,ctld,run,log,munge/etc,munge/run,munge/log,munge/lib}
  chmod 0700 "$dir/munge/etc"
  # munged refuses a socket that others cannot reach: every directory on its path must be traversable
  # (mktemp -d makes DIR 0700; DIR is ours, its parents are not)
  chmod go+x "$dir" "$dir/munge"
  local up
  up=$(cd "$dir/.." && pwd)
  while [ "$up" != / ]; do
    [ "$(($(stat -c '%#a' "$up") & 8#011))" -eq $((8#011)) ] ||
      die "'$up' is not searchable by all (mode $(stat -c %a "$up")), which munged requires of its socket path: chmod go+x it or choose another DIR"
    up=$(dirname "$up")
  done
  chmod 0755 "$dir/munge/run"
  local i
  for ((i = 1; i <= nodes; i++)); do mkdir -p "$dir/spool/n$i" "$dir/tmp/n$i"; done
  [ -f "$dir/munge/etc/munge.key" ] || mungekey -c -k "$dir/munge/etc/munge.key" ||
    die "mungekey could not create $dir/munge/etc/munge.key"
  write_conf
  # A failure from here on shows the daemons' logs and leaves no daemon behind.
  die() {
    echo "cluster.sh: $*" >&2
    show_logs
    stop_daemons
    exit 1
  }
  munged --key-file="$dir/munge/etc/munge.key" --socket="$dir/munge/run/munge.sock" \
    --pid-file="$dir/munge/run/munged.pid" --log-file="$dir/munge/log/munged.log" \
    --seed-file="$dir/munge/lib/munged.seed" || die "munged did not start (log: $dir/munge/log/munged.log)"
  wait_for 10 "munged's socket" test -S "$dir/munge/run/munge.sock" || die "munged has no socket"
  slurmctld -c -f "$conf" || die "slurmctld did not start (log: $dir/log/slurmctld.log)"
  for ((i = 1; i <= nodes; i++)); do
    slurmd -f "$conf" -N "n$i" || die "slurmd -N n$i did not start (log: $dir/log/slurmd-n$i.log)"
  done
  wait_for 60 "all $nodes node(s) to be idle" nodes_idle ||
    die "nodes not idle: $(sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' ')"
  echo "cluster.sh: $nodes node(s) idle; export SLURM_CONF=$conf"
}

# Kills the daemons whose pid files are in DIR (and only those), waiting for each to exit.
stop_daemons() {
  local f pid i
  for f in "$dir"/run/slurmd-*.pid "$dir/run/slurmctld.pid" "$dir/munge/run/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: $(basename "$f" .pid) (pid $pid) ignored SIGTERM for 5 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

stop() {
  [ -f "$conf" ] || {
    echo "cluster.sh: no cluster in $dir"
    return 0
  }
  if pid_alive "$dir/run/slurmctld.pid"; then
    local jobs
    jobs=$(squeue -h -o '%A' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086 # one job id per word
      scancel $jobs 2>/dev/null || true
      # slurmd's stepds end the jobs' processes; shutting down before they are done would orphan them
      wait_for 30 "cancelled jobs to end" no_jobs || echo "cluster.sh: jobs still listed: $(squeue -h 2>&1)" >&2
    fi
    scontrol shutdown >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 50; i++)); do
      pid_alive "$dir/run/slurmctld.pid" || break
      sleep 0.1
    done
  fi
  stop_daemons
  # Daemons whose pid files went missing: found by this cluster's own config path on their command line.
  local pid
  for pid in $(pgrep -f -- "-f $conf( |\$)" 2>/dev/null || true); do
    echo "cluster.sh: pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) had no pid file: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  echo "cluster.sh: stopped ($dir)"
}

status() {
  local up=1 f
  for f in "$dir/munge/run/munged.pid" "$dir/run/slurmctld.pid" "$dir"/run/slurmd-*.pid; do
    if pid_alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else
      echo "$(basename "$f" .pid): not running"
      up=0
    fi
  done
  [ "$up" -eq 1 ] && sinfo -N -o '%N %t %c' 2>&1
  [ "$up" -eq 1 ]
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
