#!/usr/bin/env bash
# Bad input through the command: one clear message naming the file (and line, key or value), a non-zero
# exit, and no checkpoint lost.
source "$(dirname "$0")/lib.sh"
cfg=tests/cli/tiny.yaml

printf 'run:\n  seed: 1\nsupernet:\n  lrr: 0.1\n' >"$work/unknown.yaml"
expect_error "unknown key" 1 "unknown.yaml:4:3: unknown key 'supernet.lrr'.*supernet.lr" "$bin" train "$work/unknown.yaml"
printf 'data:\n  batch_size: many\n' >"$work/type.yaml"
expect_error "wrong type" 1 "type.yaml:2:15: .*data.batch_size" "$bin" train "$work/type.yaml"
printf 'data:\n  batch_size: 0\n' >"$work/range.yaml"
expect_error "out of range" 1 "range.yaml:2:15: .*data.batch_size" "$bin" config "$work/range.yaml"
expect_error "missing config file" 1 "$work/nonexistent.yaml" "$bin" train "$work/nonexistent.yaml"
expect_error "bad --set value" 1 "supernet.lr" "$bin" config $cfg --set supernet.lr=fast
expect_error "--set of an unknown key" 1 "supernet.speed" "$bin" config $cfg --set supernet.speed=1
expect_error "unknown option" 2 "unknown or incomplete option '--fast'" "$bin" train $cfg --fast
expect_error "batch not divisible by the ranks" 1 "data.batch_size" \
  mpirun -np 2 "$bin" config $cfg --set data.batch_size=25

expect_error "missing dataset" 1 "$work/nodata/train-images-idx3-ubyte" \
  "$bin" train $cfg --set run.dir="$work/r1" --set data.path="$work/nodata"

mkdir -p "$work/trunc"
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$work/trunc/"
gunzip -c /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz | head -c 1000000 |
  gzip -1 >"$work/trunc/train-images-idx3-ubyte.gz"
expect_error "truncated IDX file" 1 "trunc/train-images-idx3-ubyte.gz: .*truncated" \
  "$bin" train $cfg --set run.dir="$work/r2" --set data.path="$work/trunc"

expect_error "bad architecture" 1 "gene 1 .shufle5:1.0.: unknown operator" \
  "$bin" arch $cfg --arch shuffle3:1.0,shufle5:1.0,shuffle7:1.5
expect_error "architecture of the wrong length" 1 "3 blocks" "$bin" arch $cfg --arch shuffle3:1.0

printf 'not an HDF5 file\n' >"$work/corrupt.h5"
expect_error "inspect a corrupt checkpoint" 1 "corrupt.h5" "$bin" inspect "$work/corrupt.h5"
expect_error "eval without a trained supernet" 1 "no supernet checkpoint" \
  "$bin" eval $cfg --set run.dir="$work/empty" --random 1

# config --dump prints every key; the dump loads back to the same configuration.
"$bin" config $cfg --dump >"$work/dump.yaml" 2>"$work/dump.err"
a=$("$bin" config $cfg | sed 's/.*config hash //')
b=$("$bin" config "$work/dump.yaml" | sed 's/.*config hash //')
[ -n "$a" ] && [ "$a" = "$b" ] && pass "config --dump round trip" || fail "config --dump round trip" "$a vs $b"
grep -q "checkpoint:" "$work/dump.yaml" && grep -q "every_steps:" "$work/dump.yaml" && pass "dump has every section" ||
  fail "dump has every section"

finish
