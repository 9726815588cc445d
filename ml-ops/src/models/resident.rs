//! Training rows kept where they were read.
//!
//! On a cluster each executor reads, transforms and packs its share of the
//! training rows once; every round then runs where the rows are, and only the
//! round's small state and its statistics cross the network. ember's engine
//! implements these traits for its clusters; the estimators see them only
//! through [`super::TrainingData`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use super::trees::{Cuts, RowHolder, TreeBinning};
use super::{TrainRoundFunc, WorkKind, WorkReport};
use crate::kernels::DeviceChoice;

/// Rows held for one training, and what an estimator does with them.
#[async_trait]
pub trait ResidentRows: Send + Sync {
    /// `function`'s statistics summed over every row.
    async fn round(&self, function: &TrainRoundFunc) -> Result<Vec<f64>>;

    /// The values of `columns` (flattened per row) of up to `n` rows with the
    /// smallest seeded row hash over those columns, smallest first: the rows
    /// `TrainingData::sample_rows` picks from a plan.
    async fn sample_rows(&self, seed: u64, columns: &[String], n: usize) -> Result<Vec<Vec<f64>>>;

    /// The rows binned for tree training where they are held, and their
    /// bins: `binning.cuts`, or cut from a seeded sample of the rows when
    /// those are `None`.
    async fn tree_rows(
        self: Arc<Self>,
        binning: &TreeBinning,
    ) -> Result<(Vec<Cuts>, Arc<dyn RowHolder>)>;

    /// Bytes the rows take where they are held.
    fn bytes(&self) -> u64;

    /// The work done since the last call, oldest first: each piece (packing
    /// the rows, a sample, a round) with what each executor did in it.
    fn take_reports(&self) -> Vec<(WorkKind, Vec<WorkReport>)>;
}

/// Packs the rows of a plan where they are read, for the rounds of one training.
#[async_trait]
pub trait KeepRows: Send + Sync {
    /// Runs `plan` (its columns: the label when supervised, then the features)
    /// once and keeps its rows for rounds on `device`.
    async fn keep(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        device: DeviceChoice,
    ) -> Result<Arc<dyn ResidentRows>>;
}
