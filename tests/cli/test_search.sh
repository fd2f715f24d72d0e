#!/usr/bin/env bash
# `hsconas search` and `hsconas report` on the tiny space, with real supernet evaluations:
#   - a reference search (1 shrinking stage with fine-tuning, generational evolution) on 3 ranks;
#   - kill -9 of the whole job during the evolution and during the shrinking stage, then the same command:
#     it resumes, evaluates nothing that its checkpoint held, and ends with the reference's history and best
#     architecture;
#   - SIGUSR1: exit status 3 after a checkpoint, then the same command finishes it, equal to the reference;
#   - 2 and 4 ranks give the same history and best architecture (no fine-tuning);
#   - a worker that hangs (test hook) is abandoned, its candidate re-sent, and the result is unchanged;
#   - steady-state mode with the Pareto objective ends with a non-dominated front;
#   - report rewrites identical outputs; `hsconas run` does profile -> train -> search and skips every phase
#     when run again; bad inputs are refused with one message.
source "$(dirname "$0")/lib.sh"
cfg=tests/cli/tiny.yaml
base="$work/base"
quick=(--set latency.fit_archs=6 --set latency.holdout_archs=0 --set latency.repeats=2 --set latency.warmup=1
  --set latency.min_sample_ms=0.1)
# Evaluations on the 1000 validation images (slow enough for the kill tests to land mid-phase); one thread
# per rank so that every rank computes the same numbers.
# The sanitizer build (HSC_SANITIZED) is some 20 times slower: it evaluates on fewer images and leaves out
# the cases that the release build covers with the same code (kill during shrinking, SIGUSR1, 2 vs 4 ranks,
# steady Pareto, run).
full=1
[ -n "${HSC_SANITIZED:-}" ] && full=""
images=(--set data.val_size=4000 --set eval.recal_batches=8)
[ -n "$full" ] || images=(--set data.val_size=1000 --set eval.recal_batches=1)
common=("${images[@]}" --set eval.val_images=0 --set dist.threads=1 --set shrink.samples=8 --set shrink.drop_ops=1
  --set shrink.drop_scales=1 --set evolution.population=8 --set evolution.generations=4 --set evolution.topk=3
  --set evolution.mutations=3 --set evolution.crossovers=3 --set latency.target_quantile=0.6)
tuned=(--set shrink.stages=1 --set shrink.finetune_epochs=1 --set shrink.finetune_max_steps=12)

run "$work/profile.log" "$bin" profile $cfg --set run.dir="$base" "${quick[@]}"
expect_status "profile" 0 "$work/profile.log" $?
run "$work/train.log" mpirun -np 2 "$bin" train $cfg --set run.dir="$base"
expect_status "train" 0 "$work/train.log" $?

# fresh DIR: a run directory holding the model and the trained supernet only
fresh() {
  rm -rf "$1"
  mkdir -p "$1/checkpoints"
  cp "$base/latency.yaml" "$1/"
  cp "$base"/checkpoints/supernet-*.h5 "$1/checkpoints/"
}
# The columns that must not depend on the rank count or on a resume (not worker, not seconds).
same_columns() { cut -d, -f1-10,13- "$1"; }
# same_history CASE DIR REF: history.csv and best.yaml's genes equal those of REF.
same_history() {
  if [ ! -s "$2/history.csv" ]; then
    fail "$1" "no $2/history.csv"
  elif ! diff <(same_columns "$3/history.csv") <(same_columns "$2/history.csv") >"$work/diff.txt"; then
    fail "$1" "history differs from the reference"
    head -n 8 "$work/diff.txt" | sed 's/^/    | /'
  elif ! diff <(grep -v '^#' "$3/best.yaml") <(grep -v '^#' "$2/best.yaml") >/dev/null; then
    fail "$1" "best.yaml differs from the reference"
  else
    pass "$1"
  fi
}
# rows DIR: evaluations in the newest search checkpoint's name (search-<rows>.h5), 0 when none.
rows() {
  local f
  f=$(ls "$1"/checkpoints/search-*.h5 2>/dev/null | sort | tail -n 1)
  [ -n "$f" ] && basename "$f" .h5 | sed 's/search-0*//; s/^$/0/' || echo 0
}
# kill_when DIR COND LOG ARGS...: starts the search on 3 ranks, waits until COND (a shell test evaluated
# repeatedly) holds, then kills mpirun and every rank with SIGKILL, as a dying job would.
kill_when() {
  local dir=$1 cond=$2 log=$3
  shift 3
  mpirun -np 3 "$bin" search $cfg --set run.dir="$dir" "$@" >"$log" 2>&1 &
  local pid=$! i
  for ((i = 0; i < 1200; i++)); do
    eval "$cond" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  kill -9 $pid 2>/dev/null
  pkill -9 -f "hsconas search $cfg --set run.dir=$dir " 2>/dev/null
  wait $pid 2>/dev/null
  sleep 0.5
}
# resumed CASE LOG: the resumed run evaluated exactly the candidates its checkpoint lacked.
resumed() {
  local from now total
  from=$(sed -n 's/.*resumed from a checkpoint holding \([0-9]*\).*/\1/p' "$2")
  now=$(sed -n 's/.*this run evaluated \([0-9]*\).*/\1/p' "$2")
  total=$(sed -n 's/^search: \([0-9]*\) candidates evaluated.*/\1/p' "$2")
  if [ -n "$from" ] && [ -n "$now" ] && [ "$from" -gt 0 ] && [ $((from + now)) -eq "$total" ]; then
    pass "$1 ($from from the checkpoint + $now = $total)"
  else fail "$1" "from '$from' + now '$now' != total '$total'"; fi
}

ref="$work/ref"
fresh "$ref"
run "$work/ref.log" mpirun -np 3 "$bin" search $cfg --set run.dir="$ref" "${common[@]}" "${tuned[@]}"
expect_status "reference search on 3 ranks" 0 "$work/ref.log" $?
expect_grep "summary names the best architecture" "^best: +(shuffle|xception)" "$work/ref.log"
for f in history.csv best.yaml front.csv summary.json pareto.svg progress.svg; do
  [ -s "$ref/$f" ] || fail "output $f" "missing"
done
nref=$(($(wc -l <"$ref/history.csv") - 1))
[ "$nref" -ge 30 ] && pass "outputs written ($nref candidates)" || fail "outputs written" "$nref candidates"
/usr/bin/python3 - "$ref" >"$work/check.txt" 2>&1 <<'EOF'
import csv, json, sys, xml.etree.ElementTree as E
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/history.csv")))
s = json.load(open(d + "/summary.json"))
t = s["target_ms"]
# history.csv prints latencies to 6 decimals; rounding is monotonic, so a latency within the target prints
# at most as the target rounded the same way (DCS puts candidates within a hair of it)
assert all(float(r["latency_ms"]) <= round(t, 6) + 1e-12 for r in rows), "a candidate over the target was evaluated"
ids = [int(r["id"]) for r in rows]
assert ids == sorted(set(ids)), "ids not unique and sorted"
evo = [r for r in rows if r["kind"] != "sample"]
assert len({r["hash"] for r in evo}) == len(evo), "an evolution candidate was evaluated twice"
best = max(evo, key=lambda r: (float(r["top1"]), -float(r["latency_ms"]), -int(r["id"])))
assert s["best"]["hash"] == best["hash"], (s["best"], best["hash"])
assert "arch:" in open(d + "/best.yaml").read()
svg = E.parse(d + "/pareto.svg").getroot()
n = sum(1 for c in svg.iter("{http://www.w3.org/2000/svg}circle"))
assert n >= len(rows) + 1, (n, len(rows))
print("ok", len(rows), "rows, best", best["top1"], "target", t)
EOF
[ $? -eq 0 ] && pass "outputs consistent (target, ids, best, plot)" || { fail "outputs consistent"; cat "$work/check.txt"; }

# kill -9 during the evolution, then the same command again
k1="$work/kill-evo"
fresh "$k1"
kill_when "$k1" '[ "$(rows "$k1")" -ge 14 ]' "$work/k1a.log" "${common[@]}" "${tuned[@]}" 2>/dev/null
n1=$(rows "$k1")
[ "$n1" -ge 14 ] && [ "$n1" -lt "$nref" ] && pass "killed during the evolution ($n1 of $nref)" ||
  fail "killed during the evolution" "$n1 of $nref evaluations"
run "$work/k1b.log" mpirun -np 3 "$bin" search $cfg --set run.dir="$k1" "${common[@]}" "${tuned[@]}"
expect_status "resume after kill -9 (evolution)" 0 "$work/k1b.log" $?
resumed "nothing evaluated twice (evolution)" "$work/k1b.log"
same_history "resumed = uninterrupted (evolution)" "$k1" "$ref"

if [ -n "$full" ]; then
# kill -9 during the shrinking stage (its samples, before the fine-tuning)
k2="$work/kill-shrink"
fresh "$k2"
kill_when "$k2" '[ "$(rows "$k2")" -ge 3 ]' "$work/k2a.log" "${common[@]}" "${tuned[@]}" 2>/dev/null
n2=$(rows "$k2")
[ "$n2" -ge 3 ] && [ "$n2" -lt 8 ] && pass "killed during the shrinking stage ($n2 of 8 samples)" ||
  fail "killed during the shrinking stage" "$n2 evaluations"
run "$work/k2b.log" mpirun -np 3 "$bin" search $cfg --set run.dir="$k2" "${common[@]}" "${tuned[@]}"
expect_status "resume after kill -9 (shrinking)" 0 "$work/k2b.log" $?
resumed "nothing evaluated twice (shrinking)" "$work/k2b.log"
same_history "resumed = uninterrupted (shrinking)" "$k2" "$ref"

# SIGUSR1 (Slurm's warning before a time limit or preemption, which the job scripts forward to mpirun; mpirun
# passes it to every rank): exit 3 after a checkpoint, then finish
k3="$work/term"
fresh "$k3"
mpirun -np 3 "$bin" search $cfg --set run.dir="$k3" "${common[@]}" "${tuned[@]}" >"$work/k3a.log" 2>&1 &
pid=$!
for ((i = 0; i < 1200; i++)); do [ "$(rows "$k3")" -ge 12 ] && break; sleep 0.05; done
kill -USR1 $pid
wait $pid
expect_status "SIGUSR1 stops with status 3" 3 "$work/k3a.log" $?
run "$work/k3b.log" mpirun -np 3 "$bin" search $cfg --set run.dir="$k3" "${common[@]}" "${tuned[@]}"
expect_status "resume after SIGUSR1" 0 "$work/k3b.log" $?
same_history "resumed = uninterrupted (SIGUSR1)" "$k3" "$ref"

# 2 and 4 ranks: the same history and best (shrinking without fine-tuning)
untuned=(--set shrink.stages=1 --set shrink.finetune_epochs=0)
for np in 2 4; do
  fresh "$work/np$np"
  run "$work/np$np.log" mpirun -np $np "$bin" search $cfg --set run.dir="$work/np$np" "${common[@]}" "${untuned[@]}"
  expect_status "search on $np ranks" 0 "$work/np$np.log" $?
done
same_history "2 and 4 ranks: same history and best" "$work/np4" "$work/np2"
else
  echo "(sanitizer build: kill during shrinking, SIGUSR1, 2 vs 4 ranks, steady Pareto and run are left to the release build)"
  untuned=(--set shrink.stages=1 --set shrink.finetune_epochs=0)
fi

# a hung worker: rank 2 sleeps 12 s before its third task; the master abandons it after 2 s (the sanitizer
# build: 40 s and 15 s, far above its slowest evaluation)
hang_s=12 timeout_s=2
[ -n "$full" ] || { hang_s=40 timeout_s=15; }
fresh "$work/hang"
run "$work/hang.log" env HSC_TEST_HANG_RANK=2 HSC_TEST_HANG_AFTER=2 HSC_TEST_HANG_S=$hang_s \
  mpirun -np 4 "$bin" search $cfg --set run.dir="$work/hang" --set dist.eval_timeout_s=$timeout_s "${common[@]}" "${untuned[@]}"
expect_status "search completes with a hung worker" 0 "$work/hang.log" $?
/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["dispatch"]
assert d["redispatched"] >= 1 and d["dead_workers"] == 1, d' "$work/hang/summary.json" 2>"$work/hang.txt" &&
  pass "hung worker abandoned, its candidate re-sent" || { fail "hung worker abandoned"; cat "$work/hang.txt"; }
[ -z "$full" ] || same_history "hung worker: same history and best" "$work/hang" "$work/np2"

if [ -n "$full" ]; then
# steady-state evolution with the Pareto objective
fresh "$work/steady"
run "$work/steady.log" mpirun -np 3 "$bin" search $cfg --set run.dir="$work/steady" "${common[@]}" \
  --set shrink.stages=0 --set evolution.mode=steady --set evolution.objective=pareto
expect_status "steady-state Pareto search" 0 "$work/steady.log" $?
/usr/bin/python3 - "$work/steady" >"$work/front.txt" 2>&1 <<'EOF'
import csv, sys
d = sys.argv[1]
rows = [r for r in csv.DictReader(open(d + "/history.csv")) if r["kind"] != "sample"]
pts = [(float(r["top1"]), float(r["latency_ms"]), r["hash"]) for r in rows]
dom = lambda a, b: a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])
want = {p[2] for p in pts if not any(dom(q, p) for q in pts)}
got = {r["hash"] for r in csv.DictReader(open(d + "/front.csv"))}
assert got == want, (sorted(got), sorted(want))
assert 25 <= len(rows) <= 32, len(rows)
print("front", len(got), "of", len(rows))
EOF
[ $? -eq 0 ] && pass "front.csv is the non-dominated set" || { fail "front.csv is the non-dominated set"; cat "$work/front.txt"; }
fi

# report rewrites the same files from the checkpoint
mkdir -p "$work/before"
cp "$ref"/{history.csv,best.yaml,summary.json,front.csv} "$work/before/"
rm -f "$ref"/{history.csv,best.yaml,summary.json,front.csv,pareto.svg,progress.svg}
run "$work/report.log" "$bin" report "$ref"
expect_status "report" 0 "$work/report.log" $?
ok=1
for f in history.csv best.yaml summary.json front.csv; do cmp -s "$ref/$f" "$work/before/$f" || ok=0; done
[ -s "$ref/pareto.svg" ] && [ -s "$ref/progress.svg" ] || ok=0
[ $ok = 1 ] && pass "report rewrites identical outputs" || fail "report rewrites identical outputs"
# a finished search run again: nothing evaluated
run "$work/again.log" mpirun -np 2 "$bin" search $cfg --set run.dir="$ref" "${common[@]}" "${tuned[@]}"
expect_status "finished search again" 0 "$work/again.log" $?
expect_grep "nothing evaluated again" "this run evaluated 0 " "$work/again.log"

# `hsconas run`: profile -> train -> search in one command; run again, every phase is skipped
if [ -n "$full" ]; then
whole=(--set run.dir="$work/whole" "${quick[@]}" "${common[@]}" --set shrink.stages=1 --set shrink.finetune_max_steps=6)
run "$work/run1.log" mpirun -np 3 "$bin" run $cfg "${whole[@]}"
expect_status "run: the whole pipeline on 3 ranks" 0 "$work/run1.log" $?
[ -s "$work/whole/latency.yaml" ] && [ -s "$work/whole/best.yaml" ] && ls "$work/whole"/checkpoints/supernet-*.h5 >/dev/null 2>&1 &&
  pass "run: model, supernet and search results written" || fail "run: model, supernet and search results written"
run "$work/run2.log" mpirun -np 3 "$bin" run $cfg "${whole[@]}"
expect_status "run again" 0 "$work/run2.log" $?
grep -q "already holds the latency model" "$work/run2.log" && grep -q "already trained" "$work/run2.log" &&
  grep -q "this run evaluated 0 " "$work/run2.log" && pass "run again: every phase skipped" ||
  { fail "run again: every phase skipped"; tail -n 20 "$work/run2.log" | sed 's/^/    | /'; }
fi

# bad input
expect_error "resume with another seed" 1 "search-[0-9]+\.h5: the search there used another run.seed" \
  "$bin" search $cfg --set run.dir="$ref" "${common[@]}" "${tuned[@]}" --set run.seed=8
expect_error "no latency model" 1 "cannot open latency model .*hsconas profile" \
  "$bin" search $cfg --set run.dir="$work/empty" "${common[@]}"
mkdir -p "$work/nonet"
cp "$base/latency.yaml" "$work/nonet/"
expect_error "no supernet" 1 "holds no supernet checkpoint" \
  "$bin" search $cfg --set run.dir="$work/nonet" "${common[@]}"
# (a model whose intercept b is 100 ms: every architecture is predicted above 100 ms, whatever the short
# profile's fit was)
awk '/^fit:/ {f = 1} f && /^  b:/ {print "  b: 100"; f = 0; next} {print}' "$base/latency.yaml" >"$work/slow.yaml"
expect_error "target below the fastest architecture" 1 "target_ms 50.0000 ms is below the fastest architecture" \
  "$bin" search $cfg --set run.dir="$work/slowdir" --set latency.model="$work/slow.yaml" "${common[@]}" \
  --set latency.target_ms=50
expect_error "report of a directory without a search" 1 "holds no search checkpoint" "$bin" report "$work/nonet"
newest=$(ls "$ref"/checkpoints/search-*.h5 | sort | tail -n 1)
head -c 3000 "$newest" >"$newest.cut" && mv "$newest.cut" "$newest"
run "$work/corrupt.log" "$bin" report "$ref"
expect_status "report after a corrupt newest checkpoint" 0 "$work/corrupt.log" $?
expect_grep "corrupt checkpoint named and skipped" "$(basename "$newest").*(truncated|corrupt|not a readable)" \
  "$work/corrupt.log"
finish
