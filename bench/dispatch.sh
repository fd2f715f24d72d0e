#!/usr/bin/env bash
# Dispatch overhead of the search's master/worker farm (issue: <= 100 us of master time per evaluation,
# >= 95% worker utilisation with 1-second evaluations), in the search's benchmark mode
# (evolution.benchmark_eval_s: every evaluation is a synthetic one that sleeps that long and returns an
# accuracy computed from the architecture; no supernet). Everything else is the real search: candidate
# creation with DCS, the latency model, the history, the farm's messages, its sleeping waits.
#   bench/dispatch.sh BUILD [EVAL_S] [RANKS ...]      (default: 1 s, ranks 2 8 32; oversubscribed)
# Per rank count it runs a steady-state search (no generation barrier) of 8 evaluations per worker (at least
# 40), without
# checkpoints between evaluations (checkpoint.every_evals=0) and, for the largest rank count, again with a
# checkpoint after every evaluation, and prints beside the targets:
#   master_us/eval    the master thread's CPU time in the evaluation loop (creating candidates, DCS, taking
#                     results, checkpoints, messages) per evaluation, without its idle polls;
#   idle_polls_%core  the CPU of those idle polls (one test per millisecond of waiting) as a share of a core;
#   utilisation       sum of evaluation times / (workers x wall time with work pending).
set -euo pipefail
build=${1:?usage: bench/dispatch.sh BUILD [EVAL_S] [RANKS ...]}
eval_s=${2:-1}
shift $(($# >= 2 ? 2 : 1))
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(2 8 32)
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$build" && pwd)/hsconas
work=$(mktemp -d /tmp/hsconas-dispatch.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cfg="$here/configs/fmnist.yaml"
echo "== latency model for the candidates' predictions (short protocol)"
"$bin" profile "$cfg" --set run.dir="$work/model" --set latency.fit_archs=10 --set latency.holdout_archs=0 \
  --set latency.repeats=3 --set latency.warmup=1 --set latency.min_sample_ms=0.2 >"$work/profile.log" 2>&1 ||
  { cat "$work/profile.log"; exit 1; }
printf "%6s %8s %6s %8s %10s %9s %16s %18s %12s %8s\n" ranks workers evals eval_s ckpt_every wall_s \
  "master_us/eval" "idle_polls_%core" utilisation resent
row() {
  local np=$1 every=$2 dir="$work/np$1-$2" workers=$(($1 > 1 ? $1 - 1 : 1))
  mkdir -p "$dir"
  cp "$work/model/latency.yaml" "$dir/"
  local pop=$((workers * 2)) start end
  [ $pop -ge 10 ] || pop=10
  start=$(date +%s.%N)
  mpirun -np "$np" "$bin" search "$cfg" --set run.dir="$dir" --set evolution.benchmark_eval_s="$eval_s" \
    --set evolution.mode=steady --set shrink.stages=0 --set dcs.enabled=false \
    --set evolution.population=$pop --set evolution.generations=4 --set evolution.topk=2 \
    --set evolution.mutations=1 --set evolution.crossovers=1 --set checkpoint.every_evals="$every" \
    --set dist.threads=1 >"$dir/log" 2>&1 || { tail -n 20 "$dir/log"; exit 1; }
  end=$(date +%s.%N)
  /usr/bin/python3 - "$dir/summary.json" "$np" "$eval_s" "$every" "$start" "$end" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["dispatch"]
np_, ev, every, t0, t1 = sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
print("%6s %8d %6d %8g %10s %9.1f %9.1f (<=100) %18.2f %6.2f%% (>=95%%) %8d" % (
    np_, d["workers"], d["completed"], ev, every, t1 - t0, d["master_us_per_eval"],
    100 * d["idle_poll_core_share"], 100 * d["utilisation"], d["redispatched"]))
PY
}
for np in "${ranks[@]}"; do row "$np" 0; done
row "${ranks[-1]}" 1
echo "(wall_s includes MPI start-up and the latency model's load on every rank; utilisation counts the time"
echo " from the first dispatch to the last result)"
