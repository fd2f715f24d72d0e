#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries on a build machine (this project's Debian 12 image: CUDA
# toolkit, Open MPI, HDF5, libyaml, OpenBLAS installed) and packs what they need at run time into one
# folder, for a GPU machine that has the CUDA toolkit, cuDNN, NCCL and PyTorch but not Debian's Open MPI,
# HDF5, libyaml or OpenBLAS (tests/gpu/run.sh uses it there):
#   tests/gpu/bundle.sh [BUNDLE]          BUNDLE defaults to build-gpu/bundle
# The build is BUILD=build-gpu CUDA=1 ARCH=x86-64-v3 (no -march=native: the GPU machine's CPU is unknown).
# BUNDLE/
#   build/            hsconas, tests/gpu/test_gpu_ops, bench/train (the layout tests/gpu/run_tests.sh and
#                     bench/gpu.sh expect of a build directory)
#   lib/              every shared library the binaries, Open MPI's tools and plugins load (resolved with
#                     ldd), except the C library itself (glibc/ below) and the CUDA libraries (libcudart,
#                     cuBLAS, cuDNN, NCCL, libcuda: the GPU machine's own, matched to its driver)
#   ompi/             an Open MPI prefix for OPAL_PREFIX: bin/ (orterun as mpirun, orted: a singleton
#                     MPI_Init starts orted from there), the plugins under the same relative path as
#                     Debian's, the help files; plugins for networks the tests do not use (UCX, OFI, verbs,
#                     PSM) are left out, as Debian's /etc/openmpi/openmpi-mca-params.conf disables them
#   pmix/             the PMIx prefix for PMIX_INSTALL_PREFIX (its plugins and help files)
#   glibc/            the loader and C library, used only when the GPU machine's glibc is older than the
#                     binaries need (run.sh compares; GLIBC_REQUIRED holds the version)
#   env.sh            sets LD_LIBRARY_PATH, OPAL_PREFIX, PMIX_INSTALL_PREFIX, PATH for the bundle's place
# and BUNDLE.tar.xz, the same folder as one archive (what the device tool carries: tests/gpu/run.sh unpacks
# it when the folder is not there).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
out=${1:-build-gpu/bundle}
build="build-gpu"
while [ -e /work/QUIET ]; do sleep 15; done # the project's quiet lock (a no-op elsewhere)
nice -n 10 make -j"$(nproc)" BUILD=$build CUDA=1 ARCH=x86-64-v3 $build/hsconas $build/tests/gpu/test_gpu_ops \
  $build/bench/train >/dev/null
rm -rf "$out"
mkdir -p "$out"/{build/tests/gpu,build/bench,lib,glibc,ompi/bin,pmix}
cp $build/hsconas "$out/build/"
cp $build/tests/gpu/test_gpu_ops "$out/build/tests/gpu/"
cp $build/bench/train "$out/build/bench/"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
sys=/usr/lib/$multiarch
ompi_plugins=$(ompi_info --path pkglibdir --parsable 2>/dev/null | sed -n 's/^path:pkglibdir://p')
ompi_plugins=${ompi_plugins:-$sys/openmpi/lib/openmpi3}
ompi_prefix=$(ompi_info --path prefix --parsable 2>/dev/null | sed -n 's/^path:prefix://p')
ompi_prefix=${ompi_prefix:-/usr}
pmix_dir=$(dirname "$(dirname "$(readlink -f "$sys/libpmix.so.2")")") # .../pmix2 (lib/libpmix.so.2.x)

# Open MPI prefix, with the plugins at the path relative to the prefix that the library expects.
rel=${ompi_plugins#"$ompi_prefix"/}
mkdir -p "$out/ompi/$rel" "$out/ompi/share"
skip='ucx|ofi|openib|verbs|psm|uct|portals|usnic|cuda|rocm|ze|hcoll|fca|mxm|knem|xpmem|cma|ucc'
oshmem='mca_(spml|sshmem|scoll|atomic|memheap)_' # OpenSHMEM, which hsconas does not use
for f in "$ompi_plugins"/*.so; do
  b=$(basename "$f")
  if grep -Eq "_(${skip})" <<<"$b" || grep -Eq "^${oshmem}" <<<"$b"; then continue; fi
  cp "$f" "$out/ompi/$rel/"
done
cp -r "$ompi_prefix/share/openmpi" "$out/ompi/share/"
cp "$(readlink -f "$(command -v orterun)")" "$out/ompi/bin/orterun"
cp "$(readlink -f "$(command -v orted)")" "$out/ompi/bin/orted"
ln -s orterun "$out/ompi/bin/mpirun"
# PMIx prefix
mkdir -p "$out/pmix/lib"
cp -r "$pmix_dir/lib/pmix" "$out/pmix/lib/"
cp -r "$pmix_dir/share" "$out/pmix/"

# Shared libraries of everything above, transitively (ldd resolves the whole tree), minus glibc and CUDA.
glibc_re='/(ld-linux[^/]*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libnsl|libanl|libmvec)\.so'
cuda_re='/(libcuda|libcudart|libcublas|libcublasLt|libcudnn[^/]*|libnccl|libnvrtc|libnvJitLink)\.so'
mapfile -t objs < <(find "$out/build" "$out/ompi" "$out/pmix" -type f \( -perm -u+x -o -name '*.so*' \))
ldd "${objs[@]}" 2>/dev/null | awk '/=> \// { print $3 }' | sort -u | while read -r lib; do
  if grep -Eq "$glibc_re" <<<"$lib" || grep -Eq "$cuda_re" <<<"$lib"; then continue; fi
  cp -L "$lib" "$out/lib/"
done
missing=$(ldd "${objs[@]}" 2>/dev/null | grep -v libcuda.so | grep "not found" | sort -u || true)
[ -z "$missing" ] || { echo "bundle.sh: unresolved on this machine: $missing" >&2; exit 1; }
# glibc for the fallback: the loader and the libraries of the family that anything above links.
for l in $(ldd "${objs[@]}" 2>/dev/null | awk '/=> \// { print $3 } /ld-linux/ { print $1 }' | sort -u); do
  if grep -Eq "$glibc_re" <<<"$l"; then cp -L "$l" "$out/glibc/"; fi
done
# The highest glibc symbol version anything in the bundle needs.
need=$(for f in "${objs[@]}" "$out"/lib/*; do objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*'; done |
  sed 's/GLIBC_//' | sort -uV | tail -1)
echo "$need" >"$out/GLIBC_REQUIRED"
strip --strip-unneeded "$out"/lib/*.so* 2>/dev/null || true

cat >"$out/env.sh" <<'ENV'
# Source me: the bundle's libraries and Open MPI prefix for the directory this file is in.
b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=$b/ompi PMIX_INSTALL_PREFIX=$b/pmix
export PMIX_PREFIX=$b/pmix PMIX_EXEC_PREFIX=$b/pmix PMIX_LIBDIR=$b/pmix/lib PMIX_PKGLIBDIR=$b/pmix/lib/pmix
export PMIX_DATAROOTDIR=$b/pmix/share PMIX_DATADIR=$b/pmix/share PMIX_PKGDATADIR=$b/pmix/share/pmix
export PATH=$b/ompi/bin:$PATH
export LD_LIBRARY_PATH=$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# What Debian's /etc/openmpi/openmpi-mca-params.conf says (the file is not on the GPU machine); the
# plugins for those networks are not in the bundle, so Open MPI must not look for them.
export OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_mtl='^ofi' OMPI_MCA_btl='^uct,openib,ofi'
export OMPI_MCA_pml='^ucx' OMPI_MCA_osc='^ucx,pt2pt'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV
# The device tool carries at most 64 MiB with the working tree: the folder travels as one xz archive next
# to it (tests/gpu/run.sh unpacks it), the folder itself stays for local use.
tar -C "$(dirname "$out")" -cJf "$out.tar.xz" "$(basename "$out")"
echo "bundle.sh: $out: $(du -sh "$out" | cut -f1) ($(find "$out" -type f | wc -l) files); $out.tar.xz:" \
  "$(du -sh "$out.tar.xz" | cut -f1); glibc >= $need needed"
