//! The 22 TPC-H queries: embedded and on an in-process cluster of 2 executors,
//! against each other and against DuckDB's answers on the same data.

use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_tests::{TextTable, compare, fixtures, read_csv, to_text, tpch_data, tpch_query};

/// Runs every query, returning each one's last result set.
async fn run_all(ember: &EmberContext) -> Vec<TextTable> {
    ember
        .register_data_dir(tpch_data())
        .await
        .expect("register TPC-H tables");
    let mut answers = Vec::new();
    for n in 1..=22 {
        let outputs = ember
            .sql(&tpch_query(n))
            .await
            .unwrap_or_else(|e| panic!("q{n}: {e}"));
        let last = outputs
            .iter()
            .rev()
            .find(|o| o.returns_rows)
            .unwrap_or_else(|| panic!("q{n} returned no rows"));
        answers.push(to_text(last));
    }
    answers
}

fn check_against_duckdb(mode: &str, answers: &[TextTable]) {
    let mut failures = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let n = i + 1;
        let expected = read_csv(&fixtures().join(format!("tpch/sf0.01/q{n}.csv")));
        assert!(
            !expected.rows.is_empty(),
            "q{n}: the reference answer is empty; it would prove nothing"
        );
        if let Err(e) = compare(answer, &expected) {
            failures.push(format!("{mode} q{n}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "answers differ from DuckDB's:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpch_embedded_matches_duckdb() {
    let ember = EmberContext::embedded().unwrap();
    let answers = run_all(&ember).await;
    check_against_duckdb("embedded", &answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpch_on_two_executors_matches_embedded_and_duckdb() {
    let cluster = InProcessCluster::start(2, 2).await.unwrap();
    let distributed = run_all(&cluster.context().await.unwrap()).await;
    check_against_duckdb("cluster", &distributed);

    let embedded = run_all(&EmberContext::embedded().unwrap()).await;
    for (n, (d, e)) in distributed.iter().zip(&embedded).enumerate() {
        assert_eq!(d.header, e.header, "q{}: column names differ", n + 1);
        compare(d, e)
            .unwrap_or_else(|err| panic!("q{}: cluster differs from embedded: {err}", n + 1));
    }
}
