"""Boosted-tree baselines for benches/src/bin/trees.rs: XGBoost `hist`,
LightGBM, scikit-learn's HistGradientBoostingClassifier and (optionally) Spark
MLlib's GBTClassifier, each timed load + fit on the same Parquet files with the
same hyperparameters and threads, and scored on the same held-out files.

    pip install xgboost lightgbm scikit-learn pyarrow numpy
    python3 benches/python/tree_baselines.py --train data/nl-train --test data/nl-test \
        --features 28 --trees 100 --depth 6 --learning-rate 0.3 --bins 256 --threads 2 \
        --baselines xgboost,lightgbm,sklearn

Prints one JSON object per line: {"name", "seconds", "roc_auc"}.
"""

import argparse
import glob
import json
import os
import time


def load(folder, features):
    import numpy as np
    import pyarrow.parquet as pq

    columns = [f"f{i}" for i in range(features)]
    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    table = pq.read_table(files, columns=columns + ["label"]) if len(files) > 1 else pq.read_table(files[0], columns=columns + ["label"])
    X = np.column_stack([table.column(c).to_numpy() for c in columns])
    y = table.column("label").to_numpy().astype(np.float64)
    return X, y


def auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def run_xgboost(a):
    import xgboost as xgb

    started = time.perf_counter()
    X, y = load(a.train, a.features)
    d = xgb.DMatrix(X, label=y, nthread=a.threads)
    params = {
        "tree_method": "hist",
        "objective": "binary:logistic",
        "max_depth": a.depth,
        "eta": a.learning_rate,
        "max_bin": a.bins,
        "nthread": a.threads,
        "lambda": 1.0,
        "min_child_weight": 1.0,
    }
    model = xgb.train(params, d, num_boost_round=a.trees)
    seconds = time.perf_counter() - started
    Xt, yt = load(a.test, a.features)
    return seconds, auc(yt, model.predict(xgb.DMatrix(Xt, nthread=a.threads)))


def run_lightgbm(a):
    import lightgbm as lgb

    started = time.perf_counter()
    X, y = load(a.train, a.features)
    model = lgb.train(
        {
            "objective": "binary",
            "max_depth": a.depth,
            "num_leaves": 2**a.depth,
            "learning_rate": a.learning_rate,
            "max_bin": a.bins - 1,
            "num_threads": a.threads,
            "lambda_l2": 1.0,
            "min_sum_hessian_in_leaf": 1.0,
            "min_data_in_leaf": 1,
            "verbose": -1,
        },
        lgb.Dataset(X, label=y),
        num_boost_round=a.trees,
    )
    seconds = time.perf_counter() - started
    Xt, yt = load(a.test, a.features)
    return seconds, auc(yt, model.predict(Xt, num_threads=a.threads))


def run_sklearn(a):
    from sklearn.ensemble import HistGradientBoostingClassifier

    started = time.perf_counter()
    X, y = load(a.train, a.features)
    model = HistGradientBoostingClassifier(
        max_iter=a.trees,
        max_depth=a.depth,
        max_leaf_nodes=None,
        learning_rate=a.learning_rate,
        max_bins=a.bins - 1,
        l2_regularization=1.0,
        min_samples_leaf=1,
        early_stopping=False,
    ).fit(X, y)
    seconds = time.perf_counter() - started
    Xt, yt = load(a.test, a.features)
    return seconds, auc(yt, model.predict_proba(Xt)[:, 1])


def run_spark(a):
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{a.threads}]")
        .config("spark.driver.memory", "8g")
        .getOrCreate()
    )
    started = time.perf_counter()
    columns = [f"f{i}" for i in range(a.features)]
    assemble = VectorAssembler(inputCols=columns, outputCol="features")
    train = assemble.transform(spark.read.parquet(a.train)).select("features", "label")
    model = GBTClassifier(
        maxIter=a.trees, maxDepth=a.depth, stepSize=a.learning_rate, maxBins=a.bins
    ).fit(train)
    seconds = time.perf_counter() - started
    test = assemble.transform(spark.read.parquet(a.test))
    scored = model.transform(test)
    roc = BinaryClassificationEvaluator(labelCol="label").evaluate(scored)
    spark.stop()
    return seconds, float(roc)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--features", type=int, default=28)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--learning-rate", type=float, default=0.3)
    p.add_argument("--bins", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baselines", default="xgboost,lightgbm,sklearn")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    runners = {
        "xgboost": run_xgboost,
        "lightgbm": run_lightgbm,
        "sklearn": run_sklearn,
        "spark": run_spark,
    }
    for name in a.baselines.split(","):
        name = name.strip()
        if not name:
            continue
        seconds, roc = runners[name](a)
        print(json.dumps({"name": name, "seconds": seconds, "roc_auc": roc}), flush=True)


if __name__ == "__main__":
    main()
