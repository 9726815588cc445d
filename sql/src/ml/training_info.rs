//! `training_info('model')`: a table of the model's iterations and losses.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
use ember_ml_ops::functions::ModelCatalog;

/// The table function; models come from the catalog loaded for the statement.
#[derive(Debug)]
pub struct TrainingInfoFunc {
    catalog: ModelCatalog,
}

impl TrainingInfoFunc {
    pub fn new(catalog: ModelCatalog) -> Self {
        Self { catalog }
    }
}

impl TableFunctionImpl for TrainingInfoFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => name.to_ascii_lowercase(),
            _ => return plan_err!("training_info('model') takes the model name as a string"),
        };
        let model = self
            .catalog
            .read()
            .map_err(|_| DataFusionError::Internal("model catalog poisoned".into()))?
            .get(&name)
            .cloned();
        let Some(model) = model else {
            return plan_err!("unknown model '{name}'");
        };
        // A VALUES plan, inlined into the query: it serialises to a cluster.
        let rows: Vec<Vec<Expr>> = model
            .training_info
            .iter()
            .map(|i| vec![lit(i.iteration as i64), lit(i.loss), lit(i.elapsed_seconds)])
            .collect();
        if rows.is_empty() {
            return plan_err!("model '{name}' has no training iterations recorded");
        }
        let plan = LogicalPlanBuilder::values(rows)?
            .project(vec![
                Expr::Column("column1".into()).alias("iteration"),
                Expr::Column("column2".into()).alias("loss"),
                Expr::Column("column3".into()).alias("elapsed_seconds"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
