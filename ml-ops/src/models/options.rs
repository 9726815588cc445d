//! `OPTIONS (...)` of CREATE MODEL: parsed, checked against the model type, typed.

use std::collections::BTreeMap;

use datafusion::common::{Result, plan_err};
use serde::{Deserialize, Serialize};

use super::ModelType;
use super::trees::TreeOptions;

/// One option value as written in SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Number(n) => write!(f, "{n}"),
            OptionValue::Text(s) => write!(f, "'{s}'"),
        }
    }
}

/// How rows are held out for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSplit {
    /// Train on every row.
    None,
    /// Hold out `eval_fraction` of the rows, chosen by a seeded hash of each row.
    Random,
}

/// Which optimizer logistic regression uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Newton for up to [`NEWTON_MAX_WIDTH`] features, L-BFGS above.
    Auto,
    Newton,
    Lbfgs,
}

/// Widest feature vector `optimizer = 'auto'` still solves by Newton steps
/// (a (d+1)² Hessian per partition and a dense solve per step).
pub const NEWTON_MAX_WIDTH: usize = 256;

/// The options of a model, typed, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOptions {
    pub model_type: ModelType,
    pub label: Option<String>,
    pub max_iterations: usize,
    pub l2: f64,
    pub optimizer: Optimizer,
    pub tolerance: f64,
    pub num_clusters: usize,
    pub data_split: DataSplit,
    pub eval_fraction: f64,
    pub seed: u64,
    pub device: String,
    /// Tree models' own options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<TreeOptions>,
}

/// The session setting that caps `max_iterations`, whatever a model asks for.
pub const MAX_ITERATIONS_SETTING: &str = "ember.ml.max_iterations";

/// Options every model type takes.
const COMMON: &[&str] = &[
    "model_type",
    "label",
    "max_iterations",
    "data_split",
    "eval_fraction",
    "seed",
    "device",
    "tolerance",
];

/// The options as written, by lower-case name, with typed readers that say
/// which option is wrong and why.
#[derive(Debug, Clone, Default)]
pub struct GivenOptions(BTreeMap<String, OptionValue>);

impl GivenOptions {
    /// `given`, names lower-cased; an option given twice is an error.
    pub fn new(given: &[(String, OptionValue)]) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (key, value) in given {
            let key = key.to_ascii_lowercase();
            if map.insert(key.clone(), value.clone()).is_some() {
                return plan_err!("option '{key}' is given twice");
            }
        }
        Ok(Self(map))
    }

    /// Whether `key` was given.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// A text option.
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(OptionValue::Text(t)) => Ok(Some(t.clone())),
            Some(other) => plan_err!("option {key} must be a string, not {other}"),
        }
    }

    /// A numeric option.
    pub fn number(&self, key: &str) -> Result<Option<f64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(OptionValue::Number(n)) => Ok(Some(*n)),
            Some(other) => plan_err!("option {key} must be a number, not {other}"),
        }
    }

    /// A whole-number option from `min` to `max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.number(key)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(Some(n as u64)),
            Some(n) => {
                plan_err!("option {key} must be a whole number from {min} to {max}, not {n}")
            }
        }
    }

    /// A finite number option that is at least 0.
    pub fn non_negative(&self, key: &str) -> Result<Option<f64>> {
        match self.number(key)? {
            Some(v) if !(v >= 0.0 && v.is_finite()) => {
                plan_err!("{key} must be a finite number >= 0, not {v}")
            }
            v => Ok(v),
        }
    }
}

impl ModelOptions {
    /// Checks and types `given`, with defaults for the rest: the common options
    /// here, the model type's own in its file ([`super::ModelKind::parse_options`]).
    pub fn parse(given: &[(String, OptionValue)]) -> Result<Self> {
        let given = GivenOptions::new(given)?;
        let Some(model_type) = given.text("model_type")? else {
            return plan_err!(
                "OPTIONS needs model_type: one of {}",
                ModelType::all_names()
            );
        };
        let model_type = ModelType::parse(&model_type)?;
        for key in given.0.keys() {
            if !COMMON.contains(&key.as_str()) && !model_type.own_options().contains(&key.as_str())
            {
                let mut known: Vec<&str> = COMMON.to_vec();
                known.extend(model_type.own_options());
                return plan_err!(
                    "unknown option '{key}' for {}: expected one of {}",
                    model_type.name(),
                    known.join(", ")
                );
            }
        }
        let label = given.text("label")?;
        match (model_type.supervised(), &label) {
            (false, Some(_)) => {
                return plan_err!(
                    "{} is unsupervised: it takes no label option",
                    model_type.name()
                );
            }
            (true, None) => {
                return plan_err!("{} needs OPTIONS (label = '<column>')", model_type.name());
            }
            _ => {}
        }
        let max_iterations = given
            .integer("max_iterations", 1, 100_000)?
            .map_or(model_type.default_iterations(), |n| n as usize);
        let tolerance = given
            .non_negative("tolerance")?
            .unwrap_or(model_type.default_tolerance());
        let data_split = match given.text("data_split")?.as_deref() {
            None | Some("none") | Some("no_split") => DataSplit::None,
            Some("random") => DataSplit::Random,
            Some(other) => {
                return plan_err!("data_split must be 'none' or 'random', not '{other}'");
            }
        };
        let eval_fraction = given.number("eval_fraction")?.unwrap_or(0.2);
        if !(eval_fraction > 0.0 && eval_fraction < 1.0) {
            return plan_err!(
                "eval_fraction must be between 0 and 1 (exclusive), not {eval_fraction}"
            );
        }
        if given.has("eval_fraction") && data_split == DataSplit::None {
            return plan_err!("eval_fraction needs data_split = 'random'");
        }
        let seed = given.integer("seed", 0, i64::MAX as u64)?.unwrap_or(0);
        let device = given.text("device")?.unwrap_or_else(|| "auto".to_string());
        if !["auto", "cpu", "cuda"].contains(&device.as_str()) {
            return plan_err!("device must be 'auto', 'cpu' or 'cuda', not '{device}'");
        }
        let mut options = Self {
            model_type,
            label,
            max_iterations,
            l2: 0.0,
            optimizer: Optimizer::Auto,
            tolerance,
            num_clusters: 0,
            data_split,
            eval_fraction,
            seed,
            device,
            trees: None,
        };
        model_type.parse_options(&given, &mut options)?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, OptionValue)]) -> Result<ModelOptions> {
        let given: Vec<(String, OptionValue)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ModelOptions::parse(&given)
    }

    fn t(s: &str) -> OptionValue {
        OptionValue::Text(s.into())
    }

    #[test]
    fn defaults_and_errors() {
        let o = opts(&[("model_type", t("logistic_regression")), ("label", t("y"))]).unwrap();
        assert_eq!(o.max_iterations, 50);
        assert_eq!(o.data_split, DataSplit::None);
        let err = |pairs: &[(&str, OptionValue)]| opts(pairs).unwrap_err().to_string();
        assert!(err(&[("label", t("y"))]).contains("needs model_type"));
        assert!(err(&[("model_type", t("svm"))]).contains("unknown model_type 'svm'"));
        assert!(
            err(&[
                ("model_type", t("kmeans")),
                ("num_clusters", OptionValue::Number(2.0)),
                ("l2", OptionValue::Number(1.0))
            ])
            .contains("unknown option 'l2' for kmeans")
        );
        assert!(err(&[("model_type", t("linear_regression"))]).contains("needs OPTIONS (label"));
        assert!(
            err(&[
                ("model_type", t("kmeans")),
                ("num_clusters", OptionValue::Number(2.5))
            ])
            .contains("whole number")
        );
        assert!(
            err(&[
                ("model_type", t("linear_regression")),
                ("label", t("y")),
                ("l2", t("x"))
            ])
            .contains("l2 must be a number")
        );
        assert!(
            err(&[
                ("model_type", t("linear_regression")),
                ("label", t("y")),
                ("data_split", t("random")),
                ("eval_fraction", OptionValue::Number(1.5))
            ])
            .contains("eval_fraction")
        );
    }
}
