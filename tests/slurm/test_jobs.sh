#!/usr/bin/env bash
# The jobs/ scripts submitted with sbatch to a real, throwaway Slurm cluster on this machine (cluster.sh:
# munged + slurmctld + 2 fake slurmd nodes, as root): training completes on 1 and 2 nodes with the same
# result; a job stopped mid-training by USR1 or by `scontrol requeue` is requeued, resumes, and ends bitwise
# equal to an uninterrupted run; a failing phase of pipeline.sh cancels the phases after it; failures
# requeue a bounded number of times. Where Slurm cannot start here (not root, packages missing) every case
# is reported skipped with the reason.
#   tests/slurm/test_jobs.sh BUILD
# HSC_SLURM_KEEP=1 keeps the cluster's state directory (logs) after a failure.
# `A && pass || fail` below: pass always succeeds.
# shellcheck disable=SC2015
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
name=test_slurm_jobs
nskip=0
skip() {
  echo "SKIP $1: $2"
  nskip=$((nskip + 1))
}
finish() {
  local summary="$name: $npass passed, $nfail failed"
  [ "$nskip" -gt 0 ] && summary="$summary, $nskip skipped"
  echo "$summary"
  [ "$nfail" -eq 0 ]
}
cluster=$here/tests/slurm/cluster.sh
cases=(train-1-node inspect train-2-nodes preempt-usr1 preempt-requeue preempt-mpirun pipeline-cancels failure-bounded
  pipeline-profile-train-search array-targets run-sbatch)

if ! reason=$("$cluster" check); then
  for c in "${cases[@]}"; do skip "$c" "no Slurm cluster can start here: $reason"; done
  finish
  exit
fi

state=$work/cluster
mkdir -p "$state"
chmod go+x "$work" # munged wants every directory above its socket searchable
cleanup() {
  "$cluster" stop "$state" >/dev/null 2>&1 || echo "WARNING: stopping the test cluster failed ($state)"
  if [ "$nfail" -gt 0 ] && [ -n "${HSC_SLURM_KEEP:-}" ]; then
    echo "kept $work (HSC_SLURM_KEEP)"
  else rm -rf "$work"; fi
}
trap cleanup EXIT
t_start=$(date +%s)
if ! "$cluster" start "$state" --nodes 2 >"$work/cluster.log" 2>&1; then
  fail "the test cluster starts" "$(tail -n 30 "$work/cluster.log")"
  finish
  exit 1
fi
export SLURM_CONF=$state/etc/slurm.conf
echo "cluster up in $(($(date +%s) - t_start)) s ($state)"

export HSCONAS=$bin
# Fake nodes share one hostname, so Open MPI's shared-memory segments would collide between them.
export OMPI_MCA_btl=self,tcp
unset HSC_STOP_AT_STEP HSC_CONFIG HSC_SET HSC_LAUNCHER HSC_RESUME
cfg=$here/tests/cli/tiny.yaml
# The runs that get preempted: long enough that a signal sent once step 50 is logged lands mid-training
# (the release build does 2000 steps in a few seconds; the sanitizer build is about 45 times slower).
steps=2000
[ -n "${HSC_SANITIZED:-}" ] && steps=300
long=(--set "supernet.max_steps=$steps" --set checkpoint.every_steps=100 --set checkpoint.keep=30
  --set log.every_steps=50)
ck() { printf '%s/checkpoints/supernet-%010d.h5' "$1" "$2"; }

# submit NAME [sbatch options] SCRIPT ARGS...: prints the job id; the log is $work/NAME.out.
submit() {
  local n=$1
  shift
  sbatch --parsable -o "$work/$n.out" "$@"
}

# wait_job ID [SECONDS]: until the job has left the queue (requeues included); 1 on timeout.
wait_job() {
  local id=$1 secs=${2:-120} i
  for ((i = 0; i < secs * 5; i++)); do
    [ -z "$(squeue -h -j "$id" 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  echo "    job $id still queued after ${secs}s: $(squeue -h -j "$id" -o '%T %r' 2>&1)"
  return 1
}

job_field() { scontrol show job "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | head -n 1 | cut -d= -f2; }

# expect_job CASE ID STATE EXIT [RESTARTS]: the finished job's state, exit code and restart count.
expect_job() {
  local c=$1 id=$2 want_state=$3 want_exit=$4 want_restarts=${5:-}
  local st ex rs
  st=$(job_field "$id" JobState) ex=$(job_field "$id" ExitCode) rs=$(job_field "$id" Restarts)
  if [ "$st" = "$want_state" ] && [ "$ex" = "$want_exit" ] && { [ -z "$want_restarts" ] || [ "$rs" = "$want_restarts" ]; }; then
    pass "$c"
  else
    fail "$c" "job $id: JobState=$st ExitCode=$ex Restarts=$rs, expected $want_state $want_exit ${want_restarts:+Restarts=$want_restarts}"
    [ -f "$work/$c.out" ] && sed 's/^/    | /' "$work/$c.out" | tail -n 25
  fi
}

same_params() { # A B: final checkpoints equal bitwise in /params and /optim
  h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optim /optim
}

# 1. train.sbatch on one node (2 tasks) and on two fake nodes (1 task each): both complete and leave a
#    valid final checkpoint; the same number of ranks gives the same parameters on 1 or 2 nodes. The
#    uninterrupted long reference for the preemption cases runs alongside.
t0=$(date +%s)
j1=$(submit train-1-node -N1 -n2 "$here/jobs/train.sbatch" "$cfg" --set run.dir="$work/r1")
j2=$(submit train-2-nodes -N2 --ntasks-per-node=1 "$here/jobs/train.sbatch" "$cfg" --set run.dir="$work/r2")
jref=$(submit ref -N1 -n2 "$here/jobs/train.sbatch" "$cfg" --set run.dir="$work/ref" "${long[@]}")
wait_job "$j1"
expect_job train-1-node "$j1" COMPLETED 0:0 0
if run "$work/inspect.log" "$bin" inspect "$(ck "$work/r1" 30)" && grep -q "params/classifier" "$work/inspect.log"; then
  pass inspect
else fail inspect "$(tail -n 5 "$work/inspect.log")"; fi
wait_job "$j2"
expect_job train-2-nodes "$j2" COMPLETED 0:0 0
if grep -q "on n\[1-2\] (2 tasks)" "$work/train-2-nodes.out" && same_params "$(ck "$work/r1" 30)" "$(ck "$work/r2" 30)"; then
  pass "2 nodes equal 1 node bitwise"
else fail "2 nodes equal 1 node bitwise" "$(grep hsconas-job "$work/train-2-nodes.out" | head -n 2)"; fi
echo "    (training jobs: $(($(date +%s) - t0)) s)"

# preempt CASE HOW [LAUNCHER]: a long run signalled once it has logged step 50: HOW=usr1 is the time-limit warning
# (`scancel --signal=USR1 --batch`: the job requeues itself), HOW=requeue is `scontrol requeue` (Slurm ends
# and requeues the job). Either way it must resume and end bitwise equal to the reference.
preempt() {
  local c=$1 how=$2 id i t1
  t1=$(date +%s)
  id=$(HSC_LAUNCHER=${3:-srun} submit "$c" -N1 -n2 "$here/jobs/train.sbatch" "$cfg" --set run.dir="$work/$c" "${long[@]}")
  for ((i = 0; i < 600; i++)); do
    grep -q "step 50/$steps" "$work/$c.out" 2>/dev/null && break
    sleep 0.1
  done
  [ "$i" -lt 600 ] || echo "    $c: no 'step 50/$steps' line after 60 s; signalling anyway"
  if [ "$how" = usr1 ]; then scancel --signal=USR1 --batch "$id"; else scontrol requeue "$id"; fi
  wait_job "$id" 180
  expect_job "$c" "$id" COMPLETED 0:0 1
  local stop
  stop=$(sed -nE 's/.*signal received: checkpointing at step ([0-9]+).*/\1/p' "$work/$c.out" | head -n 1)
  if [ -n "$stop" ] && [ "$stop" -lt "$steps" ] && [ -f "$(ck "$work/$c" "$stop")" ] &&
    grep -q "resuming from .*supernet-$(printf %010d "$stop").h5" "$work/$c.out"; then
    pass "$c: checkpoint at step $stop, resumed from it"
  else fail "$c: checkpoint mid-training, resumed from it" "stop step '${stop:-none}'"; fi
  if [ -f "$(ck "$work/$c" "$steps")" ] && same_params "$(ck "$work/ref" "$steps")" "$(ck "$work/$c" "$steps")"; then
    pass "$c: bitwise equal to the uninterrupted run"
  else fail "$c: bitwise equal to the uninterrupted run"; fi
  echo "    ($c: $(($(date +%s) - t1)) s, requeue to restart: $(restart_gap "$work/$c.out") s)"
}

# restart_gap LOG: seconds between the first attempt's last job line and the restart's first.
restart_gap() {
  local a b
  a=$(grep -E '^\[hsconas-job [0-9:]+\]' "$1" | grep -B1 'restart 1 on' | head -n 1 | sed -E 's/^\[hsconas-job ([0-9:]+)\].*/\1/')
  b=$(grep -E '^\[hsconas-job [0-9:]+\] .*restart 1 on' "$1" | head -n 1 | sed -E 's/^\[hsconas-job ([0-9:]+)\].*/\1/')
  [ -n "$a" ] && [ -n "$b" ] && echo $(($(date -d "$b" +%s) - $(date -d "$a" +%s)))
}

wait_job "$jref" 180
expect_job "reference run completes" "$jref" COMPLETED 0:0 0
preempt preempt-usr1 usr1
grep -q "requeued: 'train' stopped after a checkpoint" "$work/preempt-usr1/slurm-requeues.log" 2>/dev/null &&
  pass "preempt-usr1: the requeue is logged in run.dir" || fail "preempt-usr1: the requeue is logged in run.dir"
preempt preempt-requeue requeue
preempt preempt-mpirun usr1 mpirun
grep -q "step: mpirun " "$work/preempt-mpirun.out" && pass "preempt-mpirun: launched by mpirun" ||
  fail "preempt-mpirun: launched by mpirun"

# 3. pipeline.sh: a bad configuration value is refused before anything is queued; a train phase that fails
#    at run time (the dataset is missing; HSC_FAILURE_REQUEUES=0: no retry) cancels the search phase that
#    depends on it (afterok) without running it.
if out=$("$here/jobs/pipeline.sh" "$cfg" --set run.dir="$work/pipe" --set supernet.lr=-1 2>"$work/pipeline-bad.err"); then
  fail "pipeline refuses a bad config" "it submitted: $out"
else
  grep -q "supernet.lr" "$work/pipeline-bad.err" && [ -z "$out" ] && pass "pipeline refuses a bad config" ||
    fail "pipeline refuses a bad config" "$(cat "$work/pipeline-bad.err")"
fi
out=$(HSC_PHASES="train search" HSC_FAILURE_REQUEUES=0 HSC_SBATCH_ARGS="-o $work/pipe-%x-%j.out" \
  "$here/jobs/pipeline.sh" "$cfg" --set run.dir="$work/pipe" --set data.path="$work/no-such-dataset" 2>"$work/pipeline.err")
jt=$(awk '$1 == "train" {print $2}' <<<"$out") js=$(awk '$1 == "search" {print $2}' <<<"$out")
if [ -n "$jt" ] && [ -n "$js" ]; then
  wait_job "$jt"
  wait_job "$js" 30
  if [ "$(job_field "$jt" JobState)" = FAILED ] && [ "$(job_field "$js" JobState)" = CANCELLED ] &&
    ! ls "$work"/pipe-hsc-search-* >/dev/null 2>&1; then
    pass pipeline-cancels
  else
    fail pipeline-cancels "train $jt $(job_field "$jt" JobState), search $js $(job_field "$js" JobState) $(job_field "$js" Reason)"
    cat "$work"/pipe-*.out 2>/dev/null | sed 's/^/    | /' | tail -n 20
  fi
  grep -q "no-such-dataset" "$work"/pipe-hsc-train-*.out && pass "pipeline-cancels: the failure names the missing path" ||
    fail "pipeline-cancels: the failure names the missing path"
else
  fail pipeline-cancels "pipeline.sh printed no job ids: $out $(cat "$work/pipeline.err")"
fi

# 4. A step that fails at run time (the dataset is missing) is requeued once (HSC_FAILURE_REQUEUES=1),
#    then the job fails with the step's status.
jf=$(HSC_FAILURE_REQUEUES=1 submit failure-bounded -N1 -n1 "$here/jobs/train.sbatch" "$cfg" \
  --set run.dir="$work/fail" --set data.path="$work/no-such-dataset")
wait_job "$jf" 120
expect_job failure-bounded "$jf" FAILED 1:0 1
[ "$(grep -c 'requeued: failure' "$work/fail/slurm-requeues.log" 2>/dev/null)" = 1 ] &&
  pass "failure-bounded: one requeue logged" || fail "failure-bounded: one requeue logged"

# 5. The whole pipeline, profile -> train -> search, chained by pipeline.sh (a short profile and search).
searchset=(--set latency.fit_archs=8 --set latency.holdout_archs=4 --set latency.repeats=2 --set latency.warmup=1
  --set latency.min_sample_ms=0.1 --set shrink.stages=1 --set shrink.samples=6 --set shrink.finetune_epochs=1
  --set shrink.finetune_max_steps=10 --set evolution.population=6 --set evolution.generations=2
  --set evolution.topk=2 --set evolution.mutations=2 --set evolution.crossovers=2 --set dist.threads=1)
out=$(HSC_SBATCH_ARGS="-o $work/pp-%x-%j.out" HSC_SBATCH_SEARCH="-N2 -n3" \
  "$here/jobs/pipeline.sh" "$cfg" --set run.dir="$work/pp" "${searchset[@]}" 2>"$work/pp.err")
jp=$(awk '$1 == "profile" {print $2}' <<<"$out") jt=$(awk '$1 == "train" {print $2}' <<<"$out")
js=$(awk '$1 == "search" {print $2}' <<<"$out")
if [ -n "$jp" ] && [ -n "$jt" ] && [ -n "$js" ]; then
  wait_job "$jp" 300
  wait_job "$jt" 120
  wait_job "$js" 300
  expect_job pipeline-profile-train-search "$js" COMPLETED 0:0
  s1=$(date -d "$(job_field "$jp" EndTime)" +%s 2>/dev/null || echo 0)
  s2=$(date -d "$(job_field "$jt" StartTime)" +%s 2>/dev/null || echo 0)
  s3=$(date -d "$(job_field "$jt" EndTime)" +%s 2>/dev/null || echo 0)
  s4=$(date -d "$(job_field "$js" StartTime)" +%s 2>/dev/null || echo 0)
  [ "$(job_field "$jp" JobState)" = COMPLETED ] && [ "$(job_field "$jt" JobState)" = COMPLETED ] &&
    [ "$s2" -ge "$s1" ] && [ "$s4" -ge "$s3" ] &&
    pass "pipeline: each phase starts after the one before it ends" ||
    fail "pipeline: each phase starts after the one before it ends" "profile $(job_field "$jp" JobState), train $(job_field "$jt" JobState)"
  [ -s "$work/pp/best.yaml" ] && [ -s "$work/pp/summary.json" ] && [ -s "$work/pp/pareto.svg" ] &&
    pass "pipeline: the search wrote best.yaml, summary.json and the plots" ||
    fail "pipeline: the search wrote best.yaml, summary.json and the plots"
else
  fail pipeline-profile-train-search "pipeline.sh printed no job ids: $out $(cat "$work/pp.err")"
fi

# 6. An array job of two latency targets searching one trained supernet (the pipeline's): each task
#    searches under its own target in RUN_DIR/targets/<T>ms, side by side.
if [ -s "$work/pp/latency.yaml" ]; then
  read -r t1 t2 < <("$bin" latency "$cfg" --set run.dir="$work/pp" --random 40 2>/dev/null |
    grep -E '^[0-9a-f]{16} ' | awk '{print $2}' | sort -g | awk '{v[NR] = $1} END {printf "%.4f %.4f\n", v[int(NR * 0.3)], v[int(NR * 0.8)]}')
  ja=$(HSC_TARGETS="$t1,$t2" submit array-targets -N1 -n2 --array=0-1 "$here/jobs/search-array.sbatch" "$cfg" \
    --set run.dir="$work/pp" "${searchset[@]}")
  wait_job "$ja" 300
  ok=1
  for i in 0 1; do
    st=$(scontrol show job "${ja}_$i" 2>/dev/null | grep -oE 'JobState=[A-Z]+' | head -n 1)
    [ "$st" = JobState=COMPLETED ] || ok=0
  done
  [ $ok = 1 ] && pass "array-targets: both tasks completed" || fail "array-targets: both tasks completed" \
    "$(scontrol show job "$ja" 2>&1 | grep -E 'JobState|ArrayTaskId' | tr '\n' ' ')"
  /usr/bin/python3 - "$work/pp/targets" "$t1" "$t2" >"$work/array.txt" 2>&1 <<'PY'
import json, sys
d, targets = sys.argv[1], [float(t) for t in sys.argv[2:]]
best = []
for t in sys.argv[2:]:
    s = json.load(open("%s/%sms/summary.json" % (d, t)))
    assert abs(s["target_ms"] - float(t)) < 1e-9, (t, s["target_ms"])
    assert s["best"]["latency_ms"] <= float(t), (t, s["best"])
    best.append(s["best"]["latency_ms"])
print("targets", targets, "best latencies", best)
PY
  [ $? -eq 0 ] && pass "array-targets: each target's search stays under it, results side by side" ||
    { fail "array-targets: each target's search stays under it, results side by side"; sed 's/^/    | /' "$work/array.txt"; }
else
  fail array-targets "no latency model from the pipeline's profile phase"
fi

# 7. run.sbatch: the whole pipeline (hsconas run) in one job over two fake nodes.
jr=$(submit run-sbatch -N2 -n3 "$here/jobs/run.sbatch" "$cfg" --set run.dir="$work/whole" "${searchset[@]}")
wait_job "$jr" 300
expect_job run-sbatch "$jr" COMPLETED 0:0
[ -s "$work/whole/latency.yaml" ] && [ -s "$work/whole/best.yaml" ] && grep -q '"state": "done"' "$work/whole/summary.json" &&
  pass "run-sbatch: model, supernet and finished search in run.dir" ||
  fail "run-sbatch: model, supernet and finished search in run.dir"

echo "    (all Slurm cases: $(($(date +%s) - t_start)) s)"
finish
