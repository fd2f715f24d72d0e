#!/usr/bin/env bash
# The GPU checks in one script, for a GPU machine that has the CUDA toolkit, cuDNN, NCCL and PyTorch but
# not the Open MPI, HDF5, libyaml and OpenBLAS the binaries were built against: it runs the binaries that
# tests/gpu/bundle.sh built and packed on the build machine, with the libraries packed next to them.
#   tests/gpu/run.sh LOGDIR
# Steps, each logged to LOGDIR (the summary, LOGDIR/summary.txt, is also the last lines of the output):
#   env.txt         the machine: nvidia-smi, glibc, the CUDA libraries found, how the binaries resolve them
#   devices.txt     `hsconas devices`
#   test-gpu.txt    tests/gpu/run_tests.sh: every op GPU vs CPU, supernet step, training run, NCCL (2 GPUs)
#   bench/          bench/gpu.sh: ImageNet-space path, batch 128 and 256, hsconas vs PyTorch + cuDNN
#   profile.txt     hsconas profile of the ImageNet space on the GPU at batch 64 (the latency model and its
#                   hold-out report; the model in LOGDIR/profile/latency.yaml)
# Environment: HSC_GPU_BUNDLE (default build-gpu/bundle, unpacked from build-gpu/bundle.tar.xz when only
# the archive is there), PYTHON (default python3, the one with torch), CUDA_HOME, HSC_GPU_SKIP_BENCH=1,
# HSC_BENCH_STEPS / HSC_BENCH_WARMUP / HSC_BENCH_BATCHES (bench/gpu.sh), HSC_GPU_SKIP_PROFILE=1,
# HSC_PROFILE_BATCH (default 64).
# Exit status: 0 when the tests passed and the benchmark ran; speed is reported, never a failure.
set -uo pipefail
logdir=${1:?usage: tests/gpu/run.sh LOGDIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
cd "$root" || exit 1
summary=$logdir/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

bundle=${HSC_GPU_BUNDLE:-build-gpu/bundle}
if [ ! -d "$bundle" ]; then
  if [ -f "$bundle.tar.xz" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/hsconas-bundle.XXXXXX")
    tar -C "$tmp" -xJf "$bundle.tar.xz" || {
      note "run.sh: cannot unpack $bundle.tar.xz"
      exit 1
    }
    bundle=$tmp/$(basename "$bundle")
  else
    note "run.sh: no bundle at $bundle (or $bundle.tar.xz): run tests/gpu/bundle.sh on the build machine first"
    exit 1
  fi
fi
B=$(cd "$bundle" && pwd)

# The machine's CUDA libraries: the toolkit's lib64, the loader's cache, and pip wheels (nvidia-*-cu13, as
# PyTorch installs cuDNN and NCCL) under the Python that has torch.
want=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libnccl.so.2)
dirs=()
for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -d "$d" ] && dirs+=("$d")
done
python=${PYTHON:-python3}
pyd=$("$python" - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        print(d)
PY
)
while read -r d; do [ -n "$d" ] && dirs+=("$d"); done <<<"$pyd"
cuda_ld=
for lib in "${want[@]}"; do
  found=
  for d in "${dirs[@]}"; do
    if [ -e "$d/$lib" ]; then
      found=$d
      break
    fi
  done
  if [ -z "$found" ]; then
    p=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l { print $NF; exit }')
    [ -n "$p" ] && found=$(dirname "$p")
  fi
  if [ -z "$found" ]; then
    note "run.sh: $lib not found (looked in ${dirs[*]} and the ldconfig cache); install it or set CUDA_HOME"
    exit 1
  fi
  case ":$cuda_ld:" in *":$found:"*) ;; *) cuda_ld=${cuda_ld:+$cuda_ld:}$found ;; esac
done

# Open MPI relocated to the bundle (OPAL_PREFIX; PMIx's own prefix too), with the MCA settings of the
# build machine's /etc/openmpi (env.sh).
export OPAL_PREFIX=$B/ompi PMIX_INSTALL_PREFIX=$B/pmix
# Debian's PMIx takes its directories from PMIX_<DIR> variables (its strings list them), not from
# PMIX_INSTALL_PREFIX alone: without them it looks for its plugins and help files at the build machine's path.
export PMIX_PREFIX=$B/pmix PMIX_EXEC_PREFIX=$B/pmix PMIX_LIBDIR=$B/pmix/lib PMIX_PKGLIBDIR=$B/pmix/lib/pmix
export PMIX_DATAROOTDIR=$B/pmix/share PMIX_DATADIR=$B/pmix/share PMIX_PKGDATADIR=$B/pmix/share/pmix
export OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_mtl='^ofi' OMPI_MCA_btl='^uct,openib,ofi'
export OMPI_MCA_pml='^ucx' OMPI_MCA_osc='^ucx,pt2pt'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PATH=$B/ompi/bin:$PATH

# glibc: the host's when it is new enough for the bundle's libraries, else the bundle's own loader runs
# each binary (and orted, which a singleton MPI_Init starts, through a wrapper). The bundle's libraries are
# never put in the environment of host programs (PyTorch must load its own libstdc++).
need=$(cat "$B/GLIBC_REQUIRED" 2>/dev/null || echo 2.34)
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
libpath=$B/lib:$cuda_ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ]; then
  mode="host glibc $have (>= $need)"
  run="env LD_LIBRARY_PATH=$libpath"
  mpirun="env LD_LIBRARY_PATH=$libpath $B/ompi/bin/orterun"
else
  mode="bundled glibc (host has ${have:-unknown}, the bundle needs $need)"
  loader=$(find "$B/glibc" -name "ld-linux*.so*" | head -1)
  lp=$B/lib:$B/glibc:$cuda_ld
  run="$loader --library-path $lp"
  mpirun="$loader --library-path $lp $B/ompi/bin/orterun"
  if [ ! -e "$B/ompi/bin/orted.real" ]; then
    mv "$B/ompi/bin/orted" "$B/ompi/bin/orted.real"
    printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$loader" "$lp" "$B/ompi/bin/orted.real" \
      >"$B/ompi/bin/orted"
    chmod +x "$B/ompi/bin/orted"
  fi
fi

{
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm)"
  echo "bundle: $B; libraries: $mode"
  echo "CUDA libraries from: $cuda_ld"
  echo "python: $python ($("$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1))"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  echo "## how the test binary resolves its libraries"
  env LD_LIBRARY_PATH="$B/lib:$B/glibc:$cuda_ld" ldd "$B/build/tests/gpu/test_gpu_ops" 2>&1
} >"$logdir/env.txt"
note "run.sh: bundle $B, $mode, CUDA libraries from $cuda_ld"
if env LD_LIBRARY_PATH="$B/lib:$B/glibc:$cuda_ld" ldd "$B/build/tests/gpu/test_gpu_ops" 2>&1 |
  grep -v 'libcuda.so' | grep -q 'not found'; then
  note "run.sh: unresolved libraries (see $logdir/env.txt):"
  env LD_LIBRARY_PATH="$B/lib:$B/glibc:$cuda_ld" ldd "$B/build/tests/gpu/test_gpu_ops" | grep 'not found' |
    tee -a "$summary"
  exit 1
fi

# shellcheck disable=SC2086 # $run is a command prefix
$run "$B/build/hsconas" devices >"$logdir/devices.txt" 2>&1
note "devices: $(head -c 400 "$logdir/devices.txt" | tr '\n' ' ')"

status=0
HSC_GPU_RUN=$run HSC_GPU_MPIRUN=$mpirun tests/gpu/run_tests.sh "$B/build" >"$logdir/test-gpu.txt" 2>&1 || status=1
note "tests: $(tail -n 1 "$logdir/test-gpu.txt")"
grep -E '^(FAIL|skip)' "$logdir/test-gpu.txt" | tee -a "$summary"

if [ "${HSC_GPU_SKIP_BENCH:-0}" != 1 ]; then
  # 20 timed steps after 5 warm-up ones per side, metric and batch (bench/train.c's default is 30): the
  # whole script fits a device session of a few minutes.
  export HSC_BENCH_STEPS=${HSC_BENCH_STEPS:-20} HSC_BENCH_WARMUP=${HSC_BENCH_WARMUP:-5}
  HSC_GPU_RUN=$run PYTHON=$python bench/gpu.sh "$B/build" "$logdir/bench" >"$logdir/bench.txt" 2>&1 || status=1
  cat "$logdir/bench/gpu.md" >>"$summary" 2>/dev/null || note "bench: no table (see $logdir/bench.txt)"
  cat "$logdir/bench/gpu.md" 2>/dev/null
fi
if [ "${HSC_GPU_SKIP_PROFILE:-0}" != 1 ]; then
  # The latency model on the GPU backend, default protocol (docs/latency.md); the target is >= 95% of the
  # hold-out architectures within +-10%.
  # shellcheck disable=SC2086 # $run is a command prefix
  $run "$B/build/hsconas" profile configs/imagenet.yaml --force --set dist.backend=cuda \
    --set latency.batch="${HSC_PROFILE_BATCH:-64}" --set run.dir="$logdir/profile" >"$logdir/profile.txt" 2>&1 ||
    status=1
  grep -E '^latency model|^  (LAT|fit set|hold-out)' "$logdir/profile.txt" | tee -a "$summary" ||
    note "profile: no report (see $logdir/profile.txt)"
fi
note "run.sh: status $status"
exit $status
