//! Keeps the limit of an ordered merge through Ballista's stage split.
//!
//! Ballista 55 cuts a plan into stages and then runs DataFusion's
//! `EnsureRequirements` again on each stage's input. DataFusion 55.2 removes a
//! `SortPreservingMergeExec` that has a `fetch` when an operator between it and
//! the top of the stage passes its order on and nothing above asks for the order
//! (`Filter <- Projection <- SortPreservingMerge(fetch=500) <- TopK per
//! partition`): the stage then keeps 500 rows per partition, not 500 in all. A
//! join of `(SELECT ... ORDER BY ... LIMIT 500)` with a filter on the join key
//! counted about twice the rows on 2 executors, found by the differential fuzzer
//! (docs/upstream/merge-fetch-lost.md).
//!
//! A `GlobalLimitExec` directly above the merge is a requirement the rule keeps
//! (the limit needs one partition, and the merge is what gives it), so this rule
//! puts one above every merge with a fetch. It is the same limit again: the
//! answer does not change, and a limit over at most `fetch` rows costs nothing.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};

/// See the module comment. Runs in the scheduler's session, before
/// [`super::StageGuard`].
#[derive(Debug, Default)]
pub struct KeepMergeLimits;

impl PhysicalOptimizerRule for KeepMergeLimits {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // A merge already under its own limit is left as it is.
            let limited = node.downcast_ref::<GlobalLimitExec>().is_some_and(|limit| {
                limit.skip() == 0 && limit.input().is::<SortPreservingMergeExec>()
            });
            if limited {
                return Ok(Transformed::no(node));
            }
            let mut changed = false;
            let children = node
                .children()
                .into_iter()
                .map(|child| match merge_fetch(child) {
                    Some(fetch) => {
                        changed = true;
                        Arc::new(GlobalLimitExec::new(child.clone(), 0, Some(fetch))) as _
                    }
                    None => child.clone(),
                })
                .collect();
            if !changed {
                return Ok(Transformed::no(node));
            }
            node.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
            .map(Transformed::yes)
        })
        .map(|t| match merge_fetch(&t.data) {
            Some(fetch) => Arc::new(GlobalLimitExec::new(t.data, 0, Some(fetch))) as _,
            None => t.data,
        })
    }

    fn name(&self) -> &str {
        "ember_keep_merge_limits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The fetch of `plan` when it is an ordered merge with one.
fn merge_fetch(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    plan.downcast_ref::<SortPreservingMergeExec>()?.fetch()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista_core::JobId;
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::projection::ProjectionExec;
    use datafusion::physical_plan::repartition::RepartitionExec;
    use datafusion::physical_plan::sorts::sort::SortExec;
    use datafusion::physical_plan::{Partitioning, displayable};

    /// `Hash(k) <- Filter(k % 2 = 0) <- Projection <- merge(fetch=500) <- top-500
    /// per partition <- 2 partitions`: the shape the fuzzer found.
    fn fuzzed_shape() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
        ]));
        let k = col("k", &schema).unwrap();
        let leaf: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(schema.clone()).with_partitions(2));
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(
            col("price", &schema).unwrap(),
        )])
        .unwrap();
        let top = SortExec::new(ordering.clone(), leaf)
            .with_fetch(Some(500))
            .with_preserve_partitioning(true);
        let merge = SortPreservingMergeExec::new(ordering, Arc::new(top)).with_fetch(Some(500));
        let projection =
            ProjectionExec::try_new(vec![(k.clone(), "k".to_string())], Arc::new(merge)).unwrap();
        let even = BinaryExpr::new(
            Arc::new(BinaryExpr::new(k.clone(), Operator::Modulo, lit(2i64))),
            Operator::Eq,
            lit(0i64),
        );
        let filter = FilterExec::try_new(Arc::new(even), Arc::new(projection)).unwrap();
        Arc::new(
            RepartitionExec::try_new(Arc::new(filter), Partitioning::Hash(vec![k], 2)).unwrap(),
        )
    }

    /// The stages Ballista cuts `plan` into, as text.
    fn stages(plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> String {
        let mut planner = DefaultDistributedPlanner::new();
        let stages = planner
            .plan_query_stages(&JobId::new("test"), plan, config)
            .unwrap();
        stages
            .iter()
            .map(|stage| displayable(stage.as_ref()).indent(true).to_string())
            .collect()
    }

    #[test]
    fn the_stage_split_keeps_a_merge_limit_it_would_drop() {
        let mut config = ConfigOptions::default();
        config.execution.target_partitions = 2;
        let merge = "SortPreservingMergeExec: [price@1 ASC], fetch=500";

        // DataFusion 55.2 drops it (when this fails, upstream fixed it and
        // the rule can go).
        let unguarded = stages(fuzzed_shape(), &config);
        assert!(!unguarded.contains(merge), "{unguarded}");

        let guarded = KeepMergeLimits.optimize(fuzzed_shape(), &config).unwrap();
        let split = stages(guarded, &config);
        assert!(split.contains(merge), "{split}");
        assert!(
            split.contains("GlobalLimitExec: skip=0, fetch=500"),
            "{split}"
        );
    }

    #[test]
    fn plans_without_a_merge_limit_and_limited_merges_are_left_alone() {
        let config = ConfigOptions::default();
        let plan = fuzzed_shape();
        let once = KeepMergeLimits.optimize(plan, &config).unwrap();
        let twice = KeepMergeLimits.optimize(once.clone(), &config).unwrap();
        let text = |p: &Arc<dyn ExecutionPlan>| displayable(p.as_ref()).indent(true).to_string();
        assert_eq!(text(&twice), text(&once));
        assert_eq!(text(&once).matches("GlobalLimitExec").count(), 1);

        let leaf: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(Arc::new(Schema::empty())).with_partitions(2));
        let kept = KeepMergeLimits.optimize(leaf.clone(), &config).unwrap();
        assert!(Arc::ptr_eq(&kept, &leaf));
    }
}
