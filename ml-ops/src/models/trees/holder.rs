//! Where a tree training's rows are held, and what growing trees asks of
//! them. Embedded, one [`LocalRows`] holds every row; on a cluster each
//! executor holds its share in a [`Shard`] and the driver's holder asks them
//! all and adds their answers (engine/src/cluster/shares).
//!
//! ```text
//!   label_stats, label_sum ─> the base margins
//!   start(bases)
//!   per round:  gradients ─> loss, largest |g|, |h| per output ─> a GradScale
//!     per tree: root ─> split (a level at a time) ... ─> finish(tree)
//!   margins ─> metrics
//! ```
//!
//! Histograms and label sums are integers, so the holders' answers add up
//! to the same bits in any order and the trees are the same however the rows
//! were spread.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use super::boost::Objective;
use super::shard::Shard;
use super::tree::Tree;
use crate::kernels::histogram::{self, GradPair, GradScale};

/// A histogram: `width` × [`crate::kernels::histogram::SLOTS`] slots.
pub type Hist = Arc<Vec<GradPair>>;

/// What the rows' labels add up to, before the bases are known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelStats {
    pub rows: u64,
    /// The largest |label|.
    pub max_abs: f64,
    /// Rows of each class (classifiers' labels are class indices).
    pub counts: Vec<u64>,
}

impl LabelStats {
    pub fn merge(&mut self, other: &LabelStats) {
        self.rows += other.rows;
        self.max_abs = self.max_abs.max(other.max_abs);
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
    }

    /// The power of two labels are scaled by for an exact sum: the sum of
    /// `rows` labels of at most `max_abs` stays below 2^126.
    pub fn sum_exponent(&self) -> i32 {
        let bound = self.max_abs * (self.rows.max(1) as f64);
        if bound > 0.0 && bound.is_finite() {
            125 - bound.log2().ceil() as i32
        } else {
            0
        }
    }
}

/// `value` × 2^`exponent`, rounded to an integer: labels summed this way
/// give the same sum in any order.
pub fn fixed(value: f64, exponent: i32) -> i128 {
    (value * 2f64.powi(exponent)).round() as i128
}

/// A sum of [`fixed`] values back as a float.
pub fn unfixed(sum: i128, exponent: i32) -> f64 {
    sum as f64 / 2f64.powi(exponent)
}

/// How the trees are fit: what gradients a round takes, and what loss is
/// reported at the margins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fit {
    /// Boosting: each output's gradient and Hessian at the margins; the
    /// objective's loss there.
    Boost { objective: Objective },
    /// A forest's round: each output's least-squares pair at its base
    /// (`base − target`, 1), times the row's Poisson(`rate`) bootstrap count
    /// drawn with `seed`; the squared error of the margins against the targets.
    Forest {
        objective: Objective,
        bases: Vec<f64>,
        rate: f64,
        seed: u64,
    },
}

/// One round's gradients, as [`RowHolder::gradients`] asks for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientSpec {
    pub fit: Fit,
    /// `false`: only the loss (held-out rows).
    pub pairs: bool,
}

/// What a round's gradients came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GradientStats {
    /// The loss summed over the rows (and outputs), at the margins before
    /// the round.
    pub loss: f64,
    pub rows: u64,
    /// Per output, the largest |gradient| and |Hessian|.
    pub maxima: Vec<[f64; 2]>,
}

impl GradientStats {
    pub fn merge(&mut self, other: &GradientStats) {
        self.loss += other.loss;
        self.rows += other.rows;
        if self.maxima.len() < other.maxima.len() {
            self.maxima.resize(other.maxima.len(), [0.0; 2]);
        }
        for (m, o) in self.maxima.iter_mut().zip(&other.maxima) {
            *m = [m[0].max(o[0]), m[1].max(o[1])];
        }
    }

    /// The mean loss.
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.rows.max(1) as f64
    }

    /// The scale of output `output`'s gradients.
    pub fn scale(&self, output: usize) -> GradScale {
        let [g, h] = self.maxima.get(output).copied().unwrap_or([0.0; 2]);
        GradScale::new(g, h)
    }
}

/// The rows a tree grows on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RowSample {
    All,
    /// Each row with probability `fraction`, by a seeded hash of its key.
    Fraction {
        fraction: f64,
        seed: u64,
    },
    /// The rows whose Hessian is positive (a bootstrap's draws).
    Weighted,
}

/// One node's split, as the rows follow it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeSplit {
    pub node: usize,
    pub feature: usize,
    /// The last bin that goes left.
    pub bin: i32,
    pub default_left: bool,
    pub left: usize,
    pub right: usize,
}

/// A split's children's histograms; which one was built from its rows (the
/// other is the parent's less it).
#[derive(Debug, Clone)]
pub struct Children {
    pub left: Hist,
    pub right: Hist,
    pub left_built: bool,
}

/// How a finished tree's values go into the margins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Apply {
    /// margin += `scale` × value (−1 takes a tree back out).
    Add { scale: f64 },
    /// A forest's: the output's tree sum += value; margin = `base` +
    /// `scale` × the sum (the mean of the trees so far).
    Average { base: f64, scale: f64 },
}

/// The rows final margins belong to: each row's key (the order rows are
/// merged in), label and margins (output by output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Margins {
    pub keys: Vec<u64>,
    pub labels: Vec<f64>,
    pub margins: Vec<f64>,
}

/// A tree training's rows, wherever they are held.
#[async_trait]
pub trait RowHolder: Send + Sync {
    /// Row count, largest |label| and class counts (of `classes`).
    async fn label_stats(&self, classes: usize) -> Result<LabelStats>;

    /// The labels' [`fixed`] sum at `exponent`.
    async fn label_sum(&self, exponent: i32) -> Result<i128>;

    /// Every row's margins start at `bases` (one per output).
    async fn start(&self, bases: &[f64]) -> Result<()>;

    /// The round's gradient pairs (kept for its trees) and the loss at the margins.
    async fn gradients(&self, spec: &GradientSpec) -> Result<GradientStats>;

    /// Starts a tree of output `output` on the rows `sample` picks, its
    /// gradients in `scale`'s units: their sums, and their histogram when
    /// `histogram`.
    async fn root(
        &self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)>;

    /// Splits nodes of the tree growing; each split's children's histograms
    /// when `histograms`.
    async fn split(&self, splits: &[NodeSplit], histograms: bool) -> Result<Vec<Option<Children>>>;

    /// Puts `tree`'s values into output `output`'s margins.
    async fn finish(&self, tree: &Tree, output: usize, apply: Apply) -> Result<()>;

    /// Every row's key, label and margins.
    async fn margins(&self) -> Result<Margins>;
}

/// Rows held in this process.
pub struct LocalRows {
    shard: Mutex<Shard>,
}

impl LocalRows {
    pub fn new(shard: Shard) -> Self {
        Self {
            shard: Mutex::new(shard),
        }
    }

    fn with<T>(&self, work: impl FnOnce(&mut Shard) -> Result<T>) -> Result<T> {
        let mut shard = self
            .shard
            .lock()
            .map_err(|_| DataFusionError::Internal("tree rows lock poisoned".into()))?;
        work(&mut shard)
    }

    /// The GPU's first failure, when histograms were built there.
    pub fn device_failure(&self) -> Option<String> {
        self.with(|s| Ok(s.device_failure())).ok().flatten()
    }
}

#[async_trait]
impl RowHolder for LocalRows {
    async fn label_stats(&self, classes: usize) -> Result<LabelStats> {
        self.with(|s| Ok(s.label_stats(classes)))
    }

    async fn label_sum(&self, exponent: i32) -> Result<i128> {
        self.with(|s| Ok(s.label_sum(exponent)))
    }

    async fn start(&self, bases: &[f64]) -> Result<()> {
        self.with(|s| {
            s.start(bases);
            Ok(())
        })
    }

    async fn gradients(&self, spec: &GradientSpec) -> Result<GradientStats> {
        self.with(|s| Ok(s.gradients(spec)))
    }

    async fn root(
        &self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)> {
        self.with(|s| s.root(output, scale, sample, histogram))
    }

    async fn split(&self, splits: &[NodeSplit], histograms: bool) -> Result<Vec<Option<Children>>> {
        self.with(|s| s.split(splits, histograms))
    }

    async fn finish(&self, tree: &Tree, output: usize, apply: Apply) -> Result<()> {
        self.with(|s| s.finish(tree, output, apply))
    }

    async fn margins(&self) -> Result<Margins> {
        self.with(|s| Ok(s.margins()))
    }
}

/// Rows held in several places (a cluster's executors), as one: every call
/// goes to each part at once and their answers are added. Histograms and
/// label sums are integers, so the sums are the bits one holder of every
/// row would give.
pub struct MergedRows {
    parts: Vec<Arc<dyn RowHolder>>,
}

impl MergedRows {
    pub fn new(parts: Vec<Arc<dyn RowHolder>>) -> Self {
        Self { parts }
    }

    async fn each<'a, T: Send>(
        &'a self,
        call: impl Fn(&'a Arc<dyn RowHolder>) -> futures::future::BoxFuture<'a, Result<T>>,
    ) -> Result<Vec<T>> {
        futures::future::join_all(self.parts.iter().map(call))
            .await
            .into_iter()
            .collect()
    }
}

/// `parts` added slot by slot (none: `None`).
fn add_hists(parts: impl IntoIterator<Item = Hist>) -> Option<Hist> {
    let mut parts = parts.into_iter();
    let first = parts.next()?;
    let mut total = Arc::try_unwrap(first).unwrap_or_else(|h| (*h).clone());
    for part in parts {
        histogram::add(&mut total, &part);
    }
    Some(Arc::new(total))
}

#[async_trait]
impl RowHolder for MergedRows {
    async fn label_stats(&self, classes: usize) -> Result<LabelStats> {
        let parts = self.each(|p| p.label_stats(classes)).await?;
        let mut total = LabelStats::default();
        parts.iter().for_each(|p| total.merge(p));
        Ok(total)
    }

    async fn label_sum(&self, exponent: i32) -> Result<i128> {
        Ok(self.each(|p| p.label_sum(exponent)).await?.iter().sum())
    }

    async fn start(&self, bases: &[f64]) -> Result<()> {
        self.each(|p| p.start(bases)).await.map(|_| ())
    }

    async fn gradients(&self, spec: &GradientSpec) -> Result<GradientStats> {
        let parts = self.each(|p| p.gradients(spec)).await?;
        let mut total = GradientStats::default();
        parts.iter().for_each(|p| total.merge(p));
        Ok(total)
    }

    async fn root(
        &self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)> {
        let parts = self
            .each(|p| p.root(output, scale, sample, histogram))
            .await?;
        let mut sum = [0i64; 2];
        let mut hists = Vec::new();
        for (part_sum, hist) in parts {
            sum = [sum[0] + part_sum[0], sum[1] + part_sum[1]];
            hists.extend(hist);
        }
        Ok((sum, add_hists(hists)))
    }

    async fn split(&self, splits: &[NodeSplit], histograms: bool) -> Result<Vec<Option<Children>>> {
        let parts = self.each(|p| p.split(splits, histograms)).await?;
        let mut per_split: Vec<Vec<Children>> = vec![Vec::new(); splits.len()];
        for part in parts {
            for (children, split) in part.into_iter().zip(per_split.iter_mut()) {
                split.extend(children);
            }
        }
        Ok(per_split
            .into_iter()
            .map(|children| {
                let (lefts, rights): (Vec<Hist>, Vec<Hist>) =
                    children.into_iter().map(|c| (c.left, c.right)).unzip();
                Some(Children {
                    left: add_hists(lefts)?,
                    right: add_hists(rights)?,
                    left_built: true,
                })
            })
            .collect())
    }

    async fn finish(&self, tree: &Tree, output: usize, apply: Apply) -> Result<()> {
        self.each(|p| p.finish(tree, output, apply))
            .await
            .map(|_| ())
    }

    /// Every part's rows, in the order of their keys.
    async fn margins(&self) -> Result<Margins> {
        let parts = self.each(|p| p.margins()).await?;
        let rows: usize = parts.iter().map(|p| p.keys.len()).sum();
        let mut all: Vec<(u64, usize, usize)> = Vec::with_capacity(rows);
        for (i, part) in parts.iter().enumerate() {
            all.extend(part.keys.iter().enumerate().map(|(r, k)| (*k, i, r)));
        }
        all.sort_unstable();
        let outputs = parts
            .iter()
            .find(|p| !p.keys.is_empty())
            .map_or(1, |p| p.margins.len() / p.keys.len());
        let mut merged = Margins {
            keys: all.iter().map(|(k, _, _)| *k).collect(),
            labels: all.iter().map(|(_, i, r)| parts[*i].labels[*r]).collect(),
            margins: Vec::with_capacity(rows * outputs),
        };
        for output in 0..outputs {
            merged.margins.extend(all.iter().map(|(_, i, r)| {
                let part = &parts[*i];
                part.margins[output * part.keys.len() + r]
            }));
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sums_are_the_same_in_any_order() {
        let values: Vec<f64> = (0..10_000)
            .map(|i| ((i * 7919) % 1013) as f64 / 3.0 - 100.0 + 1e-9 * i as f64)
            .collect();
        let stats = LabelStats {
            rows: values.len() as u64,
            max_abs: values.iter().fold(0.0, |m, v| m.max(v.abs())),
            counts: vec![],
        };
        let e = stats.sum_exponent();
        let forward: i128 = values.iter().map(|v| fixed(*v, e)).sum();
        let backward: i128 = values.iter().rev().map(|v| fixed(*v, e)).sum();
        assert_eq!(forward, backward);
        let exact: f64 = values.iter().sum();
        assert!((unfixed(forward, e) - exact).abs() <= 1e-9 * exact.abs());
    }
}
