#!/usr/bin/env bash
# Boosted trees, end to end from Parquet: ember embedded against XGBoost `hist`,
# LightGBM and scikit-learn's HistGradientBoostingClassifier (benches/python/
# tree_baselines.py), load + fit on the same files with the same threads, scored
# on the same held-out files. 1.6 M training rows x 28 features of
# `ember datagen classification --kind nonlinear` (400 K held out: an 80/20
# split), depth 6, 100 trees, learning rate 0.3, 256 bins.
#
#   cargo build --release -p ember-cli
#   pip install xgboost lightgbm scikit-learn pyarrow numpy
#   benches/trees.sh [BASELINES]      # default: xgboost,lightgbm,sklearn
set -euo pipefail
cd "$(dirname "$0")/.."
ember=./target/release/ember
data=data/trees
baselines="${1:-xgboost,lightgbm,sklearn}"
[ -d "$data/nl_train" ] || $ember datagen classification --kind nonlinear --rows 1600000 \
  --features 28 --out "$data/nl_train" --parts 4 --seed 42
[ -d "$data/nl_test" ] || $ember datagen classification --kind nonlinear --rows 400000 \
  --features 28 --out "$data/nl_test" --parts 1 --seed 43
features=$(seq -s ', ' -f 'f%g' 0 27)
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
started=$(date +%s.%N)
$ember sql --data-dir "$data" --model-store "$store" -c "create model gbt options (
  model_type = 'boosted_tree_classifier', label = 'label', num_trees = 100, max_depth = 6,
  learning_rate = 0.3, max_bins = 256) as select $features, label from nl_train" >/dev/null
seconds=$(echo "$(date +%s.%N) - $started" | bc)
auc=$($ember sql --data-dir "$data" --model-store "$store" --format csv -c \
  "evaluate model gbt on (select $features, label from nl_test)" | tail -n 1 | cut -d, -f6)
printf '{"name": "ember", "seconds": %.3f, "roc_auc": %s}\n' "$seconds" "$auc"
python3 benches/python/tree_baselines.py --train "$data/nl_train" --test "$data/nl_test" \
  --features 28 --trees 100 --depth 6 --learning-rate 0.3 --bins 256 --threads 2 \
  --baselines "$baselines"
