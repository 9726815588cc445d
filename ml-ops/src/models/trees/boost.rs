//! Gradient boosting: each round fits one tree per output to the gradients and
//! Hessians of the loss at the current margins (second order, as XGBoost).

use datafusion::common::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cuts::Cuts;
use super::grow::{GrowParams, grow};
use super::holder::{Apply, Fit, GradientSpec, LabelStats, RowHolder, RowSample, unfixed};
use super::sampling::{sample_features, tree_seed};
use super::tree::Tree;
use crate::kernels::histogram::{GradScale, RowGradient};

/// A row's gradient and Hessian as computed, before a tree's scale makes
/// them integers.
pub(super) type FloatPair = [f64; 2];

/// Where the gradient pass writes a row's pair: as floats, or already in
/// the units of a scale known before the pass ([`Objective::fixed_scale`]).
pub(super) trait PairSlot: Send {
    fn put(&mut self, pair: FloatPair, scale: &GradScale);
}

impl PairSlot for FloatPair {
    #[inline(always)]
    fn put(&mut self, pair: FloatPair, _: &GradScale) {
        *self = pair;
    }
}

impl PairSlot for RowGradient {
    #[inline(always)]
    fn put(&mut self, pair: FloatPair, scale: &GradScale) {
        *self = scale.quantize(pair);
    }
}

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
    /// (for softmax the log of each class's share, centred, as XGBoost's),
    /// from the labels' count, class counts and (exact) sum.
    pub fn base_margins(self, stats: &LabelStats, label_sum: f64) -> Vec<f64> {
        let n = stats.rows.max(1) as f64;
        let mean = label_sum / n;
        let shares = || -> Vec<f64> {
            (0..self.outputs())
                .map(|c| stats.counts.get(c).copied().unwrap_or(0) as f64 / n)
                .collect()
        };
        match self {
            Objective::SquaredError => vec![mean],
            Objective::Logistic => {
                let p = mean.clamp(1e-7, 1.0 - 1e-7);
                vec![(p / (1.0 - p)).ln()]
            }
            Objective::Softmax { classes } => {
                let logs: Vec<f64> = shares()
                    .iter()
                    .map(|share| share.clamp(1e-7, 1.0).ln())
                    .collect();
                let mean = logs.iter().sum::<f64>() / classes as f64;
                logs.iter().map(|l| l - mean).collect()
            }
            Objective::ClassShares { .. } => shares(),
        }
    }

    /// The scale of every tree's gradients when bounds are known before
    /// the pass: the log-loss's |g| ≤ 1 and h ≤ ¼, softmax's |g| ≤ 1 and
    /// h ≤ ½. The pass then writes integers, with no pass for the largest.
    pub(super) fn fixed_scale(self) -> Option<GradScale> {
        match self {
            Objective::Logistic => Some(GradScale::new(1.0, 0.25)),
            Objective::Softmax { .. } => Some(GradScale::new(1.0, 0.5)),
            _ => None,
        }
    }

    /// The gradient and Hessian of each row's loss at its margins, on every
    /// core (both laid out output by output, `outputs` × rows, as floats or
    /// in `scale`'s units), returning the loss summed there: one pass, one
    /// exponential a row and output.
    pub(super) fn gradients_and_loss<P: PairSlot>(
        self,
        margins: &[f64],
        labels: &[f64],
        out: &mut [P],
        scale: GradScale,
    ) -> f64 {
        let n = labels.len();
        // Each block of rows takes its piece of every output's slice.
        let blocks = n.div_ceil(BLOCK_ROWS);
        let mut pieces: Vec<Vec<&mut [P]>> = (0..blocks).map(|_| Vec::new()).collect();
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
                        softmax_gradients(classes, &margins_of, labels, &mut out, &scale)
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
                                &scale,
                            )
                        })
                        .sum(),
                    _ => self.scalar_gradients(margins_of(0), labels, out[0], &scale),
                }
            })
            .collect();
        sums.iter().sum::<f64>()
    }

    /// [`Self::gradients_and_loss`] of one block of a one-output objective,
    /// returning the block's summed loss.
    fn scalar_gradients<P: PairSlot>(
        self,
        margins: &[f64],
        labels: &[f64],
        out: &mut [P],
        scale: &GradScale,
    ) -> f64 {
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
                    out.put([p - y, (p * (1.0 - p)).max(1e-16)], scale);
                    logs.add(1.0 + e);
                    m.max(0.0) - y * m
                }
                _ => {
                    out.put([m - y, 1.0], scale);
                    (m - y) * (m - y)
                }
            };
        }
        total + logs.total()
    }
}

/// Softmax gradients of a block: class c's gradient `p_c − [y = c]`, its
/// Hessian `2 p_c (1 − p_c)` (XGBoost's, floored at 1e-16); returns the
/// block's summed log-loss.
fn softmax_gradients<'a, P: PairSlot>(
    classes: usize,
    margins_of: &impl Fn(usize) -> &'a [f64],
    labels: &[f64],
    out: &mut [&mut [P]],
    scale: &GradScale,
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
            out[c][r].put([g, (2.0 * p * (1.0 - p)).max(1e-16)], scale);
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

/// Margins laid out output by output, each starting at its base.
pub(super) fn starting_margins(base: &[f64], rows: usize) -> Vec<f64> {
    base.iter()
        .flat_map(|b| std::iter::repeat_n(*b, rows))
        .collect()
}

/// The margins every row of `rows` starts from under `objective`.
pub async fn bases(rows: &dyn RowHolder, objective: Objective) -> Result<Vec<f64>> {
    let stats = rows.label_stats(objective.outputs()).await?;
    let exponent = stats.sum_exponent();
    let sum = unfixed(rows.label_sum(exponent).await?, exponent);
    Ok(objective.base_margins(&stats, sum))
}

/// A model's trees and the margins they start from.
pub struct Boosted {
    pub base: Vec<f64>,
    pub trees: Vec<Tree>,
}

/// Boosts `params.trees` rounds on `rows` (cut by `cuts`), a tree per output
/// each; `round_done` hears each round's training loss and, with `held_out`
/// rows, their loss. With `params.early_stop`, boosting stops that many rounds
/// after the lowest held-out loss and keeps the rounds up to it (their
/// margins then hold those rounds only).
pub async fn boost(
    rows: &dyn RowHolder,
    held_out: Option<&dyn RowHolder>,
    cuts: &[Cuts],
    objective: Objective,
    params: &BoostParams,
    mut round_done: impl FnMut(usize, f64, Option<f64>) + Send,
) -> Result<Boosted> {
    let outputs = objective.outputs();
    let base = bases(rows, objective).await?;
    rows.start(&base).await?;
    if let Some(h) = held_out {
        h.start(&base).await?;
    }
    let fit = Fit::Boost { objective };
    let spec = GradientSpec {
        fit: fit.clone(),
        pairs: true,
    };
    let loss_only = GradientSpec { fit, pairs: false };
    let mut stats = rows.gradients(&spec).await?;
    let mut trees: Vec<Tree> = Vec::with_capacity(params.trees * outputs);
    let mut best = (0, f64::INFINITY);
    let every = vec![true; cuts.len()];
    for round in 0..params.trees {
        let sample = if params.subsample >= 1.0 {
            RowSample::All
        } else {
            RowSample::Fraction {
                fraction: params.subsample,
                seed: tree_seed(params.seed, round),
            }
        };
        for output in 0..outputs {
            // One output: the tree's seed is the round's.
            let seed = tree_seed(params.seed, round * outputs + output);
            let allowed = sample_features(&every, params.colsample_bytree, seed);
            let grow_params = GrowParams {
                seed,
                ..params.grow
            };
            let scale = stats.scale(output);
            let tree = grow(rows, cuts, output, scale, sample, &allowed, &grow_params).await?;
            let add = Apply::Add { scale: 1.0 };
            rows.finish(&tree, output, add).await?;
            if let Some(h) = held_out {
                h.finish(&tree, output, add).await?;
            }
            trees.push(tree);
        }
        let held_out_loss = match held_out {
            Some(h) => Some(h.gradients(&loss_only).await?.mean_loss()),
            None => None,
        };
        if let Some(loss) = held_out_loss
            && loss < best.1
        {
            best = (round + 1, loss);
        }
        // The next round's gradients (the last round's go unused) and this
        // one's loss, in one pass.
        stats = rows.gradients(&spec).await?;
        round_done(round + 1, stats.mean_loss(), held_out_loss);
        if let (Some(rounds), Some(_)) = (params.early_stop, held_out)
            && round + 1 >= best.0 + rounds
        {
            break;
        }
    }
    if params.early_stop.is_some()
        && let Some(h) = held_out
    {
        // Keep the rounds up to the lowest held-out loss; take the others'
        // values back out of the margins.
        let dropped: Vec<Tree> = trees.drain(best.0 * outputs..).collect();
        let take_out = Apply::Add { scale: -1.0 };
        for (i, tree) in dropped.iter().enumerate() {
            let output = i % outputs;
            rows.finish(tree, output, take_out).await?;
            h.finish(tree, output, take_out).await?;
        }
    }
    Ok(Boosted { base, trees })
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

    fn loss(objective: Objective, margins: &[f64], labels: &[f64]) -> f64 {
        let mut pairs = vec![[0.0; 2]; margins.len()];
        let unit = GradScale::new(1.0, 1.0);
        objective.gradients_and_loss(margins, labels, &mut pairs, unit) / labels.len() as f64
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
        let ours = loss(Objective::Logistic, &margins, &labels);
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
        assert_eq!(loss(Objective::SquaredError, &margins, &labels), squared);
        // Softmax over 3 classes, class by class.
        let z = [0.0, 1.0, -2.0, 0.5, 3.0, 0.0];
        let y = [2.0, 0.0];
        let ours = loss(Objective::Softmax { classes: 3 }, &z, &y);
        let row = |a: f64, b: f64, c: f64, label: f64| {
            let s = a.exp() + b.exp() + c.exp();
            -([a, b, c][label as usize].exp() / s).ln()
        };
        let expected = (row(z[0], z[2], z[4], y[0]) + row(z[1], z[3], z[5], y[1])) / 2.0;
        assert!((ours - expected).abs() <= 1e-15, "{ours} vs {expected}");
    }
}
