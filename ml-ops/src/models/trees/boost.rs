//! Gradient boosting: each round fits one tree per output to the gradients and
//! Hessians of the loss at the current margins (second order, as XGBoost).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grow::{Binned, GrowParams, add_tree, grow};
use super::sampling::{sample_features, sample_rows, tree_seed};
use super::tree::Tree;
use crate::kernels::histogram::RowGradient;
use crate::kernels::logistic::sigmoid;

/// The loss trees are fit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Squared error; margins are predictions.
    SquaredError,
    /// Log-loss of a 0/1 label; margins are log-odds.
    Logistic,
}

impl Objective {
    /// The margin every row starts from: the best constant.
    pub fn base_margin(self, labels: &[f64]) -> f64 {
        let mean = labels.iter().sum::<f64>() / labels.len().max(1) as f64;
        match self {
            Objective::SquaredError => mean,
            Objective::Logistic => {
                let p = mean.clamp(1e-7, 1.0 - 1e-7);
                (p / (1.0 - p)).ln()
            }
        }
    }

    /// Gradient and Hessian of each row's loss at its margin, on every core.
    fn gradients(self, margins: &[f64], labels: &[f64], out: &mut [RowGradient]) {
        out.par_chunks_mut(BLOCK_ROWS)
            .zip(margins.par_chunks(BLOCK_ROWS))
            .zip(labels.par_chunks(BLOCK_ROWS))
            .for_each(|((out, margins), labels)| self.gradients_of(margins, labels, out));
    }

    fn gradients_of(self, margins: &[f64], labels: &[f64], out: &mut [RowGradient]) {
        for ((out, m), y) in out.iter_mut().zip(margins).zip(labels) {
            *out = match self {
                Objective::SquaredError => [(m - y) as f32, 1.0],
                Objective::Logistic => {
                    let p = sigmoid(*m);
                    [(p - y) as f32, (p * (1.0 - p)).max(1e-16) as f32]
                }
            };
        }
    }

    /// The mean loss at `margins`: squared error, or log-loss; summed in
    /// blocks on every core, the blocks' sums added in order.
    pub fn loss(self, margins: &[f64], labels: &[f64]) -> f64 {
        let n = labels.len().max(1) as f64;
        let sums: Vec<f64> = margins
            .par_chunks(BLOCK_ROWS)
            .zip(labels.par_chunks(BLOCK_ROWS))
            .map(|(m, y)| self.total_loss(m, y))
            .collect();
        sums.iter().sum::<f64>() / n
    }

    /// [`Self::gradients`] at `margins`, returning [`Self::loss`] there: one
    /// pass, one exponential a row.
    fn gradients_and_loss(self, margins: &[f64], labels: &[f64], out: &mut [RowGradient]) -> f64 {
        let n = labels.len().max(1) as f64;
        let sums: Vec<f64> = out
            .par_chunks_mut(BLOCK_ROWS)
            .zip(margins.par_chunks(BLOCK_ROWS))
            .zip(labels.par_chunks(BLOCK_ROWS))
            .map(|((out, margins), labels)| {
                let mut total = 0.0;
                for ((out, &m), &y) in out.iter_mut().zip(margins).zip(labels) {
                    total += match self {
                        Objective::SquaredError => {
                            *out = [(m - y) as f32, 1.0];
                            (m - y) * (m - y)
                        }
                        Objective::Logistic => {
                            // As `sigmoid` and `total_loss`, sharing e^-|m|.
                            let (p, softplus) = if m >= 0.0 {
                                let e = (-m).exp();
                                (1.0 / (1.0 + e), m + e.ln_1p())
                            } else {
                                let e = m.exp();
                                (e / (1.0 + e), e.ln_1p())
                            };
                            *out = [(p - y) as f32, (p * (1.0 - p)).max(1e-16) as f32];
                            softplus - y * m
                        }
                    };
                }
                total
            })
            .collect();
        sums.iter().sum::<f64>() / n
    }

    fn total_loss(self, margins: &[f64], labels: &[f64]) -> f64 {
        margins
            .iter()
            .zip(labels)
            .map(|(m, y)| match self {
                Objective::SquaredError => (m - y) * (m - y),
                Objective::Logistic => {
                    // log(1 + e^m) − y·m, stable for large |m|.
                    let softplus = if *m > 0.0 {
                        m + (-m).exp().ln_1p()
                    } else {
                        m.exp().ln_1p()
                    };
                    softplus - y * m
                }
            })
            .sum()
    }
}

/// Rows a block of per-row work holds: fixed, so that sums are added in the
/// same order on any number of cores.
pub(super) const BLOCK_ROWS: usize = 64 * 1024;

/// How the trees are grown and sampled.
#[derive(Debug, Clone, Copy)]
pub struct BoostParams {
    pub trees: usize,
    pub grow: GrowParams,
    /// Fraction of rows each tree sees (1: all).
    pub subsample: f64,
    /// Fraction of features each tree may split on (1: all).
    pub colsample_bytree: f64,
    pub seed: u64,
    /// Stop after this many trees without a lower held-out loss.
    pub early_stop: Option<usize>,
}

/// Rows binned for training, with their labels and a key per row that
/// depends on its values only (samples are the same on any partitioning).
pub struct Rows {
    pub binned: Binned,
    pub labels: Vec<f64>,
    pub keys: Vec<u64>,
}

/// Rows held out of training, binned with the training rows' cuts.
pub struct HeldOut {
    pub binned: Binned,
    pub labels: Vec<f64>,
}

/// Trees, and the margin they give each training row (and held-out row).
pub struct Boosted {
    pub base: f64,
    pub trees: Vec<Tree>,
    pub margins: Vec<f64>,
    pub held_out_margins: Option<Vec<f64>>,
}

/// The loss on held-out rows as trees are added, and the count of trees
/// with the lowest.
struct Watch<'a> {
    rows: &'a HeldOut,
    margins: Vec<f64>,
    best: (usize, f64),
}

impl<'a> Watch<'a> {
    fn new(rows: &'a HeldOut, base: f64) -> Self {
        Self {
            rows,
            margins: vec![base; rows.labels.len()],
            best: (0, f64::INFINITY),
        }
    }

    /// Adds `tree` (times `scale`) and returns the held-out loss.
    fn add(&mut self, tree: &Tree, scale: f64, objective: Objective, trees: usize) -> f64 {
        add_tree(tree, &self.rows.binned, &mut self.margins, scale);
        let loss = objective.loss(&self.margins, &self.rows.labels);
        if loss < self.best.1 {
            self.best = (trees, loss);
        }
        loss
    }
}

/// Boosts `params.trees` trees on `rows`; `round_done` hears each round's
/// training loss and, with `held_out` rows, their loss. With
/// `params.early_stop`, boosting stops that many trees after the lowest
/// held-out loss and keeps the trees up to it.
pub fn boost(
    rows: &Rows,
    held_out: Option<&HeldOut>,
    objective: Objective,
    params: &BoostParams,
    mut round_done: impl FnMut(usize, f64, Option<f64>),
) -> Boosted {
    let n = rows.labels.len();
    let base = objective.base_margin(&rows.labels);
    let mut margins = vec![base; n];
    let mut gradients = vec![[0.0f32, 0.0]; n];
    let mut trees = Vec::with_capacity(params.trees);
    let mut watch = held_out.map(|h| Watch::new(h, base));
    objective.gradients(&margins, &rows.labels, &mut gradients);
    for round in 0..params.trees {
        let seed = tree_seed(params.seed, round);
        let sampled = sample_rows(&rows.keys, params.subsample, seed);
        let every = vec![true; rows.binned.width];
        let allowed = sample_features(&every, params.colsample_bytree, seed);
        let grow_params = GrowParams {
            seed,
            ..params.grow
        };
        let grown = grow(&rows.binned, &gradients, sampled, &allowed, &grow_params);
        grown.add_to(&rows.binned, &mut margins);
        trees.push(grown.tree);
        let held_out_loss = watch
            .as_mut()
            .map(|w| w.add(&trees[round], 1.0, objective, round + 1));
        // The next tree's gradients (the last tree's go unused) and this
        // one's loss, in one pass.
        let loss = objective.gradients_and_loss(&margins, &rows.labels, &mut gradients);
        round_done(round + 1, loss, held_out_loss);
        if let (Some(rounds), Some(w)) = (params.early_stop, &watch)
            && round + 1 >= w.best.0 + rounds
        {
            break;
        }
    }
    if params.early_stop.is_some()
        && let Some(w) = &mut watch
    {
        // Keep the trees up to the lowest held-out loss; take the others'
        // values back out of the margins.
        for tree in trees.drain(w.best.0..) {
            add_tree(&tree, &rows.binned, &mut margins, -1.0);
            add_tree(&tree, &w.rows.binned, &mut w.margins, -1.0);
        }
    }
    Boosted {
        base,
        trees,
        margins,
        held_out_margins: watch.map(|w| w.margins),
    }
}
