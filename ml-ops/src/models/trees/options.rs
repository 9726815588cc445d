//! The options of the tree model types: parsed, checked, defaults filled in.

use datafusion::common::{Result, exec_err, plan_err};
use serde::{Deserialize, Serialize};

use super::boost::BoostParams;
use super::grow::GrowParams;
use crate::models::options::GivenOptions;
use crate::models::{DataSplit, ModelOptions};

/// The options of tree models, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeOptions {
    pub max_depth: usize,
    pub learning_rate: f64,
    pub min_split_loss: f64,
    pub min_child_weight: f64,
    pub max_bins: usize,
    /// Boosting: the fraction of rows each tree sees. Forests: the mean
    /// number of times a row is drawn into a tree's bootstrap sample.
    pub subsample: f64,
    pub colsample_bytree: f64,
    /// `None`: every feature for boosting; for forests, √width of them for a
    /// classifier and a third for a regressor (Spark's `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colsample_bynode: Option<f64>,
    /// Boosting stops after this many trees without a lower loss on the
    /// held-out rows, and keeps the trees up to the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<usize>,
}

/// Options the boosted tree types take beyond the common ones.
pub const BOOSTED_OPTIONS: &[&str] = &[
    "num_trees",
    "max_depth",
    "learning_rate",
    "l2",
    "min_split_loss",
    "min_child_weight",
    "max_bins",
    "subsample",
    "colsample_bytree",
    "colsample_bynode",
    "early_stop",
];

/// Options the random forest types take beyond the common ones.
pub const FOREST_OPTIONS: &[&str] = &[
    "num_trees",
    "max_depth",
    "l2",
    "min_split_loss",
    "min_child_weight",
    "max_bins",
    "subsample",
    "colsample_bynode",
];

/// How deep a forest's trees grow unless `max_depth` says otherwise: deeper
/// than boosting's, as averaging tames deep trees' variance.
pub const FOREST_MAX_DEPTH: usize = 10;

/// Reads the boosted tree options into `options`.
pub fn parse_boosted(given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
    let learning_rate = given.number("learning_rate")?.unwrap_or(0.3);
    if !(learning_rate > 0.0 && learning_rate.is_finite()) {
        return plan_err!("learning_rate must be a number > 0, not {learning_rate}");
    }
    parse_trees(given, options, 6, 1.0, learning_rate)?;
    let early_stop = given.integer("early_stop", 1, 100_000)?.map(|n| n as usize);
    if early_stop.is_some() && options.data_split != DataSplit::Random {
        return plan_err!(
            "early_stop needs data_split = 'random': it counts trees without a lower loss on the held-out rows"
        );
    }
    if let Some(trees) = &mut options.trees {
        trees.early_stop = early_stop;
    }
    Ok(())
}

/// Reads the random forest options into `options`.
pub fn parse_forest(given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
    // Averaging needs no shrinkage; the trees fit their rows fully (l2 = 0).
    parse_trees(given, options, FOREST_MAX_DEPTH, 0.0, 1.0)
}

fn parse_trees(
    given: &GivenOptions,
    options: &mut ModelOptions,
    default_depth: usize,
    default_l2: f64,
    learning_rate: f64,
) -> Result<()> {
    match (
        given.integer("num_trees", 1, 100_000)?,
        given.has("max_iterations"),
    ) {
        (Some(_), true) => {
            return plan_err!(
                "give num_trees or max_iterations, not both: each is the number of trees"
            );
        }
        (Some(trees), false) => options.max_iterations = trees as usize,
        (None, _) => {}
    }
    options.l2 = given.non_negative("l2")?.unwrap_or(default_l2);
    let max_depth = match given.number("max_depth")? {
        None => default_depth,
        Some(d) if d.fract() == 0.0 && (1.0..=16.0).contains(&d) => d as usize,
        Some(d) => return plan_err!("max_depth must be a whole number from 1 to 16, not {d}"),
    };
    let max_bins = match given.number("max_bins")? {
        None => 256,
        Some(b) if b.fract() == 0.0 && (2.0..=256.0).contains(&b) => b as usize,
        Some(b) => return plan_err!("max_bins must be a whole number from 2 to 256, not {b}"),
    };
    let fraction = |key: &str| -> Result<Option<f64>> {
        match given.number(key)? {
            None => Ok(None),
            Some(v) if v > 0.0 && v <= 1.0 => Ok(Some(v)),
            Some(v) => plan_err!("{key} must be in (0, 1], not {v}"),
        }
    };
    options.trees = Some(TreeOptions {
        max_depth,
        learning_rate,
        min_split_loss: given.non_negative("min_split_loss")?.unwrap_or(0.0),
        min_child_weight: given.non_negative("min_child_weight")?.unwrap_or(1.0),
        max_bins,
        subsample: fraction("subsample")?.unwrap_or(1.0),
        colsample_bytree: fraction("colsample_bytree")?.unwrap_or(1.0),
        colsample_bynode: fraction("colsample_bynode")?,
        early_stop: None,
    });
    Ok(())
}

/// What growing the trees needs from the options; `bynode_default` is the
/// fraction of features a node samples when `colsample_bynode` is not given.
pub fn boost_params(options: &ModelOptions, bynode_default: f64) -> Result<BoostParams> {
    let Some(trees) = &options.trees else {
        return exec_err!("tree options missing");
    };
    Ok(BoostParams {
        trees: options.max_iterations,
        grow: GrowParams {
            max_depth: trees.max_depth,
            l2: options.l2,
            min_split_loss: trees.min_split_loss,
            min_child_weight: trees.min_child_weight,
            learning_rate: trees.learning_rate,
            colsample_bynode: trees.colsample_bynode.unwrap_or(bynode_default),
            seed: options.seed,
        },
        subsample: trees.subsample,
        colsample_bytree: trees.colsample_bytree,
        seed: options.seed,
        early_stop: trees.early_stop,
    })
}
