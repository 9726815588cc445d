//! A short seeded run of the differential fuzzer (`ember_benches::fuzz`): every
//! query must give the embedded answer on a cluster of 2 executors at 1, 2, 3
//! and 8 partitions (the static planner with hash joins, with every partitioned
//! join a sort-merge join, and with the broadcasts chosen from ember's estimates
//! alone; the adaptive planner is refused by ember).
//! Longer runs: `cargo run --release -p ember-benches --bin fuzz`.

use ember_benches::TextTable;
use ember_benches::fuzz::{FuzzOptions, Planner, Rows, compare, query, run};
use ember_tests::tpch_data;

/// Queries per CI run: about a minute on a debug build.
const QUERIES: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_answers_equal_embedded_ones_on_random_queries() {
    let options = FuzzOptions {
        seed: 12,
        first: 0,
        queries: QUERIES,
        partitions: vec![1, 2, 3, 8],
        planners: vec![Planner::Static, Planner::SortMerge, Planner::Broadcast],
    };
    // Each query has its own timeout; this one bounds a cluster that times out
    // on every query, so that CI fails in minutes instead of hours.
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(15 * 60),
        run(&options, tpch_data(), &mut |_, _| {}),
    )
    .await
    .expect("the fuzz run did not end within 15 minutes")
    .unwrap();
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

#[test]
fn the_same_seed_gives_the_same_queries() {
    for n in 0..50 {
        assert_eq!(query(7, n).sql, query(7, n).sql);
    }
    assert_ne!(query(7, 1).sql, query(8, 1).sql);
}

fn rows(data: &[&[&str]], ordered_by: usize) -> Rows {
    Rows::new(
        TextTable {
            header: (0..data[0].len()).map(|i| format!("c{i}")).collect(),
            rows: data
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
        },
        ordered_by,
    )
}

/// Answers compare as multisets, floats within 1e-9, and in order where the
/// query orders.
#[test]
fn answers_compare_as_multisets_in_order_where_ordered() {
    let a = rows(&[&["1", "0.30000000000000004"], &["2", "x"]], 0);
    let b = rows(&[&["2", "x"], &["1", "0.3"]], 0);
    assert!(compare(&a, &b).is_ok());
    let doubled = rows(&[&["1", "0.3"], &["1", "0.3"], &["2", "x"]], 0);
    assert!(compare(&doubled, &b).is_err());
    let ordered = rows(&[&["2", "x"], &["1", "0.3"]], 1);
    assert!(compare(&rows(&[&["1", "0.3"], &["2", "x"]], 1), &ordered).is_err());
    assert!(compare(&rows(&[&["1", "0.31"], &["2", "x"]], 0), &b).is_err());
    assert!(compare(&rows(&[&["1", "NULL"], &["2", "x"]], 0), &b).is_err());
}
