//! Predictions written out: `COPY (SELECT predict(...)) TO` a Parquet file,
//! embedded and on a cluster of 2 executors.

use ember_tests::{engine, to_text};

async fn copy_writes_predictions(cluster: bool) {
    let e = engine(cluster).await;
    e.ember
        .sql("create model risk options (model_type = 'logistic_regression', label = 'y') as select x0, x5, y from cancer")
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("scored.parquet");
    let scored =
        "select x0, predict('risk', x0, x5) as c, predict_proba('risk', x0, x5) as p from cancer";
    e.ember
        .sql(&format!("copy ({scored}) to '{}'", file.display()))
        .await
        .unwrap();
    let summary = "select count(*), sum(c), round(sum(p), 9) from";
    let written = to_text(
        &e.ember
            .sql_one(&format!("{summary} '{}'", file.display()))
            .await
            .unwrap(),
    );
    let direct = to_text(
        &e.ember
            .sql_one(&format!("{summary} ({scored})"))
            .await
            .unwrap(),
    );
    assert_eq!(written.rows, direct.rows);
    assert_eq!(written.rows[0][0], "569");

    // Never into the model store, where only ember writes.
    let inside = e.store.path().join("risk/v1/extra.parquet");
    let err = e
        .ember
        .sql(&format!("copy ({scored}) to '{}'", inside.display()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("would write inside the model store"), "{err}");
    assert!(!inside.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_writes_predictions_embedded() {
    copy_writes_predictions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_writes_predictions_on_two_executors() {
    copy_writes_predictions(true).await;
}
