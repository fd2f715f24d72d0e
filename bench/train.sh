#!/usr/bin/env bash
# Training-step and evaluation throughput of one supernet path: the C engine (BUILD/bench/train, from
# bench/train.c) and PyTorch (bench/train_torch.py) on the same architecture, batch and thread count, one
# after the other in the same run; then a table of the two side by side with the ratio hsconas / torch
# against the targets (training >= 3x, evaluation >= 1.5x), printed and kept in BUILD/bench/train.md.
#   bench/train.sh BUILD [THREADS]        THREADS defaults to nproc
# Environment: PYTHON (default /usr/bin/python3, the one with torch); HSC_BENCH_BATCHES (default
# "128 32", one row pair per batch); HSC_BENCH_STEPS and HSC_BENCH_WARMUP (timed and warm-up steps, default
# those of bench/train.c, 30 and 5; e.g. HSC_BENCH_STEPS=3 HSC_BENCH_WARMUP=1 for a smoke run);
# HSC_BENCH_CONFIG (default configs/fmnist.yaml) and HSC_BENCH_ARCH (default bench/train.c's).
# Threads: both sides get OMP_NUM_THREADS=THREADS. The C side runs with OPENBLAS_NUM_THREADS=1: the CPU
# backend tiles its GEMMs over its OpenMP threads and sets OpenBLAS single-threaded itself (cpu_backend.c).
# Torch gets THREADS intra-op threads (torch.set_num_threads) and OPENBLAS_NUM_THREADS=THREADS, as in
# bench/run.sh: its BLAS calls (the classifier) are made outside its OpenMP regions. Everything else,
# OPENBLAS_CORETYPE included, is the environment as it is, printed.
# Exit status: non-zero only when a side failed (or bad arguments); a missed target is reported, not an
# error: speed is never a pass/fail test.
set -uo pipefail

usage="usage: bench/train.sh BUILD [THREADS]"
build=${1:?$usage}
threads=${2:-$(nproc)}
case "$threads" in
'' | *[!0-9]* | 0)
  echo "bench/train.sh: THREADS must be a positive integer (got '$threads'); $usage" >&2
  exit 2
  ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-/usr/bin/python3}
train=$build/bench/train
out=$build/bench
if [ ! -x "$train" ]; then
  echo "bench/train.sh: $train not found; build it with 'make BUILD=$build $train'" >&2
  exit 1
fi
batches=${HSC_BENCH_BATCHES:-128 32}
# Options both sides take, with the same meaning and defaults (bench/train.c).
common=(--config "${HSC_BENCH_CONFIG:-$root/configs/fmnist.yaml}")
[ -n "${HSC_BENCH_ARCH:-}" ] && common+=(--arch "$HSC_BENCH_ARCH")
[ -n "${HSC_BENCH_STEPS:-}" ] && common+=(--steps "$HSC_BENCH_STEPS")
[ -n "${HSC_BENCH_WARMUP:-}" ] && common+=(--warmup "$HSC_BENCH_WARMUP")
train_target=3.0 eval_target=1.5

export OMP_NUM_THREADS=$threads
c_env=(env OPENBLAS_NUM_THREADS=1)
torch_env=(env OPENBLAS_NUM_THREADS="$threads")

load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'; }
# As bench/run.sh: CPU time (clock ticks) all processes used and this script's finished children used;
# the difference over the run is what other processes took from it.
cpu_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat 2>/dev/null || echo 0; }
cpu_children() { sed 's/.*) //' "/proc/$$/stat" 2>/dev/null | awk '{print $14 + $15}' || echo 0; }
# field NAME FILE [N]: the Nth (default 1st) value after NAME on its line in FILE, or empty.
field() { awk -v k="$1" -v n="${3:-1}" '$1 == k { print $(n + 1); exit }' "$2" 2>/dev/null; }
{
  echo "# Training-step benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- command: bench/train.sh $build $threads (batches $batches${HSC_BENCH_STEPS:+, steps $HSC_BENCH_STEPS}${HSC_BENCH_WARMUP:+, warm-up $HSC_BENCH_WARMUP})"
  model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  echo "- cpu: ${model:-unknown}, $(nproc) cores online, threads $threads"
  echo "- environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>} OMP_NUM_THREADS=$OMP_NUM_THREADS;" \
    "hsconas OPENBLAS_NUM_THREADS=1, torch OPENBLAS_NUM_THREADS=$threads"
  echo "- load average before: $(load)"
} | tee "$out/train.md"

status=0
rows=()
busy0=$(cpu_busy) ours0=$(cpu_children) t0=$(date +%s)
for b in $batches; do
  c_out=$out/train-c-b$b.txt t_out=$out/train-torch-b$b.txt
  echo "bench/train.sh: hsconas, batch $b ($train) ..." >&2
  "${c_env[@]}" "$train" "${common[@]}" --batch "$b" >"$c_out" || {
    echo "bench/train.sh: $train failed (status $?), see $c_out" >&2
    status=1
  }
  echo "bench/train.sh: torch, batch $b ($python bench/train_torch.py) ..." >&2
  "${torch_env[@]}" "$python" "$here/train_torch.py" "${common[@]}" --batch "$b" --threads "$threads" \
    >"$t_out" || {
    echo "bench/train.sh: train_torch.py failed (status $?), see $t_out" >&2
    status=1
  }
  # The two sides must have run the same network: their multiply-accumulate counts agree.
  cm=$(field mflops "$c_out") tm=$(field mflops "$t_out")
  if [ -n "$cm" ] && [ -n "$tm" ] && [ "$cm" != "$tm" ]; then
    echo "bench/train.sh: batch $b: the sides ran different networks (mflops $cm vs $tm)" >&2
    status=1
  fi
  for m in train eval; do
    rows+=("$m $b $(field ${m}_img_s "$c_out") $(field ${m}_img_s "$t_out")")
  done
done
busy1=$(cpu_busy) ours1=$(cpu_children) t1=$(date +%s)

{
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v hz="$hz" -v wall=$((t1 - t0)) \
    -v cores="$(nproc)" 'BEGIN {
      other = (b - o) / hz; if (other < 0) other = 0
      share = wall > 0 ? 100 * other / (wall * cores) : 0
      printf "- CPU time other processes took during the %d s run: %.1f s (%.0f%% of %d cores)\n",
        wall, other, share, cores }'
  echo "- load average after: $(load)"
  c0=$out/train-c-b${batches%% *}.txt t0f=$out/train-torch-b${batches%% *}.txt
  echo "- hsconas: $(sed -n 's/^device //p' "$c0" 2>/dev/null | head -1)"
  echo "- torch: $(sed -n 's/^device //p' "$t0f" 2>/dev/null | head -1)"
  echo "- arch: $(field arch "$c0"), $(field mflops "$c0") MMAC per image"
  echo
  echo "Images per second, the median of the timed steps; ratio = hsconas / torch (> 1: hsconas faster)."
  echo
  echo "| metric | batch | hsconas img/s | PyTorch img/s | ratio | target | met |"
  echo "|---|--:|--:|--:|--:|--:|---|"
  for r in "${rows[@]}"; do
    # shellcheck disable=SC2086 # the row is four words
    set -- $r
    target=$train_target
    [ "$1" = eval ] && target=$eval_target
    awk -v m="$1" -v b="$2" -v c="${3:-}" -v t="${4:-}" -v g="$target" 'BEGIN {
      if (c == "" || t == "" || t + 0 <= 0) { r = "-"; met = "no result" }
      else { q = c / t; r = sprintf("%.2f", q); met = q >= g ? "met" : "not met" }
      printf "| %s | %d | %s | %s | %s | >= %.1fx | %s |\n", \
        (m == "train" ? "training step" : "evaluation"), b, c == "" ? "-" : c, t == "" ? "-" : t, r, g, met }'
  done
} | tee -a "$out/train.md"
echo "bench/train.sh: raw lines in $out/train-{c,torch}-b*.txt, table in $out/train.md" >&2
exit $status
