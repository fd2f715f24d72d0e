#!/usr/bin/env bash
# Runs the GPU tests of one build directory (make test-gpu; tests/gpu/run.sh on a machine without the
# build's libraries installed) and prints "N passed, N failed[, N skipped]" as its last line:
#   tests/gpu/run_tests.sh BUILD
# test_gpu_ops runs once on one process (every case; the NCCL case skips there, saying so), then its
# NCCL case again under `mpirun -np 2` when two GPUs are visible (else that run is skipped, saying so).
# Environment (tests/gpu/run.sh sets them to run the binaries with their bundled libraries): HSC_GPU_RUN, a
# command prefix for the test binary; HSC_GPU_MPIRUN, the mpirun command (default mpirun).
set -u
build=${1:?usage: tests/gpu/run_tests.sh BUILD}
bin=$build/tests/gpu/test_gpu_ops
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OPENBLAS_NUM_THREADS=1
passed=0 failed=0 skipped=0
tally() { # log file, exit status
  local line
  line=$(grep -E "^test_gpu_ops: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$" "$1" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL: exited with status $2 and printed no summary"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")))
  local f
  f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  [ "$f" -eq 0 ] && [ "$2" -ne 0 ] && f=1
  failed=$((failed + f))
  if grep -q skipped <<<"$line"; then skipped=$((skipped + $(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line"))); fi
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== test_gpu_ops (1 process)"
read -r -a run <<<"${HSC_GPU_RUN:-}"
read -r -a mpirun <<<"${HSC_GPU_MPIRUN:-mpirun}"
timeout -k 10 900 "${run[@]}" "$bin" >"$log" 2>&1
rc=$?
cat "$log"
tally "$log" $rc

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "${gpus:-0}" -ge 2 ]; then
  echo "== test_gpu_ops nccl (mpirun -np 2)"
  timeout -k 10 600 "${mpirun[@]}" -np 2 --oversubscribe "${run[@]}" "$bin" nccl >"$log" 2>&1
  rc=$?
  cat "$log"
  tally "$log" $rc
else
  echo "skip NCCL data-parallel run (mpirun -np 2): ${gpus:-0} GPU(s) visible, needs 2"
  skipped=$((skipped + 1))
fi

echo
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
