import os

import adbc_driver_flightsql.dbapi as flight_sql
import pandas as pd

uri = os.environ.get("EMBER_URI", "grpc://127.0.0.1:32010")
with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
    # A query, as Arrow or as pandas; parameters bind to ?.
    cur.execute("SELECT count(*) AS n_regions FROM region")
    print(cur.fetch_arrow_table())
    cur.execute("SELECT n_name FROM nation WHERE n_regionkey = ? ORDER BY n_name", (1,))
    print(cur.fetch_df())

    # A DataFrame becomes a Parquet table under the server's --data-dir.
    customers = pd.DataFrame({
        "tenure": [1, 2, 3, 5, 8, 13, 21, 34, 2, 40, 1, 30, 4, 25, 3, 18],
        "spend": [20.0, 35, 15, 60, 80, 75, 90, 99, 10, 120, 5, 95, 30, 85, 25, 70],
        "churned": [1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0],
    })
    cur.adbc_ingest("customers", customers, mode="replace")

    # Train, predict, evaluate: each answer is a table.
    cur.execute("""
        CREATE MODEL churn
        OPTIONS (model_type = 'logistic_regression', label = 'churned')
        AS SELECT tenure, spend, churned FROM customers""")
    print(cur.fetch_df())
    cur.execute("""
        SELECT tenure, spend, predict('churn', tenure, spend) AS prediction
        FROM customers""")
    print(cur.fetch_df().head())
    cur.execute("EVALUATE MODEL churn ON (SELECT tenure, spend, churned FROM customers)")
    metrics = cur.fetch_df()
    print(metrics)
