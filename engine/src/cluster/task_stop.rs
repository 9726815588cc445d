//! A cancelled task stops working.
//!
//! Ballista's executor cancels a task by dropping its future, but its shuffle
//! writer does the work in a task of its own (`tokio::spawn`, not joined), so a
//! cancelled task went on reading, joining and writing until it was done: on a
//! join of lineitem with itself, minutes of two busy executors after the client
//! had gone. [`StoppingEngine`] builds Ballista's stage executors as usual and
//! adds a switch to each task: every leaf of the task's plan (file scans, shuffle
//! reads) reads it before each batch it hands up, and the task's executor turns
//! it when it is dropped before finishing. Whatever still runs the plan, spawned
//! or not, then gets an error at its next batch and ends.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ballista_core::JobId;
use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};
use datafusion::prelude::SessionConfig;
use futures::Stream;

use super::client_pool::ReusedClients;
use super::shares::number_partitions;

/// Ballista's execution engine, with tasks that stop when cancelled (and keep
/// nodes told which partitions they run).
pub struct StoppingEngine {
    inner: DefaultExecutionEngine,
}

impl StoppingEngine {
    /// Reuses Flight connections to other executors for `idle_seconds` (as
    /// Ballista's executor does with its own engine).
    pub fn new(idle_seconds: u64) -> Self {
        Self {
            inner: DefaultExecutionEngine::with_client_pool(Arc::new(ReusedClients::new(
                std::time::Duration::from_secs(idle_seconds),
            ))),
        }
    }
}

impl ExecutionEngine for StoppingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let stop = Arc::new(AtomicBool::new(false));
        let plan = switch_leaves(plan, &stop)?;
        // Training rows a task keeps are known by their job-wide partition.
        let plan = number_partitions(plan, &global_output_partition_ids)?;
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(StoppingStage { inner, stop }))
    }
}

/// `plan` with a switch above each leaf: once `stop` is set, whatever still
/// runs the plan (spawned tasks included) gets an error at its next batch.
/// Also how an embedded statement stops when its reader goes away: DataFusion
/// aborts the tasks of a dropped stream, but a task aborts only when it yields,
/// and one that loops over a join or an aggregate whose input is always ready
/// may not yield for minutes.
pub(crate) fn switch_leaves(
    plan: Arc<dyn ExecutionPlan>,
    stop: &Arc<AtomicBool>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            if node.children().is_empty() {
                let leaf = StopSwitchExec::new(node, stop.clone());
                Ok(Transformed::yes(Arc::new(leaf) as Arc<dyn ExecutionPlan>))
            } else {
                Ok(Transformed::no(node))
            }
        })?
        .data)
}

/// A stage executor that turns its task's switch when dropped mid-run.
#[derive(Debug)]
struct StoppingStage {
    inner: Arc<dyn QueryStageExecutor>,
    stop: Arc<AtomicBool>,
}

/// Turns the switch unless disarmed: the task's future was dropped (cancelled)
/// before it finished.
pub(crate) struct TurnOnDrop(pub(crate) Option<Arc<AtomicBool>>);

impl Drop for TurnOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for StoppingStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for StoppingStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        let mut guard = TurnOnDrop(Some(self.stop.clone()));
        let result = self.inner.execute_query_stage(task_id, context).await;
        guard.0 = None;
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

/// Passes a leaf's batches through until its task is cancelled; then fails.
#[derive(Debug)]
struct StopSwitchExec {
    input: Arc<dyn ExecutionPlan>,
    stop: Arc<AtomicBool>,
}

impl StopSwitchExec {
    fn new(input: Arc<dyn ExecutionPlan>, stop: Arc<AtomicBool>) -> Self {
        Self { input, stop }
    }
}

impl DisplayAs for StopSwitchExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StopSwitchExec")
    }
}

impl ExecutionPlan for StopSwitchExec {
    fn name(&self) -> &str {
        "StopSwitchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = super::only_child(children, "StopSwitchExec")?;
        Ok(Arc::new(Self::new(input, self.stop.clone())))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats[0].clone())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(SwitchedStream {
            input: self.input.execute(partition, context)?,
            stop: self.stop.clone(),
            stopped: false,
        }))
    }
}

struct SwitchedStream {
    input: SendableRecordBatchStream,
    stop: Arc<AtomicBool>,
    stopped: bool,
}

impl Stream for SwitchedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stopped {
            return Poll::Ready(None);
        }
        if self.stop.load(Ordering::Relaxed) {
            self.stopped = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(
                "the task was cancelled".into(),
            ))));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for SwitchedStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::test::TestMemoryExec;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_turned_switch_fails_the_next_batch() -> Result<()> {
        let batch = RecordBatch::try_from_iter(vec![(
            "x",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2])) as _,
        )])?;
        let leaf =
            TestMemoryExec::try_new_exec(&[vec![batch.clone(), batch]], batch_schema(), None)?;
        let stop = Arc::new(AtomicBool::new(false));
        let switched = StopSwitchExec::new(leaf, stop.clone());
        let mut stream = switched.execute(0, Arc::new(TaskContext::default()))?;
        assert_eq!(stream.next().await.unwrap()?.num_rows(), 2);
        stop.store(true, Ordering::Relaxed);
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("cancelled"), "{error}");
        assert!(stream.next().await.is_none());
        Ok(())
    }

    fn batch_schema() -> SchemaRef {
        Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "x",
                datafusion::arrow::datatypes::DataType::Int64,
                true,
            ),
        ]))
    }
}
