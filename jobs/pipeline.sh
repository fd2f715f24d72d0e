#!/usr/bin/env bash
# Submits the phases of a search as separate Slurm jobs chained with --dependency=afterok, and prints one
# line "PHASE JOBID" per job (stdout; messages go to stderr). A phase that fails cancels the ones after it
# (they are cancelled without starting).
#   jobs/pipeline.sh CONFIG [--set KEY=VALUE ...]
# Environment:
#   HSC_PHASES        phases in order, from profile train search (default: all three)
#   HSC_TARGETS       latency targets in ms (spaces or commas): the search phase becomes an array job,
#                     one task per target (jobs/search-array.sbatch), results under RUN_DIR/targets/
#   HSC_SBATCH_ARGS   sbatch options for every phase (e.g. "--account=A --partition=P"), space separated
#   HSC_SBATCH_PROFILE, HSC_SBATCH_TRAIN, HSC_SBATCH_SEARCH
#                     sbatch options for one phase (e.g. HSC_SBATCH_TRAIN="-N 4 --ntasks-per-node=4
#                     --gpus-per-node=4 --time=12:00:00")
#   HSC_AFTER         a job id the first phase waits for (afterok)
#   HSCONAS           the hsconas binary; when found here the config is checked before anything is queued
# The jobs inherit this environment (sbatch's default --export=ALL), so HSC_* settings of jobs/lib.sh given
# here apply to every phase.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() {
  echo "pipeline.sh: $*" >&2
  exit "${2:-1}"
}
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then die "usage: jobs/pipeline.sh CONFIG [--set KEY=VALUE ...]" 2; fi
config=$1
[ -r "$config" ] || die "config '$config' not readable"
command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this on a Slurm login node"

read -r -a phases <<<"${HSC_PHASES:-profile train search}"
for p in "${phases[@]}"; do
  case $p in
  profile | train | search) ;;
  *) die "HSC_PHASES: unknown phase '$p' (profile, train, search)" 2 ;;
  esac
done
[ ${#phases[@]} -gt 0 ] || die "HSC_PHASES is empty" 2

# Catch a broken config now rather than after hours in the queue. (A key that only a phase checks, or a
# file that exists only on the compute nodes, still fails in that phase's job.)
hsconas=${HSCONAS:-hsconas}
if command -v "$hsconas" >/dev/null 2>&1; then
  sets=()
  for a in "${@:2}"; do
    case $a in
    --set) ;;
    --set=*) sets+=(--set "${a#--set=}") ;;
    *) sets+=(--set "$a") ;;
    esac
  done
  for s in ${HSC_SET:-}; do sets+=(--set "$s"); done
  "$hsconas" config "$config" "${sets[@]}" >/dev/null || die "the configuration does not load (message above): nothing submitted"
else
  echo "pipeline.sh: '$hsconas' not found here: the config is checked by the first job" >&2
fi

read -r -a common <<<"${HSC_SBATCH_ARGS:-}"
after=${HSC_AFTER:-}
for p in "${phases[@]}"; do
  var=HSC_SBATCH_${p^^}
  read -r -a own <<<"${!var:-}"
  script=$here/$p.sbatch
  if [ "$p" = search ] && [ -n "${HSC_TARGETS:-}" ]; then
    read -r -a targets <<<"${HSC_TARGETS//,/ }"
    own=(--array="0-$((${#targets[@]} - 1))" "${own[@]}")
    script=$here/search-array.sbatch
  fi
  dep=()
  # --kill-on-invalid-dep: when the phase before fails, Slurm cancels this one at once instead of leaving
  # it pending forever (DependencyNeverSatisfied), whatever the cluster's SchedulerParameters say.
  [ -n "$after" ] && dep=(--dependency="afterok:$after" --kill-on-invalid-dep=yes)
  id=$(sbatch --parsable "${dep[@]}" "${common[@]}" "${own[@]}" "$script" "$@") ||
    die "sbatch of the $p phase failed (jobs already submitted stay queued: ${submitted:-none})"
  id=${id%%;*} # --parsable prints "id;cluster" on multi-cluster setups
  echo "$p $id"
  submitted="${submitted:-}${submitted:+ }$id"
  after=$id
done
