//! Inner joins reordered from statistics (engine/src/join_order): the plan
//! starts from the selective filter, the answer is the written order's, embedded
//! and on 2 executors, and the setting turns it off.

use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_tests::{TextTable, compare, to_text, tpch_data};

/// Written from the largest table out; only one region of five is wanted.
const QUERY: &str = "SELECT n_name, count(*) AS n, sum(l_quantity) AS q \
    FROM lineitem, orders, customer, nation, region \
    WHERE l_orderkey = o_orderkey AND o_custkey = c_custkey \
    AND c_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = 'ASIA' \
    GROUP BY n_name ORDER BY n_name";

async fn answer(ember: &EmberContext) -> TextTable {
    to_text(&ember.sql_one(QUERY).await.unwrap())
}

/// The table the plan reads first: the first scan of the logical plan's text,
/// whose deepest join is printed first.
async fn first_scan(ember: &EmberContext) -> String {
    let plan = ember.sql_one(&format!("EXPLAIN {QUERY}")).await.unwrap();
    let text = to_text(&plan)
        .rows
        .iter()
        .find(|row| row[0] == "logical_plan")
        .map(|row| row[1].clone())
        .unwrap();
    let scan = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("TableScan: "))
        .unwrap_or_else(|| panic!("no scan in {text}"));
    scan.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_many_way_join_starts_from_its_selective_filter_with_the_same_answer() {
    let ember = EmberContext::embedded().unwrap();
    ember.register_data_dir(tpch_data()).await.unwrap();
    let reordered = answer(&ember).await;
    let first = first_scan(&ember).await;
    assert!(
        first == "nation" || first == "region",
        "the plan starts from {first}"
    );

    ember
        .sql("SET ember.optimizer.join_reorder = false")
        .await
        .unwrap();
    assert_eq!(first_scan(&ember).await, "lineitem");
    let written = answer(&ember).await;
    assert_eq!(written.rows.len(), 5, "{written:?}");
    compare(&reordered, &written).unwrap();

    let cluster = InProcessCluster::start(2, 2).await.unwrap();
    let remote = cluster.context().await.unwrap();
    remote.register_data_dir(tpch_data()).await.unwrap();
    compare(&answer(&remote).await, &written).unwrap();
}
