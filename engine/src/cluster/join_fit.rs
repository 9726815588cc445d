//! Hash joins where the build side fits, sort-merge joins where it does not.
//!
//! Ballista 55 turns `datafusion.optimizer.prefer_hash_join` off for the static
//! planner, because DataFusion's hash join cannot spill: every equi-join became a
//! sort-merge join, with a full sort of both inputs, and TPC-H on a 2-executor
//! cluster ran 4-6x slower than with Ballista's adaptive planner, which picks a
//! hash join unless a build partition it measured is over
//! `ballista.optimizer.hash_join_max_build_partition_bytes` (64 MiB).
//!
//! ember's cluster sessions prefer hash joins again and make the same choice at
//! plan time from DataFusion's estimates: a partitioned hash join whose build
//! side, divided over its partitions, is estimated over that same setting becomes
//! a sort-merge join (which spills). A build side with no estimate stays a hash
//! join, as it would embedded.
//!
//! A partitioned join whose smaller side, sent whole to every task of the
//! larger one, still moves fewer rows than shuffling both becomes a broadcast
//! (collected) join, judged from ember's estimates (`crate::statistics`), which
//! keep shrinking along a chain of joins where DataFusion's stop: TPC-DS q72 on
//! 2 executors shuffled its 11.7 M-row `inventory` for want of it.
//!
//! It also makes partitioned every collected (broadcast) hash join whose type
//! emits build-side rows (left, full, left semi/anti/mark), as the adaptive
//! planner's `DemoteUnsafeBroadcastJoinRule` does: run once per probe task, such
//! a join would emit those rows once per task. Ballista's static planner demotes
//! them itself, but only after DataFusion has finished the plan, so the operator
//! above the join, planned for the single partition of a collected join, read
//! just the first of the new partitions: a `RIGHT JOIN ... ORDER BY` on 2 executors
//! returned half its rows (found by the differential fuzzer, seed 2). Demoted
//! here, DataFusion's distribution rules add what the operators above need.
//! So is every collected join whose build side Ballista's stage planner would
//! find over its broadcast threshold, for the same reason and to spare the
//! stage that collects the side before shuffling it.
//!
//! Runs right after DataFusion's `join_selection`,
//! which has by then put the smaller side on the build side and chosen between
//! collected and partitioned builds; the sorts and shuffles a sort-merge join
//! needs are added by the rules after it.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinType, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
use datafusion::physical_plan::operator_statistics::StatisticsRegistry;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, replace_children_if_necessary};

use super::EstimatedExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

/// See the module comment.
#[derive(Debug, Default)]
pub struct FitHashJoins;

impl PhysicalOptimizerRule for FitHashJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let limit = fit_limit(config);
        let partitions = config.execution.target_partitions.max(1);
        // A limit of 0 turns the fit check off, as it does for the adaptive planner.
        let over_limit = |bytes: usize| limit > 0 && bytes / partitions > limit;
        let estimates = crate::statistics::ember_statistics();
        let broadcast_limit = broadcast_limit(config);
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // A null-aware anti join runs as one collected task and has no
            // sort-merge form.
            if join.null_aware {
                return Ok(Transformed::no(node));
            }
            let (partitioned, demoted): (Arc<dyn ExecutionPlan>, bool) = match join.partition_mode()
            {
                PartitionMode::CollectLeft
                    if !broadcast_safe(*join.join_type())
                        || !stays_broadcast(join.left(), broadcast_limit) =>
                {
                    let demoted = join
                        .builder()
                        .with_partition_mode(PartitionMode::Partitioned)
                        .build()?;
                    (Arc::new(demoted), true)
                }
                PartitionMode::Partitioned => (node.clone(), false),
                _ => return Ok(Transformed::no(node)),
            };
            let Some(join) = partitioned.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // Without a limit on what a task may build, broadcasts are left to
            // DataFusion's and Ballista's thresholds.
            if !demoted
                && limit > 0
                && let Some(broadcast) = broadcast_instead(join, &estimates, partitions, limit)?
            {
                return Ok(Transformed::yes(broadcast));
            }
            if estimated_bytes(join.left()).is_some_and(over_limit)
                && let Some(merge) = sort_merge_instead(join)?
            {
                return Ok(Transformed::yes(merge));
            }
            Ok(if demoted {
                Transformed::yes(partitioned)
            } else {
                Transformed::no(partitioned)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fit_hash_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `ballista.optimizer.hash_join_max_build_partition_bytes`: the most a task may
/// build of a hash join; 0 leaves the fit check and broadcasts to DataFusion
/// and Ballista.
pub(super) fn fit_limit(config: &ConfigOptions) -> usize {
    ballista(config).hash_join_max_build_partition_bytes()
}

/// `ballista.optimizer.broadcast_join_threshold_bytes`: the largest build side,
/// by DataFusion's statistics, Ballista's stage planner keeps collected.
pub(super) fn broadcast_limit(config: &ConfigOptions) -> usize {
    ballista(config).broadcast_join_threshold_bytes()
}

/// The session's Ballista settings; Ballista's defaults where it has none.
fn ballista(config: &ConfigOptions) -> BallistaConfig {
    config
        .extensions
        .get::<BallistaConfig>()
        .cloned()
        .unwrap_or_default()
}

/// Whether a collected join of this type gives the same rows when each probe
/// task joins its own partition against the whole build side: the types that
/// emit only probe-side-driven rows.
fn broadcast_safe(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner
            | JoinType::Right
            | JoinType::RightSemi
            | JoinType::RightAnti
            | JoinType::RightMark
    )
}

/// Whether Ballista's stage planner keeps a collected join with this build
/// side: its size by DataFusion's statistics (bytes, else rows times a row
/// width) is under `limit` (`ballista.optimizer.broadcast_join_threshold_bytes`);
/// with no size, or a limit of 0, it sends the join back to a shuffle, after
/// the plan is finished and over the collected build side (see
/// `super::KeepPartitionedJoins`, which partitions the joins this rule could
/// not yet see as over the limit).
pub(super) fn stays_broadcast(build: &Arc<dyn ExecutionPlan>, limit: usize) -> bool {
    let Ok(stats) = StatisticsContext::new().compute(build.as_ref(), &StatisticsArgs::new()) else {
        return false;
    };
    match (
        stats.total_byte_size.get_value(),
        stats.num_rows.get_value(),
    ) {
        (Some(&bytes), _) if bytes != 0 => bytes < limit,
        (_, Some(&rows)) if rows != 0 => {
            rows.saturating_mul(ballista_row_width(&build.schema())) < limit
        }
        _ => false,
    }
}

/// Bytes of one row as Ballista's stage planner counts them for a build side
/// with rows but no byte size, so that [`stays_broadcast`] answers as it will:
/// a finished plan's join that `super::KeepPartitionedJoins` partitioned where
/// Ballista would have kept it collected would change the partitioning the
/// operators above it were planned for.
fn ballista_row_width(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Boolean | DataType::Int8 | DataType::UInt8 => 1,
            DataType::Int16 | DataType::UInt16 => 2,
            DataType::Int32 | DataType::UInt32 | DataType::Float32 | DataType::Date32 => 4,
            DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Date64 => 8,
            DataType::Decimal128(..) => 16,
            _ => 32,
        })
        .sum()
}

/// A partitioned join is broadcast instead when its smaller side, read whole
/// by each of the probe side's tasks, is still this many times fewer rows than
/// the larger side, which then never moves.
const BROADCAST_GAIN: f64 = 2.0;

/// `join` with its smaller side collected and sent to every task of the larger
/// one, when ember's estimates (`crate::statistics`) say that moves fewer rows
/// than shuffling both sides and the smaller side fits `limit` bytes (each task
/// builds all of it). DataFusion makes this choice from a fixed threshold of
/// 128 K rows and from its own estimates, which do not shrink along a chain of
/// joins: TPC-DS q72 shuffled its 11.7 M-row `inventory` to join 61 K rows
/// estimated at 2.4 M.
fn broadcast_instead(
    join: &HashJoinExec,
    estimates: &StatisticsRegistry,
    partitions: usize,
    limit: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let estimate = |plan: &Arc<dyn ExecutionPlan>| {
        let mut stats = estimates.compute(plan.as_ref()).ok()?.base().clone();
        let rows = *stats.num_rows.get_value()?;
        let bytes = bytes_of(&stats, &plan.schema())?;
        stats.total_byte_size = Precision::Inexact(bytes);
        Some((rows as f64, bytes, stats))
    };
    let (Some((left_rows, left_bytes, left_stats)), Some((right_rows, right_bytes, right_stats))) =
        (estimate(join.left()), estimate(join.right()))
    else {
        return Ok(None);
    };
    log::debug!(
        "partitioned {} join: left ~{left_rows:.0} rows ({left_bytes} B), right ~{right_rows:.0} rows ({right_bytes} B)",
        join.join_type()
    );
    let worth = |build_rows: f64, build_bytes: usize, probe_rows: f64| {
        build_bytes <= limit && build_rows * partitions as f64 * BROADCAST_GAIN <= probe_rows
    };
    let join_type = *join.join_type();
    let (collected, build) = if left_rows <= right_rows {
        if !(worth(left_rows, left_bytes, right_rows) && broadcast_safe(join_type)) {
            return Ok(None);
        }
        let collected: Arc<dyn ExecutionPlan> = Arc::new(
            join.builder()
                .with_partition_mode(PartitionMode::CollectLeft)
                .build()?,
        );
        (collected, left_stats)
    } else {
        if !(worth(right_rows, right_bytes, left_rows)
            && join_type.supports_swap()
            && broadcast_safe(join_type.swap()))
        {
            return Ok(None);
        }
        (join.swap_inputs(PartitionMode::CollectLeft)?, right_stats)
    };
    with_estimated_build_side(collected, build).map(Some)
}

/// `plan` (a collected hash join, or a projection over one after a swap) with
/// its build side marked with ember's estimate (`super::EstimatedExec`), so
/// Ballista's stage planner, which reads DataFusion's statistics, keeps it
/// collected.
fn with_estimated_build_side(
    plan: Arc<dyn ExecutionPlan>,
    build: Statistics,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        let left = Arc::new(EstimatedExec::new(join.left().clone(), build));
        return replace_children_if_necessary(plan.clone(), vec![left, join.right().clone()]);
    }
    match plan.children().as_slice() {
        [join] if plan.downcast_ref::<ProjectionExec>().is_some() => {
            let join = with_estimated_build_side((*join).clone(), build)?;
            replace_children_if_necessary(plan.clone(), vec![join])
        }
        _ => Ok(plan),
    }
}

/// The bytes `plan` is estimated to produce by DataFusion's statistics.
fn estimated_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    let stats = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()?;
    bytes_of(&stats, &plan.schema())
}

/// Bytes of rows with these statistics: their byte size, else their rows times
/// an estimated row width; `None` with neither.
fn bytes_of(stats: &Statistics, schema: &Schema) -> Option<usize> {
    if let Some(bytes) = stats.total_byte_size.get_value() {
        return Some(*bytes);
    }
    let rows = stats.num_rows.get_value()?;
    Some(rows.saturating_mul(row_width(schema)))
}

/// Bytes of one row: fixed-width columns at their width, the others at 32.
fn row_width(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .map(|field| field.data_type().primitive_width().unwrap_or(32))
        .sum::<usize>()
        .max(1)
}

/// `join` as a sort-merge join of the same inputs, keys and filter; `None` where
/// a sort-merge join cannot express it.
fn sort_merge_instead(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let keys = join.on().len();
    let Ok(merge) = SortMergeJoinExec::try_new(
        join.left().clone(),
        join.right().clone(),
        join.on().to_vec(),
        join.filter().cloned(),
        *join.join_type(),
        vec![SortOptions::default(); keys],
        join.null_equality(),
    ) else {
        return Ok(None);
    };
    let merge: Arc<dyn ExecutionPlan> = Arc::new(merge);
    let Some(projection) = &join.projection else {
        return Ok(Some(merge));
    };
    // The hash join's embedded projection, as a node of its own.
    let schema = merge.schema();
    let columns = projection.iter().map(|&i| {
        let name = schema.field(i).name().clone();
        (
            Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
            name,
        )
    });
    Ok(Some(Arc::new(ProjectionExec::try_new(columns, merge)?)))
}

#[cfg(test)]
mod tests {
    use ballista_core::JobId;
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::session::{cluster_config, scheduler_session_state};

    /// A scheduler's session over two small tables, with `settings`.
    fn scheduler(settings: &[(&str, String)]) -> Result<SessionContext> {
        scheduler_with(500, settings)
    }

    /// A scheduler's session over `small` (twice `small_rows` rows) and `large`
    /// (6000 rows), with `settings`.
    fn scheduler_with(small_rows: i64, settings: &[(&str, String)]) -> Result<SessionContext> {
        let state = scheduler_session_state(cluster_config())?;
        let mut options = state.config().options().as_ref().clone();
        for (key, value) in settings {
            options.set(key, value)?;
        }
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(options.into())
            .build();
        let ctx = SessionContext::new_with_state(state);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        for (name, rows) in [("small", small_rows), ("large", 3000)] {
            let k = Int64Array::from_iter_values((0..rows).map(|i| i % 700));
            let v = Int64Array::from_iter_values(0..rows);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v)])?;
            let table = MemTable::try_new(schema.clone(), vec![vec![batch.clone()], vec![batch]])?;
            ctx.register_table(name, Arc::new(table))?;
        }
        Ok(ctx)
    }

    /// Partitioned joins only (DataFusion collects no build side), with
    /// `build_bytes` as the fit limit, over 4 partitions.
    fn partitioned(build_bytes: usize) -> Result<SessionContext> {
        partitioned_with(500, build_bytes)
    }

    fn partitioned_with(small_rows: i64, build_bytes: usize) -> Result<SessionContext> {
        scheduler_with(
            small_rows,
            &[
                ("datafusion.execution.target_partitions", "4".into()),
                (
                    "datafusion.optimizer.hash_join_single_partition_threshold",
                    "0".into(),
                ),
                (
                    "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                    "0".into(),
                ),
                (
                    "ballista.optimizer.hash_join_max_build_partition_bytes",
                    build_bytes.to_string(),
                ),
            ],
        )
    }

    const JOIN: &str =
        "select count(*) as n, sum(s.v * 3 + l.v) as x from small s join large l on s.k = l.k";

    async fn plan_and_answer(ctx: &SessionContext) -> Result<(String, String)> {
        let frame = ctx.sql(JOIN).await?;
        let plan = frame.clone().create_physical_plan().await?;
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        let batches = frame.collect().await?;
        let answer = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok((plan, answer))
    }

    #[tokio::test]
    async fn a_collected_left_join_is_partitioned_before_the_plan_is_finished() -> Result<()> {
        let ctx = scheduler(&[])?;
        let (collected, _) = plan_and_answer(&ctx).await?;
        assert!(collected.contains("mode=CollectLeft"), "{collected}");
        let left_join = "select s.k, l.v from small s left join large l on s.k = l.k order by 1, 2";
        let plan = ctx.sql(left_join).await?.create_physical_plan().await?;
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        assert!(plan.contains("join_type=Left"), "{plan}");
        assert!(!plan.contains("CollectLeft"), "{plan}");
        Ok(())
    }

    #[tokio::test]
    async fn a_build_side_over_the_limit_is_sort_merged_with_the_same_answer() -> Result<()> {
        let (hashed, hashed_answer) = plan_and_answer(&partitioned(64 << 20)?).await?;
        assert!(
            hashed.contains("HashJoinExec: mode=Partitioned"),
            "{hashed}"
        );
        assert!(!hashed.contains("SortMergeJoin"), "{hashed}");
        let (merged, merged_answer) = plan_and_answer(&partitioned(1)?).await?;
        assert!(merged.contains("SortMergeJoin"), "{merged}");
        assert!(!merged.contains("HashJoinExec"), "{merged}");
        assert_eq!(merged_answer, hashed_answer);
        // 0 turns the check off.
        let (unchecked, _) = plan_and_answer(&partitioned(0)?).await?;
        assert!(unchecked.contains("HashJoinExec"), "{unchecked}");
        Ok(())
    }

    #[tokio::test]
    async fn a_side_small_enough_to_send_to_every_task_is_broadcast_with_the_same_answer()
    -> Result<()> {
        // 200 rows to each of 4 tasks moves fewer rows than shuffling 6000.
        let (broadcast, answer) = plan_and_answer(&partitioned_with(100, 64 << 20)?).await?;
        assert!(broadcast.contains("mode=CollectLeft"), "{broadcast}");
        let embedded = SessionContext::new();
        for (name, rows) in [("small", 100), ("large", 3000)] {
            embedded
                .register_table(name, scheduler_with(rows, &[])?.table_provider(name).await?)?;
        }
        let (_, embedded_answer) = plan_and_answer(&embedded).await?;
        assert_eq!(answer, embedded_answer);
        // 1000 rows to each of 4 tasks would not; nor does a side over the
        // memory limit of a build.
        let (kept, _) = plan_and_answer(&partitioned_with(500, 64 << 20)?).await?;
        assert!(kept.contains("mode=Partitioned"), "{kept}");
        let (over, _) = plan_and_answer(&partitioned_with(100, 1000)?).await?;
        assert!(!over.contains("CollectLeft"), "{over}");
        Ok(())
    }

    /// The stages Ballista's static planner cuts `JOIN` into on `ctx`, as text.
    async fn stages(ctx: &SessionContext) -> Result<String> {
        let plan = ctx.sql(JOIN).await?.create_physical_plan().await?;
        let state = ctx.state();
        let stages = DefaultDistributedPlanner::new()
            .plan_query_stages(&JobId::new("join-fit-test"), plan, state.config().options())
            .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
        Ok(stages
            .iter()
            .map(|stage| {
                displayable(stage.as_ref() as &dyn ExecutionPlan)
                    .indent(true)
                    .to_string()
            })
            .collect())
    }

    #[tokio::test]
    async fn a_collected_join_over_ballistas_broadcast_limit_is_partitioned_with_the_same_answer()
    -> Result<()> {
        let (collected, answer) = plan_and_answer(&scheduler(&[])?).await?;
        assert!(collected.contains("mode=CollectLeft"), "{collected}");
        // The 1000-row side is 16 KB, over a 1000-byte limit: partitioned
        // before the plan is finished, not collected and shuffled after.
        let limit = [(
            "ballista.optimizer.broadcast_join_threshold_bytes",
            "1000".to_string(),
        )];
        let (partitioned, partitioned_answer) = plan_and_answer(&scheduler(&limit)?).await?;
        assert!(
            partitioned.contains("HashJoinExec: mode=Partitioned"),
            "{partitioned}"
        );
        assert!(!partitioned.contains("CollectLeft"), "{partitioned}");
        assert_eq!(partitioned_answer, answer);
        let stages = stages(&scheduler(&limit)?).await?;
        assert!(!stages.contains("broadcast=true"), "{stages}");
        Ok(())
    }

    #[tokio::test]
    async fn a_join_kept_partitioned_is_not_broadcast_by_the_stage_planner() -> Result<()> {
        // 1000 rows to each of 4 tasks does not pay against 6000 (above), and
        // the join stays partitioned through Ballista's stage split.
        let kept = stages(&partitioned_with(500, 64 << 20)?).await?;
        assert!(kept.contains("HashJoinExec: mode=Partitioned"), "{kept}");
        assert!(kept.contains("EstimatedExec: unjudged"), "{kept}");
        assert!(!kept.contains("broadcast=true"), "{kept}");
        // Left to Ballista (a fit limit of 0), the 16 KB side is under its
        // broadcast threshold: sent to every task, both sides still shuffled.
        let promoted = stages(&partitioned_with(500, 0)?).await?;
        assert!(promoted.contains("broadcast=true"), "{promoted}");
        assert!(!promoted.contains("EstimatedExec"), "{promoted}");
        Ok(())
    }
}
