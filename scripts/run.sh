#!/usr/bin/env bash
# `make run`: the main job on the default configuration, on local MPI ranks:
#   mpirun -np HSC_RANKS hsconas run HSC_CONFIG
# which builds the latency model of this machine (skipped when run.dir holds a valid one), trains the
# Fashion-MNIST supernet data-parallel over the ranks, then searches under the latency target with rank 0 as
# the master and the other ranks as workers (one progressive-shrinking stage, DCS, generational evolution)
# and writes best.yaml, history.csv, summary.json and the plots into run.dir. Every phase resumes from its
# checkpoints: rerunning after a failure or a stop continues where it ended.
# Environment: HSC_CONFIG (default configs/fmnist.yaml), HSC_RANKS (default 3), and `--set key=value`
# overrides in HSC_SET (space separated).
set -euo pipefail
build=${1:-build}
config=${HSC_CONFIG:-configs/fmnist.yaml}
ranks=${HSC_RANKS:-3}
sets=()
for s in ${HSC_SET:-}; do sets+=(--set "$s"); done

# Open MPI refuses to run as root unless told; more ranks than cores need oversubscription. Each rank's
# operators use cores / ranks threads (at least one), with OpenBLAS single-threaded inside them; idle
# OpenMP threads sleep instead of spinning on the shared cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

"$build/hsconas" version
"$build/hsconas" config "$config" "${sets[@]}"
start=$(date +%s)
mpirun -np "$ranks" "$build/hsconas" run "$config" "${sets[@]}"
echo "make run: done in $(( $(date +%s) - start )) s"
