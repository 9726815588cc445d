//! The driver's side of trees grown on kept rows: each executor's shard seen
//! as a [`RowHolder`] over Flight, and all of them as one ([`MergedRows`]).
//!
//! An executor answers a split with the one child it built from its rows;
//! the other is its parent less that child. The driver keeps each executor's
//! parents to make it (integers: exact), so a level moves one histogram per
//! split and executor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::{DataFusionError, Result, exec_err};
use ember_ml_ops::kernels::histogram::{self, GradPair, GradScale};
use ember_ml_ops::models::trees::{
    self, Apply, Children, Cuts, GradientSpec, GradientStats, Hist, LabelStats, Margins,
    MergedRows, NodeSplit, RowHolder, RowSample, Tree, TreeBinning,
};
use futures::future::join_all;

use super::driver::{Holder, Placement, ask};
use super::tree_wire::{self, TREE, TreeCall, TreeRequest};
use super::wire;

/// One executor's shard of a training's rows.
struct ExecutorRows {
    holder: Holder,
    training: String,
    /// The histograms of the nodes of the growing tree that may split next,
    /// as this executor's rows make them.
    parents: Mutex<HashMap<usize, Hist>>,
}

impl ExecutorRows {
    async fn call(&self, call: TreeCall) -> Result<Bytes> {
        call_on(&self.holder, &self.training, call).await
    }

    fn parents(&self) -> Result<std::sync::MutexGuard<'_, HashMap<usize, Hist>>> {
        self.parents
            .lock()
            .map_err(|_| DataFusionError::Internal("tree parents lock poisoned".into()))
    }
}

async fn call_on(holder: &Holder, training: &str, call: TreeCall) -> Result<Bytes> {
    let body = wire::to_json(&TreeRequest {
        training: training.to_string(),
        partitions: holder.partitions.clone(),
        call,
    })?;
    ask(holder.clone(), TREE, body).await
}

#[async_trait]
impl RowHolder for ExecutorRows {
    async fn label_stats(&self, classes: usize) -> Result<LabelStats> {
        wire::from_json(&self.call(TreeCall::LabelStats { classes }).await?)
    }

    async fn label_sum(&self, exponent: i32) -> Result<i128> {
        let text: String = wire::from_json(&self.call(TreeCall::LabelSum { exponent }).await?)?;
        text.parse()
            .map_err(|e| DataFusionError::Execution(format!("a label sum '{text}': {e}")))
    }

    async fn start(&self, bases: &[f64]) -> Result<()> {
        let bases = bases.to_vec();
        self.call(TreeCall::Start { bases }).await.map(|_| ())
    }

    async fn gradients(&self, spec: &GradientSpec) -> Result<GradientStats> {
        let spec = spec.clone();
        wire::from_json(&self.call(TreeCall::Gradients { spec }).await?)
    }

    async fn root(
        &self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)> {
        let call = TreeCall::Root {
            output,
            scale,
            sample,
            histogram,
        };
        let (sum, hist) = tree_wire::decode_root(&self.call(call).await?)?;
        let hist = hist.map(Arc::new);
        let mut parents = self.parents()?;
        parents.clear();
        if let Some(hist) = &hist {
            parents.insert(0, hist.clone());
        }
        Ok((sum, hist))
    }

    async fn split(&self, splits: &[NodeSplit], histograms: bool) -> Result<Vec<Option<Children>>> {
        let call = TreeCall::Split {
            splits: splits.to_vec(),
            histograms,
        };
        let built = tree_wire::decode_split(&self.call(call).await?)?;
        if built.len() != splits.len() {
            return exec_err!("{} answers to {} splits", built.len(), splits.len());
        }
        let mut parents = self.parents()?;
        let mut earlier = std::mem::take(&mut *parents);
        let mut out = Vec::with_capacity(splits.len());
        for (split, built) in splits.iter().zip(built) {
            let Some((left_built, built)) = built else {
                out.push(None);
                continue;
            };
            let Some(parent) = earlier.remove(&split.node) else {
                return exec_err!("a histogram for node {} with no parent's", split.node);
            };
            let mut other = Arc::try_unwrap(parent).unwrap_or_else(|p| (*p).clone());
            histogram::subtract(&mut other, &built);
            let (built, other) = (Arc::new(built), Arc::new(other));
            let (left, right) = if left_built {
                (built, other)
            } else {
                (other, built)
            };
            parents.insert(split.left, left.clone());
            parents.insert(split.right, right.clone());
            out.push(Some(Children {
                left,
                right,
                left_built,
            }));
        }
        Ok(out)
    }

    async fn finish(&self, tree: &Tree, output: usize, apply: Apply) -> Result<()> {
        self.parents()?.clear();
        let call = TreeCall::Finish {
            tree: tree.clone(),
            output,
            apply,
        };
        self.call(call).await.map(|_| ())
    }

    async fn margins(&self) -> Result<Margins> {
        tree_wire::decode_margins(&self.call(TreeCall::Margins).await?)
    }
}

/// Bins the rows `placement` keeps on its executors (cutting them first
/// from every executor's sample when `binning` has no cuts); the cuts and
/// the executors' shards as one holder.
pub(super) async fn bin_kept_rows(
    placement: &Placement,
    binning: &TreeBinning,
) -> Result<(Vec<Cuts>, Arc<dyn RowHolder>)> {
    let mut binning = binning.clone();
    let training = placement.training.as_str();
    if binning.cuts.is_none() {
        let fraction = trees::cut_fraction(placement.rows);
        let calls = placement.holders.iter().map(|holder| {
            let call = TreeCall::Sample {
                binning: binning.clone(),
                fraction,
            };
            async move { tree_wire::decode_samples(&call_on(holder, training, call).await?) }
        });
        let samples = join_all(calls).await.into_iter().collect::<Result<_>>()?;
        binning.cuts = Some(trees::cuts_of(samples, &binning));
    }
    let calls = placement.holders.iter().map(|holder| {
        let call = TreeCall::Init {
            binning: binning.clone(),
        };
        call_on(holder, training, call)
    });
    join_all(calls)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let parts = placement
        .holders
        .iter()
        .map(|holder| {
            Arc::new(ExecutorRows {
                holder: holder.clone(),
                training: placement.training.clone(),
                parents: Mutex::new(HashMap::new()),
            }) as Arc<dyn RowHolder>
        })
        .collect();
    let cuts = binning.cuts.unwrap_or_default();
    Ok((cuts, Arc::new(MergedRows::new(parts))))
}
