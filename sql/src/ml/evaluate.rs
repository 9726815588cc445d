//! EVALUATE MODEL: metrics as scikit-learn defines them, each computed by
//! distributed aggregate queries over the model's predictions.
//!
//! - regression: `rmse`, `mae`, `r2`
//! - classification: `accuracy`, `precision`, `recall`, `f1` (class 1 positive,
//!   0 when undefined), `log_loss` (mean over rows, probabilities clipped to
//!   [ε, 1−ε]), `roc_auc` (the `roc_auc` aggregate: ranks, ties averaged; NULL
//!   with one class); with more than two classes the same names hold macro
//!   means over the classes and the one-vs-rest AUC (the `multiclass_metrics`
//!   aggregate)
//! - kmeans: `inertia` (sum of squared distances to the nearest centroid),
//!   `davies_bouldin` (over the clusters' own means, as scikit-learn's)

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Result, plan_err};
use datafusion::prelude::DataFrame;
use ember_ml_ops::kernels::DeviceChoice;
use ember_ml_ops::metrics::{self, ClassCounts};
use ember_ml_ops::models::{MetricsFamily, Model, ModelParams, RoundSpec, TrainingData};

use super::bind::{bind_models, insert};
use super::features::{device_for, feature_select, feature_widths};
use super::sql_text::{Rows, class_value, ident, label_value, rows_sql, text_literal};
use super::{MlContext, MlOutput, first_row_floats};

/// Runs `sql`, which may call `predict` on `model` (held in memory).
pub(super) async fn collect_with(
    ml: &MlContext,
    model: &Model,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    insert(&ml.catalog, model.clone())?;
    let state = ml.ctx.state();
    let plan = state.create_logical_plan(sql).await?;
    let plan = bind_models(plan, &state, &ml.catalog)?;
    DataFrame::new(state, plan).collect().await
}

/// `function('model', inputs...)`: a prediction function of `model` over its
/// input columns, as SQL.
pub(super) fn model_call(model: &Model, function: &str) -> String {
    let inputs: Vec<String> = model.inputs.iter().map(|i| ident(&i.name)).collect();
    format!(
        "{function}({}, {})",
        text_literal(&model.name),
        inputs.join(", ")
    )
}

/// Runs `sql` as [`collect_with`] does and returns the first row as floats.
async fn first_row(ml: &MlContext, model: &Model, sql: &str) -> Result<Vec<Option<f64>>> {
    first_row_floats(&collect_with(ml, model, sql).await?)
}

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

/// Metrics of a model over some rows, and the rows left out of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Each metric by name, in [`MetricsFamily::names`] order.
    pub values: Vec<(&'static str, Option<f64>)>,
    /// Rows the query gave.
    pub rows: u64,
    /// Rows left out because their label is NULL.
    pub null_labels: u64,
    /// Rows left out because their prediction is NULL (a NULL feature).
    pub null_predictions: u64,
}

impl Metrics {
    /// What was left out, as a sentence; `None` when every row counted.
    pub fn note(&self, model: &str) -> Option<String> {
        let mut parts = Vec::new();
        if self.null_labels > 0 {
            parts.push(format!("{} whose label is NULL", self.null_labels));
        }
        if self.null_predictions > 0 {
            parts.push(format!(
                "{} with a NULL feature (no prediction)",
                self.null_predictions
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "EVALUATE MODEL {model}: left out {} of {} rows: {}",
                self.null_labels + self.null_predictions,
                self.rows,
                parts.join(" and ")
            )
        })
    }
}

/// The counts that open every supervised metrics query: rows, rows with a
/// label, and rows that count (label and prediction both present, `ok`).
const COUNTS: &str = "count(*), count(y), count(*) FILTER (WHERE ok)";

/// The metrics of `model` over the rows `rows` (SQL) returns. Rows whose label
/// or prediction is NULL are left out, and counted.
pub async fn compute_metrics(ml: &MlContext, model: &Model, rows: &str) -> Result<Metrics> {
    let family = model.model_type.metrics();
    let call = |f: &str| model_call(model, f);
    let label = model.options.label.clone();
    let (values, counts) = match family {
        MetricsFamily::Regression => {
            let label = label.expect("supervised");
            let sql = format!(
                "SELECT {COUNTS}, sum((p - y) * (p - y)) FILTER (WHERE ok), \
                 sum(abs(p - y)) FILTER (WHERE ok), var_pop(y) FILTER (WHERE ok) FROM \
                 (SELECT y, p, y IS NOT NULL AND p IS NOT NULL AS ok FROM \
                 (SELECT {} AS y, {} AS p FROM ({rows}) AS r) AS s) AS t",
                label_value(&label, &model.classes),
                call("predict")
            );
            let v = first_row(ml, model, &sql).await?;
            let n = counted(model, &v)?;
            let (sse, sae, var) = (
                v[3].unwrap_or(0.0),
                v[4].unwrap_or(0.0),
                v[5].unwrap_or(0.0),
            );
            (
                metrics::regression_of_sums(n, sse, sae, var * n),
                counts(&v),
            )
        }
        MetricsFamily::Classification if model.params.class_count().is_some() => {
            let label = label.expect("supervised");
            // Every metric from one aggregate over (probabilities, class index).
            let sql = format!(
                "SELECT c0, c1, c2, m[1], m[2], m[3], m[4], m[5], m[6] FROM \
                 (SELECT count(*) AS c0, count(y) AS c1, count(*) FILTER (WHERE ok) AS c2, \
                 multiclass_metrics(p, y) FILTER (WHERE ok) AS m FROM \
                 (SELECT y, p, y IS NOT NULL AND p IS NOT NULL AS ok FROM \
                 (SELECT {} AS y, {} AS p FROM ({rows}) AS r) AS s) AS t) AS u",
                label_value(&label, &model.classes),
                call("predict_probabilities"),
            );
            let v = first_row(ml, model, &sql).await?;
            counted(model, &v)?;
            (v[3..9].to_vec(), counts(&v))
        }
        MetricsFamily::Classification => {
            let label = label.expect("supervised");
            let eps = f64::EPSILON;
            // p: the probability (ranked for roc_auc); q: p clipped for log_loss.
            let predictions = format!(
                "SELECT y, c, p, least(greatest(p, {eps:?}), {:?}) AS q, \
                 y IS NOT NULL AND p IS NOT NULL AS ok FROM \
                 (SELECT {} AS y, {} AS c, {} AS p FROM ({rows}) AS r) AS s",
                1.0 - eps,
                label_value(&label, &model.classes),
                class_value(&call("predict"), &model.classes),
                call("predict_proba"),
            );
            let sql = format!(
                "SELECT {COUNTS}, sum(CASE WHEN c = y THEN 1.0 ELSE 0.0 END) FILTER (WHERE ok), \
                 sum(c * y) FILTER (WHERE ok), sum(c) FILTER (WHERE ok), sum(y) FILTER (WHERE ok), \
                 sum(-(y * ln(q) + (1.0 - y) * ln(1.0 - q))) FILTER (WHERE ok), \
                 roc_auc(p, y) FILTER (WHERE ok) FROM ({predictions}) AS t"
            );
            let v = first_row(ml, model, &sql).await?;
            let n = counted(model, &v)?;
            let [correct, tp, predicted, positive, log_loss] =
                [v[3], v[4], v[5], v[6], v[7]].map(|x| x.unwrap_or(0.0));
            let counts_of_classes = ClassCounts {
                rows: n,
                correct,
                true_positive: tp,
                predicted,
                positive,
            };
            (
                metrics::classification_of_sums(&counts_of_classes, log_loss, v[8]),
                counts(&v),
            )
        }
        MetricsFamily::Clustering => {
            let (values, rows) = kmeans_metrics(ml, model, rows).await?;
            (values, (rows, 0, 0))
        }
    };
    let (rows, null_labels, null_predictions) = counts;
    Ok(Metrics {
        values: family.named(values),
        rows,
        null_labels,
        null_predictions,
    })
}

/// Rows, NULL labels and NULL predictions from the first three values of a
/// supervised metrics query.
fn counts(v: &[Option<f64>]) -> (u64, u64, u64) {
    let [rows, labelled, ok] = [v[0], v[1], v[2]].map(|x| x.unwrap_or(0.0) as u64);
    (rows, rows - labelled, labelled - ok)
}

/// The number of rows that count, or an error when none does.
fn counted(model: &Model, v: &[Option<f64>]) -> Result<f64> {
    let (rows, null_labels, _) = counts(v);
    let n = v[2].unwrap_or(0.0);
    if n > 0.0 {
        return Ok(n);
    }
    if rows == 0 {
        plan_err!("no rows to evaluate model '{}' on", model.name)
    } else if null_labels == rows {
        plan_err!(
            "no rows to evaluate model '{}' on: all {rows} labels are NULL",
            model.name
        )
    } else {
        plan_err!(
            "no rows to evaluate model '{}' on: every row has a NULL label or a NULL feature",
            model.name
        )
    }
}

/// k-means metrics and the number of rows they cover.
async fn kmeans_metrics(
    ml: &MlContext,
    model: &Model,
    rows: &str,
) -> Result<(Vec<Option<f64>>, u64)> {
    let sql = format!(
        "SELECT {} FROM ({rows}) AS r",
        feature_select(&model.inputs, &model.transform).join(", ")
    );
    let state = ml.ctx.state();
    let plan = state.create_logical_plan(&sql).await?;
    let names: Vec<String> = model.features.iter().map(|f| f.name.clone()).collect();
    let features = feature_widths(&plan, &names)?;
    // The model's device, but never an error for want of a GPU: the model may
    // have been trained on a machine that had one.
    let option = model.options_given.contains_key("device");
    let device = match device_for(ml, option.then_some(model.options.device.as_str()))? {
        DeviceChoice::Cuda => DeviceChoice::Auto,
        device => device,
    };
    let data = TrainingData::new(ml.ctx.clone(), plan, None, features)
        .with_device(device, false)
        .with_retry(ml.retry.clone());
    kmeans_metrics_over(model, &data).await
}

/// k-means metrics over `data`'s rows, and the number of rows they cover: two
/// rounds, run wherever `data`'s rounds run (its kept rows on a cluster).
pub(super) async fn kmeans_metrics_over(
    model: &Model,
    data: &TrainingData,
) -> Result<(Vec<Option<f64>>, u64)> {
    let ModelParams::Centroids { centroids } = &model.params else {
        return plan_err!("model '{}' has no centroids", model.name);
    };
    let d = model.width();
    let k = centroids.len();
    let flat = centroids.concat();
    let stats = data
        .round(RoundSpec::KMeans {
            centroids: flat.clone(),
            measure: None,
        })
        .await?;
    let counts = &stats[k * d..k * d + k];
    if counts.iter().sum::<f64>() == 0.0 {
        return plan_err!("no rows to evaluate on");
    }
    let inertia: f64 = stats[k * d + k..k * d + 2 * k].iter().sum();
    // Davies-Bouldin over the clusters that have rows, around their own means.
    let mut means = flat.clone();
    for c in 0..k {
        if counts[c] > 0.0 {
            for j in 0..d {
                means[c * d + j] = stats[c * d + j] / counts[c];
            }
        }
    }
    let present: Vec<usize> = (0..k).filter(|&c| counts[c] > 0.0).collect();
    let davies_bouldin = if present.len() < 2 {
        None
    } else {
        let measured = data
            .round(RoundSpec::KMeans {
                centroids: flat,
                measure: Some(means.clone()),
            })
            .await?;
        let spread: Vec<f64> = (0..k)
            .map(|c| ratio(measured[k * d + 2 * k + c], counts[c]))
            .collect();
        let mut total = 0.0;
        for &i in &present {
            let mut worst: f64 = 0.0;
            for &j in &present {
                if i == j {
                    continue;
                }
                let distance: f64 = (0..d)
                    .map(|t| (means[i * d + t] - means[j * d + t]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let score = if distance == 0.0 {
                    0.0
                } else {
                    (spread[i] + spread[j]) / distance
                };
                worst = worst.max(score);
            }
            total += worst;
        }
        Some(total / present.len() as f64)
    };
    let rows = counts.iter().sum::<f64>() as u64;
    Ok((vec![Some(inertia), davies_bouldin], rows))
}

/// One row of metrics.
pub fn metrics_batch(metrics: &[(&str, Option<f64>)]) -> Result<RecordBatch> {
    let fields: Vec<Field> = metrics
        .iter()
        .map(|(n, _)| Field::new(*n, DataType::Float64, true))
        .collect();
    let columns = metrics
        .iter()
        .map(|(_, v)| Arc::new(Float64Array::from(vec![*v])) as Arc<dyn Array>)
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// EVALUATE MODEL name [ON (query)].
pub async fn evaluate_model(ml: &MlContext, name: &str, on: Option<&str>) -> Result<MlOutput> {
    let model = ml.store.load_ref(name).await?;
    let rows = rows_to_measure(ml, &model, on, "EVALUATE MODEL").await?;
    let metrics = compute_metrics(ml, &model, &rows).await?;
    let mut output = MlOutput::rows(metrics_batch(&metrics.values)?);
    output.notes.extend(metrics.note(&model.name));
    Ok(output)
}

/// The rows (SQL) `statement` measures `model` on: the `on` query's, which
/// must hold the model's inputs and label, or else the model's held-out
/// rows (all its training query's rows without a split).
pub(super) async fn rows_to_measure(
    ml: &MlContext,
    model: &Model,
    on: Option<&str>,
    statement: &str,
) -> Result<String> {
    Ok(match on {
        Some(query) => {
            let rows = format!("SELECT * FROM ({query}) AS __ember_on");
            let plan = ml.ctx.state().create_logical_plan(&rows).await?;
            let mut needed: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
            needed.extend(model.options.label.as_deref());
            for column in needed {
                if plan.schema().field_with_unqualified_name(column).is_err() {
                    return plan_err!(
                        "{statement} {}: the ON query has no column '{column}'",
                        model.name
                    );
                }
            }
            rows
        }
        None => {
            let rows = match model.options.data_split {
                ember_ml_ops::models::DataSplit::Random => Rows::Evaluation,
                ember_ml_ops::models::DataSplit::None => Rows::All,
            };
            rows_sql(&model.query, &model.query_columns, &model.options, rows)
        }
    })
}
