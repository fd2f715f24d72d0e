#!/usr/bin/env bash
# `make run`: the main job on the default configuration, on local MPI ranks:
#   1. build the latency model of this machine (hsconas profile, one process using every core; skipped
#      when run.dir already holds one for this space and batch);
#   2. train the Fashion-MNIST supernet (configs/fmnist.yaml) data-parallel on HSC_RANKS ranks (default 2),
#      resuming from run.dir's checkpoints when there are any (rerunning after a failure continues);
#   3. evaluate HSC_EVAL_ARCHS random sub-networks (default 5): BN recalibration, validation accuracy,
#      and their predicted latency.
# The search pipeline (shrinking, evolution) replaces step 3 when it lands.
# Environment: HSC_CONFIG (default configs/fmnist.yaml), HSC_RANKS, HSC_EVAL_ARCHS, and any
# `--set key=value` overrides in HSC_SET (space separated).
set -euo pipefail
build=${1:-build}
config=${HSC_CONFIG:-configs/fmnist.yaml}
ranks=${HSC_RANKS:-2}
narch=${HSC_EVAL_ARCHS:-5}
sets=()
for s in ${HSC_SET:-}; do sets+=(--set "$s"); done

# Open MPI refuses to run as root unless told; more ranks than cores need oversubscription. Each rank's
# operators use cores / ranks threads, with OpenBLAS single-threaded inside them.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1

"$build/hsconas" version
"$build/hsconas" config "$config" "${sets[@]}"
echo "== latency model of this machine ($config, latency.batch)"
"$build/hsconas" profile "$config" "${sets[@]}"
echo "== training the supernet on $ranks ranks ($config)"
mpirun -np "$ranks" "$build/hsconas" train "$config" --resume "${sets[@]}"
echo "== evaluating $narch random architectures on the trained supernet"
mpirun -np "$ranks" "$build/hsconas" eval "$config" --random "$narch" "${sets[@]}"
echo "== predicted latency of the same architectures"
"$build/hsconas" latency "$config" --random "$narch" "${sets[@]}"
