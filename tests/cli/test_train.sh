#!/usr/bin/env bash
# Supernet training through the command: checkpoints, bitwise resume after a stop (1 and 2 ranks), SIGTERM
# mid-epoch, refusing to overwrite, falling back past a corrupt checkpoint, eval and retrain.
source "$(dirname "$0")/lib.sh"
cfg=tests/cli/tiny.yaml
ck() { printf '%s/checkpoints/supernet-%010d.h5' "$1" "$2"; }

# 1. Straight run: 30 steps, checkpoints every 10, the newest 2 kept.
run "$work/a.log" "$bin" train $cfg --set run.dir="$work/a"
expect_status "train completes" 0 "$work/a.log" $?
if [ -f "$(ck "$work/a" 30)" ] && [ -f "$(ck "$work/a" 20)" ] && [ ! -f "$(ck "$work/a" 10)" ]; then
  pass "checkpoints written, the newest 2 kept"
else fail "checkpoints written, the newest 2 kept" "$(ls "$work/a/checkpoints")"; fi
expect_grep "progress lines" "supernet  epoch 1/1  step 30/30  loss [0-9.]+  top1 [0-9.]+%  lr .* img/s  ETA" "$work/a.log"
run "$work/inspect.log" "$bin" inspect "$(ck "$work/a" 30)"
expect_status "inspect reads the checkpoint" 0 "$work/inspect.log" $?
expect_grep "inspect lists parameters" "params/classifier" "$work/inspect.log"

# 2. Stop before step 13 (as a signal would), resume: the final parameters are bitwise those of run 1.
HSC_STOP_AT_STEP=13 run "$work/b1.log" "$bin" train $cfg --set run.dir="$work/b"
expect_status "stop exits with status 3" 3 "$work/b1.log" $?
[ -f "$(ck "$work/b" 13)" ] && pass "checkpoint at the stop step" || fail "checkpoint at the stop step"
run "$work/b2.log" "$bin" train $cfg --set run.dir="$work/b" --resume
expect_status "resume completes" 0 "$work/b2.log" $?
expect_grep "resume names its checkpoint" "resuming from .*supernet-0000000013.h5" "$work/b2.log"
if h5diff -q "$(ck "$work/a" 30)" "$(ck "$work/b" 30)" /params /params &&
  h5diff -q "$(ck "$work/a" 30)" "$(ck "$work/b" 30)" /optim /optim; then
  pass "resumed run bitwise equal (params, momentum)"
else fail "resumed run bitwise equal (params, momentum)"; fi

# 3. The same on 2 ranks.
run "$work/c.log" mpirun -np 2 "$bin" train $cfg --set run.dir="$work/c"
expect_status "2-rank train completes" 0 "$work/c.log" $?
HSC_STOP_AT_STEP=17 run "$work/d1.log" mpirun -np 2 -x HSC_STOP_AT_STEP "$bin" train $cfg --set run.dir="$work/d"
run "$work/d2.log" mpirun -np 2 "$bin" train $cfg --set run.dir="$work/d" --resume
expect_status "2-rank resume completes" 0 "$work/d2.log" $?
if h5diff -q "$(ck "$work/c" 30)" "$(ck "$work/d" 30)" /params /params; then
  pass "2-rank resumed run bitwise equal"
else fail "2-rank resumed run bitwise equal"; fi

# 4. SIGTERM mid-epoch: a checkpoint that loads, exit status 3, and the run resumes from it.
"$bin" train $cfg --set run.dir="$work/e" --set supernet.max_steps=100000 --set supernet.epochs=50 \
  --set checkpoint.every_steps=0 >"$work/e.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do # wait for the first progress line (the loop is running), at most 60 s
  grep -q "step 10/" "$work/e.log" 2>/dev/null && break
  sleep 0.1
done
kill -TERM $pid
wait $pid
expect_status "SIGTERM exits with status 3" 3 "$work/e.log" $?
latest=$(ls "$work"/e/checkpoints/supernet-*.h5 2>/dev/null | tail -n 1)
if [ -n "$latest" ] && "$bin" inspect "$latest" >"$work/e-inspect.log" 2>&1; then
  pass "SIGTERM leaves a loadable checkpoint"
else fail "SIGTERM leaves a loadable checkpoint" "${latest:-none}"; fi
expect_grep "the stop is logged" "signal received: checkpointing at step [0-9]+" "$work/e.log"

# 5. Checkpoints exist and --resume is missing: refused, nothing touched.
sum_before=$(md5sum "$work"/a/checkpoints/*.h5)
run "$work/f.log" "$bin" train $cfg --set run.dir="$work/a"
st=$?
expect_status "training over checkpoints without --resume is refused" 1 "$work/f.log" $st
expect_grep "the refusal says --resume" "pass --resume" "$work/f.log"
[ "$sum_before" = "$(md5sum "$work"/a/checkpoints/*.h5)" ] && pass "refused run left checkpoints intact" ||
  fail "refused run left checkpoints intact"

# 6. A corrupt newest checkpoint: resume reports it by name and uses the previous one.
HSC_STOP_AT_STEP=25 run "$work/g0.log" "$bin" train $cfg --set run.dir="$work/g" --set checkpoint.keep=3
truncate -s 5000 "$(ck "$work/g" 25)"
run "$work/g.log" "$bin" train $cfg --set run.dir="$work/g" --set checkpoint.keep=3 --resume
expect_status "resume past a truncated checkpoint" 0 "$work/g.log" $?
expect_grep "the truncated file is named" "supernet-0000000025.h5: not a readable HDF5 checkpoint" "$work/g.log"
expect_grep "the previous checkpoint is used" "resuming from .*supernet-0000000020.h5" "$work/g.log"
if h5diff -q "$(ck "$work/a" 30)" "$(ck "$work/g" 30)" /params /params; then
  pass "fallback resume still bitwise equal"
else fail "fallback resume still bitwise equal"; fi

# 7. Every checkpoint corrupt: an error naming them, and they stay for inspection.
mkdir -p "$work/h/checkpoints"
head -c 3000 "$(ck "$work/a" 30)" >"$work/h/checkpoints/supernet-0000000030.h5"
run "$work/h.log" "$bin" train $cfg --set run.dir="$work/h" --resume
expect_status "all checkpoints corrupt: error" 1 "$work/h.log" $?
expect_grep "all-corrupt error names the file" "supernet-0000000030.h5" "$work/h.log"
[ -f "$work/h/checkpoints/supernet-0000000030.h5" ] && pass "corrupt checkpoint kept" || fail "corrupt checkpoint kept"

# 8. Evaluation of architectures on the trained supernet, spread over 2 ranks.
run "$work/i.log" mpirun -np 2 "$bin" eval $cfg --set run.dir="$work/a" --random 3 \
  --arch shuffle3:1.0,xception:0.5,shuffle7:1.5
expect_status "eval completes" 0 "$work/i.log" $?
expect_grep "eval prints a mean" "mean top1 [0-9.]+% over 4 architectures \(500 validation images each" "$work/i.log"

# 9. Retrain a fixed architecture and report its test accuracy.
run "$work/j.log" "$bin" retrain $cfg --set run.dir="$work/j" --arch shuffle3:1.0,xception:0.5,shuffle7:1.5
expect_status "retrain completes" 0 "$work/j.log" $?
expect_grep "retrain reports test top-1" "test top1 [0-9.]+% top5 [0-9.]+% loss [0-9.]+ on 10000 images" "$work/j.log"

finish
