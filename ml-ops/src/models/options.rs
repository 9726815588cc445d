//! `OPTIONS (...)` of CREATE MODEL: parsed, checked against the model type, typed.

use std::collections::BTreeMap;

use datafusion::common::{Result, plan_err};
use serde::{Deserialize, Serialize};

use super::ModelType;

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
}

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

impl ModelType {
    /// Options this model type takes beyond the common ones.
    fn own_options(self) -> &'static [&'static str] {
        match self {
            ModelType::LinearRegression => &["l2"],
            ModelType::LogisticRegression => &["l2", "optimizer"],
            ModelType::KMeans => &["num_clusters"],
        }
    }
}

impl ModelOptions {
    /// Checks and types `given` (names lower-case), with defaults for the rest.
    pub fn parse(given: &[(String, OptionValue)]) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (key, value) in given {
            let key = key.to_ascii_lowercase();
            if map.insert(key.clone(), value.clone()).is_some() {
                return plan_err!("option '{key}' is given twice");
            }
        }
        let Some(model_type) = map.get("model_type") else {
            return plan_err!(
                "OPTIONS needs model_type: one of 'linear_regression', 'logistic_regression', 'kmeans'"
            );
        };
        let model_type = match model_type {
            OptionValue::Text(t) => ModelType::parse(t)?,
            other => return plan_err!("model_type must be a string, not {other}"),
        };
        for key in map.keys() {
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
        let label = text(&map, "label")?;
        match (model_type, &label) {
            (ModelType::KMeans, Some(_)) => {
                return plan_err!("kmeans is unsupervised: it takes no label option");
            }
            (ModelType::LinearRegression | ModelType::LogisticRegression, None) => {
                return plan_err!("{} needs OPTIONS (label = '<column>')", model_type.name());
            }
            _ => {}
        }
        let default_iterations = match model_type {
            ModelType::LinearRegression => 1,
            ModelType::LogisticRegression => 50,
            ModelType::KMeans => 20,
        };
        let max_iterations =
            integer(&map, "max_iterations", 1, 100_000)?.unwrap_or(default_iterations);
        let l2 = number(&map, "l2")?.unwrap_or(0.0);
        if !(l2 >= 0.0 && l2.is_finite()) {
            return plan_err!("l2 must be a finite number >= 0, not {l2}");
        }
        let optimizer = match text(&map, "optimizer")?.as_deref() {
            None | Some("auto") => Optimizer::Auto,
            Some("newton") | Some("irls") => Optimizer::Newton,
            Some("lbfgs") | Some("l-bfgs") => Optimizer::Lbfgs,
            Some(other) => {
                return plan_err!("optimizer must be 'auto', 'newton' or 'lbfgs', not '{other}'");
            }
        };
        let tolerance = number(&map, "tolerance")?.unwrap_or(match model_type {
            ModelType::KMeans => 0.0,
            _ => 1e-12,
        });
        if !(tolerance >= 0.0 && tolerance.is_finite()) {
            return plan_err!("tolerance must be a finite number >= 0, not {tolerance}");
        }
        let num_clusters = integer(&map, "num_clusters", 1, 100_000)?;
        if model_type == ModelType::KMeans && num_clusters.is_none() {
            return plan_err!("kmeans needs OPTIONS (num_clusters = <k>)");
        }
        let data_split = match text(&map, "data_split")?.as_deref() {
            None | Some("none") | Some("no_split") => DataSplit::None,
            Some("random") => DataSplit::Random,
            Some(other) => {
                return plan_err!("data_split must be 'none' or 'random', not '{other}'");
            }
        };
        let eval_fraction = number(&map, "eval_fraction")?.unwrap_or(0.2);
        if !(eval_fraction > 0.0 && eval_fraction < 1.0) {
            return plan_err!(
                "eval_fraction must be between 0 and 1 (exclusive), not {eval_fraction}"
            );
        }
        if map.contains_key("eval_fraction") && data_split == DataSplit::None {
            return plan_err!("eval_fraction needs data_split = 'random'");
        }
        let seed = integer(&map, "seed", 0, i64::MAX as u64)?.unwrap_or(0) as u64;
        let device = text(&map, "device")?.unwrap_or_else(|| "auto".to_string());
        if !["auto", "cpu", "cuda"].contains(&device.as_str()) {
            return plan_err!("device must be 'auto', 'cpu' or 'cuda', not '{device}'");
        }
        Ok(Self {
            model_type,
            label,
            max_iterations: max_iterations as usize,
            l2,
            optimizer,
            tolerance,
            num_clusters: num_clusters.unwrap_or(0) as usize,
            data_split,
            eval_fraction,
            seed,
            device,
        })
    }
}

fn text(map: &BTreeMap<String, OptionValue>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(OptionValue::Text(t)) => Ok(Some(t.clone())),
        Some(other) => plan_err!("option {key} must be a string, not {other}"),
    }
}

fn number(map: &BTreeMap<String, OptionValue>, key: &str) -> Result<Option<f64>> {
    match map.get(key) {
        None => Ok(None),
        Some(OptionValue::Number(n)) => Ok(Some(*n)),
        Some(other) => plan_err!("option {key} must be a number, not {other}"),
    }
}

fn integer(
    map: &BTreeMap<String, OptionValue>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>> {
    match number(map, key)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(Some(n as u64)),
        Some(n) => plan_err!("option {key} must be a whole number from {min} to {max}, not {n}"),
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
