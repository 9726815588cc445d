//! Gradient-boosted classification trees on log-loss, as XGBoost's `hist`
//! with `binary:logistic`: margins are log-odds of class 1.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use super::options::GivenOptions;
use super::trees::{self, Objective};
use super::{
    BoundModel, Fitted, LabelKind, MetricsFamily, ModelKind, ModelOptions, ModelParams,
    PredictOutput, Progress, RoundSpec, TrainingData, binary_output_type,
};
use crate::kernels::FeatureColumns;
use crate::kernels::logistic::sigmoid;

pub struct BoostedTreeClassifier;

#[async_trait]
impl ModelKind for BoostedTreeClassifier {
    fn name(&self) -> &'static str {
        "boosted_tree_classifier"
    }

    fn label(&self) -> LabelKind {
        LabelKind::Classes
    }

    fn metrics(&self) -> MetricsFamily {
        MetricsFamily::Classification
    }

    fn own_options(&self) -> &'static [&'static str] {
        trees::BOOSTED_OPTIONS
    }

    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
        trees::parse_boosted(given, options)
    }

    /// Boosting rounds (`num_trees`).
    fn default_iterations(&self) -> usize {
        100
    }

    /// The rows are read once and boosted on where they are held.
    fn first_round(&self, _width: usize, _options: &ModelOptions) -> Option<RoundSpec> {
        None
    }

    /// The rows are read once; every tree works on them in memory.
    fn iterative(&self) -> bool {
        false
    }

    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String> {
        trees::check_trees(params, width, Objective::Logistic)
    }

    fn output_type(
        &self,
        output: PredictOutput,
        _model: &str,
        label_type: Option<&str>,
    ) -> Result<DataType> {
        Ok(binary_output_type(output, label_type))
    }

    fn predict(
        &self,
        model: &BoundModel,
        output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let ModelParams::Trees { base, trees, .. } = &model.params else {
            return plan_err!("model '{}' has no trees", model.name);
        };
        let z = trees::margins(trees, *base, columns);
        if output == PredictOutput::Probability {
            return Ok(Arc::new(
                z.into_iter().map(sigmoid).collect::<Float64Array>(),
            ));
        }
        Ok(model.classes_of(z.into_iter().map(|z| z > 0.0)))
    }

    fn takes_nulls(&self) -> bool {
        true
    }

    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
        trees::describe(params)
    }

    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        trees::fit_boosted(self.name(), Objective::Logistic, data, options, progress).await
    }
}
