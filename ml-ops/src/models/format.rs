//! `model.json`: everything needed to describe a model and to apply it.

use std::collections::BTreeMap;

use datafusion::common::{Result, exec_err};
use serde::{Deserialize, Serialize};

use super::trees::{Objective, Tree};
use super::{ModelOptions, ModelType, OptionValue};

/// Version of the `model.json` layout; readers refuse newer ones.
pub const MODEL_FORMAT: u32 = 1;

/// A raw input column of the training query (what `predict` takes, in order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputColumn {
    pub name: String,
    /// Arrow type, as displayed (`Float64`, `Utf8`, ...).
    pub data_type: String,
}

/// One TRANSFORM output, as SQL over the input columns with fitted statistics
/// written in (`standard_scale(x, 3.5, 1.25)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformItem {
    pub name: String,
    pub sql: String,
}

/// One feature the estimator sees; `width` > 1 for vectors (`one_hot`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub width: usize,
}

/// One training iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    pub iteration: usize,
    pub loss: f64,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
    /// The loss on the held-out rows after this iteration, where training
    /// measures it (tree models with `data_split = 'random'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

/// What one executor did in one piece of a training's distributed work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkReport {
    /// Where it ran: an executor's training endpoint, or `embedded`.
    pub executor: String,
    /// Partitions of the training rows it covered.
    pub partitions: usize,
    pub rows: u64,
    /// Where the kernels ran: `cpu`, `cuda`, or `cpu+cuda` when batches went both ways.
    pub device: String,
    /// Seconds the work took where it ran.
    pub seconds: f64,
    /// Seconds from sending the request to having the answer, at the driver.
    pub round_trip_seconds: f64,
    /// Payload bytes of the request and of the answer.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes of training rows it now holds (packing only).
    pub bytes_kept: u64,
}

/// What a piece of distributed training work was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Rows read, transformed and packed where they are kept.
    Keep,
    /// The rows with the smallest seeded hash (an initial sample).
    Sample,
    /// Statistics over every row.
    Round,
}

impl WorkKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkKind::Keep => "keep",
            WorkKind::Sample => "sample",
            WorkKind::Round => "round",
        }
    }
}

/// One executor's part in one round of training: a row of `training_rounds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundInfo {
    /// The training's rounds numbered from 1 in the order they ran.
    pub round: usize,
    /// The iteration the round belongs to.
    pub iteration: usize,
    pub kind: WorkKind,
    #[serde(flatten)]
    pub work: WorkReport,
}

/// The learned parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelParams {
    /// `y = coefficients · x + intercept` (linear), or its sigmoid (logistic).
    Linear {
        coefficients: Vec<f64>,
        intercept: f64,
    },
    /// One centroid per cluster.
    Centroids { centroids: Vec<Vec<f64>> },
    /// Multinomial logistic regression: class c's margin is
    /// `coefficients[c] · x + intercepts[c]`, its probability their softmax.
    Softmax {
        coefficients: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
    },
    /// Boosted trees: a row's margin is `base` plus every tree's value (the
    /// log-odds of class 1 for a binary classifier). For `k` classes (softmax)
    /// tree `i` belongs to class `i % k`, whose margin starts at
    /// `class_bases[i % k]`.
    Trees {
        objective: Objective,
        base: f64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        class_bases: Vec<f64>,
        trees: Vec<Tree>,
    },
}

impl ModelParams {
    /// Why these are not linear parameters for `width` features, if so.
    pub fn check_linear(&self, width: usize) -> std::result::Result<(), String> {
        let ModelParams::Linear {
            coefficients,
            intercept,
        } = self
        else {
            return Err("parameters do not match the model type".into());
        };
        if coefficients.len() != width {
            return Err(format!(
                "{} coefficients for {width} features",
                coefficients.len()
            ));
        }
        if coefficients
            .iter()
            .chain([intercept])
            .any(|c| !c.is_finite())
        {
            return Err("a coefficient is not a finite number".into());
        }
        Ok(())
    }

    /// The classes of a multiclass model's parameters; `None` for the others.
    pub fn class_count(&self) -> Option<usize> {
        match self {
            ModelParams::Softmax { intercepts, .. } => Some(intercepts.len()),
            ModelParams::Trees { objective, .. } if objective.outputs() > 1 => {
                Some(objective.outputs())
            }
            _ => None,
        }
    }

    /// Why these are not softmax parameters for `width` features, if so.
    pub fn check_softmax(&self, width: usize) -> std::result::Result<(), String> {
        let ModelParams::Softmax {
            coefficients,
            intercepts,
        } = self
        else {
            return Err("parameters do not match the model type".into());
        };
        if coefficients.len() != intercepts.len() || coefficients.len() < 3 {
            return Err(format!(
                "{} coefficient rows and {} intercepts: one of each per class, 3 or more",
                coefficients.len(),
                intercepts.len()
            ));
        }
        if let Some(row) = coefficients.iter().find(|c| c.len() != width) {
            return Err(format!("{} coefficients for {width} features", row.len()));
        }
        if coefficients
            .iter()
            .flatten()
            .chain(intercepts)
            .any(|c| !c.is_finite())
        {
            return Err("a coefficient is not a finite number".into());
        }
        Ok(())
    }
}

/// A trained model: the content of `NAME/v{N}/model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    pub name: String,
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub model_type: ModelType,
    /// The options as written in CREATE MODEL.
    pub options_given: BTreeMap<String, OptionValue>,
    /// The options with defaults filled in.
    pub options: ModelOptions,
    /// The training query, as SQL.
    pub query: String,
    /// Every column of the training query (the data split hashes them all).
    pub query_columns: Vec<String>,
    pub inputs: Vec<InputColumn>,
    /// Empty when the model has no TRANSFORM: the inputs are the features.
    pub transform: Vec<TransformItem>,
    pub features: Vec<Feature>,
    /// A classifier's classes as text, in the label's order (class 0, 1,
    /// ...). Empty for a label of numbers 0 and 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The label's Arrow type when `classes` is set (`Utf8`, `Boolean`,
    /// `Int64`, ...): what `predict` returns (text as `Utf8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_type: Option<String>,
    pub params: ModelParams,
    pub training_info: Vec<Iteration>,
    /// Every round's work, per executor (absent in models written before it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<RoundInfo>,
    /// Whether training met its convergence test before `max_iterations`.
    #[serde(default = "converged_unknown")]
    pub converged: bool,
    /// Passes over the training data, initialisation included.
    pub passes: usize,
    pub training_rows: u64,
    pub metrics: BTreeMap<String, f64>,
    /// "evaluation split" or "training data".
    pub metrics_on: String,
    /// Hash of the training query's text and row count, to tell data sets apart.
    pub data_fingerprint: String,
}

/// Models written before `converged` was recorded are taken as converged.
fn converged_unknown() -> bool {
    true
}

impl Model {
    /// The name of each feature column: a feature `v` of width 3 has
    /// columns `v[0]`, `v[1]`, `v[2]`.
    pub fn feature_columns(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|f| match f.width {
                1 => vec![f.name.clone()],
                w => (0..w).map(|i| format!("{}[{i}]", f.name)).collect(),
            })
            .collect()
    }

    /// Parses and checks a `model.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let model: Model = serde_json::from_slice(bytes).map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!("invalid model.json: {e}"))
        })?;
        if model.format > MODEL_FORMAT {
            return exec_err!(
                "model.json has format {}, this ember reads up to {MODEL_FORMAT}",
                model.format
            );
        }
        model.check()?;
        Ok(model)
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| datafusion::error::DataFusionError::External(e.into()))
    }

    /// Features per row after vectors are flattened.
    pub fn width(&self) -> usize {
        self.features.iter().map(|f| f.width).sum()
    }

    /// Checks that the parameters fit the features (a hand-edited file may not).
    pub fn check(&self) -> Result<()> {
        let width = self.width();
        let bad = |what: String| exec_err!("model '{}' is inconsistent: {what}", self.name);
        self.model_type
            .check_params(&self.params, width)
            .or_else(bad)?;
        let classes = self.params.class_count().unwrap_or(2);
        if !self.classes.is_empty() && self.classes.len() != classes {
            return bad(format!(
                "{} classes named, its parameters have {classes}",
                self.classes.len()
            ));
        }
        if classes > 2 && self.classes.is_empty() {
            return bad(format!("{classes} classes, none named"));
        }
        if !self.transform.is_empty() && self.transform.len() != self.features.len() {
            return bad("transform and features differ in length".into());
        }
        // JSON has no NaN or infinity: such a value would be written as null and
        // make the file unreadable.
        if let Some((name, _)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return bad(format!("metric '{name}' is not a finite number"));
        }
        if self.training_info.iter().any(|i| !i.loss.is_finite()) {
            return bad("a training loss is not a finite number".into());
        }
        Ok(())
    }
}
