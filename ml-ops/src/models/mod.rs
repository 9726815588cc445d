//! Estimators and the model format.
//!
//! ```text
//!   TrainingData (a plan: label?, features...) --Estimator::fit--> ModelParams + training info
//!                                               (one distributed aggregate per round,
//!                                                the step taken here, on the driver)
//! ```
//!
//! Each model type is one file implementing [`Estimator`]; [`estimator`] maps a
//! [`ModelType`] to it.

mod checkpoint;
mod format;
mod kmeans;
mod linear_regression;
mod logistic_regression;
mod options;
mod resident;
mod training;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{Result, plan_err};
use serde::{Deserialize, Serialize};

pub use checkpoint::Checkpoint;
pub use format::{
    Feature, InputColumn, Iteration, MODEL_FORMAT, Model, ModelParams, RoundInfo, TransformItem,
    WorkKind, WorkReport,
};
pub use options::{DataSplit, ModelOptions, NEWTON_MAX_WIDTH, Optimizer, OptionValue};
pub use resident::{KeepRows, ResidentRows};
pub use training::{
    EXECUTOR_LOST, Progress, RUN_ATTEMPTS, SilentProgress, TrainingData, collect_retrying,
    lost_an_executor, training_state,
};

/// The kinds of model ember trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    LinearRegression,
    LogisticRegression,
    #[serde(rename = "kmeans")]
    KMeans,
}

impl ModelType {
    /// Parses a `model_type` option value.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "linear_regression" | "linear_reg" => Ok(ModelType::LinearRegression),
            "logistic_regression" | "logistic_reg" => Ok(ModelType::LogisticRegression),
            "kmeans" => Ok(ModelType::KMeans),
            _ => plan_err!(
                "unknown model_type '{name}': expected 'linear_regression', 'logistic_regression' or 'kmeans'"
            ),
        }
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            ModelType::LinearRegression => "linear_regression",
            ModelType::LogisticRegression => "logistic_regression",
            ModelType::KMeans => "kmeans",
        }
    }

    /// Whether the model learns from a label.
    pub fn supervised(self) -> bool {
        !matches!(self, ModelType::KMeans)
    }
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub params: ModelParams,
    pub training_info: Vec<Iteration>,
    /// Whether training met its convergence test (false: it stopped at
    /// `max_iterations` first). Exact methods always converge.
    pub converged: bool,
}

/// A model type's training algorithm.
#[async_trait]
pub trait Estimator: Send + Sync {
    /// Trains on `data` (its label first when supervised, then its features).
    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted>;
}

/// The estimator for `model_type`.
pub fn estimator(model_type: ModelType) -> Arc<dyn Estimator> {
    match model_type {
        ModelType::LinearRegression => Arc::new(linear_regression::LinearRegression),
        ModelType::LogisticRegression => Arc::new(logistic_regression::LogisticRegression),
        ModelType::KMeans => Arc::new(kmeans::KMeans),
    }
}
