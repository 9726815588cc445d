//! Restores the order a hash shuffle had in the plan but loses on the cluster.
//!
//! A hash `RepartitionExec` over one input partition keeps its input's order
//! (`maintains_sort_order=true`), and DataFusion plans the operators above it on
//! that order: a window `PARTITION BY k` over `ORDER BY k ... LIMIT n` needs no
//! sort of its own. Ballista cuts a stage at every hash repartition, and the
//! shuffle reader that replaces it declares no order, so the executor rebuilds
//! the window over an input without one and fails ("All partition by columns
//! should have an ordering"), found by the differential fuzzer (seed 2).
//!
//! This rule puts a `SortExec` with the repartition's order (per partition)
//! above every hash repartition that has one, so the order is declared again
//! after the shuffle. A repartition's input is ordered only where a sort or an
//! ordered scan made it so, so plans over unordered tables are not changed.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// See the module comment. Runs in the scheduler's session, before
/// [`super::StageGuard`].
#[derive(Debug, Default)]
pub struct SortAfterShuffle;

impl PhysicalOptimizerRule for SortAfterShuffle {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(repartition) = node.downcast_ref::<RepartitionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(repartition.partitioning(), Partitioning::Hash(..)) {
                return Ok(Transformed::no(node));
            }
            let Some(ordering) = node.output_ordering().cloned() else {
                return Ok(Transformed::no(node));
            };
            let sorted = SortExec::new(ordering, node).with_preserve_partitioning(true);
            Ok(Transformed::yes(Arc::new(sorted) as _))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "ember_sort_after_shuffle"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::displayable;
    use datafusion::physical_plan::empty::EmptyExec;

    fn text(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(true).to_string()
    }

    #[test]
    fn an_ordered_hash_shuffle_is_sorted_again_after_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let k = col("k", &schema).unwrap();
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(k.clone())]).unwrap();
        let leaf = Arc::new(EmptyExec::new(schema.clone()));
        let sorted = Arc::new(SortExec::new(ordering, leaf).with_fetch(Some(50)));
        let hash: Arc<dyn ExecutionPlan> = Arc::new(
            RepartitionExec::try_new(sorted, Partitioning::Hash(vec![k.clone()], 4)).unwrap(),
        );
        assert!(hash.output_ordering().is_some());
        let out = SortAfterShuffle
            .optimize(hash, &ConfigOptions::default())
            .unwrap();
        let out = text(&out);
        assert!(
            out.starts_with("SortExec: expr=[k@0 ASC], preserve_partitioning=[true]\n  RepartitionExec: partitioning=Hash"),
            "{out}"
        );

        // Unordered input: nothing to restore, nothing added.
        let leaf = Arc::new(EmptyExec::new(schema).with_partitions(2));
        let hash: Arc<dyn ExecutionPlan> =
            Arc::new(RepartitionExec::try_new(leaf, Partitioning::Hash(vec![k], 4)).unwrap());
        let out = SortAfterShuffle
            .optimize(hash.clone(), &ConfigOptions::default())
            .unwrap();
        assert_eq!(text(&out), text(&hash));
    }
}
