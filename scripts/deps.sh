#!/usr/bin/env bash
# Install the Debian packages hsconas needs, when they are missing.
#   scripts/deps.sh            build + test packages
#   scripts/deps.sh --build    only what `make` needs
#   scripts/deps.sh --slurm    also the Slurm/munge packages the Slurm tests use
# Idempotent and quiet when everything is present. As non-root it prints the exact
# apt-get line and exits 1 instead of asking for a password.
set -euo pipefail

build_pkgs=(build-essential pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  libyaml-dev libopenblas-dev zlib1g-dev libturbojpeg0-dev dataset-fashion-mnist)
test_pkgs=(python3-torch python3-h5py python3-numpy python3-yaml clang-format)
slurm_pkgs=(slurmctld slurmd slurm-client munge)

want=("${build_pkgs[@]}")
mode=test
for arg in "$@"; do
  case "$arg" in
  --build) mode=build ;;
  --slurm) want+=("${slurm_pkgs[@]}") ;;
  -h | --help)
    sed -n '2,7p' "$0"
    exit 0
    ;;
  *)
    echo "deps.sh: unknown option '$arg' (see --help)" >&2
    exit 2
    ;;
  esac
done
[ "$mode" = test ] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages; run as root:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists; refresh once, then retry on a stale mirror.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/hsconas-deps.log 2>&1; then
  apt-get update -q >>/tmp/hsconas-deps.log 2>&1
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/hsconas-deps.log 2>&1; then
    tail -n 30 /tmp/hsconas-deps.log >&2
    echo "deps.sh: '$line' failed (full log: /tmp/hsconas-deps.log)" >&2
    exit 1
  fi
fi
