//! Random forests: trees grown independently on bootstrap samples of the rows
//! (see [`bootstrap`]), each node choosing among a seeded sample of the
//! features, their values averaged.
//!
//! Each tree is a least-squares tree fit to the label: gradient `base − y`
//! and Hessian 1 (times the row's bootstrap count) at the label's mean, so a
//! leaf's value with `l2 = 0` is the mean label of its rows less the base,
//! and a split's gain is the reduction in squared error. On a 0/1 label that
//! is the Gini impurity's reduction (halved): the margin is then a class-1
//! probability, averaged over trees, as scikit-learn's and Spark's forests
//! average their trees' class frequencies.

use rayon::prelude::*;

use super::boost::{BLOCK_ROWS, BoostParams, Boosted, HeldOut, Objective, Rows, starting_margins};
use super::grow::{GrowParams, add_tree, grow};
use super::sampling::{bootstrap, tree_seed};

/// Grows `params.trees` trees on `rows`, one per output for each bootstrap
/// sample (`objective`: least squares on the label, or on each class's
/// indicator for [`Objective::ClassShares`]); `tree_done` hears the training
/// loss of the forest of the trees so far, and its loss on the `held_out` rows.
pub fn forest(
    rows: &Rows,
    held_out: Option<&HeldOut>,
    objective: Objective,
    params: &BoostParams,
    mut tree_done: impl FnMut(usize, f64, Option<f64>),
) -> Boosted {
    let outputs = objective.outputs();
    let n = rows.labels.len();
    // What each output's trees fit: the label, or a class's 0/1 indicator.
    let targets: Vec<Vec<f64>> = (0..outputs)
        .map(|output| target(objective, output, &rows.labels))
        .collect();
    let base = objective.base_margins(&rows.labels);
    let unit_pairs: Vec<Vec<_>> = targets
        .iter()
        .zip(&base)
        .map(|(target, base)| {
            target
                .par_iter()
                .map(|y| [(base - y) as f32, 1.0f32])
                .collect()
        })
        .collect();
    let every = vec![true; rows.binned.width];
    // Each tree's values are divided by their number: the trees' sum is
    // their mean, and a forest applies as boosted trees do.
    let share = 1.0 / params.trees as f64;
    let mut sums = vec![0.0; n * outputs];
    let mut margins = starting_margins(&base, n);
    let mut trees = Vec::with_capacity(params.trees * outputs);
    // The held-out rows, their targets, their trees' sums and their margins.
    let mut held = held_out.map(|h| {
        let rows = h.labels.len();
        let targets: Vec<f64> = (0..outputs)
            .flat_map(|output| target(objective, output, &h.labels))
            .collect();
        (
            h,
            targets,
            vec![0.0; rows * outputs],
            starting_margins(&base, rows),
        )
    });
    let flat_targets: Vec<f64> = targets.concat();
    for index in 0..params.trees {
        // One bootstrap sample for every output's tree.
        let sample_seed = tree_seed(params.seed, index);
        // The forest of the trees so far: their mean, not their sum's share.
        let scale = params.trees as f64 / (index + 1) as f64;
        for output in 0..outputs {
            let (sample, gradients) = bootstrap(
                &rows.keys,
                &unit_pairs[output],
                params.subsample,
                sample_seed,
            );
            let grow_params = GrowParams {
                seed: tree_seed(params.seed, index * outputs + output),
                learning_rate: share,
                ..params.grow
            };
            let grown = grow(&rows.binned, &gradients, sample, &every, &grow_params);
            let part = output * n..(output + 1) * n;
            grown.add_to(&rows.binned, &mut sums[part.clone()]);
            average(&mut margins[part.clone()], &sums[part], base[output], scale);
            if let Some((h, _, sums, margins)) = held.as_mut() {
                let rows = h.labels.len();
                let part = output * rows..(output + 1) * rows;
                add_tree(&grown.tree, &h.binned, &mut sums[part.clone()], 1.0);
                average(&mut margins[part.clone()], &sums[part], base[output], scale);
            }
            trees.push(grown.tree);
        }
        let held_out_loss = held
            .as_ref()
            .map(|(h, targets, _, margins)| squared_error(margins, targets, h.labels.len()));
        let loss = squared_error(&margins, &flat_targets, n);
        tree_done(index + 1, loss, held_out_loss);
    }
    Boosted {
        base,
        trees,
        margins,
        held_out_margins: held.map(|(_, _, _, margins)| margins),
    }
}

/// What output `output`'s trees fit: the label, or for class shares the
/// 0/1 indicator of class `output`.
fn target(objective: Objective, output: usize, labels: &[f64]) -> Vec<f64> {
    match objective {
        Objective::ClassShares { .. } => labels
            .iter()
            .map(|y| f64::from(u8::from(*y as usize == output)))
            .collect(),
        _ => labels.to_vec(),
    }
}

/// The squared error of `margins` against `targets` (both output by output)
/// summed over the outputs, per row of `rows`; in blocks on every core,
/// added in order.
fn squared_error(margins: &[f64], targets: &[f64], rows: usize) -> f64 {
    let sums: Vec<f64> = margins
        .par_chunks(BLOCK_ROWS)
        .zip(targets.par_chunks(BLOCK_ROWS))
        .map(|(m, t)| m.iter().zip(t).map(|(m, t)| (m - t) * (m - t)).sum::<f64>())
        .collect();
    sums.iter().sum::<f64>() / rows.max(1) as f64
}

/// `margins` = `base` + `scale` × `sums`, on every core.
fn average(margins: &mut [f64], sums: &[f64], base: f64, scale: f64) {
    margins
        .par_chunks_mut(BLOCK_ROWS)
        .zip(sums.par_chunks(BLOCK_ROWS))
        .for_each(|(m, s)| {
            for (m, s) in m.iter_mut().zip(s) {
                *m = base + scale * s;
            }
        });
}
