//! The query planner of every ember session that plans physically (embedded
//! clients and the scheduler): inner joins reordered from statistics
//! ([`crate::join_order`]), then DataFusion's planner with ember's training
//! nodes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

use crate::cluster::KeepRowsExtension;

/// See the module comment.
#[derive(Debug, Default)]
pub struct EmberQueryPlanner;

#[async_trait]
impl QueryPlanner for EmberQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(KeepRowsExtension)]);
        let plan = crate::join_order::reorder_joins(logical_plan, session, &planner).await;
        planner.create_physical_plan(&plan, session).await
    }
}
