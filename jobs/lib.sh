# shellcheck shell=bash
# Shared by the jobs/*.sbatch scripts (sourced, not run): finds hsconas, builds the launch command, runs one
# phase as a job step, and turns "stopped by a signal after a checkpoint" (exit status 3) into a requeue
# that resumes. docs/slurm.md explains the behaviour and every variable; in short:
#
#   HSCONAS             the hsconas binary (default: `hsconas` on PATH)
#   HSC_CONFIG          the config when the script gets no CONFIG argument
#   HSC_SET             extra `key=value` overrides, space separated (after the script's own --set options)
#   HSC_LAUNCHER        srun (default) | mpirun | none (one process, no MPI launcher)
#   HSC_SRUN_MPI        srun's --mpi plugin (default pmix: Debian's Open MPI speaks PMIx to Slurm)
#   HSC_LAUNCH_ARGS     extra options for srun or mpirun, space separated
#   HSC_RESUME          auto (default: --resume when SLURM_RESTART_COUNT > 0) | 1 (always) | 0 (never)
#   HSC_MAX_REQUEUES    most restarts of one job, preemptions included (default 20)
#   HSC_FAILURE_REQUEUES  requeues after a failure that was not a signal (default 1; 0: none)
#
# Signals. The scripts ask for `--signal=B:USR1@<lead>`: Slurm sends USR1 to this batch shell <lead>
# seconds before the time limit. The trap forwards USR1 to the step; hsconas writes a checkpoint at the next
# step boundary and exits with status 3; the shell then runs `scontrol requeue`, and the restarted job
# (SLURM_RESTART_COUNT > 0) runs the same command with --resume. `scancel --signal=USR1 --batch JOB` does
# the same by hand. SIGTERM means Slurm itself is ending the job (scancel, time limit, preemption, an
# external `scontrol requeue`): the trap forwards it and waits for the checkpoint, but requeues nothing —
# Slurm decides whether the job comes back, and a cancelled job stays cancelled.

# hsc_log MESSAGE: one line on stderr, prefixed and timed, into the job's log.
hsc_log() { echo "[hsconas-job $(date +%H:%M:%S)] $*" >&2; }
hsc_die() { # STATUS MESSAGE
  local status=$1
  shift
  hsc_log "error: $*"
  exit "$status"
}

_hsc_signal=""  # the first signal this shell caught (USR1 or TERM)
_hsc_child=""   # pid of the running launcher (srun, mpirun or hsconas)
_hsc_leaving="" # set once this shell has requeued its job and is on its way out

_hsc_on_signal() { # SIG
  if [ -n "$_hsc_leaving" ]; then exit 0; fi # the requeue's own SIGTERM
  if [ -n "$_hsc_signal" ]; then return; fi
  _hsc_signal=$1
  if [ -n "$_hsc_child" ] && kill -0 "$_hsc_child" 2>/dev/null; then
    # USR1 whatever arrived: srun and mpirun both pass USR1 on to every task, while mpirun answers TERM by
    # killing its processes itself, which could cut the checkpoint short.
    hsc_log "caught SIG$1: asking hsconas to checkpoint and stop"
    kill -USR1 "$_hsc_child" 2>/dev/null || true
  else
    hsc_log "caught SIG$1 between steps"
  fi
}
trap '_hsc_on_signal USR1' USR1
trap '_hsc_on_signal TERM' TERM

# hsc_init "$@": reads CONFIG and the script's --set options, the environment, and checks the config once on
# this node (a bad config is an error, never a requeue). Sets HSC_CMD_CONFIG, HSC_CMD_SETS (array),
# HSC_RUN_DIR, HSC_LAUNCH (array).
hsc_init() {
  HSCONAS=${HSCONAS:-hsconas}
  command -v "$HSCONAS" >/dev/null 2>&1 ||
    hsc_die 1 "hsconas binary '$HSCONAS' not found: put it on PATH or set HSCONAS=/path/to/hsconas"
  HSCONAS=$(command -v "$HSCONAS")
  HSC_CMD_CONFIG=${HSC_CONFIG:-}
  HSC_CMD_SETS=()
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    HSC_CMD_CONFIG=$1
    shift
  fi
  while [ $# -gt 0 ]; do
    case $1 in
    --set)
      [ $# -ge 2 ] || hsc_die 2 "--set needs KEY=VALUE"
      HSC_CMD_SETS+=(--set "$2")
      shift 2
      ;;
    --set=*)
      HSC_CMD_SETS+=(--set "${1#--set=}")
      shift
      ;;
    *) hsc_die 2 "unexpected argument '$1' (usage: sbatch SCRIPT CONFIG [--set KEY=VALUE ...])" ;;
    esac
  done
  local s
  for s in ${HSC_SET:-}; do HSC_CMD_SETS+=(--set "$s"); done
  [ -n "$HSC_CMD_CONFIG" ] || hsc_die 2 "no config: pass CONFIG after the script name or set HSC_CONFIG"
  [ -r "$HSC_CMD_CONFIG" ] || hsc_die 1 "config '$HSC_CMD_CONFIG' not readable from $(pwd)"

  # Open MPI refuses to start as root without these (test clusters and containers run jobs as root).
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  # Each rank runs its own OpenMP threads over the cores it was given; OpenBLAS stays single-threaded
  # inside them (see README, Threads).
  export OPENBLAS_NUM_THREADS=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

  # The effective config: checks it (exit 1 names the key) and tells where the run writes.
  local dump
  dump=$("$HSCONAS" config "$HSC_CMD_CONFIG" --dump "${HSC_CMD_SETS[@]}") ||
    hsc_die 1 "the configuration does not load (message above): nothing was started"
  HSC_RUN_DIR=$(awk '/^run:/ {r = 1; next} /^[^ #]/ {r = 0} r && $1 == "dir:" {sub(/^ *dir: */, ""); gsub(/^"|"$/, ""); print; exit}' <<<"$dump")
  [ -n "$HSC_RUN_DIR" ] || hsc_die 1 "no run.dir in 'hsconas config --dump' output"
  mkdir -p "$HSC_RUN_DIR" || hsc_die 1 "cannot create run.dir '$HSC_RUN_DIR'"

  local launcher=${HSC_LAUNCHER:-srun} extra
  read -r -a extra <<<"${HSC_LAUNCH_ARGS:-}"
  case $launcher in
  srun)
    [ -n "${SLURM_JOB_ID:-}" ] || hsc_die 2 "HSC_LAUNCHER=srun outside a Slurm job: submit with sbatch"
    HSC_LAUNCH=(srun --mpi="${HSC_SRUN_MPI:-pmix}" --kill-on-bad-exit=1)
    # Slurm 22.05's srun no longer takes --cpus-per-task from the job's environment.
    [ -n "${SLURM_CPUS_PER_TASK:-}" ] && HSC_LAUNCH+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
    ;;
  mpirun) HSC_LAUNCH=(mpirun) ;; # inside an allocation Open MPI takes hosts and slots from Slurm
  none) HSC_LAUNCH=() ;;
  *) hsc_die 2 "HSC_LAUNCHER must be srun, mpirun or none (got '$launcher')" ;;
  esac
  HSC_LAUNCH+=("${extra[@]}")
  hsc_log "job ${SLURM_JOB_ID:-none} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-$(hostname)}" \
    "(${SLURM_NTASKS:-1} tasks); run.dir $HSC_RUN_DIR; $HSCONAS"
}

# hsc_resume_flag: prints --resume when this start should resume (HSC_RESUME).
hsc_resume_flag() {
  case ${HSC_RESUME:-auto} in
  auto) [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && echo --resume ;;
  1) echo --resume ;;
  0) ;;
  *) hsc_die 2 "HSC_RESUME must be auto, 1 or 0 (got '$HSC_RESUME')" ;;
  esac
  return 0
}

# _hsc_requeue WHY STATUS: puts this job back in the queue (it restarts with SLURM_RESTART_COUNT + 1 and
# resumes) and exits; outside Slurm, or past the limits, exits with STATUS instead.
_hsc_requeue() {
  local why=$1 status=$2 restarts=${SLURM_RESTART_COUNT:-0}
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    hsc_log "$why; not under Slurm, so not requeued: rerun with HSC_RESUME=1 to continue"
    exit "$status"
  fi
  if [ "$restarts" -ge "${HSC_MAX_REQUEUES:-20}" ]; then
    hsc_log "$why; not requeued: this job has restarted $restarts times (HSC_MAX_REQUEUES=${HSC_MAX_REQUEUES:-20})." \
      "Resubmit with HSC_RESUME=1 to continue from the newest checkpoint"
    exit "$status"
  fi
  echo "$(date -u +%FT%TZ) job $SLURM_JOB_ID restart $restarts: requeued: $why" >>"$HSC_RUN_DIR/slurm-requeues.log"
  # Logged first: the requeue ends this shell and its children at once with SIGTERM (the trap exits 0).
  # Slurm starts the job again once it is eligible: after the cluster's credential lifetime (AuthInfo
  # cred_expire, 120 s by default).
  hsc_log "$why; requeueing job $SLURM_JOB_ID (restart $((restarts + 1)) will resume)"
  _hsc_leaving=1
  local out
  if ! out=$(scontrol requeue "$SLURM_JOB_ID" 2>&1); then
    _hsc_leaving=""
    hsc_log "'scontrol requeue $SLURM_JOB_ID' failed: $out. Resubmit with HSC_RESUME=1 to continue"
    exit "$status"
  fi
  exit 0
}

# hsc_phase COMMAND [ARGS...]: runs `hsconas COMMAND CONFIG ARGS --set ... [--resume]` as one step across the
# allocation and returns when it is done (status 0). A stop by a signal (status 3) requeues the job; a
# failure requeues it HSC_FAILURE_REQUEUES times, then exits with the step's status. Pass --no-resume before
# COMMAND for commands that resume by themselves when rerun (profile).
hsc_phase() {
  local resume
  resume=$(hsc_resume_flag)
  if [ "$1" = --no-resume ]; then
    resume=""
    shift
  fi
  local cmd=$1
  shift
  if [ -n "$_hsc_signal" ]; then _hsc_stopped "SIG$_hsc_signal before '$cmd' started"; fi
  local argv=("${HSC_LAUNCH[@]}" "$HSCONAS" "$cmd" "$HSC_CMD_CONFIG" "$@" "${HSC_CMD_SETS[@]}")
  [ -n "$resume" ] && argv+=("$resume")
  hsc_log "step: ${argv[*]}"
  "${argv[@]}" &
  _hsc_child=$!
  # A trapped signal interrupts `wait` (status > 128) while the step runs on; wait again until it is gone,
  # then once more for its status (bash keeps it).
  while kill -0 "$_hsc_child" 2>/dev/null; do wait "$_hsc_child" || true; done
  local rc=0
  wait "$_hsc_child" || rc=$?
  _hsc_child=""
  case $rc in
  0)
    hsc_log "'$cmd' done"
    return 0
    ;;
  2) hsc_die 2 "'$cmd' rejected its command line (status 2): not requeued" ;;
  3) _hsc_stopped "'$cmd' stopped after a checkpoint (status 3)" ;;
  esac
  if [ -n "$_hsc_signal" ]; then _hsc_stopped "'$cmd' ended with status $rc after SIG$_hsc_signal"; fi
  local failures=0
  if [ -f "$HSC_RUN_DIR/slurm-requeues.log" ]; then
    failures=$(grep -c "^[^ ]* job ${SLURM_JOB_ID:-none} .*: requeued: failure" "$HSC_RUN_DIR/slurm-requeues.log" || true)
  fi
  if [ "$failures" -lt "${HSC_FAILURE_REQUEUES:-1}" ]; then
    _hsc_requeue "failure: '$cmd' exited with status $rc (requeue $((failures + 1)) of ${HSC_FAILURE_REQUEUES:-1} after failures)" "$rc"
  fi
  hsc_die "$rc" "'$cmd' failed with status $rc (after $failures requeue(s) for failures; HSC_FAILURE_REQUEUES=${HSC_FAILURE_REQUEUES:-1})"
}

# _hsc_stopped WHY: the run stopped resumably. USR1 (the time-limit warning, or a request by hand) or a step
# that stopped on its own is requeued here; after SIGTERM Slurm is ending the job and decides itself.
_hsc_stopped() {
  if [ "$_hsc_signal" = TERM ]; then
    hsc_log "$1; SIGTERM: Slurm is ending this job (it requeues it itself on preemption or 'scontrol requeue')"
    exit 3
  fi
  _hsc_requeue "$1" 3
}
