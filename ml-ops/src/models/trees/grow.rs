//! Growing one tree, level by level, from gradient histograms (XGBoost's
//! `hist` with `grow_policy = 'depthwise'`).
//!
//! Each level builds the histogram of the smaller child of every split and
//! gets its sibling's by subtraction from the parent's. A node's best split
//! scans each feature's bins both ways: NULLs right, then (when the node has
//! NULLs in that feature) NULLs left; the gain is XGBoost's
//! `G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)`.

use std::sync::Arc;

use datafusion::common::{Result, exec_err};
use rayon::prelude::*;

use super::cuts::Cuts;
use super::holder::{Hist, NodeSplit, RowHolder, RowSample};
use super::sampling::sample_features;
use super::tree::{Node, Split, Tree};
use crate::hashing::splitmix64;
use crate::kernels::cuda::TreeRows;
use crate::kernels::histogram::{self, GradPair, GradScale, RowGradient};

/// Below this gain a split is no split (XGBoost's `kRtEps`).
const MIN_GAIN: f64 = 1e-6;

/// Rows in one block of histogram or partition work. Fixed, not a share of
/// the cores: a histogram's blocks are added in the same order on any machine.
const BLOCK_ROWS: usize = 64 * 1024;

/// Training rows binned once: `width` codes per row, row-major.
#[derive(Debug, Clone)]
pub struct Binned {
    pub codes: Vec<u8>,
    /// The same codes feature by feature (`rows` codes a feature): a split
    /// partitions its rows by one feature's codes, read close together.
    pub by_feature: Vec<u8>,
    pub width: usize,
    pub cuts: Vec<Cuts>,
    /// Where each feature's slots (its bins, then its NULL slot) start in a
    /// histogram: [`histogram::SLOTS`] a feature.
    pub offsets: Vec<usize>,
    /// Each feature's NULL code.
    pub missing: Vec<u8>,
    /// Slots in a histogram.
    pub slots: usize,
    /// The same codes on a GPU, where histograms are then built (`device =
    /// 'cuda'`).
    pub device: Option<Arc<TreeRows>>,
}

impl Binned {
    /// Rows binned by `cuts` from column-major `columns` (NaN for NULL), a
    /// block of rows on each core.
    pub fn new(columns: &[Vec<f64>], cuts: Vec<Cuts>) -> Self {
        let width = columns.len();
        let rows = columns.first().map_or(0, Vec::len);
        let mut codes = vec![0u8; rows * width];
        let coders: Vec<_> = cuts.iter().map(Cuts::coder).collect();
        codes
            .par_chunks_mut(BLOCK_ROWS * width.max(1))
            .enumerate()
            .for_each(|(block, codes)| {
                let first = block * BLOCK_ROWS;
                for (f, (column, cut)) in columns.iter().zip(&coders).enumerate() {
                    for (i, v) in column[first..first + codes.len() / width]
                        .iter()
                        .enumerate()
                    {
                        codes[i * width + f] = cut.code(*v);
                    }
                }
            });
        let mut by_feature = vec![0u8; rows * width];
        by_feature
            .par_chunks_mut(rows.max(1))
            .enumerate()
            .for_each(|(f, column)| {
                for (r, code) in column.iter_mut().enumerate() {
                    *code = codes[r * width + f];
                }
            });
        // A feature's NULL code comes after its bins: at most 256 codes.
        debug_assert!(cuts.iter().all(|c| c.bins() < histogram::SLOTS));
        let offsets = (0..width).map(|f| f * histogram::SLOTS).collect();
        let slots = width * histogram::SLOTS;
        let missing = cuts.iter().map(|c| c.bins() as u8).collect();
        Self {
            codes,
            by_feature,
            width,
            cuts,
            offsets,
            missing,
            slots,
            device: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.codes.len() / self.width.max(1)
    }

    /// Row `r`'s codes.
    pub fn row(&self, r: usize) -> &[u8] {
        &self.codes[r * self.width..(r + 1) * self.width]
    }
}

/// What shapes a tree.
#[derive(Debug, Clone, Copy)]
pub struct GrowParams {
    pub max_depth: usize,
    /// λ: L2 on leaf values.
    pub l2: f64,
    /// γ: the least gain a split must bring.
    pub min_split_loss: f64,
    /// The least Hessian sum a child may have.
    pub min_child_weight: f64,
    pub learning_rate: f64,
    /// Fraction of the tree's features each node may split on (1: all).
    pub colsample_bynode: f64,
    /// The tree's seed: which features each node samples.
    pub seed: u64,
}

impl GrowParams {
    fn gain(&self, [g, h]: [f64; 2]) -> f64 {
        if h < self.min_child_weight || h <= 0.0 {
            0.0
        } else {
            g * g / (h + self.l2)
        }
    }

    fn weight(&self, [g, h]: [f64; 2]) -> f64 {
        if h < self.min_child_weight || h <= 0.0 {
            0.0
        } else {
            -g / (h + self.l2)
        }
    }
}

/// The best split of a node found so far.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    gain: f64,
    feature: usize,
    bin: i32,
    threshold: f64,
    default_left: bool,
    left: GradPair,
    right: GradPair,
}

/// A node waiting for its split, with its histogram when it may still split
/// (it is above `max_depth`).
struct Open {
    node: usize,
    hist: Option<Hist>,
    sum: GradPair,
    depth: usize,
}

/// Grows a tree of output `output` on the rows `holder` holds (those `sample`
/// picks), gradients in `scale`'s units, splitting only on the features
/// `allowed` marks: a level at a time, the nodes' best splits found here (on
/// every core) from the histograms the holder builds. The tree's values are
/// not yet in the margins ([`RowHolder::finish`]).
#[allow(clippy::too_many_arguments)]
pub async fn grow(
    holder: &dyn RowHolder,
    cuts: &[Cuts],
    output: usize,
    scale: GradScale,
    sample: RowSample,
    allowed: &[bool],
    params: &GrowParams,
) -> Result<Tree> {
    let (sum, hist) = holder
        .root(output, scale, sample, params.max_depth > 0)
        .await?;
    let slots = cuts.len() * histogram::SLOTS;
    let check = |hist: &Hist| {
        if hist.len() == slots {
            Ok(())
        } else {
            exec_err!("a histogram of {} slots for {slots}", hist.len())
        }
    };
    hist.iter().try_for_each(check)?;
    let mut tree = Tree {
        nodes: vec![Node {
            value: 0.0,
            cover: scale.sums(sum)[1],
            split: None,
        }],
        group: 0,
    };
    let mut level = vec![Open {
        node: 0,
        hist,
        sum,
        depth: 0,
    }];
    while !level.is_empty() {
        let bests: Vec<Option<Candidate>> = level
            .par_iter()
            .map(|open| {
                let hist = open.hist.as_deref()?;
                let sampled;
                let allowed = if params.colsample_bynode < 1.0 {
                    let seed = splitmix64(params.seed ^ open.node as u64);
                    sampled = sample_features(allowed, params.colsample_bynode, seed);
                    &sampled[..]
                } else {
                    allowed
                };
                best_split(cuts, hist, open.sum, allowed, params, scale)
            })
            .collect();
        let mut splits = Vec::new();
        let mut next = Vec::new();
        // The level's histograms are dropped here: the holder takes its
        // parents' back without a copy.
        for (open, best) in level.into_iter().zip(bests) {
            tree.nodes[open.node].value =
                params.weight(scale.sums(open.sum)) * params.learning_rate;
            let Some(best) = best else { continue };
            let (left, right) = (tree.nodes.len(), tree.nodes.len() + 1);
            tree.nodes[open.node].split = Some(Split {
                feature: best.feature,
                threshold: best.threshold,
                bin: best.bin,
                default_left: best.default_left,
                left,
                right,
                gain: best.gain,
            });
            for sum in [best.left, best.right] {
                tree.nodes.push(Node {
                    value: 0.0,
                    cover: scale.sums(sum)[1],
                    split: None,
                });
            }
            splits.push(NodeSplit {
                node: open.node,
                feature: best.feature,
                bin: best.bin,
                default_left: best.default_left,
                left,
                right,
            });
            for (node, sum) in [(left, best.left), (right, best.right)] {
                next.push(Open {
                    node,
                    hist: None,
                    sum,
                    depth: open.depth + 1,
                });
            }
        }
        if splits.is_empty() {
            break;
        }
        // Children at max_depth are leaves: they need no histogram.
        let depth = next[0].depth;
        let children = holder.split(&splits, depth < params.max_depth).await?;
        for (pair, children) in next.chunks_mut(2).zip(children) {
            if let Some(children) = children {
                check(&children.left)?;
                check(&children.right)?;
                pair[0].hist = Some(children.left);
                pair[1].hist = Some(children.right);
            }
        }
        level = next;
    }
    Ok(tree)
}

/// Adds `scale` times `tree`'s value for each row of `binned` to its margin,
/// applying the tree to the row's codes (on every core).
pub fn add_tree(tree: &Tree, binned: &Binned, margins: &mut [f64], scale: f64) {
    margins
        .par_chunks_mut(BLOCK_ROWS)
        .enumerate()
        .for_each(|(block, margins)| {
            for (i, m) in margins.iter_mut().enumerate() {
                let r = block * BLOCK_ROWS + i;
                *m += scale * tree.predict_codes(binned.row(r), &binned.missing);
            }
        });
}

/// The gradient and Hessian sums of `rows`.
pub(super) fn sum_of(gradients: &[RowGradient], rows: &[u32]) -> GradPair {
    let mut sum = [0i64, 0];
    for &r in rows {
        let [g, h] = gradients[r as usize];
        sum[0] += i64::from(g);
        sum[1] += i64::from(h);
    }
    sum
}

/// The histogram of `rows`: blocks of [`BLOCK_ROWS`] on every core, added
/// (exactly: the sums are integers).
pub(super) fn build(binned: &Binned, gradients: &[RowGradient], rows: &[u32]) -> Vec<GradPair> {
    if let Some(device) = &binned.device
        && device.failure().is_none()
    {
        match device.histogram(rows) {
            Ok(hist) => return hist,
            // The CPU builds it; the training reports the failure.
            Err(e) => device.note_failure(&e),
        }
    }
    let block = |rows: &[u32]| {
        let mut hist = vec![[0; 2]; binned.slots];
        histogram::accumulate(&binned.codes, binned.width, rows, gradients, &mut hist);
        hist
    };
    if rows.len() <= BLOCK_ROWS {
        return block(rows);
    }
    let parts: Vec<Vec<GradPair>> = rows.par_chunks(BLOCK_ROWS).map(block).collect();
    let mut parts = parts.into_iter();
    let mut hist = parts.next().expect("at least one block");
    for part in parts {
        histogram::add(&mut hist, &part);
    }
    hist
}

/// The best valid split of a node with histogram `hist` and sums `sum`
/// (integers in `scale`'s units; running sums stay integers, so every
/// candidate's sides are exact).
fn best_split(
    cuts: &[Cuts],
    hist: &[GradPair],
    sum: GradPair,
    allowed: &[bool],
    params: &GrowParams,
    scale: GradScale,
) -> Option<Candidate> {
    let parent = params.gain(scale.sums(sum));
    let mut best: Option<Candidate> = None;
    let mut consider = |gain: f64, candidate: Candidate| {
        if best.is_none_or(|b| gain > b.gain) {
            best = Some(Candidate { gain, ..candidate });
        }
    };
    let mcw = params.min_child_weight;
    for (f, cuts) in cuts.iter().enumerate() {
        if !allowed[f] {
            continue;
        }
        let start = f * histogram::SLOTS;
        let bins = &hist[start..start + cuts.bins()];
        let missing = hist[start + cuts.bins()];
        // Values below the cut go left, NULLs right.
        let mut left = [0i64, 0];
        for (i, bin) in bins.iter().enumerate() {
            left[0] += bin[0];
            left[1] += bin[1];
            let right = [sum[0] - left[0], sum[1] - left[1]];
            let (l, r) = (scale.sums(left), scale.sums(right));
            if l[1] >= mcw && r[1] >= mcw {
                let gain = params.gain(l) + params.gain(r) - parent;
                consider(
                    gain,
                    Candidate {
                        gain,
                        feature: f,
                        bin: i as i32,
                        threshold: cuts.values[i],
                        default_left: false,
                        left,
                        right,
                    },
                );
            }
        }
        if missing == [0, 0] {
            continue;
        }
        // Values from the cut up go right, NULLs left.
        let mut right = [0i64, 0];
        for (i, bin) in bins.iter().enumerate().rev() {
            right[0] += bin[0];
            right[1] += bin[1];
            let left = [sum[0] - right[0], sum[1] - right[1]];
            let (l, r) = (scale.sums(left), scale.sums(right));
            if l[1] >= mcw && r[1] >= mcw {
                let gain = params.gain(l) + params.gain(r) - parent;
                let threshold = if i > 0 { cuts.values[i - 1] } else { cuts.min };
                consider(
                    gain,
                    Candidate {
                        gain,
                        feature: f,
                        bin: i as i32 - 1,
                        threshold,
                        default_left: true,
                        left,
                        right,
                    },
                );
            }
        }
    }
    best.filter(|b| {
        b.gain > MIN_GAIN && b.gain >= params.min_split_loss && b.left[1] > 0 && b.right[1] > 0
    })
}

/// Partitions each of `slices` of the rows by its split (on every core) and
/// returns how many of each go left.
pub(super) fn partition_all(binned: &Binned, slices: Vec<(&mut [u32], &NodeSplit)>) -> Vec<usize> {
    slices
        .into_par_iter()
        .map(|(slice, split)| partition(binned, slice, split))
        .collect()
}

/// Puts the rows going left first (each side in its old order) and returns
/// how many: blocks of [`BLOCK_ROWS`] split on every core, then gathered.
fn partition(binned: &Binned, rows: &mut [u32], split: &NodeSplit) -> usize {
    let f = split.feature;
    let missing = binned.missing[f];
    let rows_all = binned.rows();
    let column = &binned.by_feature[f * rows_all..(f + 1) * rows_all];
    let (bin, default_left) = (split.bin, split.default_left);
    // Branch-free: which way a row goes is as good as random to the CPU.
    let goes_left = |r: u32| {
        let code = column[r as usize];
        let is_missing = code == missing;
        (is_missing & default_left) | (!is_missing & (i32::from(code) <= bin))
    };
    let split_block = |block: &[u32]| -> (Vec<u32>, Vec<u32>) {
        // Each row is written to both sides; only its own side's count moves.
        let (mut left, mut right) = (vec![0u32; block.len()], vec![0u32; block.len()]);
        let (mut lefts, mut rights) = (0, 0);
        for &r in block {
            let l = usize::from(goes_left(r));
            left[lefts] = r;
            right[rights] = r;
            lefts += l;
            rights += 1 - l;
        }
        left.truncate(lefts);
        right.truncate(rights);
        (left, right)
    };
    let parts: Vec<(Vec<u32>, Vec<u32>)> = if rows.len() <= BLOCK_ROWS {
        vec![split_block(rows)]
    } else {
        rows.par_chunks(BLOCK_ROWS).map(split_block).collect()
    };
    let mut at = 0;
    for (left, _) in &parts {
        rows[at..at + left.len()].copy_from_slice(left);
        at += left.len();
    }
    let lefts = at;
    for (_, right) in &parts {
        rows[at..at + right.len()].copy_from_slice(right);
        at += right.len();
    }
    lefts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binned(rows: usize, width: usize) -> (Binned, Vec<RowGradient>) {
        let columns: Vec<Vec<f64>> = (0..width)
            .map(|f| {
                (0..rows)
                    .map(|r| (splitmix64((r * width + f) as u64) % 1000) as f64)
                    .collect()
            })
            .collect();
        let cuts = columns
            .iter()
            .map(|c| Cuts::from_sample(c.clone(), 255))
            .collect();
        let gradients = (0..rows)
            .map(|r| [(r % 7) as i32 - 3, 1 + (r % 3) as i32])
            .collect();
        (Binned::new(&columns, cuts), gradients)
    }

    #[test]
    fn a_histogram_built_in_blocks_equals_one_built_at_once() {
        let (binned, gradients) = binned(5 * BLOCK_ROWS, 3);
        let rows: Vec<u32> = (0..binned.rows() as u32).filter(|r| r % 5 != 0).collect();
        let mut single = vec![[0; 2]; binned.slots];
        histogram::accumulate(&binned.codes, binned.width, &rows, &gradients, &mut single);
        assert_eq!(build(&binned, &gradients, &rows), single);
    }

    #[test]
    fn a_partition_in_blocks_keeps_each_side_in_order() {
        let (binned, _) = binned(3 * BLOCK_ROWS + 7, 2);
        let split = NodeSplit {
            node: 0,
            feature: 1,
            bin: 100,
            default_left: false,
            left: 1,
            right: 2,
        };
        let mut rows: Vec<u32> = (0..binned.rows() as u32).rev().collect();
        let (left, right): (Vec<u32>, Vec<u32>) = rows
            .iter()
            .partition(|&&r| binned.codes[r as usize * 2 + 1] <= 100);
        let lefts = partition(&binned, &mut rows, &split);
        assert_eq!(lefts, left.len());
        assert_eq!(rows, [left, right].concat());
    }
}
