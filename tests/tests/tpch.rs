//! The 22 TPC-H queries: embedded and on an in-process cluster of 2 executors,
//! against each other and against DuckDB's answers on the same data.

use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_tests::{
    DEGENERATE_AT_TPCH_SCALE, TextTable, compare, fixtures, read_csv, to_text, tpch_data,
    tpch_data_larger, tpch_query,
};

/// Runs `queries` on `data`, returning each one's last result set.
async fn run(ember: &EmberContext, data: &std::path::Path, queries: &[usize]) -> Vec<TextTable> {
    ember
        .register_data_dir(data)
        .await
        .expect("register TPC-H tables");
    let mut answers = Vec::new();
    for &n in queries {
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

/// Every query at the test scale, then the degenerate ones again at the larger
/// scale: (query, scale's fixture folder, answer).
async fn run_all(ember: &EmberContext) -> Vec<(usize, &'static str, TextTable)> {
    let all: Vec<usize> = (1..=22).collect();
    let mut answers: Vec<_> = run(ember, tpch_data(), &all)
        .await
        .into_iter()
        .zip(all)
        .map(|(answer, n)| (n, "sf0.01", answer))
        .collect();
    let larger = run(ember, tpch_data_larger(), &DEGENERATE_AT_TPCH_SCALE).await;
    answers.extend(
        DEGENERATE_AT_TPCH_SCALE
            .iter()
            .zip(larger)
            .map(|(&n, answer)| (n, "sf0.1", answer)),
    );
    answers
}

fn check_against_duckdb(mode: &str, answers: &[(usize, &str, TextTable)]) {
    let mut failures = Vec::new();
    for (n, scale, answer) in answers {
        if *scale == "sf0.01" && DEGENERATE_AT_TPCH_SCALE.contains(n) {
            continue;
        }
        let expected = read_csv(&fixtures().join(format!("tpch/{scale}/q{n}.csv")));
        let degenerate = expected.rows.is_empty()
            || expected.rows.iter().all(|r| {
                r.iter()
                    .skip(usize::from(r.len() > 1))
                    .all(|c| c.is_empty() || c == "0.0")
            });
        assert!(
            !degenerate,
            "{scale} q{n}: the reference answer is empty, NULL or zero; it would prove nothing"
        );
        if let Err(e) = compare(answer, &expected) {
            failures.push(format!("{mode} {scale} q{n}: {e}"));
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
    for ((n, scale, d), (_, _, e)) in distributed.iter().zip(&embedded) {
        assert_eq!(d.header, e.header, "{scale} q{n}: column names differ");
        compare(d, e)
            .unwrap_or_else(|err| panic!("{scale} q{n}: cluster differs from embedded: {err}"));
    }
}
