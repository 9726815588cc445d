"""Softmax boosted trees' baselines for benches/multiclass.sh: XGBoost
`multi:softprob` and LightGBM `multiclass`, load + fit on the same Parquet
files with the same hyperparameters and threads, scored (accuracy, log-loss)
on the same held-out files. Prints one JSON object per line.
"""
import argparse
import json
import time

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, log_loss


def load(folder):
    table = pq.read_table(folder)
    X = np.column_stack([table.column(f"f{i}").to_numpy() for i in range(28)])
    return X, table.column("label").to_numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baselines", default="xgboost,lightgbm")
    a = p.parse_args()
    for name in a.baselines.split(","):
        started = time.perf_counter()
        X, y = load(a.train)
        if name == "xgboost":
            import xgboost as xgb

            params = {"objective": "multi:softprob", "num_class": a.classes, "tree_method": "hist",
                      "max_depth": 6, "eta": 0.3, "max_bin": 256, "nthread": a.threads}
            model = xgb.train(params, xgb.DMatrix(X, label=y, nthread=a.threads), a.trees)
            seconds = time.perf_counter() - started
            Xt, yt = load(a.test)
            proba = model.predict(xgb.DMatrix(Xt, nthread=a.threads))
        else:
            import lightgbm as lgb

            params = {"objective": "multiclass", "num_class": a.classes, "max_depth": 6,
                      "num_leaves": 64, "learning_rate": 0.3, "max_bin": 255, "lambda_l2": 1.0,
                      "min_sum_hessian_in_leaf": 1.0, "min_data_in_leaf": 1,
                      "num_threads": a.threads, "verbose": -1}
            model = lgb.train(params, lgb.Dataset(X, label=y), a.trees)
            seconds = time.perf_counter() - started
            Xt, yt = load(a.test)
            proba = model.predict(Xt, num_threads=a.threads)
        print(json.dumps({"name": name, "seconds": seconds,
                          "accuracy": accuracy_score(yt, proba.argmax(axis=1)),
                          "log_loss": log_loss(yt, proba, labels=np.arange(a.classes))}), flush=True)


if __name__ == "__main__":
    main()
