//! Random forests: trees grown independently on bootstrap samples of the rows
//! (see [`super::sampling::bootstrap_count`]), each node choosing among a
//! seeded sample of the features, their values averaged.
//!
//! Each tree is a least-squares tree fit to the label: gradient `base − y`
//! and Hessian 1 (times the row's bootstrap count) at the label's mean, so a
//! leaf's value with `l2 = 0` is the mean label of its rows less the base,
//! and a split's gain is the reduction in squared error. On a 0/1 label that
//! is the Gini impurity's reduction (halved): the margin is then a class-1
//! probability, averaged over trees, as scikit-learn's and Spark's forests
//! average their trees' class frequencies.

use datafusion::common::Result;

use super::boost::{BoostParams, Boosted, Objective, bases};
use super::cuts::Cuts;
use super::grow::{GrowParams, grow};
use super::holder::{Apply, Fit, GradientSpec, RowHolder, RowSample};
use super::sampling::tree_seed;

/// Grows `params.trees` trees on `rows` (cut by `cuts`), one per output for
/// each bootstrap sample (`objective`: least squares on the label, or on each
/// class's indicator for [`Objective::ClassShares`]); `tree_done` hears the
/// training loss of the forest of the trees so far, and its loss on the
/// `held_out` rows.
pub async fn forest(
    rows: &dyn RowHolder,
    held_out: Option<&dyn RowHolder>,
    cuts: &[Cuts],
    objective: Objective,
    params: &BoostParams,
    mut tree_done: impl FnMut(usize, f64, Option<f64>) + Send,
) -> Result<Boosted> {
    let outputs = objective.outputs();
    let base = bases(rows, objective).await?;
    rows.start(&base).await?;
    if let Some(h) = held_out {
        h.start(&base).await?;
    }
    let every = vec![true; cuts.len()];
    // Each tree's values are divided by their number: the trees' sum is
    // their mean, and a forest applies as boosted trees do.
    let share = 1.0 / params.trees as f64;
    let fit = |seed: u64| Fit::Forest {
        objective,
        bases: base.clone(),
        rate: params.subsample,
        seed,
    };
    let mut trees = Vec::with_capacity(params.trees * outputs);
    for index in 0..params.trees {
        // One bootstrap sample for every output's tree.
        let spec = GradientSpec {
            fit: fit(tree_seed(params.seed, index)),
            pairs: true,
        };
        let stats = rows.gradients(&spec).await?;
        if index > 0 {
            // The loss of the forest before this round's trees.
            let held = match held_out {
                Some(h) => Some(h.gradients(&spec).await?.mean_loss()),
                None => None,
            };
            tree_done(index, stats.mean_loss(), held);
        }
        // The forest of the trees so far: their mean, not their sum's share.
        let scale = params.trees as f64 / (index + 1) as f64;
        for (output, output_base) in base.iter().enumerate() {
            let grow_params = GrowParams {
                seed: tree_seed(params.seed, index * outputs + output),
                learning_rate: share,
                ..params.grow
            };
            let tree = grow(
                rows,
                cuts,
                output,
                stats.scale(output),
                RowSample::Weighted,
                &every,
                &grow_params,
            )
            .await?;
            let apply = Apply::Average {
                base: *output_base,
                scale,
            };
            rows.finish(&tree, output, apply).await?;
            if let Some(h) = held_out {
                h.finish(&tree, output, apply).await?;
            }
            trees.push(tree);
        }
    }
    // The loss of the whole forest.
    let last = GradientSpec {
        fit: fit(0),
        pairs: false,
    };
    let loss = rows.gradients(&last).await?.mean_loss();
    let held = match held_out {
        Some(h) => Some(h.gradients(&last).await?.mean_loss()),
        None => None,
    };
    tree_done(params.trees, loss, held);
    Ok(Boosted { base, trees })
}
