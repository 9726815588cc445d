#!/usr/bin/env bash
# Runs on a machine with an NVIDIA GPU, from the repository root, over release
# binaries built elsewhere and packed by benches/gpu/pack.sh into .gpu-bin/:
# the CUDA parity tests, the kernels alone, end-to-end training on 10M x 28 on
# the CPU path and on the CUDA path of the same machine, and boosted trees with
# their histograms on each.
#   benches/gpu/device.sh [rows]     (writes logs under ${OUT:-/tmp/ember-gpu})
set -uo pipefail
rows="${1:-10000000}"
out="${OUT:-/tmp/ember-gpu}"
mkdir -p "$out"
bin=/tmp/ember-gpu-bin
mkdir -p "$bin"
for f in .gpu-bin/*.xz; do xz -dc "$f" > "$bin/$(basename "$f" .xz)"; done
chmod +x "$bin"/*
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# NVRTC: the toolkit's or a Python wheel's, wherever the machine has it.
nvrtc="$(find / -xdev -name 'libnvrtc.so.13*' -not -path '*/proc/*' 2>/dev/null | grep -v builtins | head -n 1)"
if [ -z "$nvrtc" ]; then
  python3 -m pip install --quiet --target /tmp/ember-nvrtc 'nvidia-cuda-nvrtc>=13,<14' || true
  nvrtc="$(find /tmp/ember-nvrtc -name 'libnvrtc.so.13*' | grep -v builtins | head -n 1)"
fi
[ -n "$nvrtc" ] || { echo "error: no libnvrtc.so.13 on this GPU machine" >&2; exit 1; }
export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "nvrtc: $nvrtc"
nproc
# Here a test that cannot reach the GPU fails instead of skipping.
export EMBER_REQUIRE_GPU=1
status=0
echo "== parity"
"$bin/ml_ops_tests" cuda --test-threads=1 --nocapture > "$out/parity.log" 2>&1 || status=1
grep -E "seed|error|test |result|panicked|skipped" "$out/parity.log"
echo "== GPU-trained models equal the CPU ones (k-means; trees node for node with XGBoost)"
EMBER_FIXTURES="$PWD/tests/fixtures" "$bin/integration" cuda --test-threads=1 > "$out/model.log" 2>&1 || status=1
grep -E "test |result|panicked" "$out/model.log"
echo "== kernels"
"$bin/kernels" --rows "$rows" 2>&1 | tee "$out/kernels.log"
echo "== end to end"
"$bin/ember" datagen classification --rows "$rows" --out /tmp/higgs --parts 16 >/dev/null
"$bin/ml" --data /tmp/higgs --devices cpu,cuda --baselines none 2>&1 | tee "$out/ml.log"
echo "== boosted trees, histograms on the CPU and on the GPU (benches/trees.sh's set)"
"$bin/ember" datagen classification --kind nonlinear --rows 1600000 --features 28 \
  --out /tmp/nl_train --parts 4 --seed 42 >/dev/null
features=$(seq -s ', ' -f 'f%g' 0 27)
for device in cpu cuda; do
  store=$(mktemp -d)
  started=$(date +%s.%N)
  "$bin/ember" sql --data-dir /tmp --model-store "$store" -c "create model gbt options (
    model_type = 'boosted_tree_classifier', label = 'label', device = '$device')
    as select $features, label from nl_train" 2>&1 | tail -n 1 | tee -a "$out/trees.log"
  echo "trees $device: $(echo "$(date +%s.%N) - $started" | bc) s" | tee -a "$out/trees.log"
done
exit $status
