//! Task placement: stages that hold GPU-eligible work (a training round whose
//! device is 'auto' or 'cuda') run on executors that have a GPU, whenever the
//! cluster has one.
//!
//! Ballista binds tasks with no placement constraints and carries no executor
//! labels, so the label is in the id: an executor that finds a GPU registers as
//! `gpu-<uuid>` ([`GPU_EXECUTOR_PREFIX`]), and the scheduler binds with
//! [`BindingPolicy`]. The policy packs tasks onto the executors with the most
//! free slots, like Ballista's default, except that a GPU stage skips executors
//! without a GPU while any GPU executor is registered. Busy GPU executors make a
//! GPU stage wait rather than spill onto a CPU; when the last GPU executor is
//! gone, GPU stages run anywhere (every kernel has a CPU twin).
//!
//! Packing suits a query's stages (a stage's partitions in one task read each
//! other's shuffle files locally), but not the stage that keeps training rows:
//! each executor has its own training memory, so that stage's partitions are
//! dealt evenly, one task per executor with a free slot.
//!
//! Binding is also where the scheduler sees a partition about to run a second
//! time. Ballista 55's partial re-runs can count a partition twice, so such a
//! task is bound to fail instead (see refused.rs), and the client runs the
//! whole statement again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ballista_core::JobId;
use ballista_core::config::BallistaConfig;
use ballista_core::serde::protobuf::{AvailableVcores, job_status};
use ballista_core::serde::scheduler::TaskKey;
use ballista_scheduler::cluster::{BoundTask, ClusterState, DistributionPolicy};
use ballista_scheduler::state::execution_graph::{TaskDescription, create_task_info};
use ballista_scheduler::state::execution_stage::RunningStage;
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use ember_ml_ops::kernels::DeviceChoice;
use ember_ml_ops::models::TrainRoundFunc;

use super::refused::{refuse_rerun, rerun_reason};

/// How an executor with a GPU starts its id, so the scheduler can tell.
pub const GPU_EXECUTOR_PREFIX: &str = "gpu-";

/// Whether the executor with this id said it has a GPU.
pub fn is_gpu_executor(executor_id: &str) -> bool {
    executor_id.starts_with(GPU_EXECUTOR_PREFIX)
}

/// Whether a stage's plan runs a training round that may use a GPU.
pub fn wants_gpu(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if let Some(keep) = node.downcast_ref::<super::KeepRowsExec>() {
            // Kept rows stay where they are packed: on a GPU executor when a GPU may run the rounds.
            found = keep.spec().device != DeviceChoice::Cpu;
        } else if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            found = aggregate.aggr_expr().iter().any(|expr| {
                expr.fun()
                    .inner()
                    .downcast_ref::<TrainRoundFunc>()
                    .is_some_and(|round| round.device() != DeviceChoice::Cpu)
            });
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Ballista's task binding with GPU placement and no partial re-runs (see the
/// module docs).
pub struct BindingPolicy {
    cluster: Arc<dyn ClusterState>,
    /// Tasks of GPU-eligible stages bound per executor, for tests and logs.
    gpu_tasks: Mutex<HashMap<String, usize>>,
}

impl BindingPolicy {
    /// A policy that reads which executors are registered from `cluster`.
    pub fn new(cluster: Arc<dyn ClusterState>) -> Self {
        Self {
            cluster,
            gpu_tasks: Mutex::default(),
        }
    }

    /// How many tasks of GPU-eligible stages each executor has been given so far.
    pub fn gpu_tasks(&self) -> HashMap<String, usize> {
        self.gpu_tasks.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl fmt::Debug for BindingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindingPolicy").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl DistributionPolicy for BindingPolicy {
    async fn bind_tasks(
        &self,
        mut budgets: Vec<&mut AvailableVcores>,
        running_jobs: Arc<HashMap<JobId, JobInfoCache>>,
    ) -> Result<Vec<BoundTask>> {
        let mut bound = Vec::new();
        if budgets.iter().all(|b| b.vcores == 0) {
            return Ok(bound);
        }
        let gpu_registered = self
            .cluster
            .registered_executor_metadata()
            .await
            .iter()
            .any(|executor| is_gpu_executor(&executor.id));
        // Fill the executors with the most free slots first.
        budgets.sort_by_key(|b| std::cmp::Reverse(b.vcores));

        for (job_id, job) in running_jobs.iter() {
            if !matches!(job.status, Some(job_status::Status::Running(_))) {
                continue;
            }
            let mut graph = job.execution_graph.write().await;
            let session_id = graph.session_id().to_string();
            let mut done_stages = Vec::new();
            while let Some(stage) = graph.fetch_running_stage(&done_stages) {
                done_stages.push(stage.stage_id);
                let rerun = rerun_reason(stage);
                if let Some(why) = &rerun {
                    log::warn!("failing job {job_id}: {why}");
                }
                let eligible = wants_gpu(&stage.plan);
                let gpu_only = gpu_registered && eligible;
                let slicing = Slicing::of(stage);
                let open: Vec<_> = budgets
                    .iter_mut()
                    .filter(|b| b.vcores > 0 && (!gpu_only || is_gpu_executor(&b.executor_id)))
                    .collect();
                let executors = open.len();
                for (i, budget) in open.into_iter().enumerate() {
                    // A stage that keeps training rows deals them out evenly:
                    // every executor keeps a share (each has its own training
                    // memory), one task per executor with a free slot.
                    let most = if slicing.spread {
                        stage.pending.remaining().div_ceil(executors - i)
                    } else {
                        usize::MAX
                    };
                    while let Some(mut task) =
                        bind_one(stage, slicing, most, &session_id, job_id, budget)
                    {
                        if let Some(why) = &rerun {
                            task.1.plan = refuse_rerun(&task.1.plan, why)?;
                        }
                        if eligible && let Ok(mut counts) = self.gpu_tasks.lock() {
                            *counts.entry(task.0.clone()).or_default() += 1;
                        }
                        bound.push(task);
                        if slicing.spread {
                            break;
                        }
                    }
                }
            }
        }
        Ok(bound)
    }

    fn name(&self) -> &str {
        "ember-binding"
    }
}

/// How a stage's pending partitions are cut into tasks.
#[derive(Clone, Copy)]
struct Slicing {
    /// The stage funnels into one partition, so it must run as one task: split,
    /// its parts would each produce a partial answer nothing downstream merges.
    /// It runs on one thread, so it takes one slot however many inputs it packs.
    single: bool,
    /// Most partitions in one task (`ballista.scheduler.max_partitions_per_task`).
    cap: usize,
    /// The stage keeps training rows, which are spread over the executors
    /// rather than packed onto the first with free slots.
    spread: bool,
}

impl Slicing {
    fn of(stage: &RunningStage) -> Self {
        let cap = stage
            .session_config
            .options()
            .extensions
            .get::<BallistaConfig>()
            .map(|config| config.max_partitions_per_task())
            .filter(|&n| n > 0)
            .unwrap_or(usize::MAX);
        Self {
            single: funnels_to_one_partition(&stage.plan),
            cap,
            spread: keeps_rows(&stage.plan),
        }
    }
}

/// Binds the next slice of `stage`'s pending partitions, `most` at the most,
/// to `budget`'s executor; `None` when the stage has nothing left to run or the
/// executor no free slot.
fn bind_one(
    stage: &mut RunningStage,
    slicing: Slicing,
    most: usize,
    session_id: &str,
    job_id: &JobId,
    budget: &mut AvailableVcores,
) -> Option<BoundTask> {
    if budget.vcores == 0 {
        return None;
    }
    let max = if slicing.single {
        most
    } else {
        (budget.vcores as usize).min(slicing.cap).min(most)
    };
    let partitions = stage.pending.next_slice(max);
    if partitions.is_empty() {
        return None;
    }
    let vcores = if slicing.single {
        1
    } else {
        partitions.len() as u32
    };
    let task_id = stage.task_infos.len();
    let task_attempt = partitions
        .iter()
        .map(|&p| stage.task_failure_numbers[p])
        .max()
        .unwrap_or(0);
    let mut info = create_task_info(budget.executor_id.clone(), task_id);
    info.global_input_partition_ids = partitions.clone();
    info.vcores_consumed = vcores;
    stage.task_infos.push(info);
    budget.vcores -= vcores;
    let task = TaskDescription {
        session_id: session_id.to_string(),
        key: TaskKey {
            job_id: job_id.clone(),
            stage_id: stage.stage_id,
            task_id,
        },
        stage_attempt_num: stage.stage_attempt_num,
        task_attempt,
        global_input_partition_ids: partitions,
        vcores_consumed: vcores,
        plan: stage.plan.clone(),
        session_config: stage.session_config.clone(),
    };
    Some((budget.executor_id.clone(), task))
}

/// Whether a stage's plan keeps training rows on the executors.
fn keeps_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| Ok(node.is::<super::KeepRowsExec>()))
        .unwrap_or(false)
}

/// Whether the stage under its shuffle writer narrows to a single partition
/// before it reads any shuffle input.
fn funnels_to_one_partition(root: &Arc<dyn ExecutionPlan>) -> bool {
    use ballista_core::execution_plans::{RangeShuffleReaderExec, ShuffleReaderExec};
    let [mut node] = root.children()[..] else {
        return false;
    };
    loop {
        if node.downcast_ref::<ShuffleReaderExec>().is_some()
            || node.downcast_ref::<RangeShuffleReaderExec>().is_some()
        {
            return false;
        }
        if node.properties().output_partitioning().partition_count() == 1 {
            return true;
        }
        match node.children()[..] {
            [child] => node = child,
            _ => return false,
        }
    }
}
