"""TPC-DS data and queries for ember's benchmarks, made by DuckDB's `tpcds` extension.

    python3 -m venv /tmp/dsvenv
    /tmp/dsvenv/bin/pip install duckdb==1.5.5 duckdb-extension-tpcds==1.5.5
    /tmp/dsvenv/bin/python benches/python/tpcds_data.py --scale 1 --out data/tpcds-sf1

Writes one Parquet file per table into --out (so `ember sql --data-dir` registers them all) and
the 99 queries as q1.sql ... q99.sql into the folder beside it, `<out>-queries`. The extension comes from PyPI (the machine has no other way online), so it is
loaded from the wheel's file rather than installed by DuckDB.
"""

import argparse
import os
import pathlib
import time

import duckdb
import duckdb_extension_tpcds


def extension_file() -> str:
    root = pathlib.Path(duckdb_extension_tpcds.__path__[0]) / "extensions"
    return str(next(root.glob("*/tpcds.duckdb_extension")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    queries = pathlib.Path(f"{out}-queries")
    out.mkdir(parents=True, exist_ok=True)
    queries.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension_file()}'")
    started = time.time()
    con.execute(f"CALL dsdgen(sf={args.scale})")
    print(f"generated in {time.time() - started:.1f} s")
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
        con.execute(f"COPY {table} TO '{out / table}.parquet' (FORMAT parquet)")
    for number, text in con.execute("SELECT query_nr, query FROM tpcds_queries()").fetchall():
        (queries / f"q{number}.sql").write_text(text)
    print(f"tables in {os.fspath(out)}, queries in {os.fspath(queries)}")


if __name__ == "__main__":
    main()
