//! Queries whose rows go to their reader as they are made, never all held at
//! once: planned first, so the schema and the parameters are known before a
//! row is read (what a Flight SQL client asks for), then run as a stream.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Value, ValueWithSpan, visit_expressions_mut};
use ember_ml_ops::models::Retry;
use futures::{StreamExt, stream};

use crate::EmberStatement;
use crate::broken_parquet;
use crate::cluster::{TurnOnDrop, switch_leaves};
use crate::context::{EmberContext, Master, only_reads, returns_rows};

/// A planned query: its rows are not read yet.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    plan: LogicalPlan,
    /// The tables the statement names (to say which file is broken).
    relations: Vec<String>,
    /// Whether running it again has no effect but its answer.
    only_reads: bool,
}

impl QueryPlan {
    /// The schema of its rows.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// Its positional parameters (`$1`, `$2`, ...) in order, each with its type
    /// where the plan fixes one.
    pub fn parameters(&self) -> Result<Vec<(String, Option<DataType>)>> {
        let mut parameters: Vec<_> = self.plan.get_parameter_types()?.into_iter().collect();
        parameters.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        Ok(parameters)
    }

    /// The plan with `values` in place of its parameters, `$1` first.
    pub fn with_parameters(self, values: Vec<ScalarValue>) -> Result<Self> {
        Ok(Self {
            plan: self.plan.with_param_values(values)?,
            ..self
        })
    }
}

/// Names the `?` placeholders of JDBC and ADBC `$1`, `$2`, ... in the order
/// they appear, as DataFusion names its parameters.
fn number_placeholders(statement: &mut DFStatement) {
    let DFStatement::Statement(statement) = statement else {
        return;
    };
    let mut next = 0;
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        if let Expr::Value(ValueWithSpan {
            value: Value::Placeholder(name),
            ..
        }) = expr
            && name == "?"
        {
            next += 1;
            *name = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    });
}

impl EmberContext {
    /// Plans `statement` when it is a query whose rows a reader reads; `None`
    /// for the rest (DDL, `SET`, the model statements), which
    /// [`EmberContext::execute`] runs.
    pub async fn plan_query(&self, statement: &EmberStatement) -> Result<Option<QueryPlan>> {
        let EmberStatement::DataFusion(inner) = statement else {
            return Ok(None);
        };
        let relations = broken_parquet::relations(statement);
        let mut inner = inner.clone();
        number_placeholders(&mut inner);
        let plan = match self.plan_statement(inner).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.explain_failure(e, &relations).await),
        };
        Ok(returns_rows(&plan).then(|| QueryPlan {
            plan,
            relations,
            only_reads: only_reads(statement),
        }))
    }

    /// Runs a planned query, its rows streaming as they are made. On a cluster,
    /// a query that only reads and whose job failed because an executor was
    /// lost is run again before its first row (Ballista sends none until the
    /// job is done, so a lost executor shows there).
    pub async fn execute_query(&self, query: QueryPlan) -> Result<SendableRecordBatchStream> {
        let retry = if query.only_reads && matches!(self.master(), Master::Remote { .. }) {
            self.retry()
        } else {
            Retry::never()
        };
        let embedded = matches!(self.master(), Master::Embedded);
        // Embedded, the plan's leaves stop when the reader goes away (before
        // or after the first batch): see `switch_leaves`. On a cluster the
        // scheduler cancels the job when its status stream is dropped.
        let stop = Arc::new(AtomicBool::new(false));
        let mut guard = TurnOnDrop(embedded.then(|| stop.clone()));
        let started = retry
            .run("the query", || async {
                let frame = self
                    .session()
                    .execute_logical_plan(query.plan.clone())
                    .await?;
                let task = Arc::new(frame.task_ctx());
                let mut plan = frame.create_physical_plan().await?;
                if embedded {
                    plan = switch_leaves(plan, &stop)?;
                }
                let mut rows = execute_stream(plan, task)?;
                let first = rows.next().await.transpose()?;
                Ok((first, rows))
            })
            .await;
        let (first, rows) = match started {
            Ok(started) => started,
            Err(e) => {
                guard.0 = None;
                return Err(self.explain_failure(e, &query.relations).await);
            }
        };
        let schema = rows.schema();
        let rows = stream::iter(first.map(Ok)).chain(rows).map(move |batch| {
            // The stream owns the switch: dropped, it stops the plan.
            let _ = &guard;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }
}
