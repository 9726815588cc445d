//! Gradient boosting: each round fits one tree per output to the gradients and
//! Hessians of the loss at the current margins (second order, as XGBoost).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grow::{Binned, GrowParams, add_tree, grow};
use super::sampling::{sample_features, sample_rows, tree_seed};
use super::tree::Tree;
use crate::kernels::histogram::RowGradient;

/// The loss trees are fit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Squared error; margins are predictions.
    SquaredError,
    /// Log-loss of a 0/1 label; margins are log-odds.
    Logistic,
    /// Softmax log-loss of a label holding class indices: a row has a margin
    /// per class, and each round grows a tree per class (as XGBoost's
    /// `multi:softprob`).
    Softmax { classes: usize },
    /// Least squares on each class's 0/1 indicator (a random forest's
    /// classes): a row has a margin per class, its share of the class.
    ClassShares { classes: usize },
}

impl Objective {
    /// Margins a row has: one per class for softmax, else one.
    pub fn outputs(self) -> usize {
        match self {
            Objective::Softmax { classes } | Objective::ClassShares { classes } => classes,
            _ => 1,
        }
    }

    /// The margins every row starts from, one per output: the best constant
    /// (for softmax the log of each class's share, centred, as XGBoost's).
    pub fn base_margins(self, labels: &[f64]) -> Vec<f64> {
        let n = labels.len().max(1) as f64;
        let mean = labels.iter().sum::<f64>() / n;
        match self {
            Objective::SquaredError => vec![mean],
            Objective::Logistic => {
                let p = mean.clamp(1e-7, 1.0 - 1e-7);
                vec![(p / (1.0 - p)).ln()]
            }
            Objective::Softmax { classes } => {
                let logs: Vec<f64> = class_shares(labels, classes)
                    .iter()
                    .map(|share| share.clamp(1e-7, 1.0).ln())
                    .collect();
                let mean = logs.iter().sum::<f64>() / classes as f64;
                logs.iter().map(|l| l - mean).collect()
            }
            Objective::ClassShares { classes } => class_shares(labels, classes),
        }
    }

    /// The gradient and Hessian of each row's loss at its margins, on every
    /// core (both laid out output by output, `outputs` × rows), returning the
    /// mean loss there: one pass, one exponential a row and output.
    fn gradients_and_loss(self, margins: &[f64], labels: &[f64], out: &mut [RowGradient]) -> f64 {
        let n = labels.len();
        // Each block of rows takes its piece of every output's slice.
        let blocks = n.div_ceil(BLOCK_ROWS);
        let mut pieces: Vec<Vec<&mut [RowGradient]>> = (0..blocks).map(|_| Vec::new()).collect();
        for output in out.chunks_mut(n.max(1)) {
            for (piece, chunk) in pieces.iter_mut().zip(output.chunks_mut(BLOCK_ROWS)) {
                piece.push(chunk);
            }
        }
        let sums: Vec<f64> = pieces
            .into_par_iter()
            .enumerate()
            .map(|(block, mut out)| {
                let start = block * BLOCK_ROWS;
                let rows = out[0].len();
                let margins_of = |c: usize| &margins[c * n + start..c * n + start + rows];
                let labels = &labels[start..start + rows];
                match self {
                    Objective::Softmax { classes } => {
                        softmax_gradients(classes, &margins_of, labels, &mut out)
                    }
                    Objective::ClassShares { classes } => (0..classes)
                        .map(|c| {
                            let indicator: Vec<f64> = labels
                                .iter()
                                .map(|y| f64::from(u8::from(*y as usize == c)))
                                .collect();
                            Objective::SquaredError.scalar_gradients(
                                margins_of(c),
                                &indicator,
                                out[c],
                            )
                        })
                        .sum(),
                    _ => self.scalar_gradients(margins_of(0), labels, out[0]),
                }
            })
            .collect();
        sums.iter().sum::<f64>() / n.max(1) as f64
    }

    /// [`Self::gradients_and_loss`] of one block of a one-output objective,
    /// returning the block's summed loss.
    fn scalar_gradients(self, margins: &[f64], labels: &[f64], out: &mut [RowGradient]) -> f64 {
        let mut total = 0.0;
        let mut logs = LogSum::default();
        for ((out, &m), &y) in out.iter_mut().zip(margins).zip(labels) {
            total += match self {
                Objective::Logistic => {
                    // As `sigmoid`; log(1 + e^m) = max(m, 0) + log(1 + e^-|m|).
                    let e = (-m.abs()).exp();
                    let p = if m >= 0.0 {
                        1.0 / (1.0 + e)
                    } else {
                        e / (1.0 + e)
                    };
                    *out = [(p - y) as f32, (p * (1.0 - p)).max(1e-16) as f32];
                    logs.add(1.0 + e);
                    m.max(0.0) - y * m
                }
                _ => {
                    *out = [(m - y) as f32, 1.0];
                    (m - y) * (m - y)
                }
            };
        }
        total + logs.total()
    }

    /// The mean loss at `margins` (output by output): squared error, or
    /// log-loss; summed in blocks on every core, the blocks' sums added in
    /// order. (Boosting's held-out rows reuse a buffer for the gradients
    /// this computes on the way: [`Watch`].)
    pub fn loss(self, margins: &[f64], labels: &[f64]) -> f64 {
        let mut scratch = vec![[0.0f32; 2]; margins.len()];
        self.gradients_and_loss(margins, labels, &mut scratch)
    }
}

/// Each class's share of `labels` (class indices below `classes`).
fn class_shares(labels: &[f64], classes: usize) -> Vec<f64> {
    let mut counts = vec![0.0; classes];
    for y in labels {
        counts[*y as usize] += 1.0;
    }
    let n = labels.len().max(1) as f64;
    counts.iter().map(|c| c / n).collect()
}

/// Softmax gradients of a block: class c's gradient `p_c − [y = c]`, its
/// Hessian `2 p_c (1 − p_c)` (XGBoost's, floored at 1e-16); returns the
/// block's summed log-loss.
fn softmax_gradients<'a>(
    classes: usize,
    margins_of: &impl Fn(usize) -> &'a [f64],
    labels: &[f64],
    out: &mut [&mut [RowGradient]],
) -> f64 {
    let mut total = 0.0;
    let mut logs = LogSum::default();
    let mut p = vec![0.0; classes];
    for (r, &y) in labels.iter().enumerate() {
        for (c, p) in p.iter_mut().enumerate() {
            *p = margins_of(c)[r];
        }
        let top = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let label = y as usize;
        let z_label = p[label];
        let mut sum = 0.0;
        for p in p.iter_mut() {
            *p = (*p - top).exp();
            sum += *p;
        }
        logs.add(sum);
        total += top - z_label;
        for (c, p) in p.iter().enumerate() {
            let p = p / sum;
            let g = p - f64::from(u8::from(c == label));
            out[c][r] = [g as f32, (2.0 * p * (1.0 - p)).max(1e-16) as f32];
        }
    }
    total + logs.total()
}

/// A sum of logarithms of numbers from 1 to 1000 (log-losses' `log Σ e^z`
/// terms), taken as the logarithm of their product, 32 factors at a time: a
/// logarithm is the costliest step of a row's loss, and the product of 32
/// such factors is far inside float64's range (1000³² = 1e96).
#[derive(Default)]
struct LogSum {
    total: f64,
    product: f64,
    factors: u32,
}

impl LogSum {
    fn add(&mut self, factor: f64) {
        if self.factors == 0 {
            self.product = factor;
        } else {
            self.product *= factor;
        }
        self.factors += 1;
        if self.factors == 32 {
            self.total += self.product.ln();
            self.factors = 0;
        }
    }

    fn total(&self) -> f64 {
        if self.factors > 0 {
            self.total + self.product.ln()
        } else {
            self.total
        }
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

/// Trees, and the margins they give each training row (and held-out row),
/// output by output (`outputs` × rows); tree `i` belongs to output
/// `i % outputs`, which starts at `base[i % outputs]`.
pub struct Boosted {
    pub base: Vec<f64>,
    pub trees: Vec<Tree>,
    pub margins: Vec<f64>,
    pub held_out_margins: Option<Vec<f64>>,
}

/// Margins laid out output by output, each starting at its base.
pub(super) fn starting_margins(base: &[f64], rows: usize) -> Vec<f64> {
    base.iter()
        .flat_map(|b| std::iter::repeat_n(*b, rows))
        .collect()
}

/// Adds (or with `scale` −1 takes out) `trees`, tree `i` to output
/// `i % outputs`'s margins of `binned`'s rows.
fn add_trees(trees: &[Tree], binned: &Binned, margins: &mut [f64], outputs: usize, scale: f64) {
    let rows = margins.len() / outputs;
    for (i, tree) in trees.iter().enumerate() {
        let output = i % outputs;
        add_tree(
            tree,
            binned,
            &mut margins[output * rows..(output + 1) * rows],
            scale,
        );
    }
}

/// The loss on held-out rows as rounds are added, and the count of rounds
/// with the lowest.
struct Watch<'a> {
    rows: &'a HeldOut,
    margins: Vec<f64>,
    /// The gradients the loss computes on the way, kept for the next round.
    scratch: Vec<RowGradient>,
    best: (usize, f64),
}

impl<'a> Watch<'a> {
    fn new(rows: &'a HeldOut, base: &[f64]) -> Self {
        Self {
            rows,
            margins: starting_margins(base, rows.labels.len()),
            scratch: vec![[0.0; 2]; base.len() * rows.labels.len()],
            best: (0, f64::INFINITY),
        }
    }

    /// Adds round `round`'s trees (one per output) and returns the held-out loss.
    fn add(&mut self, trees: &[Tree], objective: Objective, round: usize) -> f64 {
        let outputs = objective.outputs();
        add_trees(trees, &self.rows.binned, &mut self.margins, outputs, 1.0);
        let loss =
            objective.gradients_and_loss(&self.margins, &self.rows.labels, &mut self.scratch);
        if loss < self.best.1 {
            self.best = (round, loss);
        }
        loss
    }
}

/// Boosts `params.trees` rounds on `rows`, a tree per output each;
/// `round_done` hears each round's training loss and, with `held_out` rows,
/// their loss. With `params.early_stop`, boosting stops that many rounds
/// after the lowest held-out loss and keeps the rounds up to it.
pub fn boost(
    rows: &Rows,
    held_out: Option<&HeldOut>,
    objective: Objective,
    params: &BoostParams,
    mut round_done: impl FnMut(usize, f64, Option<f64>),
) -> Boosted {
    let n = rows.labels.len();
    let outputs = objective.outputs();
    let base = objective.base_margins(&rows.labels);
    let mut margins = starting_margins(&base, n);
    let mut gradients = vec![[0.0f32, 0.0]; n * outputs];
    let mut trees = Vec::with_capacity(params.trees * outputs);
    let mut watch = held_out.map(|h| Watch::new(h, &base));
    objective.gradients_and_loss(&margins, &rows.labels, &mut gradients);
    let every = vec![true; rows.binned.width];
    for round in 0..params.trees {
        let mut sampled = Some(sample_rows(
            &rows.keys,
            params.subsample,
            tree_seed(params.seed, round),
        ));
        for output in 0..outputs {
            // Every output's tree grows on the round's rows; the last takes them.
            let tree_rows = if output + 1 == outputs {
                sampled.take()
            } else {
                sampled.clone()
            }
            .unwrap_or_default();
            // One output: the tree's seed is the round's.
            let seed = tree_seed(params.seed, round * outputs + output);
            let allowed = sample_features(&every, params.colsample_bytree, seed);
            let grow_params = GrowParams {
                seed,
                ..params.grow
            };
            let part = output * n..(output + 1) * n;
            let grown = grow(
                &rows.binned,
                &gradients[part.clone()],
                tree_rows,
                &allowed,
                &grow_params,
            );
            grown.add_to(&rows.binned, &mut margins[part]);
            trees.push(grown.tree);
        }
        let held_out_loss = watch
            .as_mut()
            .map(|w| w.add(&trees[round * outputs..], objective, round + 1));
        // The next round's gradients (the last round's go unused) and this
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
        // Keep the rounds up to the lowest held-out loss; take the others'
        // values back out of the margins.
        let dropped: Vec<Tree> = trees.drain(w.best.0 * outputs..).collect();
        add_trees(&dropped, &rows.binned, &mut margins, outputs, -1.0);
        add_trees(&dropped, &w.rows.binned, &mut w.margins, outputs, -1.0);
    }
    Boosted {
        base,
        trees,
        margins,
        held_out_margins: watch.map(|w| w.margins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_sum_is_the_sum_of_logarithms() {
        let factors: Vec<f64> = (0..1000)
            .map(|i| 1.0 + (i as f64 * 0.37).sin().abs() * 999.0)
            .collect();
        let mut logs = LogSum::default();
        factors.iter().for_each(|f| logs.add(*f));
        let direct: f64 = factors.iter().map(|f| f.ln()).sum();
        assert!((logs.total() - direct).abs() <= 1e-12 * direct);
    }

    /// The fused loss is the log-loss and squared error by their definitions.
    #[test]
    fn losses_match_their_definitions() {
        let margins: [f64; 6] = [-30.0, -1.5, 0.0, 0.2, 4.0, 40.0];
        let labels: [f64; 6] = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
        let n = margins.len() as f64;
        // log(1 + e^m) − y·m, each log taken on its own (log1p).
        let log_loss: f64 = margins
            .iter()
            .zip(&labels)
            .map(|(m, y)| {
                let softplus = if *m > 0.0 {
                    m + (-m).exp().ln_1p()
                } else {
                    m.exp().ln_1p()
                };
                softplus - y * m
            })
            .sum::<f64>()
            / n;
        let ours = Objective::Logistic.loss(&margins, &labels);
        assert!(
            (ours - log_loss).abs() <= 1e-15 * log_loss,
            "{ours} vs {log_loss}"
        );
        let squared: f64 = margins
            .iter()
            .zip(&labels)
            .map(|(m, y)| (m - y) * (m - y))
            .sum::<f64>()
            / n;
        assert_eq!(Objective::SquaredError.loss(&margins, &labels), squared);
        // Softmax over 3 classes, class by class.
        let z = [0.0, 1.0, -2.0, 0.5, 3.0, 0.0];
        let y = [2.0, 0.0];
        let ours = Objective::Softmax { classes: 3 }.loss(&z, &y);
        let row = |a: f64, b: f64, c: f64, label: f64| {
            let s = a.exp() + b.exp() + c.exp();
            -([a, b, c][label as usize].exp() / s).ln()
        };
        let expected = (row(z[0], z[2], z[4], y[0]) + row(z[1], z[3], z[5], y[1])) / 2.0;
        assert!((ours - expected).abs() <= 1e-15, "{ours} vs {expected}");
    }
}
