//! Tree models against their oracles (tests/fixtures/ml/make_trees.py):
//! boosted trees against XGBoost: on features with few distinct values both
//! bin exactly, so the trees and their feature importance must be XGBoost's
//! node for node; on a nonlinear set, held-out quality after 100 trees must
//! match. Random forests against scikit-learn's, held out. Trained on 2
//! executors, every tree model is the embedded one bit for bit.

use std::path::Path;

use ember_engine::EmberContext;
use ember_tests::{TextTable, engine, fixtures, metrics, to_text};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("ml/trees.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The newest `model.json` of `name` in the store at `store`.
pub(crate) fn model_json(store: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(store.join(name).join("v1/model.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// ember's tree (`nodes`) and XGBoost's, node for node: the same splits, and
/// leaf values within float32 rounding.
pub(crate) fn assert_same_tree(what: &str, ours: &Value, xgb: &Value) {
    let ours = ours["nodes"].as_array().unwrap();
    let xgb = xgb.as_array().unwrap();
    assert_eq!(ours.len(), xgb.len(), "{what}: node counts differ");
    for (i, (o, x)) in ours.iter().zip(xgb).enumerate() {
        match o.get("split") {
            Some(split) => {
                assert_eq!(split["feature"], x["feature"], "{what} node {i}: feature");
                assert_eq!(split["left"], x["left"], "{what} node {i}: left child");
                assert_eq!(
                    split["threshold"].as_f64().unwrap(),
                    x["threshold"].as_f64().unwrap(),
                    "{what} node {i}: threshold"
                );
                assert_eq!(
                    split["default_left"], x["default_left"],
                    "{what} node {i}: default direction"
                );
            }
            None => {
                let (a, b) = (o["value"].as_f64().unwrap(), x["value"].as_f64().unwrap());
                assert!(
                    x.get("feature").is_none(),
                    "{what} node {i}: XGBoost splits here"
                );
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{what} node {i}: leaf {a} vs {b}"
                );
            }
        }
    }
}

/// `feature_importance`'s table of `features` features `x0`, `x1`, ...
/// against XGBoost's `get_score` (which leaves out the features no split
/// uses: ours shows them with weight 0).
pub(crate) fn assert_same_importance(kind: &str, features: usize, ours: &TextTable, xgb: &Value) {
    let measures = ["weight", "gain", "cover", "total_gain", "total_cover"];
    assert_eq!(ours.header, [&["feature"][..], &measures].concat());
    assert_eq!(ours.rows.len(), features);
    for (f, row) in ours.rows.iter().enumerate() {
        assert_eq!(row[0], format!("x{f}"));
        for (measure, value) in measures.iter().zip(&row[1..]) {
            let what = format!("{kind} x{f} {measure}");
            match xgb[measure][format!("f{f}")].as_f64() {
                // XGBoost sums gradients in float32: agreement to 1e-5.
                Some(expected) => {
                    let value: f64 = value.parse().unwrap();
                    assert!(
                        (value - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                        "{what}: {value} vs XGBoost's {expected}"
                    );
                }
                None if measure.starts_with("total") || *measure == "weight" => {
                    assert_eq!(value, "0.0", "{what}")
                }
                None => assert_eq!(value, "", "{what}: a mean of no splits is NULL"),
            }
        }
    }
}

/// The metrics CREATE MODEL stored for `name` (from the predictions it held
/// in memory) against EVALUATE's over the same rows (`evaluate`).
pub(crate) async fn assert_stored_metrics_are_evaluates(
    ember: &EmberContext,
    store: &Path,
    name: &str,
    evaluate: &str,
) {
    let stored = &model_json(store, name)["metrics"];
    let evaluated = metrics(ember, evaluate).await;
    assert!(!evaluated.is_empty());
    for (metric, value) in &evaluated {
        let kept = stored[metric.as_str()].as_f64().unwrap();
        assert!(
            (kept - value).abs() <= 1e-9 * value.abs().max(1.0),
            "{name} {metric}: stored {kept}, evaluated {value}"
        );
    }
}

/// Every value of column 0 of `sql`'s rows, sorted.
pub(crate) async fn sorted_column(ember: &EmberContext, sql: &str) -> Vec<f64> {
    let text = to_text(&ember.sql_one(sql).await.unwrap());
    let mut values: Vec<f64> = text.rows.iter().map(|r| r[0].parse().unwrap()).collect();
    values.sort_by(f64::total_cmp);
    values
}

const SMALL_FEATURES: &str = "x0, x1, x2, x3, x4, x5";

/// The features of the nonlinear set (`trees_train`, `trees_test`).
const Z_FEATURES: &str = "z0, z1, z2, z3, z4, z5, z6, z7, z8, z9";

async fn small_trees_equal_xgboost(cluster: bool) {
    let r = reference();
    let e = engine(cluster).await;
    let ember = &e.ember;
    for (kind, label) in [("regressor", "y"), ("classifier", "c")] {
        let name = format!("small_{kind}");
        ember
            .sql(&format!(
                "create model {name} options (model_type = 'boosted_tree_{kind}', label = '{label}', \
                 num_trees = 5, max_depth = 3, learning_rate = 0.3) \
                 as select {SMALL_FEATURES}, {label} from trees_small"
            ))
            .await
            .unwrap();
        let model = model_json(e.store.path(), &name);
        let trees = &model["params"]["trees"];
        let xgb = &r["small"][kind];
        assert_same_tree(&format!("{kind} tree 1"), &trees[0], &xgb["first_tree"]);
        assert_same_tree(&format!("{kind} tree 2"), &trees[1], &xgb["second_tree"]);
        assert_same_importance(
            kind,
            6,
            &to_text(
                &ember
                    .sql_one(&format!("select * from feature_importance('{name}')"))
                    .await
                    .unwrap(),
            ),
            &xgb["importance"],
        );
        // The margins after five trees, NULL features included.
        let margin = match kind {
            "regressor" => format!("predict('{name}', {SMALL_FEATURES})"),
            _ => format!(
                "ln(p / (1 - p)) from (select predict_proba('{name}', {SMALL_FEATURES}) as p"
            ),
        };
        let sql = match kind {
            "regressor" => format!("select {margin} from trees_small"),
            _ => format!("select {margin} from trees_small) as t"),
        };
        let ours = sorted_column(ember, &sql).await;
        let mut expected: Vec<f64> = xgb["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        expected.sort_by(f64::total_cmp);
        assert_eq!(ours.len(), expected.len());
        for (a, b) in ours.iter().zip(&expected) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{kind} margin {a} vs {b}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trees_equal_xgboost_node_for_node_embedded() {
    small_trees_equal_xgboost(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trees_equal_xgboost_node_for_node_on_two_executors() {
    small_trees_equal_xgboost(true).await;
}

/// `device = 'cuda'`: histograms on the GPU give XGBoost's trees node for
/// node as the CPU's do (their sums differ in order only); without a GPU, a
/// one-line reason and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuda_trees_equal_xgboost_or_say_why() {
    let r = reference();
    let e = engine(false).await;
    let sql = format!(
        "create model on_gpu options (model_type = 'boosted_tree_classifier', label = 'c', \
         num_trees = 5, max_depth = 3, learning_rate = 0.3, device = 'cuda') \
         as select {SMALL_FEATURES}, c from trees_small"
    );
    match e.ember.sql(&sql).await {
        Ok(_) => {
            let model = model_json(e.store.path(), "on_gpu");
            let trees = &model["params"]["trees"];
            let xgb = &r["small"]["classifier"];
            assert_same_tree("cuda tree 1", &trees[0], &xgb["first_tree"]);
            assert_same_tree("cuda tree 2", &trees[1], &xgb["second_tree"]);
        }
        Err(err) => {
            let err = err.to_string();
            assert!(
                std::env::var_os("EMBER_REQUIRE_GPU").is_none(),
                "EMBER_REQUIRE_GPU is set but CUDA training failed: {err}"
            );
            assert!(err.contains("device = 'cuda' but"), "{err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(std::fs::read_dir(e.store.path()).unwrap().next().is_none());
        }
    }
}

/// 100 trees of depth 6 on 20 000 rows: held-out RMSE and AUC as good as XGBoost's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_out_quality_matches_xgboost() {
    let r = reference();
    let e = engine(false).await;
    let ember = &e.ember;
    let z = Z_FEATURES;
    for (kind, label) in [("regressor", "y"), ("classifier", "c")] {
        ember
            .sql(&format!(
                "create model big_{kind} options (model_type = 'boosted_tree_{kind}', label = '{label}') \
                 as select {z}, {label} from trees_train"
            ))
            .await
            .unwrap();
        // The training metrics CREATE MODEL stored (from boosting's margins)
        // are EVALUATE's over the same rows: the model read back from its JSON
        // splits rows equal to a threshold as training did (serde_json parsed
        // a threshold 1 ulp off before its float_roundtrip feature was on).
        assert_stored_metrics_are_evaluates(
            ember,
            e.store.path(),
            &format!("big_{kind}"),
            &format!("evaluate model big_{kind} on (select {z}, {label} from trees_train)"),
        )
        .await;
        let m = metrics(
            ember,
            &format!("evaluate model big_{kind} on (select {z}, {label} from trees_test)"),
        )
        .await;
        if kind == "regressor" {
            let (ours, xgb) = (m["rmse"], r["large"]["rmse"].as_f64().unwrap());
            // The bins differ (XGBoost sketches, ember cuts a sample exactly):
            // no worse than XGBoost by more than 1 %.
            assert!(ours <= 1.01 * xgb, "rmse {ours} vs XGBoost's {xgb}");
        } else {
            let (ours, xgb) = (m["roc_auc"], r["large"]["roc_auc"].as_f64().unwrap());
            assert!(ours >= xgb - 0.003, "roc_auc {ours} vs XGBoost's {xgb}");
        }
    }
}

/// Random forests of 100 trees of depth 10 on 20 000 rows: held-out RMSE and
/// AUC as good as scikit-learn's forests with the same trees, depth and
/// features per split; the training metrics stored are EVALUATE's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forests_match_scikit_learn_held_out() {
    let r = reference();
    let e = engine(false).await;
    let ember = &e.ember;
    let z = Z_FEATURES;
    for (kind, label) in [("regressor", "y"), ("classifier", "c")] {
        let name = format!("forest_{kind}");
        ember
            .sql(&format!(
                "create model {name} options (model_type = 'random_forest_{kind}', label = '{label}') \
                 as select {z}, {label} from trees_train"
            ))
            .await
            .unwrap();
        assert_stored_metrics_are_evaluates(
            ember,
            e.store.path(),
            &name,
            &format!("evaluate model {name} on (select {z}, {label} from trees_train)"),
        )
        .await;
        let m = metrics(
            ember,
            &format!("evaluate model {name} on (select {z}, {label} from trees_test)"),
        )
        .await;
        let sklearn = &r["forest"];
        if kind == "regressor" {
            let (ours, theirs) = (m["rmse"], sklearn["rmse"].as_f64().unwrap());
            // Bins and bootstrap draws differ: no worse by more than 2 %.
            assert!(
                ours <= 1.02 * theirs,
                "rmse {ours} vs scikit-learn's {theirs}"
            );
        } else {
            let (ours, theirs) = (m["roc_auc"], sklearn["roc_auc"].as_f64().unwrap());
            assert!(
                ours >= theirs - 0.005,
                "roc_auc {ours} vs scikit-learn's {theirs}"
            );
        }
    }
}

/// `early_stop` with rows held out: training_info has the held-out loss of
/// every tree, boosting stops `early_stop` trees after the lowest and keeps
/// the trees up to it; the metrics stored are EVALUATE's over the held-out
/// rows (measured in memory as the trees grew).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_stopping_keeps_the_trees_up_to_the_lowest_held_out_loss() {
    let e = engine(false).await;
    let ember = &e.ember;
    let z = Z_FEATURES;
    for (kind, label, rounds) in [
        ("boosted_tree_regressor", "y", Some(5)),
        ("boosted_tree_classifier", "c", Some(5)),
        ("random_forest_classifier", "c", None),
    ] {
        let name = format!("es_{kind}");
        let early_stop = rounds.map_or(String::new(), |r| format!(", early_stop = {r}"));
        // Deep trees at a high rate overfit soon: the held-out loss turns up.
        ember
            .sql(&format!(
                "create model {name} options (model_type = '{kind}', label = '{label}', \
                 data_split = 'random', eval_fraction = 0.2, num_trees = 200, max_depth = 8{early_stop}) \
                 as select {z}, {label} from trees_train"
            ))
            .await
            .unwrap();
        let info = to_text(
            &ember
                .sql_one(&format!(
                    "select iteration, eval_loss from training_info('{name}') order by iteration"
                ))
                .await
                .unwrap(),
        );
        let losses: Vec<f64> = info.rows.iter().map(|r| r[1].parse().unwrap()).collect();
        let model = model_json(e.store.path(), &name);
        let kept = model["params"]["trees"].as_array().unwrap().len();
        match rounds {
            Some(rounds) => {
                let (best, lowest) =
                    losses
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f64::INFINITY),
                            |b, (i, l)| if *l < b.1 { (i + 1, *l) } else { b },
                        );
                assert!(losses.len() < 200, "{kind}: never stopped: {losses:?}");
                assert_eq!(losses.len(), best + rounds, "{kind}: {losses:?}");
                assert_eq!(
                    kept, best,
                    "{kind} keeps the trees up to the lowest ({lowest})"
                );
            }
            None => assert_eq!((losses.len(), kept), (200, 200)),
        }
        assert_eq!(model["metrics_on"], "evaluation split");
        assert_stored_metrics_are_evaluates(
            ember,
            e.store.path(),
            &name,
            &format!("evaluate model {name}"),
        )
        .await;
    }
}

/// Every tree type trained embedded and on 2 executors: the same model, bit
/// for bit (rows are put in an order of their own before binning).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_trees_embedded_and_on_two_executors() {
    let z = Z_FEATURES;
    let mut models = Vec::new();
    for cluster in [false, true] {
        let e = engine(cluster).await;
        let mut params = Vec::new();
        for (kind, label) in [
            ("boosted_tree_regressor", "y"),
            ("boosted_tree_classifier", "c"),
            ("random_forest_regressor", "y"),
            ("random_forest_classifier", "c"),
        ] {
            e.ember
                .sql(&format!(
                    "create model {kind} options (model_type = '{kind}', label = '{label}', \
                     num_trees = 10, subsample = 0.8) as select {z}, {label} from trees_train"
                ))
                .await
                .unwrap();
            let model = model_json(e.store.path(), kind);
            // On a cluster the rows are kept, binned and grown on by the
            // executors: the model says so, and the client holds none.
            let kept_by: Vec<String> = model["rounds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["kind"] == "keep")
                .map(|r| r["executor"].as_str().unwrap_or("").to_string())
                .collect();
            if cluster {
                assert!(
                    kept_by.len() >= 2 && kept_by.iter().all(|e| e != "client"),
                    "{kind}: rows kept by {kept_by:?}"
                );
            } else {
                assert_eq!(kept_by, ["client"], "{kind}");
            }
            params.push(model["params"].clone());
        }
        models.push(params);
    }
    assert!(
        models[0] == models[1],
        "the trees differ embedded and on a cluster"
    );
}

/// Bad tree options and labels: one line naming the option or column, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tree_input_is_refused_and_nothing_is_written() {
    let e = engine(false).await;
    let ember = &e.ember;
    let before = ember_tests::walk(e.store.path());
    let create = |kind: &str, options: &str, query: &str| {
        let kind = if kind.contains('_') {
            kind.to_string()
        } else {
            format!("boosted_tree_{kind}")
        };
        format!("create model bad options (model_type = '{kind}', label = 'y'{options}) as {query}")
    };
    let small = "select x0, x1, y from trees_small";
    for (sql, needle) in [
        (
            create("regressor", ", max_depth = 0", small),
            "max_depth must be a whole number from 1 to 16, not 0",
        ),
        (
            create("regressor", ", max_depth = 17", small),
            "max_depth must be a whole number from 1 to 16, not 17",
        ),
        (
            create("regressor", ", max_bins = 257", small),
            "max_bins must be a whole number from 2 to 256",
        ),
        (
            create("regressor", ", learning_rate = 0", small),
            "learning_rate must be a number > 0",
        ),
        (
            create("regressor", ", learning_rate = -0.1", small),
            "learning_rate must be a number > 0",
        ),
        (
            create("regressor", ", subsample = 0", small),
            "subsample must be in (0, 1]",
        ),
        (
            create("regressor", ", subsample = 1.5", small),
            "subsample must be in (0, 1]",
        ),
        (
            create("regressor", ", colsample_bytree = 2", small),
            "colsample_bytree must be in (0, 1]",
        ),
        (
            create("regressor", ", num_trees = 5, max_iterations = 5", small),
            "give num_trees or max_iterations, not both",
        ),
        (
            create("regressor", ", num_clusters = 2", small),
            "unknown option 'num_clusters' for boosted_tree_regressor",
        ),
        (
            create("regressor", "", "select x0, 'a' as y from trees_small"),
            "label 'y' is Utf8, not numeric",
        ),
        (
            create("classifier", "", "select x0, 1 as y from trees_small"),
            "label 'y' has a single class ('1')",
        ),
        (
            create("classifier", "", "select x0, y from trees_small"),
            "label 'y' has more than 1000 classes ('-4.08",
        ),
        (
            create("random_forest_regressor", ", learning_rate = 0.1", small),
            "unknown option 'learning_rate' for random_forest_regressor",
        ),
        (
            create("random_forest_classifier", ", colsample_bynode = 0", small),
            "colsample_bynode must be in (0, 1]",
        ),
        (
            create("random_forest_classifier", ", max_depth = 20", small),
            "max_depth must be a whole number from 1 to 16, not 20",
        ),
        (
            create("regressor", ", early_stop = 5", small),
            "early_stop needs data_split = 'random'",
        ),
        (
            create(
                "random_forest_regressor",
                ", data_split = 'random', early_stop = 5",
                small,
            ),
            "unknown option 'early_stop' for random_forest_regressor",
        ),
        (
            "export model nosuch to 'x.json'".to_string(),
            "unknown model 'nosuch'",
        ),
        (
            "export model nosuch to 'x.txt'".to_string(),
            "EXPORT MODEL writes JSON: the path must end in .json, not 'x.txt'",
        ),
    ] {
        let err = ember.sql(&sql).await.unwrap_err().to_string();
        assert!(
            err.contains(needle),
            "{sql}\n  gave: {err}\n  expected: {needle}"
        );
        assert!(!err.contains('\n'), "multi-line error for {sql}: {err}");
    }
    assert_eq!(
        ember_tests::walk(e.store.path()),
        before,
        "a failed statement changed the model store"
    );
}

/// Under `EMBER_REQUIRE_XGBOOST=1` (CI) a missing XGBoost fails the export
/// test; elsewhere it skips it.
const REQUIRE_XGBOOST: &str = "EMBER_REQUIRE_XGBOOST";

/// Whether `python3` can import XGBoost.
pub(crate) fn xgboost_available() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import numpy, xgboost"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os(REQUIRE_XGBOOST).is_none(),
            "{REQUIRE_XGBOOST} is set but python3 cannot import xgboost (pip install numpy xgboost-cpu)"
        );
        eprintln!("skipped: python3 cannot import xgboost");
    }
    found
}

/// What XGBoost's `predict` gives (as JSON) for the rows `rows` (SQL) with the
/// model in `model` (a file EXPORT MODEL wrote).
pub(crate) async fn xgboost_predicts(ember: &EmberContext, rows: &str, model: &Path) -> Value {
    let rows = to_text(&ember.sql_one(rows).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    let lines: Vec<String> = std::iter::once(rows.header.join(","))
        .chain(rows.rows.iter().map(|r| r.join(",")))
        .collect();
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let xgb = std::process::Command::new("python3")
        .arg(fixtures().join("ml/xgboost_predict.py"))
        .arg(model)
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        xgb.status.success(),
        "XGBoost cannot load {}: {}",
        model.display(),
        String::from_utf8_lossy(&xgb.stderr)
    );
    serde_json::from_slice(&xgb.stdout).unwrap()
}

/// EXPORT MODEL: XGBoost loads each tree model ember wrote and predicts what
/// ember predicts (the features are float32 values: no threshold rounding);
/// a linear model's JSON holds its coefficients.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exported_trees_predict_the_same_in_xgboost() {
    if !xgboost_available() {
        return;
    }
    let e = engine(false).await;
    let ember = &e.ember;
    let dir = tempfile::tempdir().unwrap();
    for (kind, label, output) in [
        ("boosted_tree_regressor", "y", "predict"),
        ("boosted_tree_classifier", "c", "predict_proba"),
        ("random_forest_regressor", "y", "predict"),
        ("random_forest_classifier", "c", "predict_proba"),
    ] {
        ember
            .sql(&format!(
                "create model {kind} options (model_type = '{kind}', label = '{label}', \
                 num_trees = 20, max_depth = 5) as select {SMALL_FEATURES}, {label} from trees_small"
            ))
            .await
            .unwrap();
        let file = dir.path().join(format!("{kind}.json"));
        ember
            .sql(&format!("export model {kind} to '{}'", file.display()))
            .await
            .unwrap();
        let ours = to_text(
            &ember
                .sql_one(&format!(
                    "select {output}('{kind}', {SMALL_FEATURES}) from trees_small"
                ))
                .await
                .unwrap(),
        );
        let theirs: Vec<f64> = serde_json::from_value(
            xgboost_predicts(
                ember,
                &format!("select {SMALL_FEATURES} from trees_small"),
                &file,
            )
            .await,
        )
        .unwrap();
        assert_eq!(theirs.len(), ours.rows.len());
        for (i, (row, theirs)) in ours.rows.iter().zip(&theirs).enumerate() {
            let ours: f64 = row[0].parse().unwrap();
            // XGBoost keeps leaf values in float32 and sums them so.
            assert!(
                (ours - theirs).abs() <= 1e-5 * ours.abs().max(1.0),
                "{kind} row {i}: ember {ours}, XGBoost {theirs}"
            );
        }
    }
    ember
        .sql("create model lin options (model_type = 'linear_regression', label = 'y') as select x0, x1, y from trees_small")
        .await
        .unwrap();
    let file = dir.path().join("lin.json");
    ember
        .sql(&format!("export model lin to '{}'", file.display()))
        .await
        .unwrap();
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let params = &model_json(e.store.path(), "lin")["params"];
    assert_eq!(exported["model_type"], "linear_regression");
    assert_eq!(exported["features"], serde_json::json!(["x0", "x1"]));
    assert_eq!(exported["coefficients"], params["coefficients"]);
    assert_eq!(exported["intercept"], params["intercept"]);
}
