#!/usr/bin/env bash
# Packs the release binaries benches/gpu/device.sh needs into .gpu-bin/
# (stripped, xz-compressed: the device tool carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu-bin/' .git/info/exclude || echo '/.gpu-bin/' >> .git/info/exclude
rm -rf .gpu-bin && mkdir .gpu-bin
tests="$(ls -t target/release/deps/ember_ml_ops-* | grep -v '\.d$' | head -n 1)"
# The integration tests, for the GPU-trained model against the CPU one
# (cargo test --release -p ember-tests --no-run builds it).
integration="$(ls -t target/release/deps/integration-* | grep -v '\.d$' | head -n 1)"
for pair in "target/release/ember:ember" "target/release/ml:ml" "target/release/kernels:kernels" "$tests:ml_ops_tests" "$integration:integration"; do
  strip -o ".gpu-bin/${pair##*:}" "${pair%%:*}"
  xz -T2 -6 ".gpu-bin/${pair##*:}"
done
ls -la .gpu-bin
