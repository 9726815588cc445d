//! Stages that every task would compute whole: found before a job starts, and
//! re-planned or refused, never run.
//!
//! Ballista 55 cuts a physical plan into stages and gives each task of a stage a
//! slice of the stage's input partitions. A leaf below a collapse
//! (`SortPreservingMergeExec`, `CoalescePartitionsExec`, a side an operator wants
//! as one partition) reads its whole input in every task instead. After cutting,
//! Ballista runs DataFusion's distribution rule again on each stage; a shuffle
//! has no statistics, so the rule may put a hash `RepartitionExec` *above* such a
//! collapse. Every task then computes all the partitions of that repartition, and
//! the stage's output is counted once per task: a join of two `ORDER BY ...
//! LIMIT` subqueries by sort-merge gave each group twice its count on 2
//! executors (issue 12; upstream write-up in `docs/upstream/`).
//!
//! ```text
//!   physical plan ──> dry run of Ballista's stage split ──> every stage sound? ──> plan as is
//!                                                              │ no
//!      single-partition inputs of hash-partitioned operators get a real hash
//!      shuffle (a stage of their own) ──> dry run again ──> sound? ──> that plan
//!                                                              │ no
//!                                                   refuse with a one-line error
//! ```
//!
//! A stage is sound when no node outside a collapse is computed whole by every
//! task while having more than one partition. Plans that are sound to begin with
//! are not changed, so the guard costs one dry run (no I/O) per job.

use std::sync::Arc;

use ballista_core::JobId;
use ballista_core::execution_plans::UnresolvedShuffleExec;
use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::{Distribution, LexOrdering, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, ExecutionPlan, ExecutionPlanProperties, ReplaceChildrenOptions,
};

/// The scheduler's last physical optimizer rule: see the module comment.
#[derive(Debug, Default)]
pub struct StageGuard;

impl PhysicalOptimizerRule for StageGuard {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if whole_stage(&plan, config).is_none() {
            return Ok(plan);
        }
        let target = config.execution.target_partitions;
        let replanned = shuffle_single_partition_inputs(plan, target)?;
        match whole_stage(&replanned, config) {
            None => Ok(replanned),
            Some(found) => plan_err!(
                "this query cannot run correctly on the cluster: Ballista would compute \
                 {} in stage {} whole in every task (a Ballista 55 bug; see \
                 docs/upstream/whole-stage-repartition.md); run it embedded",
                found.operator,
                found.stage
            ),
        }
    }

    fn name(&self) -> &str {
        "ember_stage_guard"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A node that every task of a stage would compute in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeStage {
    /// The stage, numbered as Ballista numbers them.
    pub stage: usize,
    /// The operator's name.
    pub operator: String,
}

/// Cuts `plan` into stages as the scheduler will and returns the first stage that
/// is not sound. A plan Ballista cannot cut is left for the real run to report.
pub fn whole_stage(plan: &Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Option<WholeStage> {
    let mut planner = DefaultDistributedPlanner::new();
    let job = JobId::new("ember-stage-guard");
    let stages = planner.plan_query_stages(&job, plan.clone(), config).ok()?;
    stages.iter().find_map(|stage| {
        let input = stage.children().first().map(|c| (*c).clone())?;
        let (_, operator) = reach(&input, false);
        operator.map(|operator| WholeStage {
            stage: stage.stage_id(),
            operator,
        })
    })
}

/// What a task of a stage computes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Its own slice: tasks compute disjoint parts.
    Slice,
    /// All of it: every task computes the same.
    Whole,
}

/// The reach of `plan` in one task, and the lowest node outside a collapse that
/// is computed whole with more than one partition. `collapsed` says an ancestor
/// reads all of this subtree (the scope Ballista's per-task restriction uses).
fn reach(plan: &Arc<dyn ExecutionPlan>, collapsed: bool) -> (Reach, Option<String>) {
    let children = plan.children();
    let own = if children.is_empty() {
        if !collapsed && is_sliced_leaf(plan) {
            Reach::Slice
        } else {
            Reach::Whole
        }
    } else {
        Reach::Whole
    };
    let scopes = child_scopes(plan, collapsed);
    let mut result = own;
    let mut found = None;
    for (child, child_collapsed) in children.into_iter().zip(scopes) {
        let (child_reach, child_found) = reach(child, child_collapsed);
        if child_reach == Reach::Slice {
            result = Reach::Slice;
        }
        found = found.or(child_found);
    }
    let partitions = plan.properties().output_partitioning().partition_count();
    if found.is_none() && !collapsed && result == Reach::Whole && partitions > 1 {
        found = Some(plan.name().to_string());
    }
    (result, found)
}

/// Leaves the scheduler restricts to a task's slice: non-broadcast shuffle
/// reads and scans.
fn is_sliced_leaf(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(shuffle) = plan.downcast_ref::<UnresolvedShuffleExec>() {
        return !shuffle.broadcast;
    }
    plan.is::<DataSourceExec>()
}

/// Whether each child of `plan` is read whole: below a collapse, or wanted as a
/// single partition.
fn child_scopes(plan: &Arc<dyn ExecutionPlan>, collapsed: bool) -> Vec<bool> {
    let count = plan.children().len();
    if collapsed || plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>() {
        return vec![true; count];
    }
    let wanted = plan.input_distribution_requirements().into_per_child();
    if wanted.len() != count {
        return vec![false; count];
    }
    wanted
        .iter()
        .map(|d| matches!(d, Distribution::SinglePartition))
        .collect()
}

/// Gives every operator whose inputs must be hash-partitioned, and which has
/// them as single partitions, a real hash shuffle of each input (sorted again
/// where it needs order), and merges its output back to one partition so that
/// its parent sees what it saw before. Ballista cuts a stage at each such
/// shuffle, so its re-planning finds the inputs already partitioned.
fn shuffle_single_partition_inputs(
    plan: Arc<dyn ExecutionPlan>,
    target: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    if target < 2 {
        return Ok(plan);
    }
    plan.transform_up(|node| {
        let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
        let keys: Vec<_> = node
            .input_distribution_requirements()
            .into_per_child()
            .into_iter()
            .filter_map(partition_keys)
            .collect();
        let single = |c: &Arc<dyn ExecutionPlan>| {
            c.properties().output_partitioning().partition_count() == 1
        };
        if children.is_empty() || keys.len() != children.len() || !children.iter().all(single) {
            return Ok(Transformed::no(node));
        }
        let orderings = node.required_input_ordering();
        let mut shuffled = Vec::with_capacity(children.len());
        for (i, (child, keys)) in children.into_iter().zip(keys).enumerate() {
            let mut input: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
                child,
                Partitioning::Hash(keys, target),
            )?);
            if let Some(Some(ordering)) = orderings.get(i) {
                let ordering = LexOrdering::from(ordering.clone().into_single());
                input = Arc::new(SortExec::new(ordering, input).with_preserve_partitioning(true));
            }
            shuffled.push(input);
        }
        let node = node.replace_children(
            shuffled,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        let merged: Arc<dyn ExecutionPlan> = match node.output_ordering() {
            Some(ordering) => Arc::new(SortPreservingMergeExec::new(ordering.clone(), node)),
            None => Arc::new(CoalescePartitionsExec::new(node)),
        };
        Ok(Transformed::yes(merged))
    })
    .map(|t| t.data)
}

/// The keys of a requirement that equal keys share a partition.
#[expect(deprecated, reason = "DataFusion 55 still emits HashPartitioned")]
fn partition_keys(distribution: Distribution) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
    match distribution {
        Distribution::HashPartitioned(keys) | Distribution::KeyPartitioned(keys) => Some(keys),
        _ => None,
    }
}
