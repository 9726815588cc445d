//! The tree model types: boosted trees (as XGBoost's `hist`) and random
//! forests, each a regressor or a classifier (boosted: binary or softmax;
//! forests: binary, or a tree per class on its 0/1 indicator). One kind serves the
//! four: they share options, binning, growing and applying trees (`trees/`),
//! and differ in how trees combine (boosting or bagging) and what a margin
//! means (a value, log-odds, or a class-1 probability).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use super::options::GivenOptions;
use super::training::record_with_eval;
use super::trees::{self, Combine, Objective};
use super::{
    BoundModel, ClassScores, Fitted, Importance, LabelKind, MetricsFamily, Model, ModelKind,
    ModelOptions, ModelParams, ModelType, PredictOutput, Progress, RoundSpec, TrainingData,
    classifier_output_type,
};
use crate::kernels::FeatureColumns;
use crate::kernels::logistic::sigmoid;
use crate::metrics;

/// How a model's trees combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ensemble {
    /// Each tree fit to the gradients the trees before it leave; summed.
    Boosted,
    /// Trees grown independently on bootstrap samples; averaged.
    Forest,
}

/// What the trees predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Regression,
    /// A class: of two, or for boosted trees of any number.
    Classification,
}

pub struct TreeModel {
    name: &'static str,
    ensemble: Ensemble,
    task: Task,
}

pub static BOOSTED_TREE_REGRESSOR: TreeModel = TreeModel {
    name: "boosted_tree_regressor",
    ensemble: Ensemble::Boosted,
    task: Task::Regression,
};

pub static BOOSTED_TREE_CLASSIFIER: TreeModel = TreeModel {
    name: "boosted_tree_classifier",
    ensemble: Ensemble::Boosted,
    task: Task::Classification,
};

pub static RANDOM_FOREST_REGRESSOR: TreeModel = TreeModel {
    name: "random_forest_regressor",
    ensemble: Ensemble::Forest,
    task: Task::Regression,
};

pub static RANDOM_FOREST_CLASSIFIER: TreeModel = TreeModel {
    name: "random_forest_classifier",
    ensemble: Ensemble::Forest,
    task: Task::Classification,
};

impl TreeModel {
    /// The loss the trees are fit to, for a label of `classes` classes: a
    /// forest fits least squares to the label, 0/1 for a binary classifier,
    /// and to each class's 0/1 indicator for more classes (see
    /// `trees/forest.rs`).
    fn objective(&self, classes: usize) -> Objective {
        match (self.ensemble, self.task) {
            (Ensemble::Boosted, Task::Classification) if classes > 2 => {
                Objective::Softmax { classes }
            }
            (Ensemble::Boosted, Task::Classification) => Objective::Logistic,
            (Ensemble::Forest, Task::Classification) if classes > 2 => {
                Objective::ClassShares { classes }
            }
            _ => Objective::SquaredError,
        }
    }

    /// Whether this type fits trees to `objective`.
    fn fits(&self, objective: Objective) -> bool {
        match (self.ensemble, self.task) {
            (Ensemble::Boosted, Task::Classification) => {
                matches!(objective, Objective::Logistic | Objective::Softmax { .. })
            }
            (Ensemble::Forest, Task::Classification) => matches!(
                objective,
                Objective::SquaredError | Objective::ClassShares { .. }
            ),
            _ => objective == Objective::SquaredError,
        }
    }

    /// A classifier's scores of rows with `margins` (output by output): a
    /// class-1 probability (the sigmoid of log-odds, or a forest's mean leaf
    /// frequency) and class 1 when above ½ (on log-odds themselves, free of
    /// rounding), the softmax of each row's class margins, or a forest's
    /// class shares (each clipped to [0, 1]) as a distribution.
    fn scores(&self, objective: Objective, margins: Vec<f64>) -> ClassScores {
        match (objective, self.ensemble) {
            (Objective::Softmax { classes }, _) => ClassScores::softmax(classes, &margins),
            (Objective::ClassShares { classes }, _) => ClassScores::shares(classes, &margins),
            (_, Ensemble::Boosted) => ClassScores::Binary {
                probabilities: margins.iter().map(|z| sigmoid(*z)).collect(),
                ones: margins.iter().map(|z| *z > 0.0).collect(),
            },
            (_, Ensemble::Forest) => ClassScores::Binary {
                probabilities: margins.iter().map(|z| z.clamp(0.0, 1.0)).collect(),
                ones: margins.iter().map(|z| *z > 0.5).collect(),
            },
        }
    }

    /// The metrics of rows with `margins` and `labels`, as `predict` and
    /// `predict_proba` decide for them.
    fn metrics_of(
        &self,
        objective: Objective,
        margins: &[f64],
        labels: &[f64],
    ) -> Vec<Option<f64>> {
        match self.task {
            Task::Regression => metrics::regression(margins, labels),
            Task::Classification => {
                metrics::of_class_scores(&self.scores(objective, margins.to_vec()), labels)
            }
        }
    }

    /// The fraction of features a node samples unless `colsample_bynode`
    /// says: all for boosting; for forests, Spark's `auto` (√width for a
    /// classifier, a third for a regressor).
    fn bynode_default(&self, width: usize) -> f64 {
        let width = width.max(1) as f64;
        match (self.ensemble, self.task) {
            (Ensemble::Boosted, _) => 1.0,
            (Ensemble::Forest, Task::Classification) => width.sqrt().ceil() / width,
            (Ensemble::Forest, Task::Regression) => (width / 3.0).ceil() / width,
        }
    }
}

#[async_trait]
impl ModelKind for TreeModel {
    fn name(&self) -> &'static str {
        self.name
    }

    fn label(&self) -> LabelKind {
        match self.task {
            Task::Regression => LabelKind::Number,
            Task::Classification => LabelKind::Classes,
        }
    }

    fn multiclass(&self) -> bool {
        self.task == Task::Classification
    }

    fn metrics(&self) -> MetricsFamily {
        match self.task {
            Task::Regression => MetricsFamily::Regression,
            Task::Classification => MetricsFamily::Classification,
        }
    }

    fn own_options(&self) -> &'static [&'static str] {
        match self.ensemble {
            Ensemble::Boosted => trees::BOOSTED_OPTIONS,
            Ensemble::Forest => trees::FOREST_OPTIONS,
        }
    }

    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
        match self.ensemble {
            Ensemble::Boosted => trees::parse_boosted(given, options),
            Ensemble::Forest => trees::parse_forest(given, options),
        }
    }

    /// Trees (`num_trees`).
    fn default_iterations(&self) -> usize {
        100
    }

    /// The rows are read once and the trees grown where they are held.
    fn first_round(
        &self,
        _width: usize,
        _classes: usize,
        _options: &ModelOptions,
    ) -> Option<RoundSpec> {
        None
    }

    /// The rows are read once; every tree works on them in memory.
    fn iterative(&self) -> bool {
        false
    }

    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String> {
        trees::check_trees(params, width, |objective| self.fits(objective))
    }

    fn output_type(
        &self,
        output: PredictOutput,
        model: &str,
        label_type: Option<&str>,
    ) -> Result<DataType> {
        match self.task {
            Task::Classification => Ok(classifier_output_type(output, label_type)),
            Task::Regression => match output {
                PredictOutput::Value => Ok(DataType::Float64),
                PredictOutput::Probability | PredictOutput::Probabilities => {
                    ModelType::no_probability(output, model, self.name)
                }
            },
        }
    }

    fn predict(
        &self,
        model: &BoundModel,
        output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let (objective, bases, trees) = trees::parts(&model.params, &model.name)?;
        let z = trees::output_margins(trees, &bases, columns);
        match self.task {
            Task::Regression => Ok(Arc::new(Float64Array::from(z))),
            Task::Classification => model.classify(output, self.scores(objective, z)),
        }
    }

    /// A NULL feature takes the default direction training learned.
    fn takes_nulls(&self) -> bool {
        true
    }

    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
        trees::describe(params)
    }

    fn importance(&self, params: &ModelParams, width: usize) -> Option<Importance> {
        trees::importance(params, width)
    }

    /// XGBoost's JSON model format: XGBoost loads it and predicts ember's
    /// margins (a forest classifier's margin is its probability: it exports
    /// as a `reg:squarederror` forest).
    fn export(&self, model: &Model) -> Result<serde_json::Value> {
        let (objective, bases, trees) = trees::parts(&model.params, &model.name)?;
        if let Objective::ClassShares { .. } = objective {
            return plan_err!(
                "EXPORT MODEL: '{}' is a multiclass random forest, which XGBoost's format cannot hold",
                model.name
            );
        }
        let combine = match self.ensemble {
            Ensemble::Boosted => Combine::Boosted,
            Ensemble::Forest => Combine::Forest,
        };
        let mut exported =
            trees::xgboost_model(objective, &bases, trees, &model.feature_columns(), combine);
        if !model.classes.is_empty() {
            // XGBoost's attributes are text: the label's classes, in order.
            exported["learner"]["attributes"]["classes"] =
                serde_json::Value::String(serde_json::json!(model.classes).to_string());
        }
        Ok(exported)
    }

    /// Bins the rows once, grows the trees, recording the training loss after
    /// each, and measures the training rows from the margins growing left.
    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        let held = trees::tree_data(data, options).await?;
        let classes = data.classes().max(2);
        let label_stats = held.rows.label_stats(classes).await?;
        data.note_rows(label_stats.rows as f64);
        if self.task == Task::Classification
            && label_stats.counts.iter().sum::<u64>() != label_stats.rows
        {
            // A class index outside 0..classes (or not a whole number).
            let label = data.label_name().unwrap_or("label");
            return plan_err!(
                "label '{label}' must be 0 or 1 (or a boolean) for {}, found another value",
                self.name
            );
        }
        let objective = self.objective(classes);
        let params = trees::boost_params(options, self.bynode_default(held.cuts.len()))?;
        let mut info = Vec::new();
        let tree_done = |_, loss, held_out_loss| {
            record_with_eval(
                data,
                progress,
                self.name,
                params.trees,
                &mut info,
                loss,
                held_out_loss,
            )
        };
        let rows = held.rows.as_ref();
        let held_out = held.held_out.as_deref();
        let grown = match self.ensemble {
            Ensemble::Boosted => {
                trees::boost(rows, held_out, &held.cuts, objective, &params, tree_done).await?
            }
            Ensemble::Forest => {
                trees::forest(rows, held_out, &held.cuts, objective, &params, tree_done).await?
            }
        };
        if let Some(failure) = held.device_failure() {
            return plan_err!("device = 'cuda': a histogram on the GPU failed: {failure}");
        }
        let training = rows.margins().await?;
        // Where the rows were kept and binned (a cluster's executors), in
        // the model's `training_rounds`.
        data.note_kept_work();
        let training_metrics = self.metrics_of(objective, &training.margins, &training.labels);
        let evaluation_metrics = match held_out {
            Some(h) => {
                let margins = h.margins().await?;
                Some(self.metrics_of(objective, &margins.margins, &margins.labels))
            }
            None => None,
        };
        let (base, class_bases) = match objective.outputs() {
            1 => (grown.base[0], Vec::new()),
            _ => (0.0, grown.base),
        };
        Ok(Fitted {
            params: ModelParams::Trees {
                objective,
                base,
                class_bases,
                trees: grown.trees,
            },
            training_info: info,
            converged: true,
            training_metrics: Some(training_metrics),
            evaluation_metrics,
        })
    }
}
