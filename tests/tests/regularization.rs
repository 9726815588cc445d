//! The penalty never touches the intercept: however large `l2` is, the
//! coefficients go to zero and the intercept to the intercept-only fit (the
//! label's mean; its log-odds for a classifier), a closed form (issue 12: at
//! l2 ≥ 1e14 the intercept was zeroed too).

use ember_tests::{engine, metrics, to_text};

fn parameters(text: &ember_tests::TextTable) -> (Vec<f64>, f64) {
    let value = |name: &str| {
        text.rows
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap()
    };
    let coefficients: Vec<f64> = serde_json::from_str(&value("coefficients")).unwrap();
    (coefficients, value("intercept").parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_penalty_leaves_the_intercept_fitted() {
    let e = engine(false).await;
    let mean = metrics(&e.ember, "select avg(y) as m from diabetes").await["m"];
    let rate = metrics(&e.ember, "select avg(y) as m from cancer").await["m"];
    let log_odds = (rate / (1.0 - rate)).ln();
    for l2 in ["1e14", "1e20"] {
        let models = [
            ("linear_regression", "auto", "diabetes", mean),
            ("logistic_regression", "newton", "cancer", log_odds),
            ("logistic_regression", "lbfgs", "cancer", log_odds),
        ];
        for (model_type, optimizer, table, intercept) in models {
            let options = if optimizer == "auto" {
                String::new()
            } else {
                format!(", optimizer = '{optimizer}'")
            };
            e.ember
                .sql(&format!(
                    "create or replace model m options (model_type = '{model_type}', label = 'y', \
                     l2 = {l2}{options}) as select x0, x1, x2, y from {table}"
                ))
                .await
                .unwrap();
            let described = to_text(&e.ember.sql_one("describe model m").await.unwrap());
            let (coefficients, fitted) = parameters(&described);
            let what = format!("{model_type} ({optimizer}), l2 = {l2}");
            assert!(
                coefficients.iter().all(|c| c.abs() < 1e-9),
                "{what}: {coefficients:?}"
            );
            assert!(
                (fitted - intercept).abs() <= 1e-9 * intercept.abs().max(1.0),
                "{what}: intercept {fitted}, expected {intercept}"
            );
        }
    }
}
