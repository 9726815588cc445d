"""Baselines for ember's training benchmark: scikit-learn and Spark MLlib on the
same Parquet, timed the same way (load, then fit), printed as JSON lines.

    pip install scikit-learn pyarrow pyspark
    python benches/python/ml_baselines.py --data data/higgs-2m --engines sklearn,spark

Workloads (as benches/src/bin/ml.rs runs them in ember):
  logistic  unregularised logistic regression to the optimum (label ~ f*)
  linear    least squares (target ~ f*)
  kmeans    k = 8, 20 Lloyd iterations, one start
"""

import argparse
import glob
import json
import math
import os
import time


def emit(**row):
    print(json.dumps(row), flush=True)


def sklearn_runs(files, k, iterations):
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import log_loss

    start = time.perf_counter()
    table = pq.ParquetDataset(files).read()
    names = [n for n in table.column_names if n.startswith("f")]
    X = np.column_stack([table.column(n).to_numpy() for n in names])
    y = table.column("label").to_numpy()
    t = table.column("target").to_numpy()
    load = time.perf_counter() - start

    start = time.perf_counter()
    clf = LogisticRegression(penalty=None, tol=1e-8, max_iter=1000).fit(X, y)
    fit = time.perf_counter() - start
    loss = log_loss(y, clf.predict_proba(X)[:, 1])
    emit(engine="sklearn", workload="logistic", load_s=load, fit_s=fit, loss=loss, iterations=int(clf.n_iter_[0]))

    start = time.perf_counter()
    LinearRegression().fit(X, t)
    emit(engine="sklearn", workload="linear", load_s=load, fit_s=time.perf_counter() - start)

    start = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=1, max_iter=iterations, tol=0, random_state=0).fit(X)
    emit(engine="sklearn", workload="kmeans", load_s=load, fit_s=time.perf_counter() - start, loss=float(km.inertia_), iterations=int(km.n_iter_))


def spark_runs(files, k, iterations):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    df = spark.read.parquet(*files)
    names = [n for n in df.columns if n.startswith("f")]
    data = VectorAssembler(inputCols=names, outputCol="features").transform(df).select("features", "label", "target").cache()
    rows = data.count()
    load = time.perf_counter() - start

    start = time.perf_counter()
    model = LogisticRegression(maxIter=100, regParam=0.0, tol=1e-8, labelCol="label").fit(data)
    fit = time.perf_counter() - start
    history = model.summary.objectiveHistory
    emit(engine="spark", workload="logistic", load_s=load, fit_s=fit, loss=history[-1], iterations=len(history), rows=rows)

    start = time.perf_counter()
    LinearRegression(maxIter=100, regParam=0.0, labelCol="target", solver="normal").fit(data)
    emit(engine="spark", workload="linear", load_s=load, fit_s=time.perf_counter() - start)

    start = time.perf_counter()
    km = KMeans(k=k, maxIter=iterations, tol=0.0, seed=1).fit(data)
    emit(engine="spark", workload="kmeans", load_s=load, fit_s=time.perf_counter() - start, loss=km.summary.trainingCost)
    spark.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--engines", default="sklearn")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "*.parquet")))
    if not files:
        raise SystemExit(f"no Parquet files in {args.data}")
    for engine in args.engines.split(","):
        if engine == "sklearn":
            sklearn_runs(files, args.k, args.iterations)
        elif engine == "spark":
            spark_runs(files, args.k, args.iterations)
        else:
            raise SystemExit(f"unknown engine {engine}")


if __name__ == "__main__":
    main()
