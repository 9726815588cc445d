//! The `ember` binary as a user runs it: data generation, SQL with its output
//! formats and errors, and `ember cluster up` as real processes.

mod common;
mod s3_store;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// TPC-H at scale 0.01, written once by `ember datagen tpch`.
fn data() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let output = run(&[
            "datagen", "tpch", "--scale", "0.01", "--out", out, "--parts", "2",
        ]);
        assert!(
            output.status.success(),
            "datagen failed: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains("8 tables, 14 files"),
            "{}",
            stdout(&output)
        );
        dir
    })
    .path()
}

fn data_arg() -> String {
    data().to_str().unwrap().to_string()
}

#[test]
fn statements_run_in_the_order_given_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.sql");
    std::fs::write(&file, "select 2 as n;\nselect 3 as n;").unwrap();
    let file = file.to_str().unwrap();
    let output = run(&[
        "sql",
        "-c",
        "select 1 as n",
        "-f",
        file,
        "-c",
        "create view v as select 4 as n; select n from v",
        "--format",
        "csv",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "n\n1\nn\n2\nn\n3\nn\n4\n");

    let output = run(&[
        "sql",
        "-c",
        "select 1 as a, 'x' as b, null as c",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let row: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(row, serde_json::json!({"a": 1, "b": "x", "c": null}));

    let output = run(&["sql", "-c", "select 1 as a", "--format", "table"]);
    assert!(
        stdout(&output).contains("| a |") && stdout(&output).contains("1 row"),
        "{}",
        stdout(&output)
    );
}

/// Vectors (ember's own `one_hot`), lists and structs print in every format;
/// CSV printed its header and then failed (issue 12).
#[test]
fn nested_values_print_in_every_format() {
    let sql = "select one_hot('b', 'a', 'b', 'c') as v, [1, 2] as l, named_struct('a', 1) as s";
    let expected = [
        ("csv", "v,l,s\n\"[0.0, 1.0, 0.0]\",\"[1, 2]\",{a: 1}\n"),
        (
            "json",
            "{\"v\":[0.0,1.0,0.0],\"l\":[1,2],\"s\":{\"a\":1}}\n",
        ),
    ];
    for (format, text) in expected {
        let output = run(&["sql", "--format", format, "-c", sql]);
        assert!(output.status.success(), "{format}: {}", stderr(&output));
        assert_eq!(stdout(&output), text, "{format}");
    }
    let table = run(&["sql", "-c", sql]);
    assert!(
        stdout(&table).contains("| [0.0, 1.0, 0.0] | [1, 2] | {a: 1} |"),
        "{}",
        stdout(&table)
    );
    for format in ["csv", "json"] {
        let output = run(&["sql", "--format", format, "-c", "show functions"]);
        assert!(output.status.success(), "{format}: {}", stderr(&output));
        assert!(stdout(&output).lines().count() > 100, "{format}");
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `ember sql ... | head -1`: the pipe closes after the first line.
    let mut child = ember()
        .args([
            "sql",
            "-c",
            "select * from generate_series(1, 2000000)",
            "--format",
            "csv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "value\n");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn data_dir_tables_and_tpch_queries() {
    let query = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tpch/queries/q1.sql");
    let output = run(&[
        "sql",
        "--data-dir",
        &data_arg(),
        "-f",
        query.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("l_returnflag,l_linestatus,sum_qty"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn syntax_error() {
    assert_clear_error(&run(&["sql", "-c", "selec 1"]), "selec");
}

#[test]
fn unknown_table_and_column() {
    assert_clear_error(
        &run(&["sql", "-c", "select * from nope"]),
        "table 'datafusion.public.nope' not found",
    );
    assert_clear_error(
        &run(&[
            "sql",
            "--data-dir",
            &data_arg(),
            "-c",
            "select nope from nation",
        ]),
        "nope",
    );
}

#[test]
fn missing_files() {
    assert_clear_error(
        &run(&["sql", "-f", "/nonexistent/query.sql"]),
        "cannot read SQL file /nonexistent/query.sql",
    );
    assert_clear_error(
        &run(&["sql", "--data-dir", "/nonexistent/data", "-c", "select 1"]),
        "/nonexistent/data",
    );
    assert_clear_error(
        &run(&["sql", "-c", "select * from '/nonexistent/x.parquet'"]),
        "x.parquet",
    );
    assert_clear_error(
        &run(&[
            "sql",
            "-c",
            "create external table t stored as parquet location '/nonexistent/t/'",
        ]),
        "/nonexistent/t/",
    );
}

#[test]
fn corrupt_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(data().join("nation/part-1.parquet")).unwrap();
    std::fs::write(
        dir.path().join("truncated.parquet"),
        &good[..good.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.parquet"), b"this is not parquet").unwrap();
    let truncated = dir.path().join("truncated.parquet");
    assert_clear_error(
        &run(&[
            "sql",
            "-c",
            &format!("select * from '{}'", truncated.display()),
        ]),
        "Parquet",
    );
    assert_clear_error(
        &run(&[
            "sql",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "-c",
            "select 1",
        ]),
        "Parquet",
    );
}

#[test]
fn unreachable_master() {
    let started = Instant::now();
    assert_clear_error(
        &run(&["sql", "--master", "df://127.0.0.1:1", "-c", "select 1"]),
        "cannot reach scheduler at df://127.0.0.1:1",
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_clear_error(
        &run(&["sql", "--master", "127.0.0.1:50050", "-c", "select 1"]),
        "df://HOST:PORT",
    );
}

#[test]
fn bad_arguments() {
    assert_clear_error(
        &run(&["datagen", "tpch", "--scale=-1", "--out", "/tmp/never"]),
        "scale",
    );
    assert_clear_error(
        &run(&["sql", "-c", "set ember.ml.device = 'tpu'"]),
        "ember.ml.device",
    );
    assert!(!run(&["sql", "--format", "xml"]).status.success());
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["sql", "--help"],
        vec!["cluster", "up", "--help"],
        vec!["scheduler", "--help"],
        vec!["executor", "--help"],
        vec!["datagen", "tpch", "--help"],
        vec!["datagen", "classification", "--help"],
    ] {
        let output = run(&args);
        assert!(output.status.success(), "{args:?}");
        assert!(
            stdout(&output).contains("Example"),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

/// `ember cluster up` in the foreground, as a user starts it.
#[test]
fn cluster_up_runs_real_processes_and_stops_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterUp::start(work.path(), &[]);
    assert_eq!(cluster.pids.len(), 3, "scheduler and two executors");
    assert!(cluster.pids.iter().all(|&p| alive(p)));
    // Safe default: every process listens on loopback only.
    for &pid in &cluster.pids {
        let addresses = listening_addresses(pid);
        assert!(!addresses.is_empty(), "pid {pid} listens nowhere");
        assert!(
            addresses.iter().all(|a| a.starts_with("127.0.0.1:")),
            "pid {pid} listens on {addresses:?}"
        );
    }
    assert!(
        work.path().join("executor-1").exists() && work.path().join("logs/scheduler.log").exists()
    );

    // The same TPC-H query gives the same answer embedded and on the cluster.
    let query = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tpch/queries/q3.sql");
    let query = query.to_str().unwrap();
    let data = data_arg();
    let distributed = cluster.sql(&["--data-dir", &data, "-f", query, "--format", "csv"]);
    assert!(distributed.status.success(), "{}", stderr(&distributed));
    let embedded = run(&["sql", "--data-dir", &data, "-f", query, "--format", "csv"]);
    assert_eq!(stdout(&distributed), stdout(&embedded));
    assert_eq!(stdout(&distributed).lines().count(), 11);

    // EXPLAIN shows the stages; a failed query leaves the cluster serving.
    let explain = cluster.sql(&[
        "--data-dir",
        &data,
        "-c",
        "explain select count(*) from orders group by o_orderstatus",
        "--format",
        "csv",
    ]);
    assert!(
        stdout(&explain).contains("distributed_plan")
            && stdout(&explain).contains("ShuffleWriterExec"),
        "{}",
        stdout(&explain)
    );
    assert_clear_error(
        &cluster.sql(&["--data-dir", &data, "-c", "select nope from orders"]),
        "nope",
    );
    assert_clear_error(
        &cluster.sql(&["-c", "select 1 / (x - x) from (values (1)) t(x)"]),
        "DivideByZero",
    );
    let after = cluster.sql(&[
        "--data-dir",
        &data,
        "-c",
        "select sigmoid(0) as s, count(*) as n from region",
        "--format",
        "csv",
    ]);
    assert_eq!(stdout(&after), "s,n\n0.5,5\n", "{}", stderr(&after));

    // Ctrl-C stops every process and removes their shuffle files.
    let pids = cluster.pids.clone();
    let status = cluster.stop();
    assert!(status.success(), "cluster up exited with {status}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "processes left running: {pids:?}"
    );
    assert!(
        !work.path().join("executor-1").exists(),
        "shuffle files left behind"
    );
    assert!(
        work.path().join("logs/scheduler.log").exists(),
        "logs are kept in a given work dir"
    );
}

/// `ember cluster up --training-memory` bounds each executor's kept training
/// rows: a training past it is refused with the limit named.
#[test]
fn cluster_up_passes_the_training_memory_to_its_executors() {
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterUp::start_with(work.path(), 1, &["--training-memory", "4KiB"], &[]);
    let ml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ml");
    let store = work.path().join("models");
    let output = cluster.sql(&[
        "--data-dir",
        ml.to_str().unwrap(),
        "--model-store",
        store.to_str().unwrap(),
        "-c",
        "create model km options (model_type = 'kmeans', num_clusters = 4) as select a, b, c from blobs",
    ]);
    assert_clear_error(&output, "4.0 KiB");
    let _ = cluster.stop();
}

#[test]
fn cluster_up_reports_a_port_in_use() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let output = run(&["cluster", "up", "--executors", "1", "--port", &port]);
    assert_clear_error(&output, "scheduler failed to start");
}

/// `ember cluster up --cluster-token-file`: the scheduler and an executor's
/// Flight port refuse calls without the secret, a client without it is told
/// why, and with it queries and training work as on an open cluster.
#[test]
fn a_cluster_with_a_secret_serves_only_its_holders() {
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("cluster-token");
    std::fs::write(&token, "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n").unwrap();
    let token_arg = token.to_str().unwrap();
    let cluster = ClusterUp::start_with(
        &work.path().join("cluster"),
        2,
        &["--cluster-token-file", token_arg],
        &[],
    );
    let data = data_arg();
    let query = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tpch/queries/q3.sql");
    let query = query.to_str().unwrap();

    // Without the secret: one clear line, nothing runs.
    assert_clear_error(
        &cluster.sql(&["--data-dir", &data, "-f", query]),
        "refused this client",
    );
    // With it, from the file or from EMBER_CLUSTER_TOKEN: the embedded answer.
    let distributed = cluster.sql(&[
        "--cluster-token-file",
        token_arg,
        "--data-dir",
        &data,
        "-f",
        query,
        "--format",
        "csv",
    ]);
    assert!(distributed.status.success(), "{}", stderr(&distributed));
    let embedded = run(&["sql", "--data-dir", &data, "-f", query, "--format", "csv"]);
    assert_eq!(stdout(&distributed), stdout(&embedded));
    let ml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ml");
    let store = work.path().join("models");
    let trained = ember()
        .args(["sql", "--master", &cluster.url, "--data-dir", ml.to_str().unwrap()])
        .args(["--model-store", store.to_str().unwrap(), "--format", "csv", "-c"])
        .arg("create model km options (model_type = 'kmeans', num_clusters = 4, seed = 3) as select a, b, c from blobs; select count(distinct predict('km', a, b, c)) as k from blobs")
        .env("EMBER_CLUSTER_TOKEN", "0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        .output()
        .unwrap();
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(stdout(&trained).ends_with("k\n4\n"), "{}", stdout(&trained));

    // Raw calls without the secret get no answer from a handler; a member's do.
    let scheduler = cluster.url.trim_start_matches("df://").to_string();
    let log = std::fs::read_to_string(work.path().join("cluster/logs/executor-1.log")).unwrap();
    let executor = log
        .lines()
        .find_map(|l| l.strip_prefix("ember executor ready on "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("executor-1 announced no address: {log}"))
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let member = ember_engine::cluster::ClusterSecret::from_file(&token).unwrap();
    for (who, name) in [(None, "no secret"), (Some(&member), "the secret")] {
        let member = who.is_some();
        let (to_scheduler, to_executor) = runtime.block_on(async {
            use arrow_flight::flight_service_client::FlightServiceClient;
            use ballista_core::serde::protobuf::GetJobStatusParams;
            use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
            use ember_engine::cluster::{cluster_endpoint, reached_handler};
            let channel = |address: &str| cluster_endpoint(address, who).unwrap().connect_lazy();
            let to_scheduler = SchedulerGrpcClient::new(channel(&scheduler))
                .get_job_status(GetJobStatusParams {
                    job_id: "none".into(),
                })
                .await;
            let to_executor = FlightServiceClient::new(channel(&executor))
                .list_actions(arrow_flight::Empty {})
                .await;
            (
                reached_handler(&to_scheduler),
                reached_handler(&to_executor),
            )
        });
        assert_eq!(to_scheduler, member, "{name}: the scheduler");
        assert_eq!(to_executor, member, "{name}: executor Flight at {executor}");
    }
    assert!(cluster.stop().success());
}

/// The `f0,...,f{n-1}` column list.
fn feature_list(n: usize) -> String {
    (0..n)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn models_train_and_predict_the_same_on_real_processes() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let generated = run(&[
        "datagen",
        "classification",
        "--rows",
        "20000",
        "--features",
        "6",
        "--parts",
        "3",
        "--out",
        data.join("higgs").to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let data = data.to_str().unwrap();
    let features = feature_list(6);
    let script = format!(
        "create model clf transform (standard_scale(f0) as f0, f1, f2, f3, f4, f5) options (model_type = 'logistic_regression', label = 'label', data_split = 'random', seed = 9) as select label, {features} from higgs; \
         select sum(predict('clf', {features})) as ones, round(avg(predict_proba('clf', {features})), 9) as p from higgs"
    );
    // One model per engine, each in its own store.
    let cluster = ClusterUp::start(&work.path().join("cluster"), &[]);
    let on_cluster_store = work.path().join("models-cluster");
    let embedded_store = work.path().join("models-embedded");
    let distributed = cluster.sql(&[
        "--data-dir",
        data,
        "--model-store",
        on_cluster_store.to_str().unwrap(),
        "-c",
        &script,
        "--format",
        "csv",
    ]);
    let embedded = run(&[
        "sql",
        "--data-dir",
        data,
        "--model-store",
        embedded_store.to_str().unwrap(),
        "-c",
        &script,
        "--format",
        "csv",
    ]);
    assert!(distributed.status.success(), "{}", stderr(&distributed));
    assert!(embedded.status.success(), "{}", stderr(&embedded));
    assert_eq!(stdout(&distributed), stdout(&embedded));
    // The same model within the 1e-9.
    assert_same_model(
        &clf_coefficients(&on_cluster_store, Some(&cluster.url)),
        &clf_coefficients(&embedded_store, None),
    );
    assert_clear_error(
        &cluster.sql(&[
            "--model-store",
            embedded_store.to_str().unwrap(),
            "-c",
            "select predict('clf', 1) as p",
        ]),
        "model 'clf' takes",
    );
    assert!(cluster.stop().success());
}

/// The prompt as a user types into it: `\?` lists the commands and ember's
/// statements, `\d` the tables and `\d NAME` a table's columns; CREATE MODEL says
/// in one line what training did, and that it stopped before converging.
#[test]
fn the_prompt_lists_commands_and_tables_and_summarises_training() {
    use std::io::Write;
    let store = tempfile::tempdir().unwrap();
    let mut child = ember()
        .args(["sql", "--data-dir", &data_arg(), "--model-store"])
        .arg(store.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let typed = "\\?\n\\d\n\\d nation\n\
        create model r options (model_type = 'logistic_regression', label = 'big', max_iterations = 1)\n\
        as select n_nationkey, n_regionkey > 2 as big from nation;\n\
        create model k options (model_type = 'linear_regression', label = 'n_regionkey') as select n_nationkey, n_regionkey from nation;\n\\q\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        out.contains("\\d NAME") && out.contains("EVALUATE MODEL m"),
        "{out}"
    );
    assert!(out.contains("| lineitem   | BASE TABLE |"), "{out}");
    assert!(out.contains("| n_regionkey | Int64"), "{out}");
    assert!(
        err.contains(
            "note: trained r version 1: logistic_regression on 25 rows, 1 iteration, loss "
        ) && err.contains("stopped at max_iterations = 1 before converging"),
        "{err}"
    );
    assert!(
        err.contains("note: trained k version 1: linear_regression on 25 rows, 1 iteration, loss ")
            && err.contains(", converged"),
        "{err}"
    );
}

/// Ctrl-C at the prompt while a statement runs cancels it and keeps the prompt:
/// the next statement runs.
#[test]
fn ctrl_c_cancels_the_running_statement_and_keeps_the_prompt() {
    use std::io::Write;
    let mut child = spawn_piped(&["sql"]);
    let mut stdin = child.stdin.take().unwrap();
    // Minutes of work in a debug build.
    stdin
        .write_all(b"select count(*) from generate_series(1, 100000000000);\n")
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    // SAFETY: kill(2) on a process this test started; no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    stdin.write_all(b"select 41 + 1 as answer;\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(err.contains("cancelled"), "{err}");
    assert!(out.contains("42"), "{out}");
}
