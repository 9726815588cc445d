//! Keeps a `LIMIT` above the joins it does not commute with.
//!
//! DataFusion 55.2's sort pushdown (in `EnsureRequirements`) hands a sort's
//! `fetch` to the inputs of any operator that already satisfies the sort's
//! order, without asking whether the operator keeps its row count. A sort-merge
//! join does not: `... JOIN ... ORDER BY k LIMIT 1` became a top-1 of each input
//! and returned no rows (an `EXCEPT` returned one row too many), found by the
//! differential fuzzer (docs/upstream/sort-pushdown-fetch.md). Ballista prefers
//! sort-merge joins, so the cluster met it on plain queries.
//!
//! This rule runs just before `EnsureRequirements` and splits every `SortExec`
//! with a fetch into a limit over a sort without one, so the pushdown carries
//! only the order. DataFusion's `LimitPushdown`, which runs later and checks
//! each operator, merges the two back into a top-k sort where that is safe.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::sorts::sort::SortExec;

/// See the module comment.
#[derive(Debug, Default)]
pub struct SplitSortFetch;

impl PhysicalOptimizerRule for SplitSortFetch {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(fetch) = sort.fetch() else {
                return Ok(Transformed::no(node));
            };
            let unlimited: Arc<dyn ExecutionPlan> = Arc::new(sort.with_fetch(None));
            let limited: Arc<dyn ExecutionPlan> = if sort.preserve_partitioning() {
                Arc::new(LocalLimitExec::new(unlimited, fetch))
            } else {
                Arc::new(GlobalLimitExec::new(unlimited, 0, Some(fetch)))
            };
            Ok(Transformed::yes(limited))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "ember_split_sort_fetch"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// DataFusion's physical optimizer rules with [`SplitSortFetch`] just before
/// `EnsureRequirements`.
pub fn physical_rules(
    rules: &[Arc<dyn PhysicalOptimizerRule + Send + Sync>],
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut out = Vec::with_capacity(rules.len() + 1);
    for rule in rules {
        if rule.name() == "EnsureRequirements" {
            out.push(Arc::new(SplitSortFetch) as Arc<dyn PhysicalOptimizerRule + Send + Sync>);
        }
        out.push(rule.clone());
    }
    out
}
