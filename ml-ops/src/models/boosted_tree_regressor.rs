//! Gradient-boosted regression trees: squared error, histogram-based and
//! second order, as XGBoost's `hist` with `reg:squarederror`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use super::options::GivenOptions;
use super::training::record;
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
        check_trees(params, width, Objective::SquaredError)
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
        match params {
            ModelParams::Trees { base, trees, .. } => trees::describe(trees, *base),
            _ => vec![],
        }
    }

    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        fit_boosted(
            self.name(),
            Objective::SquaredError,
            data,
            options,
            progress,
        )
        .await
    }
}

/// Boosts trees for `objective` on `data`, recording each round's training loss.
pub(super) async fn fit_boosted(
    name: &str,
    objective: Objective,
    data: &TrainingData,
    options: &ModelOptions,
    progress: &dyn Progress,
) -> Result<Fitted> {
    let rows = trees::binned_rows(data, options).await?;
    if objective == Objective::Logistic
        && let Some(bad) = rows.labels.iter().find(|y| **y != 0.0 && **y != 1.0)
    {
        let label = data.label_name().unwrap_or("label");
        return plan_err!("label '{label}' must be 0 or 1 (or a boolean) for {name}, found {bad}");
    }
    let params = trees::boost_params(options)?;
    let mut info = Vec::new();
    let (base, trees) = trees::boost(&rows, objective, &params, |_, loss| {
        record(data, progress, name, params.trees, &mut info, loss)
    });
    Ok(Fitted {
        params: ModelParams::Trees {
            objective,
            base,
            trees,
        },
        training_info: info,
        converged: true,
    })
}

/// Why `params` are not trees for `objective` over `width` features, if so.
pub(super) fn check_trees(
    params: &ModelParams,
    width: usize,
    objective: Objective,
) -> std::result::Result<(), String> {
    let ModelParams::Trees {
        objective: found,
        base,
        trees,
    } = params
    else {
        return Err("parameters do not match the model type".into());
    };
    if *found != objective {
        return Err(format!("trees fit for {found:?}, expected {objective:?}"));
    }
    if !base.is_finite() {
        return Err("the base margin is not a finite number".into());
    }
    for (i, tree) in trees.iter().enumerate() {
        if tree.nodes.is_empty() {
            return Err(format!("tree {i} has no nodes"));
        }
        for node in &tree.nodes {
            if !node.value.is_finite() {
                return Err(format!("tree {i} has a value that is not a finite number"));
            }
            if let Some(split) = &node.split
                && (split.feature >= width
                    || split.left >= tree.nodes.len()
                    || split.right >= tree.nodes.len()
                    || split.threshold.is_nan())
            {
                return Err(format!("tree {i} has a split outside the model"));
            }
        }
    }
    Ok(())
}
