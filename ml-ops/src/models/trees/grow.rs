//! Growing one tree, level by level, from gradient histograms (XGBoost's
//! `hist` with `grow_policy = 'depthwise'`).
//!
//! Each level builds the histogram of the smaller child of every split and
//! gets its sibling's by subtraction from the parent's. A node's best split
//! scans each feature's bins both ways: NULLs right, then (when the node has
//! NULLs in that feature) NULLs left; the gain is XGBoost's
//! `G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)`.

use std::ops::Range;

use super::cuts::Cuts;
use super::tree::{Node, Split, Tree};
use crate::kernels::histogram::{self, GradPair};

/// Below this gain a split is no split (XGBoost's `kRtEps`).
const MIN_GAIN: f64 = 1e-6;

/// Rows per thread below which a histogram is built on one thread.
const ROWS_PER_THREAD: usize = 32 * 1024;

/// Training rows binned once: `width` codes per row, row-major.
#[derive(Debug, Clone)]
pub struct Binned {
    pub codes: Vec<u8>,
    pub width: usize,
    pub cuts: Vec<Cuts>,
    /// Where each feature's slots (its bins, then its NULL slot) start in a
    /// histogram: [`histogram::SLOTS`] a feature.
    pub offsets: Vec<usize>,
    /// Each feature's NULL code.
    pub missing: Vec<u8>,
    /// Slots in a histogram.
    pub slots: usize,
}

impl Binned {
    /// Rows binned by `cuts` from column-major `columns` (NaN for NULL).
    pub fn new(columns: &[Vec<f64>], cuts: Vec<Cuts>) -> Self {
        let width = columns.len();
        let rows = columns.first().map_or(0, Vec::len);
        let mut codes = vec![0u8; rows * width];
        for (f, (column, cut)) in columns.iter().zip(&cuts).enumerate() {
            for (r, v) in column.iter().enumerate() {
                codes[r * width + f] = cut.code(*v);
            }
        }
        // A feature's NULL code comes after its bins: at most 256 codes.
        debug_assert!(cuts.iter().all(|c| c.bins() < histogram::SLOTS));
        let offsets = (0..width).map(|f| f * histogram::SLOTS).collect();
        let slots = width * histogram::SLOTS;
        let missing = cuts.iter().map(|c| c.bins() as u8).collect();
        Self {
            codes,
            width,
            cuts,
            offsets,
            missing,
            slots,
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
}

impl GrowParams {
    fn gain(&self, [g, h]: GradPair) -> f64 {
        if h < self.min_child_weight || h <= 0.0 {
            0.0
        } else {
            g * g / (h + self.l2)
        }
    }

    fn weight(&self, [g, h]: GradPair) -> f64 {
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

/// A node waiting for its split: its rows are `rows[range]`.
struct Open {
    node: usize,
    range: Range<usize>,
    hist: Vec<GradPair>,
    sum: GradPair,
    depth: usize,
}

/// A grown tree, and where its training rows ended: `rows[range]` of each leaf.
pub struct Grown {
    pub tree: Tree,
    pub rows: Vec<u32>,
    pub leaves: Vec<(usize, Range<usize>)>,
}

impl Grown {
    /// Adds each leaf's value to the margins of the rows that reached it.
    pub fn add_to(&self, margins: &mut [f64]) {
        for (leaf, range) in &self.leaves {
            let value = self.tree.nodes[*leaf].value;
            for &r in &self.rows[range.clone()] {
                margins[r as usize] += value;
            }
        }
    }
}

/// Grows a tree over `rows` of `binned` (the sampled ones) with their
/// `gradients`, splitting only on the features `allowed` marks.
pub fn grow(
    binned: &Binned,
    gradients: &[GradPair],
    mut rows: Vec<u32>,
    allowed: &[bool],
    params: &GrowParams,
) -> Grown {
    let mut tree = Tree::default();
    let mut sum = [0.0, 0.0];
    for &r in &rows {
        let [g, h] = gradients[r as usize];
        sum[0] += g;
        sum[1] += h;
    }
    tree.nodes.push(Node {
        value: 0.0,
        cover: sum[1],
        split: None,
    });
    let hist = build(binned, gradients, &rows);
    let mut level = vec![Open {
        node: 0,
        range: 0..rows.len(),
        hist,
        sum,
        depth: 0,
    }];
    let mut scratch = Vec::new();
    let mut leaves = Vec::new();
    while !level.is_empty() {
        let mut next = Vec::new();
        for open in level {
            let node = &mut tree.nodes[open.node];
            node.value = params.weight(open.sum) * params.learning_rate;
            let best = (open.depth < params.max_depth)
                .then(|| best_split(binned, &open.hist, open.sum, allowed, params))
                .flatten();
            let Some(best) = best else {
                leaves.push((open.node, open.range));
                continue;
            };
            let split_at = partition(binned, &mut rows[open.range.clone()], &best, &mut scratch);
            let middle = open.range.start + split_at;
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
            for stats in [best.left, best.right] {
                tree.nodes.push(Node {
                    value: 0.0,
                    cover: stats[1],
                    split: None,
                });
            }
            let left_range = open.range.start..middle;
            let right_range = middle..open.range.end;
            // Build the smaller child's histogram; the larger is the rest.
            let left_smaller = left_range.len() <= right_range.len();
            let small_range = if left_smaller {
                left_range.clone()
            } else {
                right_range.clone()
            };
            let small = build(binned, gradients, &rows[small_range]);
            let mut large = open.hist;
            histogram::subtract(&mut large, &small);
            let (left_hist, right_hist) = if left_smaller {
                (small, large)
            } else {
                (large, small)
            };
            let depth = open.depth + 1;
            next.push(Open {
                node: left,
                range: left_range,
                hist: left_hist,
                sum: best.left,
                depth,
            });
            next.push(Open {
                node: right,
                range: right_range,
                hist: right_hist,
                sum: best.right,
                depth,
            });
        }
        level = next;
    }
    Grown { tree, rows, leaves }
}

/// The histogram of `rows`, on as many threads as it is worth.
fn build(binned: &Binned, gradients: &[GradPair], rows: &[u32]) -> Vec<GradPair> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.len() / ROWS_PER_THREAD)
        .max(1);
    let mut hist = vec![[0.0; 2]; binned.slots];
    if threads == 1 {
        histogram::accumulate(&binned.codes, binned.width, rows, gradients, &mut hist);
        return hist;
    }
    let chunk = rows.len().div_ceil(threads);
    let parts: Vec<Vec<GradPair>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut hist = vec![[0.0; 2]; binned.slots];
                    histogram::accumulate(&binned.codes, binned.width, part, gradients, &mut hist);
                    hist
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a histogram thread panicked"))
            .collect()
    });
    // Added in chunk order: the same sums for the same rows every time.
    for part in &parts {
        histogram::add(&mut hist, part);
    }
    hist
}

/// The best valid split of a node with histogram `hist` and sums `sum`.
fn best_split(
    binned: &Binned,
    hist: &[GradPair],
    sum: GradPair,
    allowed: &[bool],
    params: &GrowParams,
) -> Option<Candidate> {
    let parent = params.gain(sum);
    let mut best: Option<Candidate> = None;
    let mut consider = |gain: f64, candidate: Candidate| {
        if best.is_none_or(|b| gain > b.gain) {
            best = Some(Candidate { gain, ..candidate });
        }
    };
    let mcw = params.min_child_weight;
    for (f, cuts) in binned.cuts.iter().enumerate() {
        if !allowed[f] {
            continue;
        }
        let start = binned.offsets[f];
        let bins = &hist[start..start + cuts.bins()];
        let missing = hist[start + cuts.bins()];
        // Values below the cut go left, NULLs right.
        let mut left = [0.0, 0.0];
        for (i, bin) in bins.iter().enumerate() {
            left[0] += bin[0];
            left[1] += bin[1];
            let right = [sum[0] - left[0], sum[1] - left[1]];
            if left[1] >= mcw && right[1] >= mcw {
                let gain = params.gain(left) + params.gain(right) - parent;
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
        if missing == [0.0, 0.0] {
            continue;
        }
        // Values from the cut up go right, NULLs left.
        let mut right = [0.0, 0.0];
        for (i, bin) in bins.iter().enumerate().rev() {
            right[0] += bin[0];
            right[1] += bin[1];
            let left = [sum[0] - right[0], sum[1] - right[1]];
            if left[1] >= mcw && right[1] >= mcw {
                let gain = params.gain(left) + params.gain(right) - parent;
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
        b.gain > MIN_GAIN && b.gain >= params.min_split_loss && b.left[1] > 0.0 && b.right[1] > 0.0
    })
}

/// Puts the rows going left first (each side in its old order) and returns how many.
fn partition(
    binned: &Binned,
    rows: &mut [u32],
    split: &Candidate,
    scratch: &mut Vec<u32>,
) -> usize {
    let f = split.feature;
    let missing = binned.missing[f];
    let goes_left = |r: u32| {
        let code = binned.codes[r as usize * binned.width + f];
        if code == missing {
            split.default_left
        } else {
            i32::from(code) <= split.bin
        }
    };
    scratch.clear();
    let mut left = 0;
    for i in 0..rows.len() {
        let r = rows[i];
        if goes_left(r) {
            rows[left] = r;
            left += 1;
        } else {
            scratch.push(r);
        }
    }
    rows[left..].copy_from_slice(scratch);
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::splitmix64;

    fn binned(rows: usize, width: usize) -> (Binned, Vec<GradPair>) {
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
            .map(|r| [(r % 7) as f64 - 3.0, 1.0 + (r % 3) as f64])
            .collect();
        (Binned::new(&columns, cuts), gradients)
    }

    #[test]
    fn a_histogram_built_on_threads_equals_one_built_on_one() {
        let (binned, gradients) = binned(5 * ROWS_PER_THREAD, 3);
        let rows: Vec<u32> = (0..binned.rows() as u32).filter(|r| r % 5 != 0).collect();
        let mut single = vec![[0.0; 2]; binned.slots];
        histogram::accumulate(&binned.codes, binned.width, &rows, &gradients, &mut single);
        assert_eq!(build(&binned, &gradients, &rows), single);
    }
}
