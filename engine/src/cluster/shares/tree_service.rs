//! An executor's side of tree training: its kept rows binned into a
//! [`Shard`] once, then every call of the driver's
//! [`ember_ml_ops::models::trees::RowHolder`] run on it (on the blocking
//! pool; the shard's work spreads over the executor's cores).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::models::trees::{self, Shard};

use super::store::ShareStore;
use super::tree_wire::{self, BuiltChild, TreeCall, TreeRequest};
use super::wire;

/// Bytes a shard may grow by per row and output after it is made (margins,
/// a forest's sums, float pairs, one tree's integer pairs).
const STATE_BYTES_PER_ROW: usize = 8 + 8 + 16 + 8;

/// Runs one tree call on `store`'s rows of the request's training.
pub(super) async fn tree_call(store: &Arc<ShareStore>, request: TreeRequest) -> Result<Bytes> {
    let TreeRequest {
        training,
        partitions,
        call,
    } = request;
    match call {
        TreeCall::Sample { binning, fraction } => {
            let batches = kept_batches(store, &training, &partitions)?;
            let samples =
                blocking(move || trees::sample_for_cuts(&binning, &batches, fraction)).await?;
            Ok(tree_wire::encode_samples(&samples))
        }
        TreeCall::Init { binning } => {
            let batches = kept_batches(store, &training, &partitions)?;
            let outputs = binning.outputs.max(1);
            let shard = blocking(move || trees::shard_of(&binning, &batches)).await?;
            let rows = shard.rows();
            let reservation =
                store.reserve(shard.bytes() + rows * outputs * STATE_BYTES_PER_ROW)?;
            store.set_tree(&training, shard, reservation)?;
            log::info!("training {training}: {rows} rows binned for trees");
            wire::to_json(&rows)
        }
        call => {
            let shard = store.tree(&training)?;
            blocking(move || on_shard(&shard, call)).await
        }
    }
}

/// The batches of the kept shares `partitions` of `training`.
fn kept_batches(
    store: &ShareStore,
    training: &str,
    partitions: &[u32],
) -> Result<Vec<RecordBatch>> {
    Ok(store
        .shares(training, partitions)?
        .iter()
        .flat_map(|(_, share)| share.batches.iter().cloned())
        .collect())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DataFusionError::External(e.into()))?
}

/// A holder's call on the shard; its answer.
fn on_shard(shard: &Mutex<Shard>, call: TreeCall) -> Result<Bytes> {
    let mut shard = shard
        .lock()
        .map_err(|_| DataFusionError::Internal("tree shard lock poisoned".into()))?;
    match call {
        TreeCall::LabelStats { classes } => wire::to_json(&shard.label_stats(classes)),
        // i128 as text: JSON numbers are not that wide everywhere.
        TreeCall::LabelSum { exponent } => wire::to_json(&shard.label_sum(exponent).to_string()),
        TreeCall::Start { bases } => {
            shard.start(&bases);
            Ok(Bytes::new())
        }
        TreeCall::Gradients { spec } => wire::to_json(&shard.gradients(&spec)),
        TreeCall::Root {
            output,
            scale,
            sample,
            histogram,
        } => {
            let (sum, hist) = shard.root(output, scale, sample, histogram)?;
            Ok(tree_wire::encode_root(
                sum,
                hist.as_deref().map(Vec::as_slice),
            ))
        }
        TreeCall::Split { splits, histograms } => {
            // Only the child built from its rows goes back: the driver has
            // the parent, and the other child is the rest of it.
            let children: Vec<BuiltChild> = shard
                .split(&splits, histograms)?
                .into_iter()
                .map(|c| {
                    c.map(|c| {
                        let built = if c.left_built { &c.left } else { &c.right };
                        (c.left_built, built.as_ref().clone())
                    })
                })
                .collect();
            Ok(tree_wire::encode_split(&children))
        }
        TreeCall::Finish {
            tree,
            output,
            apply,
        } => {
            shard.finish(&tree, output, apply)?;
            Ok(Bytes::new())
        }
        TreeCall::Margins => Ok(tree_wire::encode_margins(&shard.margins())),
        TreeCall::Sample { .. } | TreeCall::Init { .. } => Err(DataFusionError::Internal(
            "a shard call that makes the shard".into(),
        )),
    }
}
