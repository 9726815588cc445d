//! Estimators and the model format.
//!
//! ```text
//!   TrainingData (a plan: label?, features...) --ModelKind::fit--> ModelParams + training info
//!                                               (one distributed aggregate per round,
//!                                                the step taken here, on the driver)
//! ```
//!
//! Each model type is one file implementing [`ModelKind`]: its options, its
//! training, how `predict` applies it and what DESCRIBE MODEL shows (the four
//! tree types, which differ in two choices only, share `tree_models.rs`). The
//! [`REGISTRY`] lists them; a [`ModelType`] is a handle to one.

mod checkpoint;
mod classes;
mod format;
mod kind;
mod kmeans;
mod linear_regression;
mod logistic_regression;
mod options;
mod resident;
mod round;
mod training;
mod tree_models;
pub mod trees;

pub use checkpoint::Checkpoint;
pub use classes::{
    ClassScores, MAX_CLASSES, argmax, class_type, classifier_output_type, softmax_in_place,
};
pub use format::{
    Feature, InputColumn, Iteration, MODEL_FORMAT, Model, ModelParams, RoundInfo, TransformItem,
    WorkKind, WorkReport,
};
pub use kind::{
    BoundModel, Importance, LabelKind, MetricsFamily, ModelKind, ModelType, PredictOutput,
};
pub use options::{
    DataSplit, GivenOptions, MAX_ITERATIONS_SETTING, ModelOptions, NEWTON_MAX_WIDTH, Optimizer,
    OptionValue,
};
pub use resident::{KeepRows, ResidentRows};
pub use round::{
    RoundSpec, RoundTally, TRAIN_ROUND, TrainRoundFunc, device_name, stats_scalar, stats_values,
};
pub use training::{Progress, Retry, SilentProgress, TrainingData, training_state};

/// Every model type ember trains. Adding one is a file implementing
/// [`ModelKind`] and a line here.
static REGISTRY: &[&dyn ModelKind] = &[
    &linear_regression::LinearRegression,
    &logistic_regression::LogisticRegression,
    &kmeans::KMeans,
    &tree_models::BOOSTED_TREE_REGRESSOR,
    &tree_models::BOOSTED_TREE_CLASSIFIER,
    &tree_models::RANDOM_FOREST_REGRESSOR,
    &tree_models::RANDOM_FOREST_CLASSIFIER,
];

/// What training produced.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub params: ModelParams,
    pub training_info: Vec<Iteration>,
    /// Whether training met its convergence test (false: it stopped at
    /// `max_iterations` first). Exact methods always converge.
    pub converged: bool,
    /// The metrics over the training rows, in [`MetricsFamily::names`] order,
    /// when fitting left every row's prediction in memory (trees' margins):
    /// CREATE MODEL then reads and predicts the rows no second time.
    pub training_metrics: Option<Vec<Option<f64>>>,
    /// The same over the held-out rows, when fitting left their predictions
    /// in memory too.
    pub evaluation_metrics: Option<Vec<Option<f64>>>,
}
