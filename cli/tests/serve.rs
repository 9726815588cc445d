//! `ember serve` from Python's ADBC Flight SQL driver (adbc-driver-flightsql
//! from PyPI), each case in `python/flight_sql_client.py` against `ember serve`
//! started as a process, embedded and on `ember cluster up`.
//!
//! Where python3 cannot import the driver these tests skip, unless
//! `EMBER_REQUIRE_ADBC=1` (CI), where that fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

const REQUIRE_ADBC: &str = "EMBER_REQUIRE_ADBC";

fn adbc_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import adbc_driver_flightsql, pyarrow, pandas"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os(REQUIRE_ADBC).is_none(),
            "{REQUIRE_ADBC} is set but python3 cannot import adbc_driver_flightsql \
             (pip install adbc-driver-flightsql pyarrow pandas)"
        );
        eprintln!("skipped: python3 cannot import adbc_driver_flightsql");
    }
    found
}

/// TPC-H at scale 0.01, made once for every test of this binary (and left in
/// the temporary folder: statics are not dropped).
fn tpch() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let out = tempfile::tempdir().unwrap().keep().join("tpch");
        let made = run(&[
            "datagen",
            "tpch",
            "--scale",
            "0.01",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(made.status.success(), "{}", stderr(&made));
        out
    })
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `case` of the Python client; `env` adds to its environment.
fn python_case(case: &str, env: &[(&str, String)]) {
    if !adbc_available() {
        return;
    }
    let out = Command::new("python3")
        .arg(manifest().join("tests/python/flight_sql_client.py"))
        .arg(case)
        .env("EMBER_BIN", env!("CARGO_BIN_EXE_ember"))
        .env("EMBER_TPCH_DATA", tpch())
        .env(
            "EMBER_TPCH_QUERIES",
            manifest().join("../tests/fixtures/tpch/queries"),
        )
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .expect("run python3");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "python case {case} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tpch_answers_equal_ember_sql() {
    python_case("tpch", &[]);
}

#[test]
fn prepared_statements_bind_parameters() {
    python_case("prepared", &[]);
}

#[test]
fn ingested_frames_train_models() {
    python_case("ingest", &[]);
}

#[test]
fn tokens_and_tls() {
    python_case("auth_tls", &[]);
}

#[test]
fn sixteen_connections_keep_their_own_settings() {
    python_case("sessions", &[]);
}

#[test]
fn a_killed_client_frees_the_server() {
    python_case("killed_client", &[]);
}

#[test]
fn the_readme_python_example_runs() {
    python_case("quickstart", &[]);
}

/// `ember serve --master`: the same answers from a cluster, and a killed
/// client's job stops on the executors. The cluster has a secret (from
/// `EMBER_CLUSTER_TOKEN`, which the server and `ember sql` inherit), so the
/// server is a member over TLS; open clusters are covered everywhere else.
#[test]
fn on_a_cluster_answers_match_and_killed_clients_stop_their_jobs() {
    if !adbc_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let secret = (
        "EMBER_CLUSTER_TOKEN",
        "serve-test-secret-0123456789abcdef".to_string(),
    );
    let cluster = ClusterUp::start(work.path(), std::slice::from_ref(&secret));
    let pids = cluster.pids.iter().map(i32::to_string).collect::<Vec<_>>();
    let env = [
        ("EMBER_MASTER", cluster.url.clone()),
        ("EMBER_CLUSTER_PIDS", pids.join(" ")),
        secret,
    ];
    python_case("tpch", &env);
    python_case("killed_client", &env);
    assert!(cluster.stop().success());
}
