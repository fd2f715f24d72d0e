#!/usr/bin/env bash
# GPU training-step and evaluation throughput of one ImageNet-space path: the C engine's CUDA backend
# (BUILD/bench/train --backend cuda, from bench/train.c) and PyTorch + cuDNN (bench/train_torch.py --device cuda) on the same architecture,
# batch and GPU, one after the other in the same run; then a table of the two side by side with the ratio
# hsconas / torch against the target (training >= 1.2x), printed and kept in OUT/gpu.md.
#   bench/gpu.sh BUILD [OUT]              OUT defaults to BUILD/bench
# Environment: PYTHON (default python3, the one with torch); HSC_BENCH_BATCHES (default "128 256");
# HSC_BENCH_STEPS, HSC_BENCH_WARMUP (default bench/train.c's 30 and 5); HSC_BENCH_CONFIG (default
# configs/imagenet.yaml), HSC_BENCH_ARCH (default bench/train.c's: every operator in turn at scale 1.0); HSC_GPU_RUN: a command prefix for the C
# side (tests/gpu/run.sh uses it to run the binary with its bundled libraries).
# Exit status: non-zero only when a side failed; a missed target is reported, not an error.
set -uo pipefail
usage="usage: bench/gpu.sh BUILD [OUT]"
build=${1:?$usage}
out=${2:-$build/bench}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-python3}
bin=$build/bench/train
mkdir -p "$out"
if [ ! -x "$bin" ]; then
  echo "bench/gpu.sh: $bin not found; build it with 'make CUDA=1 BUILD=$build $bin'" >&2
  exit 1
fi
batches=${HSC_BENCH_BATCHES:-128 256}
common=(--config "${HSC_BENCH_CONFIG:-$root/configs/imagenet.yaml}")
[ -n "${HSC_BENCH_ARCH:-}" ] && common+=(--arch "$HSC_BENCH_ARCH")
[ -n "${HSC_BENCH_STEPS:-}" ] && common+=(--steps "$HSC_BENCH_STEPS")
[ -n "${HSC_BENCH_WARMUP:-}" ] && common+=(--warmup "$HSC_BENCH_WARMUP")
read -r -a prefix <<<"${HSC_GPU_RUN:-}"
field() { awk -v k="$1" -v n="${3:-1}" '$1 == k { print $(n + 1); exit }' "$2" 2>/dev/null; }
{
  echo "# GPU training-step benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- command: bench/gpu.sh $build (batches $batches${HSC_BENCH_STEPS:+, steps $HSC_BENCH_STEPS})"
  echo "- gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
} | tee "$out/gpu.md"
status=0
rows=()
for b in $batches; do
  c_out=$out/gpu-c-b$b.txt t_out=$out/gpu-torch-b$b.txt
  echo "bench/gpu.sh: hsconas, batch $b ..." >&2
  "${prefix[@]}" "$bin" --backend cuda "${common[@]}" --batch "$b" >"$c_out" 2>&1 || {
    echo "bench/gpu.sh: $bin failed (status $?), see $c_out" >&2
    status=1
  }
  echo "bench/gpu.sh: torch, batch $b ..." >&2
  "$python" "$here/train_torch.py" "${common[@]}" --batch "$b" --device cuda >"$t_out" 2>&1 || {
    echo "bench/gpu.sh: train_torch.py failed (status $?), see $t_out" >&2
    status=1
  }
  cm=$(field mflops "$c_out") tm=$(field mflops "$t_out")
  if [ -n "$cm" ] && [ -n "$tm" ] && [ "$cm" != "$tm" ]; then
    echo "bench/gpu.sh: batch $b: the sides ran different networks (mflops $cm vs $tm)" >&2
    status=1
  fi
  for m in train eval; do rows+=("$m $b $(field ${m}_img_s "$c_out") $(field ${m}_img_s "$t_out")"); done
done
{
  c0=$out/gpu-c-b${batches%% *}.txt t0=$out/gpu-torch-b${batches%% *}.txt
  echo "- hsconas: $(sed -n 's/^device //p' "$c0" 2>/dev/null | head -1)"
  echo "- torch: $(sed -n 's/^device //p' "$t0" 2>/dev/null | head -1)"
  echo "- arch: $(field arch "$c0"), $(field mflops "$c0") MMAC per image"
  echo
  echo "Images per second, the median of the timed steps; ratio = hsconas / torch (> 1: hsconas faster)."
  echo
  echo "| metric | batch | hsconas img/s | PyTorch img/s | ratio | target |"
  echo "|---|--:|--:|--:|--:|---|"
  for r in "${rows[@]}"; do
    # shellcheck disable=SC2086 # the row is four words
    set -- $r
    awk -v m="$1" -v b="$2" -v c="${3:-}" -v t="${4:-}" 'BEGIN {
      r = (c == "" || t == "" || t + 0 <= 0) ? "-" : sprintf("%.2f", c / t)
      g = m == "train" ? ">= 1.2x" : "-"
      printf "| %s | %d | %s | %s | %s | %s |\n", (m == "train" ? "training step" : "evaluation"), b, \
        c == "" ? "-" : c, t == "" ? "-" : t, r, g }'
  done
} | tee -a "$out/gpu.md"
exit $status
