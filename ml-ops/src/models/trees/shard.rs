//! Tree training's rows held in one place, with what each row carries from
//! tree to tree: its margins, its gradient pairs, and where the growing tree
//! has put it. Embedded, one shard holds every row; on a cluster each
//! executor holds one over its share (see [`super::holder`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::common::{Result, exec_err};
use rayon::prelude::*;

use super::Objective;
use super::boost::{BLOCK_ROWS, starting_margins};
use super::grow::{Binned, add_tree, build, partition_all, sum_of};
use super::holder::{
    Apply, Children, Fit, GradientSpec, GradientStats, Hist, LabelStats, Margins, NodeSplit,
    RowSample, fixed,
};
use super::sampling::{bootstrap_count, sample_rows};
use super::tree::Tree;
use crate::kernels::histogram::{self, GradPair, GradScale, RowGradient};

/// The tree being grown: its rows (those sampled), each node's range of
/// them, and the histograms of the nodes that may split next.
struct Growing {
    output: usize,
    rows: Vec<u32>,
    ranges: Vec<Option<Range<usize>>>,
    hists: HashMap<usize, Hist>,
}

/// Binned rows and their per-row state.
pub struct Shard {
    binned: Binned,
    labels: Vec<f64>,
    keys: Vec<u64>,
    /// Output by output.
    margins: Vec<f64>,
    /// A forest's sums of tree values, output by output.
    sums: Vec<f64>,
    /// The round's float gradient pairs, output by output.
    pairs: Vec<[f64; 2]>,
    /// The pairs in the growing tree's scale's units, output by output (a
    /// tree's output's filled when it starts, or every output's by the
    /// round's pass when the scale was known before it).
    gradients: Vec<RowGradient>,
    /// The scale `gradients` hold every output in, when the round's pass
    /// wrote them.
    quantized: Option<GradScale>,
    growing: Option<Growing>,
}

impl Shard {
    pub fn new(binned: Binned, labels: Vec<f64>, keys: Vec<u64>) -> Self {
        Self {
            binned,
            labels,
            keys,
            margins: Vec::new(),
            sums: Vec::new(),
            pairs: Vec::new(),
            gradients: Vec::new(),
            quantized: None,
            growing: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn binned(&self) -> &Binned {
        &self.binned
    }

    /// Bytes the shard holds.
    pub fn bytes(&self) -> usize {
        let n = self.rows();
        2 * self.binned.codes.len()
            + n * 16
            + (self.margins.len() + self.sums.len()) * 8
            + self.pairs.len() * 16
            + self.gradients.len() * 8
    }

    pub fn device_failure(&self) -> Option<String> {
        self.binned.device.as_ref().and_then(|d| d.failure())
    }

    pub fn label_stats(&self, classes: usize) -> LabelStats {
        let mut counts = vec![0u64; classes];
        for y in &self.labels {
            if let Some(c) = counts.get_mut(*y as usize)
                && *y >= 0.0
                && y.fract() == 0.0
            {
                *c += 1;
            }
        }
        LabelStats {
            rows: self.rows() as u64,
            max_abs: self.labels.iter().fold(0.0, |m, y| m.max(y.abs())),
            counts,
        }
    }

    pub fn label_sum(&self, exponent: i32) -> i128 {
        self.labels.iter().map(|y| fixed(*y, exponent)).sum()
    }

    pub fn start(&mut self, bases: &[f64]) {
        self.margins = starting_margins(bases, self.rows());
        self.sums = vec![0.0; self.margins.len()];
        self.growing = None;
    }

    fn outputs(&self) -> usize {
        self.margins.len() / self.rows().max(1)
    }

    pub fn gradients(&mut self, spec: &GradientSpec) -> GradientStats {
        let n = self.rows();
        let outputs = self.outputs();
        if !matches!(&spec.fit, Fit::Boost { objective } if objective.fixed_scale().is_some()) {
            self.pairs.resize(n * outputs, [0.0; 2]);
        }
        self.quantized = None;
        let loss = match &spec.fit {
            Fit::Boost { objective } => match objective.fixed_scale() {
                // Bounds known: integers in one pass, every output's at once.
                Some(scale) => {
                    self.gradients.resize(n * outputs, [0; 2]);
                    let loss = objective.gradients_and_loss(
                        &self.margins,
                        &self.labels,
                        &mut self.gradients,
                        scale,
                    );
                    self.quantized = Some(scale);
                    return GradientStats {
                        loss,
                        rows: n as u64,
                        maxima: vec![scale.bounds(); if spec.pairs { outputs } else { 0 }],
                    };
                }
                None => objective.gradients_and_loss(
                    &self.margins,
                    &self.labels,
                    &mut self.pairs,
                    GradScale::new(1.0, 1.0),
                ),
            },
            Fit::Forest {
                objective,
                bases,
                rate,
                seed,
            } => {
                let counts: Vec<f64> = self
                    .keys
                    .par_iter()
                    .map(|key| bootstrap_count(*key, *rate, *seed))
                    .collect();
                let mut loss = 0.0;
                for (output, base) in bases.iter().enumerate() {
                    let part = output * n..(output + 1) * n;
                    let target = |r: usize| target(*objective, output, self.labels[r]);
                    for (r, pair) in self.pairs[part.clone()].iter_mut().enumerate() {
                        *pair = [counts[r] * (base - target(r)), counts[r]];
                    }
                    loss += squared_error(&self.margins[part], target);
                }
                loss
            }
        };
        let maxima = if spec.pairs {
            let larger = |a: [f64; 2], b: [f64; 2]| [a[0].max(b[0]), a[1].max(b[1])];
            self.pairs
                .chunks(n.max(1))
                .map(|output| {
                    output
                        .par_chunks(BLOCK_ROWS)
                        .map(GradScale::maxima)
                        .reduce(|| [0.0; 2], larger)
                })
                .collect()
        } else {
            vec![]
        };
        GradientStats {
            loss,
            rows: n as u64,
            maxima,
        }
    }

    pub fn root(
        &mut self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)> {
        let n = self.rows();
        let part = output * n..(output + 1) * n;
        if self.quantized != Some(scale) {
            let Some(pairs) = self.pairs.get(part.clone()) else {
                return exec_err!("a tree of output {output} before its round's gradients");
            };
            // The buffer is reused tree after tree: no fresh pages to fault in.
            self.gradients.resize(self.pairs.len(), [0; 2]);
            self.gradients[part.clone()]
                .par_chunks_mut(BLOCK_ROWS)
                .zip(pairs.par_chunks(BLOCK_ROWS))
                .for_each(|(out, pairs)| {
                    for (q, p) in out.iter_mut().zip(pairs) {
                        *q = scale.quantize(*p);
                    }
                });
        }
        let Some(gradients) = self.gradients.get(part) else {
            return exec_err!("a tree of output {output} before its round's gradients");
        };
        let rows: Vec<u32> = match sample {
            RowSample::All => (0..n as u32).collect(),
            RowSample::Fraction { fraction, seed } => sample_rows(&self.keys, fraction, seed),
            RowSample::Weighted => (0..n as u32)
                .filter(|&r| gradients[r as usize][1] > 0)
                .collect(),
        };
        if let Some(device) = &self.binned.device
            && let Err(e) = device.set_gradients(gradients)
        {
            device.note_failure(&e);
        }
        let sum = sum_of(gradients, &rows);
        let hist = histogram.then(|| Arc::new(build(&self.binned, gradients, &rows)));
        let mut hists = HashMap::new();
        if let Some(hist) = &hist {
            hists.insert(0, hist.clone());
        }
        self.growing = Some(Growing {
            output,
            ranges: vec![Some(0..rows.len())],
            rows,
            hists,
        });
        Ok((sum, hist))
    }

    pub fn split(
        &mut self,
        splits: &[NodeSplit],
        histograms: bool,
    ) -> Result<Vec<Option<Children>>> {
        let Some(growing) = self.growing.as_mut() else {
            return exec_err!("a split with no tree growing");
        };
        let mut ranges = Vec::with_capacity(splits.len());
        for split in splits {
            match growing.ranges.get(split.node).cloned().flatten() {
                Some(range) => ranges.push(range),
                None => return exec_err!("a split of node {} the tree does not have", split.node),
            }
        }
        // Each split's rows are a slice of its own: the nodes' ranges are
        // disjoint; cut them in ascending order.
        let mut order: Vec<usize> = (0..splits.len()).collect();
        order.sort_by_key(|&i| ranges[i].start);
        let mut slices: Vec<Option<(&mut [u32], &NodeSplit)>> =
            (0..splits.len()).map(|_| None).collect();
        let mut rest: &mut [u32] = &mut growing.rows;
        let mut at = 0;
        for &i in &order {
            let range = &ranges[i];
            if range.start < at {
                return exec_err!("splits of overlapping nodes");
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - at);
            let (slice, tail) = tail.split_at_mut(range.len());
            slices[i] = Some((slice, &splits[i]));
            rest = tail;
            at = range.end;
        }
        let lefts = partition_all(&self.binned, slices.into_iter().flatten().collect());
        // partition_all answered in ascending order; back to the splits' order.
        let mut left_of = vec![0; splits.len()];
        for (&i, left) in order.iter().zip(lefts) {
            left_of[i] = left;
        }
        let mut parents = std::mem::take(&mut growing.hists);
        let highest = splits
            .iter()
            .map(|s| s.left.max(s.right))
            .max()
            .unwrap_or(0);
        if growing.ranges.len() <= highest {
            growing.ranges.resize(highest + 1, None);
        }
        for ((split, range), left) in splits.iter().zip(&ranges).zip(&left_of) {
            let middle = range.start + left;
            growing.ranges[split.left] = Some(range.start..middle);
            growing.ranges[split.right] = Some(middle..range.end);
        }
        if !histograms {
            return Ok(vec![None; splits.len()]);
        }
        let work: Vec<(Range<usize>, Range<usize>, Option<Hist>)> = splits
            .iter()
            .zip(&ranges)
            .zip(&left_of)
            .map(|((split, range), left)| {
                let middle = range.start + left;
                (
                    range.start..middle,
                    middle..range.end,
                    parents.remove(&split.node),
                )
            })
            .collect();
        let n = self.labels.len();
        let gradients = &self.gradients[growing.output * n..(growing.output + 1) * n];
        let (binned, rows) = (&self.binned, &growing.rows);
        let children: Vec<Children> = work
            .into_par_iter()
            .map(|(left, right, parent)| {
                // Build the smaller child's histogram; the larger is the rest.
                let left_built = left.len() <= right.len();
                let small_rows = if left_built { left } else { right };
                let small = build(binned, gradients, &rows[small_rows]);
                let mut large = match parent {
                    Some(parent) => Arc::try_unwrap(parent).unwrap_or_else(|p| (*p).clone()),
                    None => build(binned, gradients, &[]),
                };
                histogram::subtract(&mut large, &small);
                let (small, large) = (Arc::new(small), Arc::new(large));
                if left_built {
                    Children {
                        left: small,
                        right: large,
                        left_built,
                    }
                } else {
                    Children {
                        left: large,
                        right: small,
                        left_built,
                    }
                }
            })
            .collect();
        for (split, children) in splits.iter().zip(&children) {
            growing.hists.insert(split.left, children.left.clone());
            growing.hists.insert(split.right, children.right.clone());
        }
        Ok(children.into_iter().map(Some).collect())
    }

    pub fn finish(&mut self, tree: &Tree, output: usize, apply: Apply) -> Result<()> {
        let n = self.rows();
        let part = output * n..(output + 1) * n;
        if part.end > self.margins.len() || tree.nodes.is_empty() {
            return exec_err!("a tree for output {output} of {}", self.outputs());
        }
        let growing = self.growing.take().filter(|g| g.output == output);
        let target = match apply {
            Apply::Add { .. } => &mut self.margins[part.clone()],
            Apply::Average { .. } => &mut self.sums[part.clone()],
        };
        let scale = match apply {
            Apply::Add { scale } => scale,
            Apply::Average { .. } => 1.0,
        };
        match growing {
            // The tree grew on every row: each leaf's rows are a range.
            Some(g) if g.rows.len() == n => {
                for (node, range) in tree.nodes.iter().zip(&g.ranges) {
                    if let (None, Some(range)) = (&node.split, range) {
                        for &r in &g.rows[range.clone()] {
                            target[r as usize] += scale * node.value;
                        }
                    }
                }
            }
            _ => add_tree(tree, &self.binned, target, scale),
        }
        if let Apply::Average { base, scale } = apply {
            let (margins, sums) = (&mut self.margins[part.clone()], &self.sums[part]);
            margins
                .par_chunks_mut(BLOCK_ROWS)
                .zip(sums.par_chunks(BLOCK_ROWS))
                .for_each(|(m, s)| {
                    for (m, s) in m.iter_mut().zip(s) {
                        *m = base + scale * s;
                    }
                });
        }
        Ok(())
    }

    pub fn margins(&self) -> Margins {
        Margins {
            keys: self.keys.clone(),
            labels: self.labels.clone(),
            margins: self.margins.clone(),
        }
    }
}

/// What output `output`'s forest trees fit for a row labelled `label`: the
/// label, or for class shares the 0/1 indicator of class `output`.
fn target(objective: Objective, output: usize, label: f64) -> f64 {
    match objective {
        Objective::ClassShares { .. } => f64::from(u8::from(label as usize == output)),
        _ => label,
    }
}

/// Σ (margin − target)² over `margins`, in blocks on every core added in order.
fn squared_error(margins: &[f64], target: impl Fn(usize) -> f64 + Sync) -> f64 {
    let sums: Vec<f64> = margins
        .par_chunks(BLOCK_ROWS)
        .enumerate()
        .map(|(block, m)| {
            m.iter()
                .enumerate()
                .map(|(i, m)| {
                    let d = m - target(block * BLOCK_ROWS + i);
                    d * d
                })
                .sum::<f64>()
        })
        .collect();
    sums.iter().sum()
}
