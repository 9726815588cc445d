//! Inner joins in the order that makes the fewest rows, from table statistics.
//!
//! DataFusion 55 joins tables in the order a query writes them and only swaps
//! the build and probe sides of each join (apache/datafusion#3843). TPC-DS q72
//! writes `catalog_sales JOIN inventory` first: 15 M rows before any of the
//! selective dimension filters apply, 13 s embedded and 165 s on a 2-executor
//! cluster, where every later join shuffles those rows; joined dimensions first,
//! it takes 0.6 s either way (BENCHMARKS.md). This pass reorders every group of
//! three or more inner joins before physical planning:
//!
//! ```text
//!   optimized logical plan
//!     └─ each inner-join group (group.rs): inputs + conditions
//!          ├─ each input planned physically → DataFusion's statistics
//!          │  (Parquet row counts and min/max, filter selectivity)
//!          ├─ rows of the written order and of the best greedy left-deep
//!          │  order (cost.rs)
//!          └─ rebuilt in the new order only when it is estimated at under
//!             half the written order's rows
//! ```
//!
//! It runs in [`crate::planner::EmberQueryPlanner`], embedded and on the
//! scheduler, so both run the same plan. A group with an input whose row count
//! is unknown, a condition that cannot move (volatile, a subquery), or inputs not
//! all joined by equalities keeps its order; so does everything when `SET
//! ember.optimizer.join_reorder = false`. The threshold keeps plans whose written
//! order is as good as the estimate can tell, such as most of TPC-H's, as they
//! are.

mod cost;
mod group;

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::display::{PlanType, StringifiedPlan};
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Explain, LogicalPlan};
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{OptimizerContext, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_planner::PhysicalPlanner;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::config::EmberConfig;
use cost::{CostModel, InputStats};
use group::JoinGroup;

/// A new order is taken only when estimated at this many times fewer rows than
/// the written one: estimates are rough, and a written order is often the
/// author's knowledge of the data.
const GAIN: f64 = 2.0;

/// `plan` with its inner-join groups reordered where that is estimated to make
/// far fewer rows; inputs are planned with `planner` to read their statistics.
/// Never fails: a group that cannot be estimated or rebuilt keeps its order.
pub async fn reorder_joins(
    plan: &LogicalPlan,
    session: &dyn Session,
    planner: &dyn PhysicalPlanner,
) -> LogicalPlan {
    let enabled = session
        .config_options()
        .extensions
        .get::<EmberConfig>()
        .is_none_or(|c| c.optimizer.join_reorder);
    if !enabled || !plan.exists(|p| Ok(group::is_group_top(p))).unwrap_or(false) {
        return plan.clone();
    }
    match reorder(plan.clone(), session, planner).await {
        Ok(reordered) => reordered,
        Err(e) => {
            log::debug!("join order kept: {e}");
            plan.clone()
        }
    }
}

fn reorder<'a>(
    plan: LogicalPlan,
    session: &'a dyn Session,
    planner: &'a dyn PhysicalPlanner,
) -> BoxFuture<'a, Result<LogicalPlan>> {
    async move {
        if group::is_group_top(&plan)
            && let Some(mut group) = JoinGroup::take_apart(&plan)
        {
            let mut changed = false;
            for input in &mut group.inputs {
                let new = reorder(input.clone(), session, planner).await?;
                changed |= new != *input;
                *input = new;
            }
            if let Some(order) = better_order(&group, session, planner).await {
                return without_unused_columns(group.rebuild(&order)?);
            }
            return if changed {
                group.substitute_inputs(&plan)
            } else {
                Ok(plan)
            };
        }
        match plan {
            LogicalPlan::Explain(explain) => explained(explain, session, planner).await,
            plan => {
                let mut changed = false;
                let mut children = Vec::new();
                for child in plan.inputs() {
                    let new = reorder(child.clone(), session, planner).await?;
                    changed |= new != *child;
                    children.push(new);
                }
                if changed {
                    plan.with_new_exprs(plan.expressions(), children)
                } else {
                    Ok(plan)
                }
            }
        }
    }
    .boxed()
}

/// Rows of the one source under `plan` when only filters, projections and
/// repartitions lie between them (a scan, possibly filtered).
fn unfiltered_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    let passes_rows_on = plan.downcast_ref::<FilterExec>().is_some()
        || plan.downcast_ref::<ProjectionExec>().is_some()
        || plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some();
    match plan.children().as_slice() {
        [] => StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .ok()?
            .num_rows
            .get_value()
            .copied(),
        [child] if passes_rows_on => unfiltered_rows(child),
        _ => None,
    }
}

/// `plan` with each join's output cut to the columns used above it, as
/// DataFusion's optimizer does for the written order: the rebuilt joins carry
/// every input column, and on a cluster every column is shuffled (and widens
/// the build-side estimate that picks a sort-merge join).
fn without_unused_columns(plan: LogicalPlan) -> Result<LogicalPlan> {
    OptimizeProjections::new()
        .rewrite(plan, &OptimizerContext::new())
        .map(|rewritten| rewritten.data)
}

/// EXPLAIN of the reordered plan, its logical plan text included.
async fn explained(
    explain: Explain,
    session: &dyn Session,
    planner: &dyn PhysicalPlanner,
) -> Result<LogicalPlan> {
    let plan = reorder(explain.plan.as_ref().clone(), session, planner).await?;
    if plan == *explain.plan {
        return Ok(LogicalPlan::Explain(explain));
    }
    let text = plan.display_indent().to_string();
    let mut stringified_plans = explain.stringified_plans;
    for stringified in &mut stringified_plans {
        if stringified.plan_type == PlanType::FinalLogicalPlan {
            *stringified = StringifiedPlan::new(PlanType::FinalLogicalPlan, text.clone());
        }
    }
    Ok(LogicalPlan::Explain(Explain {
        plan: Arc::new(plan),
        stringified_plans,
        ..explain
    }))
}

/// The group's best order when it is estimated at [`GAIN`] times fewer rows
/// than the written one.
async fn better_order(
    group: &JoinGroup,
    session: &dyn Session,
    planner: &dyn PhysicalPlanner,
) -> Option<Vec<usize>> {
    let mut stats = Vec::with_capacity(group.inputs.len());
    for input in &group.inputs {
        let physical = planner.create_physical_plan(input, session).await.ok()?;
        let statistics = StatisticsContext::new()
            .compute(physical.as_ref(), &StatisticsArgs::new())
            .ok()?;
        stats.push(InputStats::from_statistics(
            &statistics,
            unfiltered_rows(&physical),
        )?);
    }
    let model = CostModel::new(group, stats);
    let (_, written) = model.shape_cost(&group.shape);
    let (order, cost) = model.best_order()?;
    log::debug!(
        "join order: {} inputs, written order ~{written:.0} rows, best ~{cost:.0} rows ({order:?})",
        group.inputs.len()
    );
    (cost * GAIN < written).then_some(order)
}
