//! Trees that outlive an executor: a holder of kept rows that, when an
//! executor holding some of them is lost, packs the rows again on the
//! executors there are, bins them with the same cuts, and replays what the
//! rows have been through — the base margins, every finished tree, the
//! round's gradients, the growing tree's root and splits — before it asks
//! again. Every step is a function of the rows and the calls, and sums are
//! integers: the model is the one a fault-free run gives.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::kernels::histogram::{GradPair, GradScale};
use ember_ml_ops::models::trees::{
    Apply, Children, GradientSpec, GradientStats, Hist, LabelStats, Margins, NodeSplit, RowHolder,
    RowSample, Tree, TreeBinning,
};
use futures::future::BoxFuture;

use super::driver::KeptRows;
use super::tree_rows::bin_kept_rows;
use crate::cluster::fault::{Fault, RUN_ATTEMPTS};

/// What the rows have been through since they were binned.
#[derive(Default, Clone)]
struct Journal {
    bases: Option<Vec<f64>>,
    finished: Vec<(Tree, usize, Apply)>,
    gradients: Option<GradientSpec>,
    root: Option<(usize, GradScale, RowSample, bool)>,
    splits: Vec<(Vec<NodeSplit>, bool)>,
}

/// Kept rows binned for trees, packed and binned again when lost.
pub(super) struct RecoveringRows {
    kept: Arc<KeptRows>,
    /// With the cuts the rows were binned by.
    binning: TreeBinning,
    rows: Mutex<Arc<dyn RowHolder>>,
    journal: Mutex<Journal>,
}

impl RecoveringRows {
    pub(super) fn new(kept: Arc<KeptRows>, binning: TreeBinning, rows: Arc<dyn RowHolder>) -> Self {
        Self {
            kept,
            binning,
            rows: Mutex::new(rows),
            journal: Mutex::new(Journal::default()),
        }
    }

    fn rows(&self) -> Result<Arc<dyn RowHolder>> {
        self.rows
            .lock()
            .map(|r| r.clone())
            .map_err(|_| DataFusionError::Internal("tree rows lock poisoned".into()))
    }

    fn journal(&self) -> Result<std::sync::MutexGuard<'_, Journal>> {
        self.journal
            .lock()
            .map_err(|_| DataFusionError::Internal("tree journal lock poisoned".into()))
    }

    /// `call` on the rows, again after a recovery when their holder was lost;
    /// `record` notes the call once it went through.
    async fn run<'a, T>(
        &'a self,
        call: impl Fn(Arc<dyn RowHolder>) -> BoxFuture<'a, Result<T>>,
        record: impl FnOnce(&mut Journal),
    ) -> Result<T> {
        let mut attempt = 1;
        loop {
            match call(self.rows()?).await {
                Ok(answer) => {
                    record(&mut *self.journal()?);
                    return Ok(answer);
                }
                Err(e) if attempt < RUN_ATTEMPTS && lost(&e) => {
                    attempt += 1;
                    log::warn!("tree training rows lost ({e}); keeping them again");
                    self.recover().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Packs and bins the rows again and replays the journal on them; again
    /// if another holder is lost meanwhile.
    async fn recover(&self) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.rebuild().await {
                Ok(rows) => {
                    *self.rows.lock().map_err(|_| {
                        DataFusionError::Internal("tree rows lock poisoned".into())
                    })? = rows;
                    return Ok(());
                }
                Err(e) if attempt < RUN_ATTEMPTS && lost(&e) => {
                    attempt += 1;
                    log::warn!("tree training rows lost again while recovering ({e})");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn rebuild(&self) -> Result<Arc<dyn RowHolder>> {
        self.kept.pack().await?;
        let placement = self.kept.placement()?;
        let (_, rows) = bin_kept_rows(&placement, &self.binning).await?;
        let journal = self.journal()?.clone();
        if let Some(bases) = &journal.bases {
            rows.start(bases).await?;
        }
        for (tree, output, apply) in &journal.finished {
            rows.finish(tree, *output, *apply).await?;
        }
        if let Some(spec) = &journal.gradients {
            rows.gradients(spec).await?;
        }
        if let Some((output, scale, sample, histogram)) = journal.root {
            rows.root(output, scale, sample, histogram).await?;
            for (splits, histograms) in &journal.splits {
                rows.split(splits, *histograms).await?;
            }
        }
        log::info!(
            "tree training rows kept and binned again; {} trees replayed",
            journal.finished.len()
        );
        Ok(rows)
    }
}

/// Whether `error` says rows were lost with their executor.
fn lost(error: &DataFusionError) -> bool {
    matches!(Fault::of(error), Some(Fault::RowsLost(_)))
}

#[async_trait]
impl RowHolder for RecoveringRows {
    async fn label_stats(&self, classes: usize) -> Result<LabelStats> {
        self.run(
            move |r| Box::pin(async move { r.label_stats(classes).await }),
            |_| {},
        )
        .await
    }

    async fn label_sum(&self, exponent: i32) -> Result<i128> {
        self.run(
            move |r| Box::pin(async move { r.label_sum(exponent).await }),
            |_| {},
        )
        .await
    }

    async fn start(&self, bases: &[f64]) -> Result<()> {
        self.run(
            move |r| Box::pin(async move { r.start(bases).await }),
            |j| {
                *j = Journal {
                    bases: Some(bases.to_vec()),
                    ..Journal::default()
                }
            },
        )
        .await
    }

    async fn gradients(&self, spec: &GradientSpec) -> Result<GradientStats> {
        self.run(
            move |r| Box::pin(async move { r.gradients(spec).await }),
            |j| {
                // Only a round's pairs are state; a loss-only call changes
                // them too, but no tree follows it before the next round's.
                j.gradients = Some(spec.clone());
            },
        )
        .await
    }

    async fn root(
        &self,
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    ) -> Result<(GradPair, Option<Hist>)> {
        self.run(
            move |r| Box::pin(async move { r.root(output, scale, sample, histogram).await }),
            |j| {
                j.root = Some((output, scale, sample, histogram));
                j.splits.clear();
            },
        )
        .await
    }

    async fn split(&self, splits: &[NodeSplit], histograms: bool) -> Result<Vec<Option<Children>>> {
        self.run(
            move |r| Box::pin(async move { r.split(splits, histograms).await }),
            |j| j.splits.push((splits.to_vec(), histograms)),
        )
        .await
    }

    async fn finish(&self, tree: &Tree, output: usize, apply: Apply) -> Result<()> {
        self.run(
            move |r| Box::pin(async move { r.finish(tree, output, apply).await }),
            |j| {
                j.finished.push((tree.clone(), output, apply));
                j.root = None;
                j.splits.clear();
            },
        )
        .await
    }

    async fn margins(&self) -> Result<Margins> {
        self.run(move |r| Box::pin(async move { r.margins().await }), |_| {})
            .await
    }
}
