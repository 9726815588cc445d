//! A broadcast join's build side, marked with ember's estimate of its rows.
//!
//! Ballista's static planner checks every collected (broadcast) hash join once
//! more when it cuts stages, and turns it back into a shuffle when DataFusion's
//! statistics put the build side over `ballista.optimizer.
//! broadcast_join_threshold_bytes`. DataFusion's estimate of a chain of joins
//! never shrinks (`crate::statistics`), so the broadcasts that
//! [`super::FitHashJoins`] chooses from ember's estimates were all undone: TPC-DS
//! q72's 61 K-row side, estimated at 2.4 M, went back to shuffling 11.7 M rows.
//! [`EstimatedExec`] passes its input's batches through unchanged and reports
//! ember's estimate as its statistics, so every later reader of statistics sees
//! the number the choice was made from.
//!
//! The same stage planner also turns a partitioned hash join into a broadcast
//! when either side's statistics are under that threshold, keeping the hash
//! shuffles of both sides: the build side is shuffled, then sent whole to every
//! task, and the probe side is shuffled anyway. TPC-H q18 on 2 executors sent
//! 1.5 M joined orders to each of 4 tasks that way, after a stage that only
//! shuffled them again. Where ember has chosen a partitioned join, each side is
//! wrapped in an [`EstimatedExec::unjudged`], which reports no estimate, and
//! the stage planner leaves the join as it is (see [`super::KeepPartitionedJoins`]).

use std::fmt;
use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// Marks the codec bytes of an [`EstimatedExec`]; the estimated rows follow as
/// 8 little-endian bytes.
const TAG: &[u8] = b"ember.estimated:";

/// See the module comment.
#[derive(Debug)]
pub struct EstimatedExec {
    input: Arc<dyn ExecutionPlan>,
    statistics: Arc<Statistics>,
}

impl EstimatedExec {
    /// `input`, reporting `statistics` for the whole of it.
    pub fn new(input: Arc<dyn ExecutionPlan>, statistics: Statistics) -> Self {
        Self {
            input,
            statistics: Arc::new(statistics),
        }
    }

    /// `input`, reporting no estimate at all: nothing that plans from
    /// statistics after ember (Ballista's stage planner) judges its size.
    pub fn unjudged(input: Arc<dyn ExecutionPlan>) -> Self {
        let statistics = Statistics::new_unknown(&input.schema());
        Self::new(input, statistics)
    }

    /// The estimated rows, if any.
    fn rows(&self) -> Option<u64> {
        self.statistics
            .num_rows
            .get_value()
            .map(|&rows| rows as u64)
    }

    /// The codec bytes: tag, then the estimated rows (`u64::MAX` for none).
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(TAG);
        buf.extend_from_slice(&self.rows().unwrap_or(UNJUDGED).to_le_bytes());
    }

    /// Decodes [`Self::encode`]'s bytes over `input`; `None` when they are not
    /// an EstimatedExec's. Only the row count travels: an executor runs the
    /// node, it does not plan with it.
    pub fn decode(buf: &[u8], input: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let rows = u64::from_le_bytes(buf.strip_prefix(TAG)?.try_into().ok()?);
        if rows == UNJUDGED {
            return Some(Self::unjudged(input.clone()));
        }
        let mut statistics = Statistics::new_unknown(&input.schema());
        statistics.num_rows = Precision::Inexact(rows as usize);
        Some(Self::new(input.clone(), statistics))
    }
}

/// The codec's row count of an [`EstimatedExec::unjudged`].
const UNJUDGED: u64 = u64::MAX;

impl DisplayAs for EstimatedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.rows() {
            Some(rows) => write!(f, "EstimatedExec: rows~{rows}"),
            None => write!(f, "EstimatedExec: unjudged"),
        }
    }
}

impl ExecutionPlan for EstimatedExec {
    fn name(&self) -> &str {
        "EstimatedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: super::only_child(children, "EstimatedExec")?,
            statistics: self.statistics.clone(),
        }))
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    /// ember's estimate for the whole input; a partition's are the input's.
    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match (args.partition(), input_stats) {
            (None, _) => Ok(self.statistics.clone()),
            (Some(_), [input]) => Ok(input.clone()),
            (Some(_), _) => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }
}
