//! ML in SQL against scikit-learn (tests/fixtures/ml/make_reference.py), embedded
//! and on an in-process cluster of 2 executors; distributed models must equal
//! embedded ones, and so must models trained on 1 file or 8.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_tests::{distributed_plan, engine, fixtures, floats, metrics, ml_client, to_text, walk};
use serde_json::Value;

fn ml_fixtures() -> PathBuf {
    fixtures().join("ml")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(ml_fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// |a - b| ≤ tol · max(1, |b|) for each pair.
fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: {a} vs {e} (tolerance {tol})"
        );
    }
}

async fn describe(ember: &EmberContext, model: &str) -> BTreeMap<String, String> {
    let text = to_text(
        &ember
            .sql_one(&format!("describe model {model}"))
            .await
            .unwrap(),
    );
    text.rows
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

fn json_floats(text: &str) -> Vec<f64> {
    let v: Value = serde_json::from_str(text).unwrap();
    match v {
        Value::Array(_) => floats(&v),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numbers: {other}"),
    }
}

/// The model's parameters, flattened: coefficients then intercept, or centroids.
async fn params(ember: &EmberContext, model: &str) -> Vec<f64> {
    let d = describe(ember, model).await;
    if let Some(c) = d.get("centroids") {
        let v: Value = serde_json::from_str(c).unwrap();
        let mut rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(floats).collect();
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
        return rows.concat();
    }
    if let Some(intercepts) = d.get("intercepts") {
        // Softmax: each class's coefficients, then the intercepts.
        let v: Value = serde_json::from_str(&d["coefficients"]).unwrap();
        let mut p: Vec<f64> = v.as_array().unwrap().iter().flat_map(floats).collect();
        p.extend(json_floats(intercepts));
        return p;
    }
    let mut p = json_floats(&d["coefficients"]);
    p.extend(json_floats(&d["intercept"]));
    p
}

fn columns(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const LINEAR: &str = "create model lin options (model_type = 'linear_regression', label = 'y') as select * from diabetes";

fn logistic_sql(table: &str) -> String {
    let scaled: Vec<String> = (0..30)
        .map(|i| format!("standard_scale(x{i}) as x{i}"))
        .collect();
    format!(
        "create model clf transform ({}) options (model_type = 'logistic_regression', label = 'y', l2 = 0.01) as select * from {table}",
        scaled.join(", ")
    )
}

fn kmeans_sql(table: &str) -> String {
    format!(
        "create model km options (model_type = 'kmeans', num_clusters = 4, seed = 3, max_iterations = 100) as select a, b, c from {table}"
    )
}

async fn check_against_scikit_learn(cluster: bool) {
    let r = reference();
    let e = engine(cluster).await;
    let ember = &e.ember;

    ember.sql(LINEAR).await.unwrap();
    let mut expected = floats(&r["linear"]["coefficients"]);
    expected.push(r["linear"]["intercept"].as_f64().unwrap());
    assert_close("linear", &params(ember, "lin").await, &expected, 1e-8);
    let m = metrics(ember, "evaluate model lin").await;
    for k in ["rmse", "mae", "r2"] {
        assert_close(k, &[m[k]], &[r["linear"][k].as_f64().unwrap()], 1e-9);
    }
    ember
        .sql("create model ridge options (model_type = 'linear_regression', label = 'y', l2 = 0.1) as select * from diabetes")
        .await
        .unwrap();
    let mut expected = floats(&r["linear"]["ridge_coefficients"]);
    expected.push(r["linear"]["ridge_intercept"].as_f64().unwrap());
    assert_close("ridge", &params(ember, "ridge").await, &expected, 1e-8);
    // feature_importance: |coefficient| per feature, in the model's order.
    let importance = to_text(
        &ember
            .sql_one("select feature, importance, coefficient from feature_importance('ridge')")
            .await
            .unwrap(),
    );
    assert_eq!(importance.rows.len(), expected.len() - 1);
    for (row, c) in importance.rows.iter().zip(&expected) {
        let [magnitude, signed] = [&row[1], &row[2]].map(|v| v.parse::<f64>().unwrap());
        assert_close(
            &format!("importance of {}", row[0]),
            &[magnitude, signed],
            &[c.abs(), *c],
            1e-8,
        );
    }

    ember.sql(&logistic_sql("cancer")).await.unwrap();
    let mut expected = floats(&r["logistic"]["coefficients"]);
    expected.push(r["logistic"]["intercept"].as_f64().unwrap());
    assert_close("logistic", &params(ember, "clf").await, &expected, 1e-6);
    let m = metrics(ember, "evaluate model clf").await;
    for k in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "log_loss",
        "roc_auc",
    ] {
        assert_close(k, &[m[k]], &[r["logistic"][k].as_f64().unwrap()], 1e-7);
    }
    let passes: usize = describe(ember, "clf").await["passes"].parse().unwrap();
    assert!(passes <= 10, "Newton took {passes} passes");

    ember.sql(&kmeans_sql("blobs")).await.unwrap();
    let expected: Vec<f64> = r["kmeans"]["centroids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close("centroids", &params(ember, "km").await, &expected, 1e-9);
    let m = metrics(ember, "evaluate model km").await;
    for k in ["inertia", "davies_bouldin"] {
        assert_close(k, &[m[k]], &[r["kmeans"][k].as_f64().unwrap()], 1e-9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_match_scikit_learn_embedded() {
    check_against_scikit_learn(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_match_scikit_learn_on_two_executors() {
    check_against_scikit_learn(true).await;
}

/// Writes `table` as 8 Parquet files under `dir` and registers it as `name`.
async fn split_into_files(ember: &EmberContext, table: &str, rows: usize, dir: &Path, name: &str) {
    let per = rows.div_ceil(8);
    for i in 0..8 {
        let file = dir.join(format!("part-{i}.parquet"));
        ember
            .sql(&format!(
                "copy (select * from {table} order by 1, 2 limit {per} offset {}) to '{}' stored as parquet",
                i * per,
                file.display()
            ))
            .await
            .unwrap();
    }
    ember
        .sql(&format!(
            "create external table {name} stored as parquet location '{}/'",
            dir.display()
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_and_eight_file_models_equal_embedded() {
    let local = engine(false).await;
    let remote = engine(true).await;
    let files = tempfile::tempdir().unwrap();
    split_into_files(
        &local.ember,
        "cancer",
        569,
        &files.path().join("cancer8"),
        "cancer8",
    )
    .await;
    split_into_files(
        &local.ember,
        "blobs",
        600,
        &files.path().join("blobs8"),
        "blobs8",
    )
    .await;
    split_into_files(
        &local.ember,
        "wine",
        178,
        &files.path().join("wine8"),
        "wine8",
    )
    .await;
    for e in [&local, &remote] {
        e.ember
            .sql(&format!(
                "create external table if not exists wine8 stored as parquet location '{}/'",
                files.path().join("wine8").display()
            ))
            .await
            .unwrap();
        e.ember
            .sql(&format!(
                "create external table if not exists cancer8 stored as parquet location '{}/'",
                files.path().join("cancer8").display()
            ))
            .await
            .unwrap();
        e.ember
            .sql(&format!(
                "create external table if not exists blobs8 stored as parquet location '{}/'",
                files.path().join("blobs8").display()
            ))
            .await
            .unwrap();
    }
    let split = ", data_split = 'random', eval_fraction = 0.25, seed = 5";
    let softmax = |table: &str| {
        format!(
            "create model soft options (model_type = 'logistic_regression', label = 'cultivar', \
             l2 = 0.01) as select alcohol, malic_acid, ash, flavanoids, hue, proline, cultivar \
             from {table}"
        )
    };
    for (model, one, eight) in [
        ("soft", softmax("wine"), softmax("wine8")),
        ("clf", logistic_sql("cancer"), logistic_sql("cancer8")),
        ("km", kmeans_sql("blobs"), kmeans_sql("blobs8")),
        (
            "clf",
            logistic_sql("cancer").replace("l2 = 0.01", &format!("l2 = 0.01{split}")),
            logistic_sql("cancer8").replace("l2 = 0.01", &format!("l2 = 0.01{split}")),
        ),
    ] {
        let replace = |sql: &str| sql.replacen("create model", "create or replace model", 1);
        local.ember.sql(&replace(&one)).await.unwrap();
        let reference = params(&local.ember, model).await;
        let reference_rows = describe(&local.ember, model).await["training_rows"].clone();
        for (engine, sql) in [(&remote, &one), (&local, &eight), (&remote, &eight)] {
            engine.ember.sql(&replace(sql)).await.unwrap();
            assert_close(model, &params(&engine.ember, model).await, &reference, 1e-9);
            assert_eq!(
                describe(&engine.ember, model).await["training_rows"],
                reference_rows
            );
        }
    }
    // Eight files on two executors: both keep rows, and every round asks both.
    let sql = kmeans_sql("blobs8").replacen("create model", "create or replace model", 1);
    remote.ember.sql(&sql).await.unwrap();
    let spread = metrics(
        &remote.ember,
        "select count(distinct executor) as executors, min(per_round) as least, max(per_round) as most \
         from training_rounds('km'), (select count(*) as per_round from training_rounds('km') group by round)",
    )
    .await;
    assert_eq!(spread["executors"], 2.0, "{spread:?}");
    assert_eq!((spread["least"], spread["most"]), (2.0, 2.0), "{spread:?}");
    // Predictions on the cluster equal embedded ones.
    let predict = format!(
        "select predict('clf', {c}) as c, round(predict_proba('clf', {c}), 12) as p from cancer order by x0, x1",
        c = columns("x", 30)
    );
    assert_eq!(
        to_text(&remote.ember.sql_one(&predict).await.unwrap()),
        to_text(&local.ember.sql_one(&predict).await.unwrap())
    );
}

/// A training whose client went away mid-way (its statement dropped, as a
/// killed `ember sql` drops it) goes on, when the same CREATE MODEL runs again,
/// from the last iteration it completed, to the model an uninterrupted run gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_training_goes_on_where_it_stopped() {
    let engine = engine(false).await;
    let ember = &engine.ember;
    let lbfgs = |name: &str| {
        logistic_sql("cancer")
            .replace("create model clf", &format!("create model {name}"))
            .replace(
                "l2 = 0.01",
                "l2 = 0.01, optimizer = 'lbfgs', tolerance = 0, max_iterations = 80",
            )
    };
    ember.sql_one(&lbfgs("whole")).await.unwrap();
    // A loaded machine can finish a training before its first checkpoint is
    // seen: such a run proves nothing, and another one under a new name is
    // tried (never more than a few).
    let mut tried = Vec::new();
    let name = loop {
        let name = format!("clf{}", tried.len());
        let checkpoints = engine.store.path().join(&name).join("training");
        let statement = lbfgs(&name);
        let mut training = Box::pin(ember.sql_one(&statement));
        let interrupted = loop {
            tokio::select! {
                done = &mut training => {
                    done.unwrap();
                    break false;
                }
                _ = tokio::time::sleep(Duration::from_millis(1)) => {
                    // A whole checkpoint, not the store's temporary file for one.
                    let written = std::fs::read_dir(&checkpoints).is_ok_and(|d| {
                        d.flatten()
                            .any(|f| f.file_name().to_string_lossy().ends_with(".json"))
                    });
                    if written {
                        break true;
                    }
                }
            }
        };
        tried.push(name.clone());
        if interrupted {
            // The client goes: its statement, and the training with it, is dropped.
            drop(training);
            // The training may have finished and stored its model between the
            // checkpoint being seen and the drop: that run proves nothing either.
            let again = match ember.sql_one(&statement).await {
                Err(e) if e.to_string().contains("already exists") => {
                    assert!(
                        tried.len() < 5,
                        "every training ended before it could be interrupted: {tried:?}"
                    );
                    continue;
                }
                again => again.unwrap(),
            };
            assert!(
                again
                    .notes
                    .iter()
                    .any(|n| n.contains("went on from iteration")),
                "{:?}",
                again.notes
            );
            break name;
        }
        assert!(
            tried.len() < 5,
            "every training ended before it could be interrupted: {tried:?}"
        );
    };
    assert_eq!(params(ember, &name).await, params(ember, "whole").await);
    let info = |model: String| async move {
        to_text(
            &ember
                .sql_one(&format!("select iteration from training_info('{model}')"))
                .await
                .unwrap(),
        )
    };
    assert_eq!(
        info(name).await,
        info("whole".to_string()).await,
        "the same iterations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_shows_training_and_prediction_on_executors() {
    let e = engine(true).await;
    let distributed = distributed_plan(&e.ember, &kmeans_sql("blobs")).await;
    assert!(distributed.contains("ember_train_round"), "{distributed}");
    assert!(distributed.contains("ShuffleWriterExec"), "{distributed}");
    e.ember.sql(&kmeans_sql("blobs")).await.unwrap();
    let distributed = distributed_plan(
        &e.ember,
        "select c, count(*) from (select predict('km', a, b, c) as c from blobs) group by c",
    )
    .await;
    assert!(distributed.contains("predict"), "{distributed}");
    let counts = to_text(
        &e.ember
            .sql_one(
                "select count(*) from (select predict('km', a, b, c) as k from blobs) group by k",
            )
            .await
            .unwrap(),
    );
    assert_eq!(counts.rows.len(), 4);
}

/// Every fitted feature function against scikit-learn's column, and the model's
/// cluster of each row through its re-applied TRANSFORM (returned, by row).
async fn feature_functions(cluster: bool) -> Vec<String> {
    let r = &reference()["features"];
    let e = engine(cluster).await;
    e.ember
        .sql(
            "create model f transform (standard_scale(num) as s, min_max_scale(num) as mm, one_hot(cat) as oh,
                 quantile_bucketize(num, 4) as qb, polynomial_expand(num, small) as pe, impute(num_gaps) as im,
                 impute(num_gaps, 'median') as imd, impute(small, 'most_frequent') as imf)
             options (model_type = 'kmeans', num_clusters = 2) as select num, num_gaps, cat, small from features",
        )
        .await
        .unwrap();
    let d = describe(&e.ember, "f").await;
    let transform: Value = serde_json::from_str(&d["transform"]).unwrap();
    let sql: BTreeMap<String, String> = transform
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["sql"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Each fitted call, run on its own, gives scikit-learn's column.
    for (name, key) in [
        ("s", "standard_scale"),
        ("mm", "min_max_scale"),
        ("qb", "quantile_bucketize_4"),
        ("im", "impute_mean"),
        ("imd", "impute_median"),
        ("imf", "impute_most_frequent"),
    ] {
        let text = to_text(
            &e.ember
                .sql_one(&format!("select {} from features", sql[name]))
                .await
                .unwrap(),
        );
        let got: Vec<f64> = text.rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_close(key, &got, &floats(&r[key]), 1e-12);
    }
    for (name, key) in [("oh", "one_hot"), ("pe", "polynomial_expand_2")] {
        let text = to_text(
            &e.ember
                .sql_one(&format!("select {} from features", sql[name]))
                .await
                .unwrap(),
        );
        let got: Vec<f64> = text
            .rows
            .iter()
            .flat_map(|r| {
                serde_json::from_str::<Value>(&r[0])
                    .map(|v| floats(&v))
                    .unwrap()
            })
            .collect();
        let expected: Vec<f64> = r[key].as_array().unwrap().iter().flat_map(floats).collect();
        assert_close(key, &got, &expected, 1e-12);
    }
    let categories: Vec<String> = r["one_hot_categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("'{}'", c.as_str().unwrap()))
        .collect();
    assert_eq!(
        sql["oh"],
        format!("one_hot(cat, {})", categories.join(", "))
    );
    // predict re-applies the fitted transform to raw columns: each row gets a
    // cluster, and both clusters are used.
    let text = to_text(
        &e.ember
            .sql_one(
                "select predict('f', num, num_gaps, cat, small) as k from features \
                 order by num, num_gaps nulls first, cat, small",
            )
            .await
            .unwrap(),
    );
    let clusters: Vec<String> = text.rows.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(clusters.len(), 40);
    for k in ["0", "1"] {
        assert!(
            clusters.iter().filter(|c| *c == k).count() >= 5,
            "{clusters:?}"
        );
    }
    clusters
}

/// The same columns embedded and on 2 executors, and the same model: every
/// row in the same cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feature_functions_match_scikit_learn_embedded_and_on_two_executors() {
    let embedded = feature_functions(false).await;
    let distributed = feature_functions(true).await;
    assert_eq!(embedded, distributed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_and_nothing_is_written() {
    let e = engine(false).await;
    let ember = &e.ember;
    ember.sql(LINEAR).await.unwrap();
    let store = ember.model_store().url().to_string();
    let before = walk(Path::new(&store));
    let x = columns("x", 10);
    for (sql, needle) in [
        ("select predict('nope', 1.0) from diabetes".to_string(), "unknown model 'nope'"),
        ("select predict('lin', x0) from diabetes".to_string(), "takes 10 inputs"),
        (format!("select predict('lin', {x}, x0) from diabetes"), "takes 10 inputs"),
        (format!("select predict('lin', 'a', {}) from diabetes", columns("x", 9)), "must be a number"),
        (format!("select predict_proba('lin', {x}) from diabetes"), "predict_proba needs a logistic_regression"),
        ("evaluate model nope".to_string(), "unknown model 'nope'"),
        ("drop model nope".to_string(), "unknown model 'nope'"),
        ("describe model nope".to_string(), "unknown model 'nope'"),
        (LINEAR.to_string(), "already exists"),
        ("create model m2 options (model_type = 'linear_regression', label = 'cat') as select num, cat from features".to_string(), "label 'cat' is Utf8View, not numeric"),
        ("create model m2 options (model_type = 'linear_regression', label = 'zz') as select num from features".to_string(), "label 'zz' is not a column"),
        ("create model m2 options (model_type = 'linear_regression', label = 'num') as select num, num_gaps from features".to_string(), "feature 'num_gaps' has a NULL, NaN or infinite value"),
        ("create model m2 options (model_type = 'linear_regression', label = 'num') as select num, cat from features".to_string(), "one_hot(cat)"),
        ("create model m2 options (model_type = 'kmeans', num_clusters = 50) as select num from features".to_string(), "num_clusters = 50 is more than the 40 distinct rows"),
        ("create model m2 options (model_type = 'kmeans', num_clusters = 2, l2 = 1) as select num from features".to_string(), "unknown option 'l2'"),
        ("create model m2 options (model_type = 'kmeans', num_clusters = 'two') as select num from features".to_string(), "num_clusters must be a number"),
        ("create model m2 options (model_type = 'logistic_regression', label = 'y') as select cast(value as double) as x, value as y from generate_series(1, 1001)".to_string(), "label 'y' has more than 1000 classes ('1', '2', '3', ...)"),
        ("create model \"../evil\" options (model_type = 'kmeans', num_clusters = 2) as select num from features".to_string(), "not a plain identifier"),
        ("select predict('../evil', 1)".to_string(), "not a plain identifier"),
        ("select standard_scale(num) from features".to_string(), "standard_scale(x, mean, stddev)"),
    ] {
        let err = ember.sql(&sql).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{sql}\n  gave: {err}\n  expected: {needle}");
        assert!(!err.contains('\n'), "multi-line error for {sql}: {err}");
    }
    assert_eq!(
        walk(Path::new(&store)),
        before,
        "a failed statement changed the model store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_keeps_immutable_versions() {
    let e = engine(false).await;
    let ember = &e.ember;
    ember.sql(LINEAR).await.unwrap();
    ember
        .sql(&LINEAR.replace("create model", "create or replace model"))
        .await
        .unwrap();
    ember
        .sql(&LINEAR.replace("create model", "create model if not exists"))
        .await
        .unwrap();
    let store = PathBuf::from(ember.model_store().url());
    assert_eq!(walk(&store), vec!["lin/v1/model.json", "lin/v2/model.json"]);
    // A crash mid-write leaves at most a temporary file: it is not a version.
    std::fs::create_dir_all(store.join("lin/v3")).unwrap();
    std::fs::write(store.join("lin/v3/model.json#1"), "{\"trunc").unwrap();
    assert_eq!(describe(ember, "lin").await["version"], "2");
    ember
        .sql(&LINEAR.replace("create model", "create or replace model"))
        .await
        .unwrap();
    assert_eq!(describe(ember, "lin").await["version"], "3");
    let shown = to_text(&ember.sql_one("show models").await.unwrap());
    assert_eq!(shown.rows.len(), 1);
    assert_eq!(shown.rows[0][..3], ["lin", "3", "linear_regression"]);
    // A hand-edited file with the wrong dimensions is refused with its name.
    let path = store.join("lin/v3/model.json");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "\"coefficients\": [",
        "\"coefficients\": [1.0, ",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let err = ember
        .sql("describe model lin")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("11 coefficients for 10 features"), "{err}");
    ember.sql("drop model lin").await.unwrap();
    ember.sql("drop model if exists lin").await.unwrap();
    assert!(
        to_text(&ember.sql_one("show models").await.unwrap())
            .rows
            .is_empty()
    );
    let err = ember
        .sql("select * from training_info('lin')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown model 'lin'"), "{err}");
}

/// `SET ember.ml.max_iterations` caps what a model's OPTIONS ask for, and
/// CREATE MODEL says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_iteration_setting_caps_max_iterations() {
    let e = engine(false).await;
    let ember = &e.ember;
    ember.sql("set ember.ml.max_iterations = 2").await.unwrap();
    let output = ember
        .sql_one(
            &kmeans_sql("blobs").replace("num_clusters = 4", "num_clusters = 4, tolerance = 0"),
        )
        .await
        .unwrap();
    assert!(
        output
            .notes
            .iter()
            .any(|n| n.contains("max_iterations lowered from 100 to 2")),
        "{:?}",
        output.notes
    );
    let described = describe(ember, "km").await;
    assert_eq!(described["iterations"], "2");
    assert!(
        described["options"].contains("\"max_iterations\":2"),
        "{described:?}"
    );
}

/// `device = 'cuda'`: on a machine with a GPU the model equals the CPU's
/// (k-means through the CUDA kernels, within 1e-9); without one, CREATE MODEL
/// fails with the reason and writes nothing. Both the option and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuda_device_trains_the_cpu_model_or_says_why() {
    let e = engine(false).await;
    let sql = |name: &str, device: &str| {
        format!(
            "create model {name} options (model_type = 'kmeans', num_clusters = 4, seed = 3, max_iterations = 100, device = '{device}') as select a, b, c from blobs"
        )
    };
    e.ember.sql(&sql("on_cpu", "cpu")).await.unwrap();
    let has_gpu = match e.ember.sql(&sql("on_gpu", "cuda")).await {
        Ok(_) => {
            let (cpu, gpu) = (
                params(&e.ember, "on_cpu").await,
                params(&e.ember, "on_gpu").await,
            );
            assert_close("cuda centroids", &gpu, &cpu, 1e-9);
            true
        }
        Err(err) => {
            let err = err.to_string();
            // On the GPU machine (benches/gpu/device.sh) this must not skip.
            assert!(
                std::env::var_os("EMBER_REQUIRE_GPU").is_none(),
                "EMBER_REQUIRE_GPU is set but CUDA training failed: {err}"
            );
            assert!(err.contains("device = 'cuda' but"), "{err}");
            assert!(e.ember.sql("describe model on_gpu").await.is_err());
            false
        }
    };
    e.ember.sql("set ember.ml.device = 'cuda'").await.unwrap();
    let by_setting = sql("by_setting", "cpu").replace(", device = 'cpu'", "");
    match e.ember.sql(&by_setting).await {
        Ok(_) => assert!(has_gpu, "trained on 'cuda' without a GPU"),
        Err(err) => {
            assert!(!has_gpu, "{err}");
            assert!(err.to_string().contains("device = 'cuda' but"), "{err}");
        }
    }
}

/// On a cluster with a GPU executor, every task of a training round that may use
/// a GPU ('auto') is placed on it; rounds pinned to the CPU are not steered.
/// Here the "GPU" executor only says it has one (no GPU is needed: without one
/// its 'auto' kernels run on the CPU), so this runs on any machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gpu_work_goes_to_gpu_executors() {
    let cluster = InProcessCluster::start_labelled(&[Some(false), Some(true), Some(false)], 2)
        .await
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    let ember = ml_client(&cluster, &store).await;

    ember
        .sql("create model on_cpu options (model_type = 'kmeans', num_clusters = 4, seed = 3, device = 'cpu') as select a, b, c from blobs")
        .await
        .unwrap();
    assert!(
        cluster.scheduler().gpu_tasks().is_empty(),
        "device = 'cpu' was steered: {:?}",
        cluster.scheduler().gpu_tasks()
    );

    ember.sql(&kmeans_sql("blobs")).await.unwrap();
    let placed = cluster.scheduler().gpu_tasks();
    assert_eq!(placed.len(), 1, "GPU tasks went to {placed:?}");
    let (executor, tasks) = placed.into_iter().next().unwrap();
    assert!(executor.starts_with("gpu-"), "{executor}");
    // The rows are packed where these tasks ran, and every round runs there.
    assert!(tasks >= 1, "no GPU tasks");
    // Same model as when nothing steers the tasks.
    assert_close(
        "steered centroids",
        &params(&ember, "km").await,
        &params(&ember, "on_cpu").await,
        1e-9,
    );
}

/// The stage that keeps a training's rows is dealt over the executors, not
/// packed onto the first with free slots: each executor has its own training
/// memory. On 3 executors of 2 slots, 8 files kept as 4 partitions (2 target
/// partitions, two shares each) leave rows on all 3; packed, one held none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kept_rows_are_dealt_over_every_executor() {
    let local = engine(false).await;
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().join("blobs8");
    split_into_files(&local.ember, "blobs", 600, &dir, "blobs8").await;
    let cluster = InProcessCluster::start(3, 2).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let ember = ml_client(&cluster, &store).await;
    ember
        .sql(&format!(
            "create external table blobs8 stored as parquet location '{}/'",
            dir.display()
        ))
        .await
        .unwrap();
    ember
        .sql("set datafusion.execution.target_partitions = 2")
        .await
        .unwrap();
    ember.sql(&kmeans_sql("blobs8")).await.unwrap();
    let kept = metrics(
        &ember,
        "select count(distinct executor) as executors, sum(partitions) as partitions \
         from training_rounds('km') where kind = 'keep'",
    )
    .await;
    assert_eq!(kept["partitions"], 4.0, "{kept:?}");
    assert_eq!(kept["executors"], 3.0, "{kept:?}");
}
