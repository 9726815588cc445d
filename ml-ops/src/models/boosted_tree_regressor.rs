//! Gradient-boosted regression trees: squared error, histogram-based and
//! second order, as XGBoost's `hist` with `reg:squarederror`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use super::options::GivenOptions;
use super::trees::{self, Objective};
use super::{
    BoundModel, Fitted, LabelKind, MetricsFamily, ModelKind, ModelOptions, ModelParams, ModelType,
    PredictOutput, Progress, RoundSpec, TrainingData,
};
use crate::kernels::FeatureColumns;

pub struct BoostedTreeRegressor;

#[async_trait]
impl ModelKind for BoostedTreeRegressor {
    fn name(&self) -> &'static str {
        "boosted_tree_regressor"
    }

    fn label(&self) -> LabelKind {
        LabelKind::Number
    }

    fn metrics(&self) -> MetricsFamily {
        MetricsFamily::Regression
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
        trees::check_trees(params, width, Objective::SquaredError)
    }

    fn output_type(
        &self,
        output: PredictOutput,
        model: &str,
        _label_type: Option<&str>,
    ) -> Result<DataType> {
        match output {
            PredictOutput::Value => Ok(DataType::Float64),
            PredictOutput::Probability => ModelType::no_probability(model, self.name()),
        }
    }

    fn predict(
        &self,
        model: &BoundModel,
        _output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let ModelParams::Trees { base, trees, .. } = &model.params else {
            return plan_err!("model '{}' has no trees", model.name);
        };
        Ok(Arc::new(Float64Array::from(trees::margins(
            trees, *base, columns,
        ))))
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
        trees::fit_boosted(
            self.name(),
            Objective::SquaredError,
            data,
            options,
            progress,
        )
        .await
    }
}
