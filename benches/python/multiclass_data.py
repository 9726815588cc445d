"""A nonlinear multiclass set for benches/multiclass.sh: the class is the
largest of k noisy nonlinear scores of 28 standard normal features.

    python3 benches/python/multiclass_data.py OUT_DIR ROWS CLASSES SEED
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

out, rows, classes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
X = rng.normal(0, 1, (rows, 28))
scores = np.column_stack(
    [np.sin(2 * X[:, c]) * X[:, c + 7] + (X[:, c + 14] > 0.3) * X[:, c + 21] ** 2 for c in range(classes)]
)
label = (scores + rng.normal(0, 0.5, scores.shape)).argmax(axis=1)
os.makedirs(out, exist_ok=True)
table = pa.table({**{f"f{i}": X[:, i] for i in range(28)}, "label": label})
pq.write_table(table, os.path.join(out, "part-0.parquet"))
