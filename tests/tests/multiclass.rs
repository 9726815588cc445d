//! Multiclass models against their oracles (tests/fixtures/ml/make_multiclass.py):
//! softmax logistic regression against scikit-learn's multinomial
//! LogisticRegression (coefficients, probabilities, every metric and the
//! confusion matrix) on its bundled iris and wine sets; softmax boosted trees
//! against XGBoost's `multi:softprob`, node for node on features it bins
//! exactly and held out on a nonlinear 4-class set. Embedded and on 2
//! executors alike.

use ember_engine::EmberContext;
use ember_tests::{TextTable, engine, fixtures, floats, metrics, to_text};
use serde_json::Value;

use super::trees::{
    assert_same_importance, assert_same_tree, assert_stored_metrics_are_evaluates, model_json,
    sorted_column, xgboost_available, xgboost_predicts,
};

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("ml/multiclass.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_close(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    assert!(
        (ours - theirs).abs() <= tolerance * theirs.abs().max(1.0),
        "{what}: ember {ours}, oracle {theirs}"
    );
}

async fn text(ember: &EmberContext, sql: &str) -> TextTable {
    to_text(&ember.sql_one(sql).await.unwrap())
}

/// Multinomial logistic regression on iris (text classes) and wine (the
/// integers 1, 2, 3): scikit-learn's coefficients, probabilities, metrics and
/// confusion matrix; `predict` gives the classes as the label held them.
async fn softmax_logistic_matches_scikit_learn(cluster: bool) {
    let r = reference();
    let e = engine(cluster).await;
    let ember = &e.ember;
    for (set, label) in [("iris", "species"), ("wine", "cultivar")] {
        let reference = &r["logistic"][set];
        let features: Vec<&str> = reference["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let features = features.join(", ");
        ember
            .sql(&format!(
                "create model {set} options (model_type = 'logistic_regression', label = '{label}', \
                 l2 = 0.01) as select {features}, {label} from {set}"
            ))
            .await
            .unwrap();
        let model = model_json(e.store.path(), set);
        assert_eq!(model["classes"], reference["classes"], "{set}: classes");
        let params = &model["params"];
        for (c, row) in reference["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            for (j, w) in floats(row).into_iter().enumerate() {
                let ours = params["coefficients"][c][j].as_f64().unwrap();
                assert_close(&format!("{set} coefficient {c},{j}"), ours, w, 1e-6);
            }
        }
        for (c, b) in floats(&reference["intercepts"]).into_iter().enumerate() {
            let ours = params["intercepts"][c].as_f64().unwrap();
            assert_close(&format!("{set} intercept {c}"), ours, b, 1e-6);
        }
        let m = metrics(ember, &format!("evaluate model {set}")).await;
        for (name, value) in reference["metrics"].as_object().unwrap() {
            assert_close(
                &format!("{set} {name}"),
                m[name],
                value.as_f64().unwrap(),
                1e-6,
            );
        }
        // The confusion matrix: a row per label class, a column per predicted one.
        let confusion = text(ember, &format!("select * from confusion_matrix('{set}')")).await;
        let mut header = vec!["expected_label".to_string()];
        header.extend(
            reference["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string()),
        );
        assert_eq!(confusion.header, header, "{set}: confusion matrix columns");
        for (row, expected) in confusion
            .rows
            .iter()
            .zip(reference["confusion_matrix"].as_array().unwrap())
        {
            let counts: Vec<i64> = row[1..].iter().map(|c| c.parse().unwrap()).collect();
            let expected: Vec<i64> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_i64().unwrap())
                .collect();
            assert_eq!(counts, expected, "{set}: confusion row {}", row[0]);
        }
        // The first row: every class's probability, the predicted class as
        // given, and the probability of that class.
        let first = text(
            ember,
            &format!(
                "select predict('{set}', {features}) as c, predict_proba('{set}', {features}) as p, \
                 arrow_typeof(predict('{set}', {features})) as t, \
                 predict_probabilities('{set}', {features}) as all from {set} limit 1"
            ),
        )
        .await;
        let expected = floats(&reference["probabilities_row0"]);
        let best = (0..expected.len())
            .max_by(|a, b| expected[*a].total_cmp(&expected[*b]))
            .unwrap();
        assert_eq!(
            first.rows[0][0],
            reference["classes"][best].as_str().unwrap()
        );
        assert_close(
            "predict_proba",
            first.rows[0][1].parse().unwrap(),
            expected[best],
            1e-6,
        );
        assert_eq!(
            first.rows[0][2],
            if set == "iris" { "Utf8" } else { "Int64" },
            "{set}: predict's type"
        );
        for (c, p) in expected.iter().enumerate() {
            let ours = to_text(
                &ember
                    .sql_one(&format!(
                        "select predict_probabilities('{set}', {features})[{}]['probability'], \
                         predict_probabilities('{set}', {features})[{}]['label'] from {set} limit 1",
                        c + 1,
                        c + 1
                    ))
                    .await
                    .unwrap(),
            );
            assert_close(
                &format!("{set} p{c}"),
                ours.rows[0][0].parse().unwrap(),
                *p,
                1e-6,
            );
            assert_eq!(ours.rows[0][1], reference["classes"][c].as_str().unwrap());
        }
    }
    // L-BFGS reaches the optimum Newton's method does.
    let iris = &r["logistic"]["iris"];
    ember
        .sql(
            "create model iris_lbfgs options (model_type = 'logistic_regression', label = 'species', \
             l2 = 0.01, optimizer = 'lbfgs', max_iterations = 500) \
             as select sepal_length, sepal_width, petal_length, petal_width, species from iris",
        )
        .await
        .unwrap();
    let params = &model_json(e.store.path(), "iris_lbfgs")["params"];
    for (c, b) in floats(&iris["intercepts"]).into_iter().enumerate() {
        let ours = params["intercepts"][c].as_f64().unwrap();
        assert_close(&format!("lbfgs intercept {c}"), ours, b, 1e-4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softmax_logistic_matches_scikit_learn_embedded() {
    softmax_logistic_matches_scikit_learn(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softmax_logistic_matches_scikit_learn_on_two_executors() {
    softmax_logistic_matches_scikit_learn(true).await;
}

const SMALL_FEATURES: &str = "x0, x1, x2, x3";

/// Softmax trees on features XGBoost bins exactly: the first round's tree of
/// each class node for node, feature importance over every class's trees,
/// the classes' base margins, and every row's probabilities after 5 rounds.
async fn softmax_trees_equal_xgboost(cluster: bool) {
    let r = reference();
    let xgb = &r["small"];
    let e = engine(cluster).await;
    let ember = &e.ember;
    ember
        .sql(&format!(
            "create model small options (model_type = 'boosted_tree_classifier', label = 'k', \
             num_trees = 5, max_depth = 3, learning_rate = 0.3) \
             as select {SMALL_FEATURES}, k from classes_small"
        ))
        .await
        .unwrap();
    let params = &model_json(e.store.path(), "small")["params"];
    let trees = params["trees"].as_array().unwrap();
    assert_eq!(trees.len(), 15, "a tree per class and round");
    for c in 0..3 {
        assert_same_tree(
            &format!("class {c} tree 1"),
            &trees[c],
            &xgb["first_round"][c],
        );
    }
    let bases: Vec<f64> = xgb["base_score"]
        .as_str()
        .unwrap()
        .trim_matches(['[', ']'])
        .split(',')
        .map(|b| b.parse().unwrap())
        .collect();
    assert_same_importance(
        "softmax",
        4,
        &text(ember, "select * from feature_importance('small')").await,
        &xgb["importance"],
    );
    // XGBoost's estimate of the log shares is within 2e-6 of their value.
    for (c, b) in bases.iter().enumerate() {
        assert_close(
            &format!("class {c} base"),
            params["class_bases"][c].as_f64().unwrap(),
            *b,
            1e-5,
        );
    }
    // XGBoost's margins' softmax, each class's probabilities sorted.
    let rows: Vec<Vec<f64>> = xgb["margins"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    for c in 0..3 {
        let mut expected: Vec<f64> = rows
            .iter()
            .map(|z| {
                let total: f64 = z.iter().map(|v| v.exp()).sum();
                z[c].exp() / total
            })
            .collect();
        expected.sort_by(f64::total_cmp);
        let ours = sorted_column(
            ember,
            &format!(
                "select predict_probabilities('small', {SMALL_FEATURES})[{}]['probability'] from classes_small",
                c + 1
            ),
        )
        .await;
        assert_eq!(ours.len(), expected.len());
        for (a, b) in ours.iter().zip(&expected) {
            assert_close(&format!("class {c} probability"), *a, *b, 1e-5);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softmax_trees_equal_xgboost_node_for_node_embedded() {
    softmax_trees_equal_xgboost(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softmax_trees_equal_xgboost_node_for_node_on_two_executors() {
    softmax_trees_equal_xgboost(true).await;
}

const Z_FEATURES: &str = "z0, z1, z2, z3, z4, z5, z6, z7";

/// 100 rounds of depth 6 on a nonlinear 4-class set of 20 000 rows: held-out
/// log-loss and accuracy as good as XGBoost's; the training metrics stored
/// are EVALUATE's; the same model on 2 executors, bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softmax_trees_held_out_match_xgboost_and_any_cluster() {
    let r = reference();
    let xgb = &r["large"];
    let create = format!(
        "create model big options (model_type = 'boosted_tree_classifier', label = 'k') \
         as select {Z_FEATURES}, k from classes_train"
    );
    let e = engine(false).await;
    let ember = &e.ember;
    ember.sql(&create).await.unwrap();
    assert_stored_metrics_are_evaluates(
        ember,
        e.store.path(),
        "big",
        &format!("evaluate model big on (select {Z_FEATURES}, k from classes_train)"),
    )
    .await;
    let m = metrics(
        ember,
        &format!("evaluate model big on (select {Z_FEATURES}, k from classes_test)"),
    )
    .await;
    let (ours, theirs) = (m["log_loss"], xgb["log_loss"].as_f64().unwrap());
    // The bins differ (XGBoost sketches, ember cuts a sample exactly).
    assert!(
        ours <= 1.02 * theirs,
        "log_loss {ours} vs XGBoost's {theirs}"
    );
    let (ours, theirs) = (m["accuracy"], xgb["accuracy"].as_f64().unwrap());
    assert!(
        ours >= theirs - 0.01,
        "accuracy {ours} vs XGBoost's {theirs}"
    );
    let (ours, theirs) = (m["roc_auc"], xgb["roc_auc"].as_f64().unwrap());
    assert!(
        ours >= theirs - 0.005,
        "roc_auc {ours} vs XGBoost's {theirs}"
    );
    let remote = engine(true).await;
    remote.ember.sql(&create).await.unwrap();
    assert_eq!(
        model_json(remote.store.path(), "big")["params"],
        model_json(e.store.path(), "big")["params"],
        "the same trees on 2 executors"
    );
}

/// A random forest of 4 classes (a tree per class on each bootstrap sample,
/// fit to the class's 0/1 indicator) on the nonlinear set: held-out accuracy
/// and AUC as good as scikit-learn's forest with the same trees, depth and
/// features per split; the training metrics stored are EVALUATE's. XGBoost's
/// format has no such forest: EXPORT MODEL says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forests_of_classes_match_scikit_learn_held_out() {
    let r = reference();
    let sklearn = &r["forest"];
    let e = engine(false).await;
    let ember = &e.ember;
    ember
        .sql(&format!(
            "create model rf options (model_type = 'random_forest_classifier', label = 'k') \
             as select {Z_FEATURES}, k from classes_train"
        ))
        .await
        .unwrap();
    let params = &model_json(e.store.path(), "rf")["params"];
    assert_eq!(
        params["trees"].as_array().unwrap().len(),
        400,
        "a tree per class and sample"
    );
    assert_stored_metrics_are_evaluates(
        ember,
        e.store.path(),
        "rf",
        &format!("evaluate model rf on (select {Z_FEATURES}, k from classes_train)"),
    )
    .await;
    let m = metrics(
        ember,
        &format!("evaluate model rf on (select {Z_FEATURES}, k from classes_test)"),
    )
    .await;
    let (ours, theirs) = (m["accuracy"], sklearn["accuracy"].as_f64().unwrap());
    assert!(
        ours >= theirs - 0.01,
        "accuracy {ours} vs scikit-learn's {theirs}"
    );
    let (ours, theirs) = (m["roc_auc"], sklearn["roc_auc"].as_f64().unwrap());
    assert!(
        ours >= theirs - 0.005,
        "roc_auc {ours} vs scikit-learn's {theirs}"
    );
    let probabilities = metrics(
        ember,
        &format!(
            "select min(s) as least, max(s) as most from (select p[1]['probability'] + \
             p[2]['probability'] + p[3]['probability'] + p[4]['probability'] as s from \
             (select predict_probabilities('rf', {Z_FEATURES}) as p from classes_test) as t) as u"
        ),
    )
    .await;
    assert!(
        (probabilities["least"] - 1.0).abs() < 1e-12,
        "{probabilities:?}"
    );
    assert!(
        (probabilities["most"] - 1.0).abs() < 1e-12,
        "{probabilities:?}"
    );
    let error = ember
        .sql("export model rf to '/tmp/never-written.json'")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'rf' is a multiclass random forest, which XGBoost's format cannot hold"),
        "{error}"
    );
}

/// XGBoost loads an exported softmax model and predicts ember's probabilities.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exported_softmax_trees_predict_the_same_in_xgboost() {
    if !xgboost_available() {
        return;
    }
    let e = engine(false).await;
    let ember = &e.ember;
    let dir = tempfile::tempdir().unwrap();
    ember
        .sql(&format!(
            "create model soft options (model_type = 'boosted_tree_classifier', label = 'k', \
             num_trees = 20, max_depth = 5) as select {SMALL_FEATURES}, k from classes_small"
        ))
        .await
        .unwrap();
    let file = dir.path().join("soft.json");
    ember
        .sql(&format!("export model soft to '{}'", file.display()))
        .await
        .unwrap();
    let rows = format!("select {SMALL_FEATURES} from classes_small");
    let theirs: Vec<Vec<f64>> =
        serde_json::from_value(xgboost_predicts(ember, &rows, &file).await).unwrap();
    for c in 0..3 {
        let ours = text(
            ember,
            &format!(
                "select predict_probabilities('soft', {SMALL_FEATURES})[{}]['probability'] from classes_small",
                c + 1
            ),
        )
        .await;
        assert_eq!(ours.rows.len(), theirs.len());
        for (i, (row, theirs)) in ours.rows.iter().zip(&theirs).enumerate() {
            let ours: f64 = row[0].parse().unwrap();
            assert_close(&format!("row {i} class {c}"), ours, theirs[c], 1e-5);
        }
    }
}

/// Labels a multiclass model cannot take, refused in one line, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_multiclass_input_is_refused_and_nothing_is_written() {
    let e = engine(false).await;
    let ember = &e.ember;
    for (sql, expected) in [
        (
            "create model f options (model_type = 'boosted_tree_classifier', label = 'z1') \
             as select z0, z1 from classes_train"
                .to_string(),
            "label 'z1' has more than 1000 classes",
        ),
        (
            "create model f options (model_type = 'logistic_regression', label = 'k', \
             device = 'cuda') as select z0, k from classes_train"
                .to_string(),
            "",
        ),
    ] {
        let result = ember.sql(&sql).await;
        if expected.is_empty() {
            // Without a GPU: the device's error; with one: multiclass runs on the CPU only.
            let error = result.expect_err("cuda for softmax").to_string();
            assert!(error.contains("cuda"), "{error}");
        } else {
            let error = result.expect_err(&sql).to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
        assert!(
            std::fs::read_dir(e.store.path()).unwrap().next().is_none(),
            "nothing written"
        );
    }
}
