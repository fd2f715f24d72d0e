# Shared helpers of the command-line tests: each test script sources this, calls `pass`/`fail` (or the
# `expect_*` helpers) and ends with `finish`, which prints "NAME: P passed, F failed" like the C tests.
set -u
build=${1:?usage: $0 BUILD}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(cd "$build" && pwd)/hsconas
name=$(basename "$0" .sh)
npass=0 nfail=0
work=$(mktemp -d /tmp/hsconas-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$here"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

pass() { echo "ok   $1"; npass=$((npass + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; nfail=$((nfail + 1)); }

# run LOG CMD...: runs CMD with stdout+stderr into LOG, returns its status.
run() {
  local log=$1
  shift
  "$@" >"$log" 2>&1
}

# expect_status CASE WANT LOG: the last command's status must be WANT (pass the status as $4).
expect_status() {
  local case=$1 want=$2 log=$3 got=$4
  if [ "$got" -eq "$want" ]; then pass "$case"; else
    fail "$case" "exit status $got, expected $want"
    sed 's/^/    | /' "$log" | tail -n 20
  fi
}

# expect_grep CASE PATTERN LOG: LOG contains the extended regex PATTERN.
expect_grep() {
  if grep -Eq -- "$2" "$3"; then pass "$1"; else
    fail "$1" "output lacks /$2/"
    sed 's/^/    | /' "$3" | tail -n 20
  fi
}

# expect_error CASE STATUS PATTERN CMD...: CMD exits with STATUS and prints PATTERN.
expect_error() {
  local case=$1 want=$2 pattern=$3
  shift 3
  "$@" >"$work/err.log" 2>&1
  local got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$case" "exit status $got, expected $want"
    sed 's/^/    | /' "$work/err.log" | tail -n 10
  elif ! grep -Eq -- "$pattern" "$work/err.log"; then
    fail "$case" "message lacks /$pattern/"
    sed 's/^/    | /' "$work/err.log" | tail -n 10
  else
    pass "$case"
  fi
}

finish() {
  echo "$name: $npass passed, $nfail failed"
  [ "$nfail" -eq 0 ]
}
