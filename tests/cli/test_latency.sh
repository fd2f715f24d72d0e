#!/usr/bin/env bash
# `hsconas profile` and `hsconas latency` on the tiny space: a model and its table of measured
# architectures are written, a second profile measures nothing, predictions are printed (with the measured
# latency beside them under --measure), and a model for another space, a truncated model and an
# incomplete LUT are refused with one message naming the file.
source "$(dirname "$0")/lib.sh"
cfg=tests/cli/tiny.yaml
short=(--set latency.fit_archs=10 --set latency.holdout_archs=6 --set latency.repeats=3
  --set latency.warmup=1 --set latency.min_sample_ms=0.1)
dir="$work/run"
arch=shuffle3:0.5,xception:1.5,shuffle7:1.0

run "$work/p1.log" "$bin" profile $cfg --set run.dir="$dir" "${short[@]}"
expect_status "profile" 0 "$work/p1.log" $?
[ -s "$dir/latency.yaml" ] && [ -s "$dir/latency-archs.csv" ] && pass "model and table written" ||
  fail "model and table written"
expect_grep "report names hold-out and FLOPs proxy" "hold-out, FLOPs proxy +6 archs" "$work/p1.log"
# The plot: well-formed SVG, one point per architecture in the model's panel (fit + hold-out) and one per
# hold-out architecture in the FLOPs panel, plus 3 legend marks.
circles=$(/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E
print(sum(1 for _ in E.parse(sys.argv[1]).iter("{http://www.w3.org/2000/svg}circle")))' "$dir/latency-fit.svg" 2>&1)
[ "$circles" = 25 ] && pass "fit plot has every point" || fail "fit plot has every point" "$circles"
rows=$(($(wc -l <"$dir/latency-archs.csv") - 1))
[ "$rows" -eq 16 ] && pass "table has fit + hold-out rows" || fail "table has fit + hold-out rows" "$rows rows"

cp "$dir/latency.yaml" "$work/model.before"
run "$work/p2.log" "$bin" profile $cfg --set run.dir="$dir" "${short[@]}"
expect_status "second profile" 0 "$work/p2.log" $?
expect_grep "second profile measures nothing" "already holds the latency model" "$work/p2.log"
cmp -s "$dir/latency.yaml" "$work/model.before" && pass "model untouched" || fail "model untouched"

run "$work/l1.log" "$bin" latency $cfg --set run.dir="$dir" --arch $arch
expect_status "latency --arch" 0 "$work/l1.log" $?
expect_grep "prediction printed" "^[0-9a-f]{16} +[0-9]+\.[0-9]{4}  $arch" "$work/l1.log"
run "$work/l2.log" mpirun -np 2 "$bin" latency $cfg --set run.dir="$dir" --arch $arch --random 2 --measure
expect_status "latency --measure on 2 ranks" 0 "$work/l2.log" $?
expect_grep "measured beside predicted" "^[0-9a-f]{16} +[0-9.]+ +[0-9.]+ +[0-9.]+ +[-+][0-9.]+  $arch" "$work/l2.log"

# Bad models: each refused with one message naming the file; the model itself is never rewritten.
expect_error "model of another space" 1 "latency.yaml: latency model built for another search space" \
  "$bin" latency $cfg --set run.dir="$dir" --set space.scales=[0.5,1.0] --arch shuffle3:0.5,shuffle3:0.5,shuffle3:0.5
expect_error "profile keeps another space's model" 1 "another search space.*it was kept" \
  "$bin" profile $cfg --set run.dir="$dir" --set space.scales=[0.5,1.0] "${short[@]}"
cmp -s "$dir/latency.yaml" "$work/model.before" && pass "model kept" || fail "model kept"
expect_error "model of another batch" 1 "profiled at batch 1, but latency.batch is 4" \
  "$bin" latency $cfg --set run.dir="$dir" --set latency.batch=4 --arch $arch
head -c $(($(wc -c <"$dir/latency.yaml") * 2 / 3)) "$dir/latency.yaml" >"$work/trunc.yaml"
expect_error "truncated model" 1 "trunc.yaml:[0-9]+:[0-9]+: .*truncated" \
  "$bin" latency $cfg --set latency.model="$work/trunc.yaml" --arch $arch
awk '/- \{block: 1, op: shuffle5,/ {skip = 3} skip > 0 {skip--; next} {print}' "$dir/latency.yaml" >"$work/gap.yaml"
expect_error "missing LUT entry" 1 "gap.yaml:.*no entry for block 1 operator shuffle5" \
  "$bin" latency $cfg --set latency.model="$work/gap.yaml" --arch $arch
expect_error "no model" 1 "cannot open latency model '$work/none.yaml': .*hsconas profile" \
  "$bin" latency $cfg --set latency.model="$work/none.yaml" --arch $arch

run "$work/p3.log" "$bin" profile $cfg --set run.dir="$dir" "${short[@]}" --force
expect_status "profile --force" 0 "$work/p3.log" $?
cmp -s "$dir/latency.yaml" "$work/model.before" && fail "--force profiles again" || pass "--force profiles again"
finish
