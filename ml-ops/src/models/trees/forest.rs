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

use super::boost::{BLOCK_ROWS, BoostParams, Boosted, HeldOut, Objective, Rows};
use super::grow::{GrowParams, add_tree, grow};
use super::sampling::{bootstrap, tree_seed};

/// Grows `params.trees` trees on `rows`; `tree_done` hears the training loss
/// of the forest of the trees so far, and its loss on the `held_out` rows.
pub fn forest(
    rows: &Rows,
    held_out: Option<&HeldOut>,
    params: &BoostParams,
    mut tree_done: impl FnMut(usize, f64, Option<f64>),
) -> Boosted {
    let objective = Objective::SquaredError;
    let base = objective.base_margins(&rows.labels)[0];
    let unit_pairs: Vec<_> = rows
        .labels
        .par_iter()
        .map(|y| [(base - y) as f32, 1.0f32])
        .collect();
    let every = vec![true; rows.binned.width];
    // Each tree's values are divided by their number: the trees' sum is
    // their mean, and a forest applies as boosted trees do.
    let share = 1.0 / params.trees as f64;
    let mut sums = vec![0.0; rows.labels.len()];
    let mut margins = vec![base; rows.labels.len()];
    let mut trees = Vec::with_capacity(params.trees);
    // The held-out rows, their trees' sums and their margins.
    let mut held = held_out.map(|h| (h, vec![0.0; h.labels.len()], vec![base; h.labels.len()]));
    for index in 0..params.trees {
        let seed = tree_seed(params.seed, index);
        let (sample, gradients) = bootstrap(&rows.keys, &unit_pairs, params.subsample, seed);
        let grow_params = GrowParams {
            seed,
            learning_rate: share,
            ..params.grow
        };
        let grown = grow(&rows.binned, &gradients, sample, &every, &grow_params);
        grown.add_to(&rows.binned, &mut sums);
        // The forest of the trees so far: their mean, not their sum's share.
        let scale = params.trees as f64 / (trees.len() + 1) as f64;
        average(&mut margins, &sums, base, scale);
        let held_out_loss = held.as_mut().map(|(h, sums, margins)| {
            add_tree(&grown.tree, &h.binned, sums, 1.0);
            average(margins, sums, base, scale);
            objective.loss(margins, &h.labels)
        });
        trees.push(grown.tree);
        tree_done(
            trees.len(),
            objective.loss(&margins, &rows.labels),
            held_out_loss,
        );
    }
    Boosted {
        base: vec![base],
        trees,
        margins,
        held_out_margins: held.map(|(_, _, margins)| margins),
    }
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
