//! EVALUATE MODEL over rows a model cannot be scored on: NULL labels are left
//! out and counted, embedded and on a cluster of 2 executors.

use ember_tests::{engine, metrics, to_text};

const LINEAR: &str = "create model lin options (model_type = 'linear_regression', label = 'y') \
    as select * from diabetes";
const LOGISTIC: &str = "create model clf options (model_type = 'logistic_regression', label = 'y', \
    l2 = 0.01) as select x0, x1, x2, x3, y from cancer";

/// Rows whose label is NULL count in no metric: EVALUATE on them equals EVALUATE
/// on the labelled rows alone, and says how many it left out.
async fn null_labels_are_left_out(cluster: bool) {
    let e = engine(cluster).await;
    e.ember.sql(LINEAR).await.unwrap();
    e.ember.sql(LOGISTIC).await.unwrap();
    let cases = [
        ("lin", "diabetes", "x0 > 0.03"),
        ("clf", "cancer", "x1 > 21"),
    ];
    for (model, table, unlabelled) in cases {
        let with_nulls = format!(
            "evaluate model {model} on (select * exclude (y), \
             case when {unlabelled} then null else y end as y from {table})"
        );
        let labelled =
            format!("evaluate model {model} on (select * from {table} where not ({unlabelled}))");
        let expected = metrics(&e.ember, &labelled).await;
        let actual = metrics(&e.ember, &with_nulls).await;
        for (name, value) in &expected {
            let got = actual[name];
            assert!(
                (got - value).abs() <= 1e-12 * value.abs().max(1.0)
                    || (got.is_nan() && value.is_nan()),
                "{model} {name}: {got} with NULL labels, {value} on the labelled rows"
            );
        }
        let count = to_text(
            &e.ember
                .sql_one(&format!(
                    "select count(*) filter (where {unlabelled}), count(*) from {table}"
                ))
                .await
                .unwrap(),
        );
        let (nulls, rows) = (&count.rows[0][0], &count.rows[0][1]);
        assert!(
            nulls.parse::<u64>().unwrap() > 20,
            "too few NULL labels: {nulls}"
        );
        let output = e.ember.sql_one(&with_nulls).await.unwrap();
        assert_eq!(
            output.notes,
            vec![format!(
                "EVALUATE MODEL {model}: left out {nulls} of {rows} rows: {nulls} whose label is NULL"
            )]
        );
        assert!(e.ember.sql_one(&labelled).await.unwrap().notes.is_empty());
    }
    // A NULL feature gives no prediction: those rows are left out too, and said.
    let output = e
        .ember
        .sql_one(
            "evaluate model clf on (select case when x1 > 21 then null else x0 end as x0, \
             x1, x2, x3, y from cancer)",
        )
        .await
        .unwrap();
    let nulls = to_text(
        &e.ember
            .sql_one("select count(*) from cancer where x1 > 21")
            .await
            .unwrap(),
    );
    let nulls = &nulls.rows[0][0];
    assert_eq!(
        output.notes,
        vec![format!(
            "EVALUATE MODEL clf: left out {nulls} of 569 rows: {nulls} with a NULL feature (no prediction)"
        )]
    );
    // Nothing labelled: refused, by name.
    let err = e
        .ember
        .sql_one("evaluate model lin on (select * exclude (y), null as y from diabetes)")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("all 442 labels are NULL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluate_leaves_out_null_labels_embedded() {
    null_labels_are_left_out(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluate_leaves_out_null_labels_on_two_executors() {
    null_labels_are_left_out(true).await;
}
