#!/usr/bin/env bash
# The paper's claim on our data (docs/results.md): at a latency target on this CPU (the median predicted
# latency of random architectures), the searched architecture, retrained alone, is more accurate on the
# Fashion-MNIST test set than (a) the best of 5 random architectures within the target and (b) a hand-set
# baseline (every block shuffle3 at the largest uniform scale within the target), all retrained the same
# way, all measured under the target; and the effect of DCS and of PSS (each switched off).
#   bench/results.sh BUILD OUT SUPERNET_CKPT LATENCY_MODEL [RETRAIN_EPOCHS]
# SUPERNET_CKPT: a finished supernet checkpoint of configs/fmnist-full.yaml's space (e.g. the 30-epoch one of
# `mpirun -np 2 hsconas train configs/fmnist-full.yaml`); LATENCY_MODEL: `hsconas profile`'s model of this
# machine. Steps (each skipped when its output exists, so a rerun continues):
#   1. three searches on 3 ranks: HSCoNAS (DCS + 2 shrinking stages), without DCS, without PSS;
#   2. the baselines from the same target;
#   3. every architecture retrained with RETRAIN_EPOCHS (default 5) epochs on 2 ranks, test top-1;
#   4. every architecture's latency measured with the profiling protocol;
#   5. the table, also in OUT/results.md.
# Run it on a quiet machine: step 4 measures latency (HSC_RESULTS_NO_MEASURE=1 stops before it).
set -euo pipefail
build=${1:?usage: bench/results.sh BUILD OUT SUPERNET_CKPT LATENCY_MODEL [RETRAIN_EPOCHS]}
out=${2:?OUT}
ckpt=${3:?SUPERNET_CKPT}
model=${4:?LATENCY_MODEL}
epochs=${5:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$build" && pwd)/hsconas
cfg=$here/configs/fmnist-full.yaml
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
mkdir -p "$out"
out=$(cd "$out" && pwd)

declare -A variant=([hsconas]="" [no-dcs]="--set dcs.enabled=false" [no-pss]="--set shrink.stages=0")
for v in hsconas no-dcs no-pss; do
  dir=$out/search-$v
  if [ ! -s "$dir/best.yaml" ]; then
    mkdir -p "$dir/checkpoints"
    ln -f "$ckpt" "$dir/checkpoints/" 2>/dev/null || cp "$ckpt" "$dir/checkpoints/"
    cp "$model" "$dir/latency.yaml"
    echo "== search $v"
    start=$(date +%s)
    # shellcheck disable=SC2086
    mpirun -np 3 "$bin" search "$cfg" --set run.dir="$dir" --set dist.threads=1 ${variant[$v]} \
      >"$dir/search.log" 2>&1 || { tail -n 20 "$dir/search.log"; exit 1; }
    echo "   $(($(date +%s) - start)) s"
  fi
done
target=$(/usr/bin/python3 -c 'import json,sys; print("%.6f" % json.load(open(sys.argv[1]))["target_ms"])' \
  "$out/search-hsconas/summary.json")
echo "== target $target ms"

# The baselines: the first 5 of `hsconas latency --random 200` within the target; shuffle3 at the largest
# uniform scale within it.
archs=$out/archs.txt
if [ ! -s "$archs" ]; then
  for v in hsconas no-dcs no-pss; do
    printf "search-%s %s\n" "$v" "$(grep -v '^#' "$out/search-$v/best.yaml" | sed -n 's/^  - //p' | paste -sd,)"
  done >"$archs.tmp"
  "$bin" latency "$cfg" --set latency.model="$model" --random 200 | grep -E '^[0-9a-f]{16} ' |
    awk -v t="$target" '$2 <= t {n++; if (n <= 5) printf "random-%d %s\n", n, $3}' >>"$archs.tmp"
  nblocks=$("$bin" arch "$cfg" --random 1 | awk 'NR == 2 {print $4}' | tr , '\n' | wc -l)
  best=""
  for s in 0.2 0.4 0.6 0.8 1.0 1.2 1.4 1.6 1.8 2.0; do
    a=$(printf "shuffle3:%s," $(seq 1 "$nblocks" | sed "s/.*/$s/") | sed 's/,$//')
    p=$("$bin" latency "$cfg" --set latency.model="$model" --arch "$a" | awk 'NR == 2 {print $2}')
    awk -v p="$p" -v t="$target" 'BEGIN {exit !(p <= t)}' && best=$a
  done
  echo "shuffle3-uniform $best" >>"$archs.tmp"
  mv "$archs.tmp" "$archs"
fi
cat "$archs"

# Retraining: all 60k training images, configs/fmnist-full.yaml's retrain.* with RETRAIN_EPOCHS epochs.
while read -r name arch; do
  log=$out/retrain-$name.log
  if ! grep -q "test top1" "$log" 2>/dev/null; then
    echo "== retrain $name"
    mpirun -np 2 "$bin" retrain "$cfg" --set run.dir="$out/retrain" --set retrain.epochs="$epochs" \
      --arch "$arch" --resume </dev/null >"$log" 2>&1 || { tail -n 20 "$log"; exit 1; }
    tail -n 1 "$log"
  fi
done <"$archs"

# Latency: measured with the profiling protocol, by one process with the model's thread count, on a quiet
# machine (HSC_RESULTS_NO_MEASURE=1 stops here, to measure later in a quiet moment).
[ -z "${HSC_RESULTS_NO_MEASURE:-}" ] || { echo "stopping before the latency measurement"; exit 0; }
meas=$out/measured.txt
if [ ! -s "$meas" ]; then
  threads=$(awk '/^  threads:/ {print $2}' "$model")
  set -- $(awk '{print "--arch " $2}' "$archs")
  # The OpenMP wait policy as when profiling (bench/latency.sh, hsconas profile: the default, active):
  # passive waits (set above for the oversubscribed searches) cost a wake-up per parallel region, which at
  # batch 1 multiplies the latency.
  env -u OMP_WAIT_POLICY "$bin" latency "$cfg" --set latency.model="$model" --set dist.threads="$threads" "$@" \
    --measure >"$meas"
fi

/usr/bin/python3 - "$out" "$target" <<'PY' | tee "$out/results.md"
import json, re, sys
out, target = sys.argv[1], float(sys.argv[2])
names, archs = [], {}
for line in open(out + "/archs.txt"):
    n, a = line.split()
    names.append(n); archs[n] = a
meas = {}
for line in open(out + "/measured.txt"):
    f = line.split()
    if len(f) >= 6 and re.fullmatch("[0-9a-f]{16}", f[0]):
        meas[f[5]] = (float(f[1]), float(f[2]))
acc = {}
for n in names:
    m = re.search(r"test top1 ([0-9.]+)%", open("%s/retrain-%s.log" % (out, n)).read())
    acc[n] = float(m.group(1)) if m else float("nan")
sup = {}
for v in ("hsconas", "no-dcs", "no-pss"):
    s = json.load(open("%s/search-%s/summary.json" % (out, v)))
    sup["search-" + v] = (s["best"]["top1"], s["evaluations"])
print("| architecture | test top-1 (retrained) | predicted ms | measured ms | within %.4f ms | supernet val top-1 | evaluations |" % target)
print("|---|---|---|---|---|---|---|")
for n in names:
    p, m = meas.get(archs[n], (float("nan"), float("nan")))
    sv, ev = sup.get(n, ("", ""))
    print("| %s | %.2f%% | %.4f | %.4f | %s | %s | %s |" % (n, acc[n], p, m, "yes" if m <= target else "**no**",
          ("%.2f%%" % sv) if sv != "" else "", ev))
rand = max(acc[n] for n in names if n.startswith("random-"))
print()
print("searched (HSCoNAS) %.2f%% vs best of 5 random %.2f%% (%+.2f) vs shuffle3 uniform %.2f%% (%+.2f)" % (
    acc["search-hsconas"], rand, acc["search-hsconas"] - rand, acc["shuffle3-uniform"],
    acc["search-hsconas"] - acc["shuffle3-uniform"]))
print()
for n in names:
    print("- %s: `%s`" % (n, archs[n]))
PY
