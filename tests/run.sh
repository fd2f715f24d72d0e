#!/usr/bin/env bash
# Runs the whole test suite of one build directory and prints the total as its last line:
#   tests/run.sh BUILD [REFDIR]
# Unit tests run directly; tests/mpi/* run under `mpirun -np 3 --oversubscribe` (as root too: the
# variables below allow it, so users never have to). Each program ends with "NAME: P passed, F failed
# [, S skipped]"; a program that crashes or prints no summary counts as one failure.
set -u
build=${1:?usage: tests/run.sh BUILD [REFDIR]}
refdir=${2:-build/ref}
here=$(cd "$(dirname "$0")/.." && pwd)

export HSC_REF_DIR=$refdir
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Two threads per process unless the caller says otherwise; MPI tests use one per rank (3 ranks share
# the cores).
threads=${OMP_NUM_THREADS:-2}
# Tests share the cores with other processes (3 ranks on 2 cores): idle OpenMP threads must sleep, not
# spin, or every parallel region waits for a descheduled spinner.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# The CPU backend runs OpenBLAS single-threaded inside its own OpenMP tiles; a pthreads OpenBLAS started
# with more threads keeps an idle worker spinning, so start it with one.
export OPENBLAS_NUM_THREADS=1
if [ -n "${HSC_SANITIZED:-}" ]; then
  # The slow (DWARF) unwinder: Open MPI's plugins have no frame pointers, and with the fast one their
  # allocations show as "<unknown module>", which no suppression by library name can match.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86:fast_unwind_on_malloc=0}
  # use_tls=0: LeakSanitizer's tracer crashes (signal 11 reading a thread's TLS) in programs that start MPI
  # as a singleton (a unit test or hsconas run without mpirun) since Open MPI's PMIx thread appeared in
  # them; not scanning TLS can only add reports (a block reachable from TLS alone), never hide one.
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/tests/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0:use_tls=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # Open MPI unloads its plugins at MPI_Finalize; their leaks would then show as "<unknown module>" and
  # escape the suppressions, which match library names. Keep them loaded.
  export OMPI_MCA_mca_base_component_disable_dlclose=1
fi

passed=0 failed=0 skipped=0
failures=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_one() { # name, command...
  local name=$1
  shift
  echo "== $name"
  timeout -k 10 600 "$@" >"$log" 2>&1
  local rc=$?
  cat "$log"
  local line
  line=$(grep -E "^[A-Za-z0-9_]+: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL $name: exited with status $rc and printed no summary"
    failed=$((failed + 1))
    failures+=("$name")
    return
  fi
  local p f s
  p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
  f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  s=0
  if grep -q skipped <<<"$line"; then s=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line"); fi
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
    if [ "$f" -eq 0 ]; then # summary says fine but the program failed (a sanitizer, a crash at exit)
      echo "FAIL $name: exited with status $rc after its summary"
      failed=$((failed + 1))
    fi
    failures+=("$name")
  fi
}

for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  OMP_NUM_THREADS=$threads run_one "$(basename "$t")" "$t"
done
for t in "$build"/tests/mpi/test_*; do
  [ -x "$t" ] || continue
  OMP_NUM_THREADS=1 run_one "mpi/$(basename "$t") (3 ranks)" \
    mpirun -np 3 --oversubscribe --timeout 300 "$t"
done

# Command-line tests: shell scripts that drive the hsconas binary (training, resume, signals, bad input).
for t in "$here"/tests/cli/test_*.sh; do
  [ -f "$t" ] || continue
  OMP_NUM_THREADS=$threads run_one "cli/$(basename "$t" .sh)" bash "$t" "$build"
done

# Slurm tests: the jobs/ scripts submitted to a throwaway local cluster (tests/slurm/cluster.sh; as root,
# about a minute). Where no cluster can start they report every case skipped, with the reason.
for t in "$here"/tests/slurm/test_*.sh; do
  [ -f "$t" ] || continue
  OMP_NUM_THREADS=$threads run_one "slurm/$(basename "$t" .sh)" bash "$t" "$build"
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failed programs: ${failures[*]}"
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary" >"$build/test-summary"
echo "$summary"
[ "$failed" -eq 0 ]
