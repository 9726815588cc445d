#!/usr/bin/env bash
# Softmax boosted trees, end to end from Parquet: ember embedded against
# XGBoost `multi:softprob` and LightGBM `multiclass` (benches/python/
# multiclass_baselines.py), load + fit on the same files with the same threads,
# scored on the same held-out files. 400 K training rows x 28 features of a
# nonlinear 5-class set (benches/python/multiclass_data.py; 100 K held out),
# depth 6, 100 rounds (a tree per class each), learning rate 0.3, 256 bins.
#
#   cargo build --release -p ember-cli
#   pip install xgboost lightgbm scikit-learn pyarrow numpy
#   benches/multiclass.sh [BASELINES]      # default: xgboost,lightgbm
set -euo pipefail
cd "$(dirname "$0")/.."
ember=./target/release/ember
data=data/multiclass
classes=5
baselines="${1:-xgboost,lightgbm}"
[ -d "$data/mc_train" ] || python3 benches/python/multiclass_data.py "$data/mc_train" 400000 $classes 42
[ -d "$data/mc_test" ] || python3 benches/python/multiclass_data.py "$data/mc_test" 100000 $classes 43
features=$(seq -s ', ' -f 'f%g' 0 27)
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
started=$(date +%s.%N)
$ember sql --data-dir "$data" --model-store "$store" -c "create model gbt options (
  model_type = 'boosted_tree_classifier', label = 'label', num_trees = 100, max_depth = 6,
  learning_rate = 0.3, max_bins = 256) as select $features, label from mc_train" >/dev/null
seconds=$(echo "$(date +%s.%N) - $started" | bc)
metrics=$($ember sql --data-dir "$data" --model-store "$store" --format csv -c \
  "select accuracy, log_loss from evaluate('gbt', 'select $features, label from mc_test')" | tail -n 1)
printf '{"name": "ember", "seconds": %.3f, "accuracy": %s, "log_loss": %s}\n' \
  "$seconds" "${metrics%%,*}" "${metrics##*,}"
python3 benches/python/multiclass_baselines.py --train "$data/mc_train" --test "$data/mc_test" \
  --classes $classes --threads 2 --baselines "$baselines"
