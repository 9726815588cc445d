//! Partitioned joins that ember chose stay partitioned through Ballista's stage
//! split.
//!
//! [`super::FitHashJoins`] decides, from ember's estimates, which partitioned
//! hash joins become broadcasts. Ballista 55's static stage planner then looks
//! at every partitioned hash join again and broadcasts it when either side's
//! statistics are under `ballista.optimizer.broadcast_join_threshold_bytes`
//! (128 MiB), keeping the hash shuffles that were planned for the partitioned
//! join: the build side is shuffled, then sent whole to every task, and the
//! probe side is shuffled all the same. TPC-H q18 on 2 executors shuffled its
//! 1.5 M joined orders, shuffled them again in a stage of their own, and built
//! all of them in each of 4 tasks, while `lineitem` was shuffled anyway.
//!
//! This rule, run last before [`super::StageGuard`] (whose dry run of the stage
//! split must see what Ballista will), wraps both sides of every partitioned
//! hash join in an [`EstimatedExec::unjudged`]: the stage planner finds no size
//! to promote on and keeps the join ember planned. Where ember makes no
//! broadcast choices (a fit limit of 0), nothing changes.
//!
//! The stage planner also sends a collected join back to a shuffle when its
//! build side is over that threshold, by hash-partitioning the collected side
//! as it is: one stage writes the side whole, a second shuffles it. TPC-H q21's
//! anti join did that to 3.8 M rows, collected by DataFusion over a side
//! estimated at 142 MB. [`super::FitHashJoins`] partitions such joins before
//! DataFusion finishes the plan; one whose estimate crossed the threshold only
//! later (as q21's did, once projections were pushed down) is partitioned here
//! the way Ballista would, less the collection, and kept so.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::EstimatedExec;
use super::join_fit::{broadcast_limit, fit_limit, stays_broadcast};

/// See the module comment.
#[derive(Debug, Default)]
pub struct KeepPartitionedJoins;

impl PhysicalOptimizerRule for KeepPartitionedJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if fit_limit(config) == 0 {
            return Ok(plan);
        }
        let broadcast_limit = broadcast_limit(config);
        let partitions = config.execution.target_partitions;
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // A null-aware anti join is Ballista's to lower into one task.
            if join.null_aware {
                return Ok(Transformed::no(node));
            }
            if *join.partition_mode() == PartitionMode::CollectLeft
                && stays_broadcast(join.left(), broadcast_limit)
            {
                return keep_build_side(join).map(|kept| match kept {
                    Some(kept) => Transformed::yes(kept),
                    None => Transformed::no(node.clone()),
                });
            }
            let shuffled_join;
            let join = match join.partition_mode() {
                PartitionMode::Partitioned if !(marked(join.left()) && marked(join.right())) => {
                    join
                }
                PartitionMode::CollectLeft if !stays_broadcast(join.left(), broadcast_limit) => {
                    shuffled_join = shuffled(join, partitions)?;
                    &shuffled_join
                }
                _ => return Ok(Transformed::no(node)),
            };
            let sides = vec![unjudged(join.left()), unjudged(join.right())];
            Ok(Transformed::yes(
                join.builder().with_new_children(sides)?.build_exec()?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "keep_partitioned_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A collected join whose probe side is one partition, made safe from
/// Ballista's join selection on a resolved stage: once the stage's inputs are
/// written, it swaps such a join's sides whenever the probe side's estimate
/// is the smaller, and the probe side is often a chain of joins estimated far
/// below its truth (a fuzzed query built 157 M rows that way and ran out of
/// memory; docs/upstream/resolved-stage-join-swap.md). The probe side is
/// left unjudged, so no swap can be decided, and the join reports the
/// statistics it had, so that the joins above it plan as they did.
/// `None`: nothing to do (a probe side of several partitions, or one
/// already marked).
fn keep_build_side(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let probe = join.right();
    if marked(probe) || probe.output_partitioning().partition_count() != 1 {
        return Ok(None);
    }
    let statistics = StatisticsContext::new()
        .compute(join, &StatisticsArgs::new())?
        .as_ref()
        .clone();
    let kept = join
        .builder()
        .with_new_children(vec![join.left().clone(), unjudged(probe)])?
        .build_exec()?;
    Ok(Some(Arc::new(EstimatedExec::new(kept, statistics))))
}

/// Whether `side` already carries an [`EstimatedExec`].
fn marked(side: &Arc<dyn ExecutionPlan>) -> bool {
    side.is::<EstimatedExec>()
}

/// `side` wrapped in an [`EstimatedExec::unjudged`], unless already marked.
fn unjudged(side: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if marked(side) {
        side.clone()
    } else {
        Arc::new(EstimatedExec::unjudged(side.clone()))
    }
}

/// `join`, collected, as a partitioned join of its inputs hash-partitioned on
/// the keys, as Ballista's stage planner rewrites it, but reading the build
/// side's partitions rather than their collection. Its output is partitioned
/// differently from the collected join's, as after Ballista's rewrite, which
/// this one replaces: [`stays_broadcast`] judges as Ballista does, so a join
/// Ballista would keep collected is never changed here.
fn shuffled(join: &HashJoinExec, partitions: usize) -> Result<HashJoinExec> {
    let build = match join.left().downcast_ref::<CoalescePartitionsExec>() {
        Some(collected) => collected.input().clone(),
        None => join.left().clone(),
    };
    let (left_keys, right_keys) = join.on().iter().cloned().unzip();
    let left = RepartitionExec::try_new(build, Partitioning::Hash(left_keys, partitions))?;
    let right = RepartitionExec::try_new(
        join.right().clone(),
        Partitioning::Hash(right_keys, partitions),
    )?;
    join.builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![Arc::new(left), Arc::new(right)])?
        .build()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::session::{cluster_config, ember_session_state};

    #[tokio::test]
    async fn a_collected_join_over_ballistas_limit_is_partitioned_with_the_same_answer()
    -> Result<()> {
        // An embedded session: DataFusion collects the small side, and no
        // rule of the scheduler's has looked at it yet.
        let ctx = SessionContext::new_with_state(ember_session_state(cluster_config())?);
        ctx.sql("create table small as select v % 7 as k, v from generate_series(1, 500) t(v)")
            .await?
            .collect()
            .await?;
        ctx.sql("create table large as select v % 7 as k, v from generate_series(1, 5000) t(v)")
            .await?
            .collect()
            .await?;
        let query = "select s.k, count(*) as n, sum(l.v - s.v) as x \
                     from small s join large l on s.k = l.k group by s.k order by s.k";
        let plan = ctx.sql(query).await?.create_physical_plan().await?;
        assert!(
            displayable(plan.as_ref())
                .indent(true)
                .to_string()
                .contains("CollectLeft")
        );
        let answer = pretty_format_batches(&collect(plan.clone(), ctx.task_ctx()).await?)?;

        let mut options = ctx.state().config().options().as_ref().clone();
        options.set("ballista.optimizer.broadcast_join_threshold_bytes", "1000")?;
        let shuffled = KeepPartitionedJoins.optimize(plan, &options)?;
        let text = displayable(shuffled.as_ref()).indent(true).to_string();
        assert!(text.contains("HashJoinExec: mode=Partitioned"), "{text}");
        assert!(text.contains("EstimatedExec: unjudged"), "{text}");
        assert!(!text.contains("CollectLeft"), "{text}");
        let shuffled_answer = pretty_format_batches(&collect(shuffled, ctx.task_ctx()).await?)?;
        assert_eq!(shuffled_answer.to_string(), answer.to_string());
        Ok(())
    }

    /// A collected join over a probe side of one partition, estimated
    /// smaller than its build side: DataFusion's join selection (which
    /// Ballista runs again on a resolved stage) would swap it. Kept, the
    /// probe side is unjudged, no swap is found, and the join still reports
    /// its estimate to what is above it. (Answers on a cluster: the TPC-H and
    /// fuzzer tests.)
    #[tokio::test]
    async fn a_collected_join_keeps_its_build_side_through_join_selection() -> Result<()> {
        use datafusion::physical_optimizer::join_selection::JoinSelection;

        let mut config = cluster_config();
        config.options_mut().execution.target_partitions = 1;
        let ctx = SessionContext::new_with_state(ember_session_state(config)?);
        ctx.sql("create table build as select v % 50 as k, v from generate_series(1, 2000) t(v)")
            .await?
            .collect()
            .await?;
        ctx.sql("create table probe as select v as k from generate_series(1, 40) t(v)")
            .await?
            .collect()
            .await?;
        let query = "select count(*) as n, sum(b.v) as s from build b join probe p on b.k = p.k";
        let plan = ctx.sql(query).await?.create_physical_plan().await?;
        // As a plan a resolved stage may hold: the small side on the probe side.
        let swapped = swap_first_collected_join(plan)?;
        let options = ctx.state().config().options().as_ref().clone();
        let reselected = JoinSelection::new().optimize(swapped.clone(), &options)?;
        assert_ne!(
            first_join_left(&reselected),
            first_join_left(&swapped),
            "join selection swaps the unkept join (the hazard this rule removes)"
        );
        let kept = KeepPartitionedJoins.optimize(swapped.clone(), &options)?;
        let text = displayable(kept.as_ref()).indent(true).to_string();
        assert!(text.contains("EstimatedExec: unjudged"), "{text}");
        assert!(text.contains("EstimatedExec: rows~"), "{text}");
        let reselected = JoinSelection::new().optimize(kept.clone(), &options)?;
        assert_eq!(
            first_join_left(&reselected),
            first_join_left(&swapped),
            "the kept join is not swapped"
        );
        Ok(())
    }

    /// The plan with its first collected hash join's sides swapped.
    fn swap_first_collected_join(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let mut done = false;
        plan.transform_down(|node| {
            if done {
                return Ok(Transformed::no(node));
            }
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if *join.partition_mode() != PartitionMode::CollectLeft {
                return Ok(Transformed::no(node));
            }
            done = true;
            Ok(Transformed::yes(
                join.swap_inputs(PartitionMode::CollectLeft)?,
            ))
        })
        .map(|t| t.data)
    }

    /// The columns of the first hash join's build (left) side (`build`'s are
    /// `k, v`, `probe`'s `k`).
    fn first_join_left(plan: &Arc<dyn ExecutionPlan>) -> String {
        let mut found = None;
        plan.apply(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>() {
                let left = join.left();
                let left = match left.downcast_ref::<EstimatedExec>() {
                    Some(marked) => marked.children()[0].clone(),
                    None => left.clone(),
                };
                let names: Vec<String> = left
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                found = Some(names.join(", "));
                return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        found.expect("a hash join")
    }
}
