//! One decision tree: nodes in an array, the root first, as XGBoost keeps them.

use serde::{Deserialize, Serialize};

/// A node: a split with two children, or a leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The leaf's value (learning rate applied); for a split, the value the
    /// node would have as a leaf.
    pub value: f64,
    /// Sum of the Hessians of the node's training rows.
    pub cover: f64,
    /// The split, or `None` for a leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

/// Rows whose feature is below `threshold` go left; NULL goes where `default_left` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Flattened feature index.
    pub feature: usize,
    pub threshold: f64,
    /// The last bin that goes left (-1: none of the values).
    pub bin: i32,
    pub default_left: bool,
    pub left: usize,
    pub right: usize,
    /// How much the split lowered the objective.
    pub gain: f64,
}

/// A regression tree over flattened features.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// Which output it adds to (the class, for a multiclass model).
    #[serde(default)]
    pub group: usize,
}

impl Tree {
    /// The value for a row whose feature `f` is `value(f)` (NaN when NULL).
    pub fn predict(&self, value: impl Fn(usize) -> f64) -> f64 {
        let mut node = &self.nodes[0];
        while let Some(split) = &node.split {
            let x = value(split.feature);
            let left = if x.is_nan() {
                split.default_left
            } else {
                x < split.threshold
            };
            node = &self.nodes[if left { split.left } else { split.right }];
        }
        node.value
    }

    /// The value for a row of bin codes, `missing(f)` being feature `f`'s NULL code.
    pub fn predict_codes(&self, codes: &[u8], missing: &[u8]) -> f64 {
        let mut node = &self.nodes[0];
        while let Some(split) = &node.split {
            let code = codes[split.feature];
            let left = if code == missing[split.feature] {
                split.default_left
            } else {
                i32::from(code) <= split.bin
            };
            node = &self.nodes[if left { split.left } else { split.right }];
        }
        node.value
    }

    /// Levels below the root of its deepest leaf.
    pub fn depth(&self) -> usize {
        fn below(tree: &Tree, node: usize) -> usize {
            match &tree.nodes[node].split {
                None => 0,
                Some(s) => 1 + below(tree, s.left).max(below(tree, s.right)),
            }
        }
        if self.nodes.is_empty() {
            0
        } else {
            below(self, 0)
        }
    }

    /// Leaves.
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.split.is_none()).count()
    }
}
