#!/usr/bin/env bash
# Latency-model validation (docs/latency.md, results in docs/benchmarks.md): profiles the Fashion-MNIST
# space at batch 1 and 32 and the ImageNet space at batch 1 on the CPU backend, each with the default
# protocol (100 fit + 100 hold-out architectures), and prints the hold-out report of the model next to the
# FLOPs proxy's.
#   bench/latency.sh BUILD [OUT_DIR] [CASE ...]
# A CASE is SPACE:BATCH[:SAMPLING], e.g. fmnist:32:uniform; default: fmnist:1 fmnist:32 fmnist:1:uniform
# fmnist:32:uniform imagenet:1. Run it on a quiet machine: every other process shifts the timings.
set -euo pipefail
build=${1:?usage: bench/latency.sh BUILD [OUT_DIR] [CASE ...]}
out=${2:-bench-latency}
shift $(($# >= 2 ? 2 : 1))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(fmnist:1 fmnist:32 fmnist:1:uniform fmnist:32:uniform imagenet:1)
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$build" && pwd)/hsconas
mkdir -p "$out"
models=()
for c in "${cases[@]}"; do
  IFS=: read -r space batch sampling <<<"$c"
  sampling=${sampling:-spread}
  dir="$out/$space-b$batch-$sampling"
  echo "== $space space, batch $batch, $sampling sampling -> $dir/latency.yaml"
  start=$(date +%s)
  "$bin" profile "$here/configs/$space.yaml" --force --set run.dir="$dir" --set latency.batch="$batch" \
    --set latency.sampling="$sampling" 2>&1 | grep -v '% done' || exit 1
  echo "   $(($(date +%s) - start)) s"
  models+=("$dir/latency.yaml")
done
/usr/bin/python3 - "${models[@]}" <<'PY'
import sys, yaml
print()
print("| model | archs | within ±10% | within ±5% | MAPE | max error | RMSE (ms) | Spearman ρ | Kendall τ | Pearson r | FLOPs proxy: within ±10% | within ±5% | MAPE | Spearman ρ | Kendall τ |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    m = yaml.safe_load(open(path))
    h, f = m["holdout"], m["flops_proxy"]["holdout"]
    name = "%s, %d blocks, batch %d, %s" % (m["device"]["backend"], m["space"]["blocks"], m["batch"], m["protocol"]["sampling"])
    print("| %s | %d | %.0f%% | %.0f%% | %.2f%% | %.2f%% | %.4f | %.4f | %.4f | %.4f | %.0f%% | %.0f%% | %.2f%% | %.4f | %.4f |" % (
        name, h["archs"], h["within_10"], h["within_5"], h["mape"], h["max_ape"], h["rmse_ms"], h["spearman"],
        h["kendall"], h["pearson"], f["within_10"], f["within_5"], f["mape"], f["spearman"], f["kendall"]))
PY
