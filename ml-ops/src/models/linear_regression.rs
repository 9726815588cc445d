//! Linear regression, exact: one pass gathers XᵀX, Xᵀy, yᵀy and n; the driver
//! solves the normal equations.
//!
//! Objective: (1/n)·Σ(y − ŷ)² + l2·‖w‖² (the intercept is not penalised), i.e.
//! scikit-learn's `Ridge(alpha = n·l2)`, and `LinearRegression` when l2 = 0
//! (collinear features get the minimum-norm solution, as with `lstsq`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use super::options::GivenOptions;
use super::training::record;
use super::{
    BoundModel, Fitted, Importance, LabelKind, MetricsFamily, ModelKind, ModelOptions, ModelParams,
    ModelType, PredictOutput, Progress, RoundSpec, TrainingData,
};
use crate::kernels::FeatureColumns;
use crate::kernels::gram::symmetrize;
use crate::kernels::linear::margins;
use crate::linalg::solve_with_intercept;

pub struct LinearRegression;

#[async_trait]
impl ModelKind for LinearRegression {
    fn name(&self) -> &'static str {
        "linear_regression"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["linear_reg"]
    }

    fn label(&self) -> LabelKind {
        LabelKind::Number
    }

    fn metrics(&self) -> MetricsFamily {
        MetricsFamily::Regression
    }

    fn own_options(&self) -> &'static [&'static str] {
        &["l2"]
    }

    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
        options.l2 = given.non_negative("l2")?.unwrap_or(0.0);
        Ok(())
    }

    /// One pass: the normal equations are solved exactly.
    fn default_iterations(&self) -> usize {
        1
    }

    fn iterative(&self) -> bool {
        false
    }

    fn first_round(
        &self,
        _width: usize,
        _classes: usize,
        _options: &ModelOptions,
    ) -> Option<RoundSpec> {
        Some(RoundSpec::LeastSquares)
    }

    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String> {
        params.check_linear(width)
    }

    fn output_type(
        &self,
        output: PredictOutput,
        model: &str,
        _label_type: Option<&str>,
    ) -> Result<DataType> {
        match output {
            PredictOutput::Value => Ok(DataType::Float64),
            PredictOutput::Probability | PredictOutput::Probabilities => {
                ModelType::no_probability(output, model, self.name())
            }
        }
    }

    fn predict(
        &self,
        model: &BoundModel,
        _output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let ModelParams::Linear {
            coefficients,
            intercept,
        } = &model.params
        else {
            return plan_err!("model '{}' has no coefficients", model.name);
        };
        let values = margins(columns, coefficients, *intercept)?;
        Ok(Arc::new(Float64Array::from(values)))
    }

    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
        describe_linear(params)
    }

    fn importance(&self, params: &ModelParams, _width: usize) -> Option<Importance> {
        linear_importance(params)
    }

    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        let d = data.width();
        let m = d + 1;
        let mut stats = data.round(RoundSpec::LeastSquares).await?;
        let n = stats[m * m + m + 1];
        if n == 0.0 {
            return plan_err!("no training rows");
        }
        data.note_rows(n);
        symmetrize(&mut stats[..m * m], m);
        let gram = &stats[..m * m];
        let xty = &stats[m * m..m * m + m];
        let yty = stats[m * m + m];
        let mut system: Vec<f64> = gram.iter().map(|g| g / n).collect();
        for j in 0..d {
            system[j * m + j] += options.l2;
        }
        let rhs: Vec<f64> = xty.iter().map(|b| b / n).collect();
        let w = solve_with_intercept(&system, &rhs);
        // SSE = yᵀy − 2wᵀXᵀy + wᵀXᵀXw, from the statistics alone.
        let wxty: f64 = w.iter().zip(xty).map(|(a, b)| a * b).sum();
        let wgw: f64 = (0..m)
            .map(|j| w[j] * (0..m).map(|k| gram[j * m + k] * w[k]).sum::<f64>())
            .sum();
        let sse = (yty - 2.0 * wxty + wgw).max(0.0);
        let penalty: f64 = w[..d].iter().map(|c| c * c).sum::<f64>() * options.l2;
        let mut info = Vec::new();
        record(data, progress, self.name(), 1, &mut info, sse / n + penalty);
        Ok(Fitted {
            params: ModelParams::Linear {
                coefficients: w[..d].to_vec(),
                intercept: w[d],
            },
            training_info: info,
            converged: true,
            training_metrics: None,
            evaluation_metrics: None,
        })
    }
}

/// DESCRIBE MODEL's rows for linear parameters.
/// A linear model's importance per feature: |coefficient|, and the
/// coefficient (on the features as given: scale them to compare).
pub(super) fn linear_importance(params: &ModelParams) -> Option<Importance> {
    let rows = match params {
        ModelParams::Linear { coefficients, .. } => coefficients
            .iter()
            .map(|c| vec![Some(c.abs()), Some(*c)])
            .collect(),
        // A feature's weight per class: the mean |coefficient| over the
        // classes; no single coefficient.
        ModelParams::Softmax { coefficients, .. } => (0..coefficients[0].len())
            .map(|j| {
                let total: f64 = coefficients.iter().map(|w| w[j].abs()).sum();
                vec![Some(total / coefficients.len() as f64), None]
            })
            .collect(),
        _ => return None,
    };
    Some(Importance {
        measures: &["importance", "coefficient"],
        rows,
    })
}

pub(super) fn describe_linear(params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
    match params {
        ModelParams::Linear {
            coefficients,
            intercept,
        } => vec![
            ("coefficients", serde_json::json!(coefficients)),
            ("intercept", serde_json::json!(intercept)),
        ],
        ModelParams::Softmax {
            coefficients,
            intercepts,
        } => vec![
            ("coefficients", serde_json::json!(coefficients)),
            ("intercepts", serde_json::json!(intercepts)),
        ],
        _ => vec![],
    }
}
