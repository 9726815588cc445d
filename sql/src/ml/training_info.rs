//! `training_info('model')`: a table of the model's iterations and losses
//! (`eval_loss`: on the held-out rows, where training measured it, else NULL);
//! `training_rounds('model')`: what each executor did in each round.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
use ember_ml_ops::functions::ModelCatalog;
use ember_ml_ops::models::Model;

/// The model a table function's only argument names, from the catalog loaded
/// for the statement.
pub(super) fn named_model(
    catalog: &ModelCatalog,
    function: &str,
    args: &TableFunctionArgs,
) -> Result<Arc<Model>> {
    let name = match args.exprs() {
        [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => name.to_ascii_lowercase(),
        _ => return plan_err!("{function}('model') takes the model name as a string"),
    };
    let model = catalog
        .read()
        .map_err(|_| DataFusionError::Internal("model catalog poisoned".into()))?
        .get(&name)
        .cloned();
    match model {
        Some(model) => Ok(model),
        None => plan_err!("unknown model '{name}'"),
    }
}

/// A table of `rows` with columns `names`: a VALUES plan, inlined into the
/// query, so that it serialises to a cluster.
pub(super) fn values_table(names: &[&str], rows: Vec<Vec<Expr>>) -> Result<Arc<dyn TableProvider>> {
    let columns = names
        .iter()
        .enumerate()
        .map(|(i, name)| Expr::Column(format!("column{}", i + 1).into()).alias(*name))
        .collect::<Vec<_>>();
    let plan = LogicalPlanBuilder::values(rows)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `training_info('model')`.
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
        let model = named_model(&self.catalog, "training_info", &args)?;
        let rows: Vec<Vec<Expr>> = model
            .training_info
            .iter()
            .map(|i| {
                vec![
                    lit(i.iteration as i64),
                    lit(i.loss),
                    lit(i.elapsed_seconds),
                    lit(ScalarValue::Float64(i.eval_loss)),
                ]
            })
            .collect();
        if rows.is_empty() {
            return plan_err!("model '{}' has no training iterations recorded", model.name);
        }
        values_table(&["iteration", "loss", "elapsed_seconds", "eval_loss"], rows)
    }
}

/// `training_rounds('model')`: a row per executor per round.
#[derive(Debug)]
pub struct TrainingRoundsFunc {
    catalog: ModelCatalog,
}

impl TrainingRoundsFunc {
    pub fn new(catalog: ModelCatalog) -> Self {
        Self { catalog }
    }
}

impl TableFunctionImpl for TrainingRoundsFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let model = named_model(&self.catalog, "training_rounds", &args)?;
        let rows: Vec<Vec<Expr>> = model
            .rounds
            .iter()
            .map(|r| {
                let w = &r.work;
                vec![
                    lit(r.round as i64),
                    lit(r.iteration as i64),
                    lit(r.kind.name()),
                    lit(w.executor.clone()),
                    lit(w.partitions as i64),
                    lit(w.rows as i64),
                    lit(w.device.clone()),
                    lit(w.seconds),
                    lit(w.round_trip_seconds),
                    lit(w.bytes_sent as i64),
                    lit(w.bytes_received as i64),
                    lit(w.bytes_kept as i64),
                ]
            })
            .collect();
        if rows.is_empty() {
            return plan_err!(
                "model '{}' has no rounds recorded (it was trained before ember recorded them)",
                model.name
            );
        }
        values_table(
            &[
                "round",
                "iteration",
                "kind",
                "executor",
                "partitions",
                "rows",
                "device",
                "seconds",
                "round_trip_seconds",
                "bytes_sent",
                "bytes_received",
                "bytes_kept",
            ],
            rows,
        )
    }
}
