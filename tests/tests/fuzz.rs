//! A short seeded run of the differential fuzzer (`ember_tests::fuzz`): every
//! query must give the embedded answer on a cluster of 2 executors at 1, 2, 3
//! and 8 partitions (the static planner; the adaptive one is refused by ember).
//! Longer runs: `cargo run --release -p ember-benches --bin fuzz`.

use ember_tests::fuzz::{FuzzOptions, Planner, run};
use ember_tests::tpch_data;

/// Queries per CI run: about a minute on a debug build.
const QUERIES: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_answers_equal_embedded_ones_on_random_queries() {
    let options = FuzzOptions {
        seed: 12,
        queries: QUERIES,
        partitions: vec![1, 2, 3, 8],
        planners: vec![Planner::Static],
    };
    let report = run(&options, tpch_data(), &mut |_, _| {}).await.unwrap();
    let found: Vec<String> = report
        .disagreements
        .iter()
        .map(|d| {
            format!(
                "query {} ({} planner, {} partitions): {}\n  {}",
                d.n,
                d.planner.name(),
                d.partitions,
                d.difference,
                d.sql
            )
        })
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The generator must mostly write valid SQL, or the run checks little.
    assert!(
        report.queries >= QUERIES * 9 / 10,
        "only {} of {QUERIES} queries were valid",
        report.queries
    );
}
