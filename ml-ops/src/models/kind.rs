//! What a model type is: one trait, [`ModelKind`], that each type's file
//! implements, and [`ModelType`], the handle to a registered one that models,
//! options and bound `predict` calls carry.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::options::GivenOptions;
use super::{Fitted, Model, ModelOptions, ModelParams, Progress, RoundSpec, TrainingData};
use crate::kernels::FeatureColumns;

/// What a model type learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// Nothing: it finds structure in the features (clustering).
    None,
    /// A number to predict (regression).
    Number,
    /// A class to predict (classification): numbers 0/1, booleans or text.
    Classes,
}

/// Which metrics EVALUATE reports for a model type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFamily {
    Regression,
    Classification,
    Clustering,
}

impl MetricsFamily {
    /// The metric names, in output order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            MetricsFamily::Regression => &["rmse", "mae", "r2"],
            MetricsFamily::Classification => &[
                "accuracy",
                "precision",
                "recall",
                "f1",
                "log_loss",
                "roc_auc",
            ],
            MetricsFamily::Clustering => &["inertia", "davies_bouldin"],
        }
    }

    /// `values` (in [`Self::names`] order) with their names.
    pub fn named(self, values: Vec<Option<f64>>) -> Vec<(&'static str, Option<f64>)> {
        self.names().iter().copied().zip(values).collect()
    }
}

/// Which of the prediction functions is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PredictOutput {
    /// `predict`: the value, class or cluster.
    Value,
    /// `predict_proba`: the probability of class 1 (binary) or of the
    /// predicted class (multiclass).
    Probability,
    /// `predict_probabilities`: every class with its probability.
    Probabilities,
}

impl PredictOutput {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            PredictOutput::Value => "predict",
            PredictOutput::Probability => "predict_proba",
            PredictOutput::Probabilities => "predict_probabilities",
        }
    }
}

/// What a bound `predict` call carries: the parameters, not the model's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundModel {
    pub name: String,
    pub model_type: ModelType,
    pub params: ModelParams,
    pub features: Vec<String>,
    pub width: usize,
    /// The call as written (`predict('churn', tenure, plan)`), kept as the
    /// expression's name so that plan schemas do not change on binding.
    pub display: String,
    /// A classifier's classes as text, in the label's order (none for a 0/1
    /// label), and the label's type (see [`super::classes`]).
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub label_type: Option<String>,
}

/// One model type, whole: the options it takes, how it trains, how its
/// parameters are checked, applied and shown. Adding a type is a file
/// implementing this and a line in [`super::REGISTRY`].
#[async_trait]
pub trait ModelKind: Send + Sync + 'static {
    /// The `model_type` option value, and the name models are stored under.
    fn name(&self) -> &'static str;

    /// Other spellings `model_type` accepts.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// What it learns from.
    fn label(&self) -> LabelKind;

    /// Whether a classifier of this type learns more than two classes.
    fn multiclass(&self) -> bool {
        false
    }

    /// Which metrics EVALUATE reports.
    fn metrics(&self) -> MetricsFamily;

    /// Options it takes beyond the common ones (`model_type`, `label`,
    /// `max_iterations`, `tolerance`, `data_split`, `eval_fraction`, `seed`, `device`).
    fn own_options(&self) -> &'static [&'static str];

    /// Reads and checks its own options from `given` into `options` (defaults
    /// already there), and checks the common ones as they apply to it.
    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()>;

    /// `max_iterations` when not given.
    fn default_iterations(&self) -> usize;

    /// `tolerance` when not given.
    fn default_tolerance(&self) -> f64 {
        1e-12
    }

    /// Whether training reads the rows more than once (they are then kept in
    /// memory or on the executors, and the training checkpointed).
    fn iterative(&self) -> bool {
        true
    }

    /// Trains on `data` (its label first when supervised, then its features).
    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted>;

    /// The round EXPLAIN CREATE MODEL shows: the first one training runs, over
    /// features `width` wide and a label of `classes` classes (0 for no
    /// classifier); `None` when training reads the rows once and works on them
    /// where it holds them (EXPLAIN then shows that read).
    fn first_round(
        &self,
        width: usize,
        classes: usize,
        options: &ModelOptions,
    ) -> Option<RoundSpec>;

    /// Why `params` are not this type's or do not fit `width` features, if so.
    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String>;

    /// The type `output` returns for a model whose label had `label_type`
    /// (named classes), or an error naming `model` when it has no such output.
    fn output_type(
        &self,
        output: PredictOutput,
        model: &str,
        label_type: Option<&str>,
    ) -> Result<DataType>;

    /// `output` for each row of `columns` (rows without NULL features).
    fn predict(
        &self,
        model: &BoundModel,
        output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef>;

    /// Whether `predict` takes rows with NULL features (trees send them a
    /// learned way); otherwise such rows are predicted as NULL.
    fn takes_nulls(&self) -> bool {
        false
    }

    /// The (property, value) rows DESCRIBE MODEL shows for `params`, as JSON values.
    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)>;

    /// What `feature_importance` shows for `params` over `width` feature
    /// columns; `None` for a type without a notion of it.
    fn importance(&self, _params: &ModelParams, _width: usize) -> Option<Importance> {
        None
    }

    /// What EXPORT MODEL writes for `model`: unless a type has a format of
    /// its own (trees: XGBoost's), the type, the feature columns, the classes
    /// and the parameters as model.json holds them.
    fn export(&self, model: &Model) -> Result<serde_json::Value> {
        let mut out = serde_json::json!({
            "model_type": self.name(),
            "features": model.feature_columns(),
        });
        if !model.classes.is_empty() {
            out["classes"] = serde_json::json!(model.classes);
        }
        if let serde_json::Value::Object(params) = serde_json::to_value(&model.params)
            .map_err(|e| datafusion::error::DataFusionError::Internal(e.to_string()))?
        {
            for (key, value) in params {
                out[key] = value;
            }
        }
        Ok(out)
    }
}

/// `feature_importance`'s measures: their names, and one row of them per
/// feature column (NULL where a measure is undefined, as a mean of nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    pub measures: &'static [&'static str],
    pub rows: Vec<Vec<Option<f64>>>,
}

/// A registered model type. Stored and sent as its name.
#[derive(Clone, Copy)]
pub struct ModelType(&'static dyn ModelKind);

impl ModelType {
    /// The type a `model_type` option value (or an alias) names.
    pub fn parse(given: &str) -> Result<Self> {
        let name = given.to_ascii_lowercase();
        let found = super::REGISTRY
            .iter()
            .find(|k| k.name() == name || k.aliases().contains(&name.as_str()));
        match found {
            Some(kind) => Ok(Self(*kind)),
            None => plan_err!(
                "unknown model_type '{given}': expected one of {}",
                Self::all_names()
            ),
        }
    }

    /// Every type's name, quoted, for messages.
    pub fn all_names() -> String {
        let names: Vec<String> = super::REGISTRY
            .iter()
            .map(|k| format!("'{}'", k.name()))
            .collect();
        names.join(", ")
    }

    /// The classifiers' names, `a, b or c`, for messages.
    pub fn classifier_names() -> String {
        let names: Vec<&str> = super::REGISTRY
            .iter()
            .filter(|k| k.label() == LabelKind::Classes)
            .map(|k| k.name())
            .collect();
        match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The error for `output` (a probability) on `model`, a `kind` that is
    /// no classifier.
    pub fn no_probability<T>(output: PredictOutput, model: &str, kind: &str) -> Result<T> {
        plan_err!(
            "{} needs a {} model; '{model}' is {kind}",
            output.name(),
            Self::classifier_names()
        )
    }

    /// The multiclass classifiers' names, `a or b`, for messages.
    pub fn multiclass_names() -> String {
        let names: Vec<&str> = super::REGISTRY
            .iter()
            .filter(|k| k.multiclass())
            .map(|k| k.name())
            .collect();
        names.join(" or ")
    }

    /// Whether the model learns from a label.
    pub fn supervised(self) -> bool {
        self.0.label() != LabelKind::None
    }
}

impl Deref for ModelType {
    type Target = dyn ModelKind;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for ModelType {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for ModelType {}

impl Hash for ModelType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl fmt::Debug for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Serialize for ModelType {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for ModelType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ModelType::parse(&name).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown model_type '{name}' (this ember knows {})",
                ModelType::all_names()
            ))
        })
    }
}
