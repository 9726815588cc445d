//! Trees in XGBoost's JSON model format (`Booster.save_model("m.json")`), so
//! that XGBoost can load an ember model: `xgb.Booster(model_file=...)`.
//!
//! XGBoost keeps thresholds, leaf values and the base score as float32 and
//! reads features as float32 (a row goes left when `x < threshold`, as in
//! ember). Its margins therefore equal ember's to float32 precision, and
//! exactly where features are float32 values; a float64 feature within
//! float32 rounding of a threshold may go the other way in XGBoost.

use serde_json::{Value, json};

use super::boost::Objective;
use super::tree::Tree;

/// How the trees combine in XGBoost's terms.
pub enum Combine {
    /// One tree per round, summed.
    Boosted,
    /// One round of parallel trees (their values already divided by their number).
    Forest,
}

/// The XGBoost model of `trees` on `bases` (a margin per output) for
/// `objective` over the features `names` (one per feature column).
pub fn xgboost_model(
    objective: Objective,
    bases: &[f64],
    trees: &[Tree],
    names: &[String],
    combine: Combine,
) -> Value {
    let (objective_name, base_score) = match objective {
        // (A forest's class shares have no XGBoost form: callers refuse them.)
        Objective::SquaredError | Objective::ClassShares { .. } => {
            ("reg:squarederror", bases.to_vec())
        }
        // XGBoost keeps a logistic model's base score as a probability.
        Objective::Logistic => (
            "binary:logistic",
            bases.iter().map(|b| 1.0 / (1.0 + (-b).exp())).collect(),
        ),
        // and a softmax model's as margins, one per class.
        Objective::Softmax { .. } => ("multi:softprob", bases.to_vec()),
    };
    let outputs = objective.outputs();
    let count = trees.len();
    let (parallel, indptr): (usize, Vec<usize>) = match combine {
        Combine::Boosted => (1, (0..=count).step_by(outputs).collect()),
        Combine::Forest => (count, vec![0, count]),
    };
    let base_score: Vec<String> = base_score
        .iter()
        .map(|b| format!("{:E}", *b as f32))
        .collect();
    let num_class = if outputs > 1 { outputs } else { 0 };
    let objective_json = match objective {
        Objective::Softmax { classes } => json!({
            "name": objective_name,
            "softmax_multiclass_param": {"num_class": classes.to_string()},
        }),
        _ => json!({
            "name": objective_name,
            "reg_loss_param": {"scale_pos_weight": "1"},
        }),
    };
    let width = names.len();
    json!({
        "learner": {
            "attributes": {},
            "feature_names": names,
            "feature_types": vec!["float"; width],
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {
                        "num_parallel_tree": parallel.to_string(),
                        "num_trees": count.to_string(),
                    },
                    "iteration_indptr": indptr,
                    "tree_info": (0..count).map(|i| i % outputs).collect::<Vec<_>>(),
                    "trees": trees
                        .iter()
                        .enumerate()
                        .map(|(id, tree)| tree_json(id, tree, width))
                        .collect::<Vec<_>>(),
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": format!("[{}]", base_score.join(",")),
                "boost_from_average": "0",
                "num_class": num_class.to_string(),
                "num_feature": width.to_string(),
                "num_target": "1",
            },
            "objective": objective_json,
        },
        "version": [3, 0, 0],
    })
}

/// One tree as XGBoost's arrays, node by node (a leaf's split condition is
/// its value).
fn tree_json(id: usize, tree: &Tree, width: usize) -> Value {
    let n = tree.nodes.len();
    let mut parents = vec![i64::from(i32::MAX); n];
    let (mut left, mut right) = (vec![-1i64; n], vec![-1i64; n]);
    let (mut feature, mut condition) = (vec![0usize; n], vec![0f32; n]);
    let (mut default_left, mut gain) = (vec![0u8; n], vec![0f32; n]);
    for (i, node) in tree.nodes.iter().enumerate() {
        match &node.split {
            Some(split) => {
                left[i] = split.left as i64;
                right[i] = split.right as i64;
                parents[split.left] = i as i64;
                parents[split.right] = i as i64;
                feature[i] = split.feature;
                condition[i] = split.threshold as f32;
                default_left[i] = u8::from(split.default_left);
                gain[i] = split.gain as f32;
            }
            None => condition[i] = node.value as f32,
        }
    }
    json!({
        "base_weights": tree.nodes.iter().map(|n| n.value as f32).collect::<Vec<_>>(),
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": default_left,
        "id": id,
        "left_children": left,
        "loss_changes": gain,
        "parents": parents,
        "right_children": right,
        "split_conditions": condition,
        "split_indices": feature,
        "split_type": vec![0; n],
        "sum_hessian": tree.nodes.iter().map(|n| n.cover as f32).collect::<Vec<_>>(),
        "tree_param": {
            "num_deleted": "0",
            "num_feature": width.to_string(),
            "num_nodes": n.to_string(),
            "size_leaf_vector": "1",
        },
    })
}
