#!/usr/bin/env bash
# The tree benchmark's CREATE MODEL (benches/trees.sh: 1.6 M rows x 28 features,
# depth 6, 100 trees, 256 bins) embedded and on a cluster of processes started
# as a user starts them (`ember cluster up --executors N`), in turns, and the
# models compared (their XGBoost exports must be the same file).
#
#   cargo build --release -p ember-cli
#   benches/trees.sh xgboost          # makes data/trees once
#   benches/trees_cluster.sh [RUNS] [EXECUTORS]
set -euo pipefail
cd "$(dirname "$0")/.."
ember=./target/release/ember
runs="${1:-3}"
executors="${2:-2}"
port=50071
features=$(seq -s ', ' -f 'f%g' 0 27)
sql="create model gbt options (model_type = 'boosted_tree_classifier', label = 'label',
  num_trees = 100, max_depth = 6, learning_rate = 0.3, max_bins = 256)
  as select $features, label from nl_train"
work=$(mktemp -d)
$ember cluster up --executors "$executors" --port $port > "$work/cluster.log" 2>&1 &
cluster=$!
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 60); do
  grep -q "Submit with" "$work/cluster.log" && break
  sleep 0.5
done
for run in $(seq 1 "$runs"); do
  for where in embedded cluster; do
    store="$work/$where-$run"
    master=()
    [ $where = cluster ] && master=(--master "df://127.0.0.1:$port")
    started=$(date +%s.%N)
    $ember sql "${master[@]}" --data-dir data/trees --model-store "$store" -c "$sql" >/dev/null
    seconds=$(echo "$(date +%s.%N) - $started" | bc)
    $ember sql --model-store "$store" -c "export model gbt to '$store/gbt.json'" >/dev/null
    printf '{"run": %d, "where": "%s", "executors": %d, "seconds": %.3f}\n' \
      "$run" "$where" "$executors" "$seconds"
  done
  cmp -s "$work/embedded-$run/gbt.json" "$work/cluster-$run/gbt.json" \
    || { echo "run $run: the cluster's trees differ from the embedded ones" >&2; exit 1; }
done
echo "models: the same bit for bit embedded and on $executors executors" >&2
