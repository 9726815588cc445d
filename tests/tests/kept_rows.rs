//! Training rows kept on a cluster's executors (RELIABILITY.md, "Training on a
//! cluster"): packed once per CREATE MODEL, freed when training ends, fails, or
//! its driver goes silent, and bounded by each executor's training memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_benches::to_text;
use ember_engine::EmberContext;
use ember_engine::cluster::{ClusterKeeper, InProcessCluster};
use ember_ml_ops::kernels::DeviceChoice;
use ember_ml_ops::models::KeepRows;
use ember_tests::{engine, metrics, ml_client};

/// Waits up to `bound` for `condition`.
async fn eventually(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

const KMEANS: &str = "create model km options (model_type = 'kmeans', num_clusters = 4, seed = 3, max_iterations = 50) as select a, b, c from blobs";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_are_freed_when_training_ends_or_fails() {
    let cluster = InProcessCluster::start(2, 2).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let ember = ml_client(&cluster, &store).await;
    ember.sql(KMEANS).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || cluster.training_bytes_held()
            == 0)
        .await,
        "rows still held after training: {:?}",
        cluster.trainings_held()
    );
    // A training that fails after its rows were kept (a label NULL in some
    // rows, found by the first round) frees them too, and writes no model.
    let error = ember
        .sql("create model bad options (model_type = 'logistic_regression', label = 'y') as select a, b, case when c > 0 then 1 when c > -1 then 0 end as y from blobs")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("label"), "{error}");
    assert!(
        eventually(Duration::from_secs(5), || cluster.training_bytes_held()
            == 0)
        .await,
        "rows still held after a failed training: {:?}",
        cluster.trainings_held()
    );
    let models = ember.sql_one("show models").await.unwrap();
    assert_eq!(models.num_rows(), 1, "only km was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_past_the_training_memory_are_refused_clearly() {
    let cluster = InProcessCluster::start_with_training_memory(2, 2, 4096)
        .await
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    let ember = ml_client(&cluster, &store).await;
    let error = ember.sql(KMEANS).await.unwrap_err().to_string();
    assert!(error.contains("training memory"), "{error}");
    assert!(error.contains("4.0 KiB"), "the limit is named: {error}");
    assert!(error.contains("--training-memory"), "{error}");
    assert!(
        eventually(Duration::from_secs(5), || cluster.training_bytes_held()
            == 0)
        .await,
        "a refused training left rows behind: {:?}",
        cluster.trainings_held()
    );
    let models = ember.sql_one("show models").await.unwrap();
    assert_eq!(models.num_rows(), 0);
}

/// A driver that stops calling (killed: it never releases) leaves its rows for
/// one lease at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_of_a_silent_driver_go_when_the_lease_runs_out() {
    let cluster = InProcessCluster::start(2, 2).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let ember = ml_client(&cluster, &store).await;
    ember.sql("set ember.ml.lease_seconds = 1").await.unwrap();
    let plan = ember
        .session()
        .sql("select a, b, c from blobs")
        .await
        .unwrap()
        .into_unoptimized_plan();
    let kept = ClusterKeeper
        .keep(ember.session(), plan, DeviceChoice::Cpu)
        .await
        .unwrap();
    assert!(kept.bytes() > 0);
    assert_eq!(cluster.trainings_held().len(), 1);
    assert!(cluster.training_bytes_held() > 0);
    // The driver vanishes without a word.
    std::mem::forget(Arc::clone(&kept));
    std::mem::forget(kept);
    assert!(
        eventually(Duration::from_secs(5), || cluster.training_bytes_held()
            == 0)
        .await,
        "rows outlived their lease: {:?}",
        cluster.trainings_held()
    );
    assert!(cluster.trainings_held().is_empty());
}

/// `training_rounds('km')` as text rows, by column name.
async fn rounds(ember: &EmberContext) -> Vec<BTreeMap<String, String>> {
    let text = to_text(
        &ember
            .sql_one("select * from training_rounds('km') order by round, executor")
            .await
            .unwrap(),
    );
    text.rows
        .iter()
        .map(|row| {
            text.header
                .iter()
                .cloned()
                .zip(row.iter().cloned())
                .collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap()
}

/// Rounds per executor: what each did, with the rows of every round adding up
/// to the training rows, embedded and on two executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn training_rounds_show_each_executors_work() {
    for cluster in [false, true] {
        let engine = engine(cluster).await;
        let ember = &engine.ember;
        ember.sql(KMEANS).await.unwrap();
        let rows = metrics(ember, "select count(*) as n from blobs").await["n"];
        let iterations = metrics(ember, "select count(*) as n from training_info('km')").await["n"];
        let rounds = rounds(ember).await;
        let mut by_round: BTreeMap<u64, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
        for row in &rounds {
            by_round
                .entry(number(row, "round") as u64)
                .or_default()
                .push(row);
        }
        assert_eq!(
            by_round.keys().copied().collect::<Vec<_>>(),
            (1..=by_round.len() as u64).collect::<Vec<_>>(),
            "rounds are numbered from 1 in order"
        );
        let statistics = by_round
            .values()
            .filter(|r| r[0]["kind"] == "round")
            .count();
        assert!(
            statistics as f64 >= iterations,
            "{statistics} rounds, {iterations} iterations"
        );
        for (round, work) in &by_round {
            let kind = &work[0]["kind"];
            let covered: f64 = work.iter().map(|r| number(r, "rows")).sum();
            assert_eq!(
                covered, rows,
                "round {round} ({kind}) covers every row: {work:?}"
            );
            for row in work {
                assert_eq!(&row["kind"], kind);
                assert!(
                    number(row, "seconds") <= number(row, "round_trip_seconds"),
                    "{row:?}"
                );
                assert!(number(row, "partitions") >= 1.0, "{row:?}");
                if cluster {
                    assert_ne!(row["executor"], "embedded");
                    assert!(
                        ["cpu", "cuda", "cpu+cuda"].contains(&row["device"].as_str()),
                        "{row:?}"
                    );
                    if kind == "keep" {
                        assert!(number(row, "bytes_kept") > 0.0, "{row:?}");
                    } else {
                        assert!(number(row, "bytes_sent") > 0.0, "{row:?}");
                        assert!(number(row, "bytes_received") > 0.0, "{row:?}");
                    }
                } else {
                    assert_eq!(row["executor"], "embedded");
                    assert_eq!(kind, "round");
                    assert_eq!(number(row, "bytes_sent"), 0.0);
                }
            }
            if cluster {
                let executors = |w: &[&BTreeMap<String, String>]| {
                    w.iter().map(|r| r["executor"].clone()).collect::<Vec<_>>()
                };
                assert_eq!(
                    executors(work),
                    executors(&by_round[&1]),
                    "every round runs where the rows were kept"
                );
            }
        }
        if cluster {
            assert_eq!(by_round[&1][0]["kind"], "keep", "rows are kept first");
            assert!(
                by_round.values().any(|r| r[0]["kind"] == "sample"),
                "k-means' sample"
            );
        }
    }
}
