"""A large result through `ember serve` and ADBC into pyarrow, against the same
rows from `ember sql --format csv > /dev/null` and from DuckDB's Python client
reading the same Parquet, in one run on one machine.

    cargo build --release -p ember-cli
    pip install adbc-driver-flightsql pyarrow duckdb
    python3 benches/python/flight_sql_fetch.py [--rows 10000000] [--runs 3]

The table: ROWS rows x 10 columns (5 BIGINT, 5 DOUBLE: 80 bytes a row of Arrow
data), written once by ember under data/flight_sql/. Each client reads every
row; the best of RUNS runs is printed as JSON lines with rows/s and Arrow GB/s
(bytes of the Arrow columns / seconds). The server's peak RSS (VmHWM) is read
after a result of a tenth of the rows and again after the whole: flat when the
server streams.
"""

import argparse
import json
import os
import pathlib
import re
import resource
import subprocess
import time

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb

EMBER = "./target/release/ember"
COLUMNS = 10


def make_table(folder, rows):
    table = folder / "wide"
    if table.is_dir():
        return table
    columns = ", ".join(
        [f"i * {k + 1} as c{k}" for k in range(5)]
        + [f"cast(i as double) / {k + 2} as c{k + 5}" for k in range(5)]
    )
    sql = (
        f"copy (select {columns} from generate_series(1, {rows}) as t(i)) "
        f"to '{table}/' stored as parquet"
    )
    subprocess.run([EMBER, "sql", "-c", sql], check=True, stdout=subprocess.DEVNULL)
    return table


def peak_rss_mib(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best(runs, fetch):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        rows, arrow_bytes = fetch()
        times.append(time.perf_counter() - started)
    return min(times), rows, arrow_bytes


def cpu_split(server_pid, fetch):
    """CPU seconds of one fetch: the server's, and this process's (the ADBC
    driver runs in it)."""
    server_before = cpu_seconds(server_pid)
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    fetch()
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    client = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return round(cpu_seconds(server_pid) - server_before, 2), round(client, 2)


def adbc_fetch(uri, sql, batch_rows=None):
    def fetch():
        rows = arrow_bytes = 0
        with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
            if batch_rows:
                cursor.execute(f"set datafusion.execution.batch_size = {batch_rows}")
            cursor.execute(sql)
            # Batch by batch, as a pipeline reads it: the client holds one at a time.
            for batch in cursor.fetch_record_batch():
                rows += batch.num_rows
                arrow_bytes += batch.nbytes
        return rows, arrow_bytes

    return fetch


def csv_fetch(data, sql):
    def fetch():
        subprocess.run(
            [EMBER, "sql", "--data-dir", str(data), "--format", "csv", "-c", sql],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return None, None

    return fetch


def duckdb_fetch(table):
    def fetch():
        con = duckdb.connect()
        con.execute("set threads to 2")
        result = con.sql(f"select * from read_parquet('{table}/*.parquet')")
        rows = arrow_bytes = 0
        for batch in result.to_arrow_reader(1_000_000):
            rows += batch.num_rows
            arrow_bytes += batch.nbytes
        return rows, arrow_bytes

    return fetch


def report(name, seconds, rows, arrow_bytes, **extra):
    line = {"name": name, "seconds": round(seconds, 3)}
    if rows:
        line["rows_per_s"] = round(rows / seconds)
        line["arrow_gb_per_s"] = round(arrow_bytes / seconds / 1e9, 3)
    line.update(extra)
    print(json.dumps(line), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = pathlib.Path("data/flight_sql").resolve()
    data.mkdir(parents=True, exist_ok=True)
    table = make_table(data, args.rows)
    sql = "select * from wide"
    server = subprocess.Popen(
        [EMBER, "serve", "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        uri = re.search(r"listening on (\S+)", server.stdout.readline()).group(1)
        tenth = f"select * from wide limit {args.rows // 10}"
        seconds, rows, nbytes = best(1, adbc_fetch(uri, tenth))
        rss_tenth = peak_rss_mib(server.pid)
        report("ember serve + ADBC, a tenth", seconds, rows, nbytes, server_peak_rss_mib=round(rss_tenth))
        seconds, rows, nbytes = best(args.runs, adbc_fetch(uri, sql))
        rss_all = peak_rss_mib(server.pid)
        server_cpu, client_cpu = cpu_split(server.pid, adbc_fetch(uri, sql))
        report(
            "ember serve + ADBC", seconds, rows, nbytes, server_peak_rss_mib=round(rss_all),
            server_cpu_s=server_cpu, client_cpu_s=client_cpu,
        )
        adbc_seconds = seconds
        # Fewer, larger messages: the client's SET for its own connection.
        seconds, rows, nbytes = best(args.runs, adbc_fetch(uri, sql, batch_rows=65536))
        report(
            "ember serve + ADBC, 65536-row batches",
            seconds, rows, nbytes, server_peak_rss_mib=round(peak_rss_mib(server.pid)),
        )
    finally:
        server.terminate()
        server.wait()
    seconds, _, _ = best(args.runs, csv_fetch(data, sql))
    report("ember sql --format csv > /dev/null", seconds, args.rows, nbytes, ratio_to_adbc=round(seconds / adbc_seconds, 2))
    seconds, rows, duck_bytes = best(args.runs, duckdb_fetch(table))
    report("duckdb python, Parquet to Arrow", seconds, rows, duck_bytes, ratio_to_adbc=round(seconds / adbc_seconds, 2))


if __name__ == "__main__":
    main()
