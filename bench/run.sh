#!/usr/bin/env bash
# Operator benchmark: the CPU backend (bench/ops.c) and PyTorch (bench/ops_torch.py) on the same shapes
# (bench/shapes.txt), with the same thread count and environment, in the same run; then one report of the
# two side by side (bench/report.py), printed and kept in BUILD/bench/report.md.
#   bench/run.sh BUILD [THREADS]        THREADS defaults to nproc
# Environment: PYTHON (default /usr/bin/python3, the one with torch); HSC_BENCH_OPS=op,op,... runs only
# those ops. OPENBLAS_CORETYPE is left as the environment has it and printed (it picks the OpenBLAS
# kernel, and both sides use OpenBLAS, see notes/platform.md §4); to compare another kernel, set it for
# the whole command so that both sides see it.
# Exit status: non-zero when either side failed or the report found a problem; the report is still printed.
set -uo pipefail

usage="usage: bench/run.sh BUILD [THREADS]"
build=${1:?$usage}
threads=${2:-$(nproc)}
case "$threads" in
'' | *[!0-9]* | 0)
  echo "bench/run.sh: THREADS must be a positive integer (got '$threads'); $usage" >&2
  exit 2
  ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
ops=$build/bench/ops
out=$build/bench
if [ ! -x "$ops" ]; then
  echo "bench/run.sh: $ops not found; build it with 'make BUILD=$build $ops'" >&2
  exit 1
fi
only=()
[ -n "${HSC_BENCH_OPS:-}" ] && only=("--ops=$HSC_BENCH_OPS")

# Both sides get exactly this environment: THREADS OpenMP threads (the backend's operators, torch's
# intra-op pool) and THREADS OpenBLAS threads (the sgemm reference here, torch's BLAS calls there).
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'; }
# CPU time (clock ticks) all processes used, the hypervisor stole, and this script's finished children
# used: the difference of the first and the last over the run is what other processes took from it.
cpu_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat 2>/dev/null || echo 0; }
cpu_steal() { awk '/^cpu /{print $9; exit}' /proc/stat 2>/dev/null || echo 0; }
cpu_children() { sed 's/.*) //' "/proc/$$/stat" 2>/dev/null | awk '{print $14 + $15}' || echo 0; }
{
  echo "# Operator benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- command: bench/run.sh $build $threads"
  model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  echo "- cpu: ${model:-unknown}, $(nproc) cores online, threads $threads"
  echo "- environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>}" \
    "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-<unset>} OMP_NUM_THREADS=$OMP_NUM_THREADS" \
    "OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS"
  echo "- load average before: $(load)"
} | tee "$out/report.md"

status=0
busy0=$(cpu_busy) steal0=$(cpu_steal) ours0=$(cpu_children) t0=$(date +%s)
echo "bench/run.sh: hsconas ops ($ops) ..." >&2
"$ops" "$here/shapes.txt" "$threads" ${only[@]+"${only[@]}"} >"$out/ops-c.txt" || {
  echo "bench/run.sh: $ops failed (status $?); the report below lacks what it did not measure" >&2
  status=1
}
echo "bench/run.sh: torch ops ($python bench/ops_torch.py) ..." >&2
"$python" "$here/ops_torch.py" "$here/shapes.txt" "$threads" ${only[@]+"${only[@]}"} >"$out/ops-torch.txt" || {
  echo "bench/run.sh: ops_torch.py failed (status $?)" >&2
  status=1
}
busy1=$(cpu_busy) steal1=$(cpu_steal) ours1=$(cpu_children) t1=$(date +%s)
{
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v s=$((steal1 - steal0)) -v hz="$hz" \
    -v wall=$((t1 - t0)) -v cores="$(nproc)" 'BEGIN {
      other = (b - o) / hz; if (other < 0) other = 0
      share = wall > 0 ? 100 * other / (wall * cores) : 0
      printf "- CPU time other processes took during the %d s run: %.1f s (%.0f%% of %d cores); " \
        "stolen by the hypervisor: %.1f s\n", wall, other, share, cores, s / hz }'
  echo "- load average after: $(load)"
  echo
  "$python" "$here/report.py" "$out/ops-c.txt" "$out/ops-torch.txt"
} | tee -a "$out/report.md" || status=1
echo "bench/run.sh: raw lines in $out/ops-c.txt and $out/ops-torch.txt, report in $out/report.md" >&2
exit $status
