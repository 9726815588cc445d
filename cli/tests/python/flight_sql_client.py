"""ember serve from Python's ADBC Flight SQL driver, as a user runs both.

Each case starts `ember serve` as a process (the binary in EMBER_BIN) and
talks to it with adbc-driver-flightsql from PyPI:

    python3 flight_sql_client.py CASE

Cases: tpch, prepared, ingest, auth_tls, sessions, killed_client, quickstart.
TPC-H data and queries come from EMBER_TPCH_DATA and EMBER_TPCH_QUERIES. A
failed check raises; the exit code says so.
"""

import datetime
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from adbc_driver_flightsql import DatabaseOptions

EMBER = os.environ["EMBER_BIN"]
HERE = pathlib.Path(__file__).resolve().parent
# A cluster's scheduler (df://HOST:PORT) for the cases that run there too.
MASTER = ("--master", os.environ["EMBER_MASTER"]) if os.environ.get("EMBER_MASTER") else ()
# The cluster's processes, whose CPU shows whether a job still runs.
CLUSTER_PIDS = [int(p) for p in os.environ.get("EMBER_CLUSTER_PIDS", "").split()]


class Server:
    """`ember serve` as a process on a free port, its log in a file."""

    def __init__(self, *args):
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [EMBER, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        line = self.proc.stdout.readline()
        found = re.search(r"listening on (\S+)", line)
        if not found:
            self.proc.wait(timeout=30)
            raise AssertionError(f"ember serve did not start: {line!r} {self.logged()}")
        self.uri = found.group(1)

    def logged(self):
        return pathlib.Path(self.log.name).read_text()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("ember serve did not stop within 20 s of SIGTERM")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()
        assert "panicked" not in self.logged(), self.logged()


def fails_with(what, code, *texts):
    """Runs `what`; it must raise an error whose message names `code` and `texts`."""
    try:
        what()
    except Exception as e:  # the driver's errors are many classes
        message = str(e)
        assert code in message, f"expected {code}, got: {message}"
        for text in texts:
            assert text in message, f"expected {text!r} in: {message}"
        return message
    raise AssertionError(f"expected {code}, but the call succeeded")


# -- tpch --------------------------------------------------------------------


def plain(table):
    """A table with string views as strings: pyarrow's CSV reader knows those."""
    fields = [
        pa.field(f.name, pa.string()) if f.type == pa.string_view() else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def sort_key(row):
    return tuple(f"{v:.6g}" if isinstance(v, float) else repr(v) for v in row)


def same_rows(expected, got, label):
    assert expected.column_names == got.column_names, (label, expected.schema, got.schema)
    assert expected.num_rows == got.num_rows, (label, expected.num_rows, got.num_rows)
    left = sorted(zip(*expected.to_pydict().values()), key=sort_key)
    right = sorted(zip(*got.to_pydict().values()), key=sort_key)
    for a_row, b_row in zip(left, right):
        for a, b in zip(a_row, b_row):
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (label, a_row, b_row)
            else:
                assert a == b, (label, a_row, b_row)


def ember_sql_csv(data, query_file, schema):
    out = subprocess.run(
        [EMBER, "sql", "--data-dir", data, "--format", "csv", "-f", query_file],
        capture_output=True,
        check=True,
    ).stdout
    # A null prints as an empty field, quoted when it is the only column.
    options = pa_csv.ConvertOptions(column_types=schema)
    return pa_csv.read_csv(pa.BufferReader(out), convert_options=options)


def case_tpch():
    data = os.environ["EMBER_TPCH_DATA"]
    queries = sorted(
        pathlib.Path(os.environ["EMBER_TPCH_QUERIES"]).glob("q*.sql"),
        key=lambda p: int(p.stem[1:]),
    )
    assert len(queries) == 22, queries
    # On a cluster too: its answers must equal the embedded `ember sql`'s.
    with Server("--data-dir", data, *MASTER) as server, flight_sql.connect(server.uri) as conn:
        for query_file in queries:
            result = None
            with conn.cursor() as cursor:
                # q15 is a view, its query and the view dropped: run one at a time.
                for statement in query_file.read_text().split(";"):
                    if not statement.strip():
                        continue
                    cursor.execute(statement)
                    table = cursor.fetch_arrow_table()
                    if table.num_columns:
                        result = table
            got = plain(result)
            expected = ember_sql_csv(data, str(query_file), got.schema)
            same_rows(expected, got, query_file.name)
            print(f"{query_file.stem}: {got.num_rows} rows, as `ember sql` answers")


# -- prepared ----------------------------------------------------------------


def case_prepared():
    data = os.environ["EMBER_TPCH_DATA"]
    with Server("--data-dir", data) as server, flight_sql.connect(server.uri) as conn:
        with conn.cursor() as cursor:
            sql = "select n_name from nation where n_regionkey = ? and n_name like ? order by n_name"
            cursor.adbc_prepare(sql)
            for region, pattern, expected in [
                (1, "%A%", ["ARGENTINA", "BRAZIL", "CANADA", "UNITED STATES"]),
                (3, "%", ["FRANCE", "GERMANY", "ROMANIA", "RUSSIA", "UNITED KINGDOM"]),
                (1, "Z%", []),
            ]:
                cursor.execute(sql, (region, pattern))
                got = [row[0] for row in cursor.fetchall()]
                assert got == expected, (region, pattern, got)
            # Typed parameters: a date and a decimal-valued float.
            cursor.execute(
                "select count(*) from orders where o_orderdate < $1 and o_totalprice > $2",
                (datetime.date(1993, 1, 1), 100000.0),
            )
            (count,) = cursor.fetchone()
            expected = subprocess.run(
                [
                    EMBER, "sql", "--data-dir", data, "--format", "csv", "-c",
                    "select count(*) from orders where o_orderdate < date '1993-01-01' "
                    "and o_totalprice > 100000.0",
                ],
                capture_output=True, text=True, check=True,
            ).stdout.splitlines()[1]
            assert count == int(expected), (count, expected)
            fails_with(
                lambda: cursor.execute("select n_name from nation where n_nationkey = ?", (1, 2)),
                "INVALID_ARGUMENT",
                "parameters",
            )
    print("prepared statements: parameters bound by position, cast to the plan's types")


# -- ingest ------------------------------------------------------------------


def case_ingest():
    with tempfile.TemporaryDirectory() as data:
        models = os.path.join(data, "models")
        rows = 2000
        frame = pd.DataFrame(
            {
                "x1": [(i * 37 % 101) / 10.0 for i in range(rows)],
                "x2": [(i * 53 % 89) / 10.0 for i in range(rows)],
            }
        )
        frame["label"] = (frame.x1 + 0.5 * frame.x2 > 7.0).astype("int64")
        args = ("--data-dir", data, "--model-store", models)
        with Server(*args) as server, flight_sql.connect(server.uri) as conn:
            with conn.cursor() as cursor:
                assert cursor.adbc_ingest("points", frame, mode="create") == rows
                fails_with(
                    lambda: cursor.adbc_ingest("points", frame, mode="create"), "points"
                )
                assert cursor.adbc_ingest("points", frame.head(10), mode="append") == 10
                cursor.execute("select count(*) from points")
                assert cursor.fetchone()[0] == rows + 10
                assert cursor.adbc_ingest("points", frame, mode="replace") == rows
                cursor.execute(
                    "create model sep options (model_type = 'logistic_regression', "
                    "label = 'label') as select x1, x2, label from points"
                )
                note = cursor.fetch_df()
                assert "trained sep" in note["note"][0], note
                cursor.execute("select label, predict('sep', x1, x2) as p from points")
                served = cursor.fetch_df()
                # A temporary ingest is this connection's alone, and writes no file.
                cursor.adbc_ingest("scratch", frame.head(5), mode="create", temporary=True)
                cursor.execute("select count(*) from scratch")
                assert cursor.fetchone()[0] == 5
                with flight_sql.connect(server.uri) as other, other.cursor() as theirs:
                    fails_with(lambda: theirs.execute("select * from scratch"), "scratch")
        assert not os.path.exists(os.path.join(data, "scratch"))
        assert (served.p == served.label).mean() > 0.95, served
        # The ingested table is Parquet on disk: `ember sql` reads the same rows
        # and the same model gives the same predictions.
        out = subprocess.run(
            [
                EMBER, "sql", "--data-dir", data, "--model-store", models, "--format", "csv",
                "-c", "select label, predict('sep', x1, x2) as p from points",
            ],
            capture_output=True, check=True,
        ).stdout
        local = pa_csv.read_csv(pa.BufferReader(out)).to_pandas()
        assert sorted(zip(local.label, local.p)) == sorted(zip(served.label, served.p))
    print(f"ingest: {rows} rows from pandas, a model trained on them, predictions as embedded")


# -- auth_tls ----------------------------------------------------------------


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ember test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path = os.path.join(folder, "server.pem")
    key_path = os.path.join(folder, "server.key")
    pathlib.Path(cert_path).write_bytes(cert_pem)
    pathlib.Path(key_path).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert_pem.decode()


def case_auth_tls():
    with tempfile.TemporaryDirectory() as folder:
        cert, key, pem = make_certificate(folder)
        tokens = os.path.join(folder, "tokens")
        pathlib.Path(tokens).write_text("# who may call\nalpha-token\n")
        tls = ("--tls-cert", cert, "--tls-key", key)
        with Server(*tls, "--auth-token-file", tokens) as server:
            assert server.uri.startswith("grpc+tls://"), server.uri
            roots = {DatabaseOptions.TLS_ROOT_CERTS.value: pem}

            def run(db_kwargs, sql="select 40 + 2"):
                with flight_sql.connect(server.uri, db_kwargs=db_kwargs) as conn:
                    with conn.cursor() as cursor:
                        cursor.execute(sql)
                        return cursor.fetchone()[0]

            def bearer(token):
                return {**roots, DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}

            assert run(bearer("alpha-token")) == 42
            fails_with(lambda: run(roots), "UNAUTHENTICATED")
            fails_with(lambda: run(bearer("wrong")), "UNAUTHENTICATED")
            # Flight's handshake: user name and the token as password.
            assert run({**roots, "username": "me", "password": "alpha-token"}) == 42
            fails_with(lambda: run({**roots, "username": "me", "password": "nope"}), "UNAUTHENTICATED")
            # A client that does not trust the certificate does not connect.
            untrusted = {DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer alpha-token"}
            fails_with(lambda: run(untrusted), "Unavailable", "unknown authority")
            # Tokens change without a restart: on change, and on SIGHUP.
            pathlib.Path(tokens).write_text("beta-token\n")
            assert run(bearer("beta-token")) == 42
            fails_with(lambda: run(bearer("alpha-token")), "UNAUTHENTICATED")
            pathlib.Path(tokens).write_text("gamma-token\n")
            server.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert run(bearer("gamma-token")) == 42
        # Another address than loopback: refused without TLS and tokens.
        refused = subprocess.run(
            [EMBER, "serve", "--bind", "0.0.0.0", "--port", "0"],
            capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode != 0
        assert refused.stderr.startswith("error: refusing to serve on 0.0.0.0"), refused.stderr
        assert "--insecure" in refused.stderr and len(refused.stderr.splitlines()) == 1
        with Server("--bind", "0.0.0.0", *tls, "--auth-token-file", tokens) as server:
            port = server.uri.rsplit(":", 1)[1]
            uri = f"grpc+tls://localhost:{port}"
            with flight_sql.connect(uri, db_kwargs={**roots, DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer gamma-token"}) as conn:
                with conn.cursor() as cursor:
                    cursor.execute("select 1")
                    assert cursor.fetchone()[0] == 1
    print("tokens: missing and wrong refused, handshake, reload on change and SIGHUP; TLS served")


# -- sessions ----------------------------------------------------------------


def case_sessions():
    data = os.environ["EMBER_TPCH_DATA"]
    clients = 16
    with Server("--data-dir", data) as server:
        start = threading.Barrier(clients)
        errors = []

        def client(i):
            try:
                with flight_sql.connect(server.uri) as conn, conn.cursor() as cursor:
                    cursor.execute(f"set datafusion.execution.batch_size = {1000 + i}")
                    cursor.execute(f"create view mine_{i} as select {i} as who")
                    start.wait(timeout=120)
                    for _ in range(3):
                        cursor.execute("show datafusion.execution.batch_size")
                        (_, value) = cursor.fetchone()
                        assert value == str(1000 + i), (i, value)
                        cursor.execute(f"select who from mine_{i}")
                        assert cursor.fetchone()[0] == i
                        cursor.execute("select count(*) from nation")
                        assert cursor.fetchone()[0] == 25
                    other = (i + 1) % clients
                    fails_with(lambda: cursor.execute(f"select * from mine_{other}"), f"mine_{other}")
            except Exception as e:
                errors.append(f"client {i}: {e!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        assert server.logged().count("connection") >= clients
    print(f"{clients} concurrent connections, each with its own SET and views")


# -- killed_client -----------------------------------------------------------

# Hours of work on any build: lineitem joined with itself on a condition half
# the pairs meet, in small batches. A statement stops at its plan's next batch
# read (engine/src/cluster/task_stop.rs, `switch_leaves`).
LONG_QUERY = "select count(*) from lineitem a, lineitem b where a.l_orderkey < b.l_partkey"

CHILD = """
import sys
import adbc_driver_flightsql.dbapi as flight_sql
with flight_sql.connect(sys.argv[1]) as conn, conn.cursor() as cursor:
    cursor.execute("set datafusion.execution.batch_size = 128")
    cursor.execute("set datafusion.execution.target_partitions = 8")
    print("running", flush=True)
    cursor.execute(sys.argv[2])
    cursor.fetchall()
"""


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def case_killed_client():
    """Embedded, the statement's stream stops; on a cluster (EMBER_MASTER), its job."""
    data = os.environ["EMBER_TPCH_DATA"]
    with Server("--data-dir", data, *MASTER) as server:
        pids = [server.proc.pid, *CLUSTER_PIDS]

        def cpu():
            return sum(cpu_seconds(pid) for pid in pids)

        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.uri, LONG_QUERY],
            stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout.readline().strip() == "running"
        # The query is under way when the server (or the cluster) works.
        deadline = time.time() + 60
        while True:
            before = cpu()
            time.sleep(1)
            # A low bar: on a loaded machine the server gets a share of a core.
            if cpu() - before > 0.15:
                break
            assert time.time() < deadline, "the long query never ran"
            assert child.poll() is None, "the long query ended early"
        child.kill()
        child.wait()
        # Within a few seconds the server is idle again: the statement stopped.
        deadline = time.time() + 30
        while True:
            time.sleep(1)
            before = cpu()
            time.sleep(2)
            used = cpu() - before
            # Idle processes still use a little: heartbeats, polls for work.
            if used < 0.2 + 0.05 * len(CLUSTER_PIDS):
                break
            assert time.time() < deadline, f"still busy after the client died: {used:.2f} s CPU in 2 s"
        with flight_sql.connect(server.uri) as conn, conn.cursor() as cursor:
            cursor.execute("select count(*) from region")
            assert cursor.fetchone()[0] == 5
        assert "closed" in server.logged()
    print("a client killed mid-query: its statement stopped, the server idle and serving")


# -- quickstart --------------------------------------------------------------


def case_quickstart():
    """The README's Python example, run as written against a server of its own."""
    example_file = HERE.parents[2] / "examples" / "flight_sql.py"
    readme = (HERE.parents[2] / "README.md").read_text()
    assert example_file.read_text().strip() in readme, "README's Python example differs from examples/flight_sql.py"
    data = os.environ["EMBER_TPCH_DATA"]
    with tempfile.TemporaryDirectory() as folder:
        # A copy: the example ingests a table into the data folder.
        subprocess.run(["cp", "-r", data, os.path.join(folder, "tpch")], check=True)
        models = os.path.join(folder, "models")
        with Server("--data-dir", os.path.join(folder, "tpch"), "--model-store", models) as server:
            out = subprocess.run(
                [sys.executable, str(example_file)],
                capture_output=True, text=True, timeout=600,
                env={**os.environ, "EMBER_URI": server.uri},
            )
            assert out.returncode == 0, out.stderr
    print(out.stdout)
    for text in ["n_regions", "UNITED STATES", "trained churn", "prediction", "accuracy", "roc_auc"]:
        assert text in out.stdout, (text, out.stdout)


CASES = {
    name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(CASES)}}}")
    CASES[sys.argv[1]]()
