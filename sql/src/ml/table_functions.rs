//! The model statements as table functions, usable wherever a table is:
//! `show_models()`, `describe_model('m' [, version])`,
//! `evaluate('m' [, 'query'])` (BigQuery's `ML.EVALUATE`) and
//! `confusion_matrix('m' [, 'query'])` (`ML.CONFUSION_MATRIX`), in FROM,
//! joins and CTEs. Their answers come from the model store and from queries, so they are
//! computed before the statement is planned and written into it as `VALUES`:
//!
//! ```text
//!   SELECT * FROM evaluate('churn') e JOIN ...
//!     ──> run EVALUATE MODEL churn ──> SELECT * FROM (SELECT CAST(column1 AS DOUBLE) AS "accuracy", ...
//!                                         FROM (VALUES (0.91, ...))) AS e JOIN ...
//! ```
//!
//! A `VALUES` plan travels to a cluster like any other, so the functions work
//! embedded and distributed alike.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Ident, ObjectName, Query,
    Statement as SqlStatement, TableAlias, TableFactor, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

use super::confusion_matrix::confusion_matrix;
use super::evaluate::evaluate_model;
use super::inspect::{describe_model, show_models};
use super::sql_text::text_literal;
use super::{MlContext, MlOutput};

/// The table functions, by name.
const FUNCTIONS: &[&str] = &[
    "show_models",
    "describe_model",
    "evaluate",
    "confusion_matrix",
];

/// One call as written: the function and its literal arguments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    function: String,
    args: Vec<String>,
}

/// Answers every model table function `statement` calls and writes the answers
/// into it. Statements without one are left alone.
pub async fn expand_model_tables(statement: &mut Statement, ml: &MlContext) -> Result<()> {
    let mut calls = Calls::default();
    for_each_query(statement, &mut |query| {
        let _ = query.visit(&mut calls);
    });
    if let Some(error) = calls.error {
        return Err(error);
    }
    if calls.found.is_empty() {
        return Ok(());
    }
    let mut answers = BTreeMap::new();
    for call in std::mem::take(&mut calls.found) {
        let output = answer(&call, ml).await?;
        answers.insert(call, values_query(&output.schema, &output.batches)?);
    }
    let mut rewrite = Rewrite { answers };
    for_each_query_mut(statement, &mut |query| {
        let _ = query.visit(&mut rewrite);
    });
    Ok(())
}

/// Runs `f` on each query a statement holds: itself, what an EXPLAIN
/// explains, the query of a `COPY (query) TO`.
fn for_each_query(statement: &Statement, f: &mut dyn FnMut(&SqlStatement)) {
    match statement {
        Statement::Statement(s) => f(s),
        Statement::Explain(explain) => for_each_query(&explain.statement, f),
        Statement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &copy.source {
                f(&SqlStatement::Query(query.clone()));
            }
        }
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
}

fn for_each_query_mut(statement: &mut Statement, f: &mut dyn FnMut(&mut dyn VisitMutQuery)) {
    match statement {
        Statement::Statement(s) => f(s.as_mut()),
        Statement::Explain(explain) => for_each_query_mut(&mut explain.statement, f),
        Statement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &mut copy.source {
                f(query.as_mut());
            }
        }
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
}

/// What a [`for_each_query_mut`] callback can rewrite: a statement or a query.
trait VisitMutQuery {
    fn visit(&mut self, visitor: &mut Rewrite) -> ControlFlow<()>;
}

impl VisitMutQuery for SqlStatement {
    fn visit(&mut self, visitor: &mut Rewrite) -> ControlFlow<()> {
        VisitMut::visit(self, visitor)
    }
}

impl VisitMutQuery for Query {
    fn visit(&mut self, visitor: &mut Rewrite) -> ControlFlow<()> {
        VisitMut::visit(self, visitor)
    }
}

/// The function a table factor calls, when it is one of ours.
fn called(name: &ObjectName) -> Option<String> {
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    FUNCTIONS.contains(&last.as_str()).then_some(last)
}

/// Collects the calls, and the first misuse.
#[derive(Default)]
struct Calls {
    found: Vec<Call>,
    error: Option<DataFusionError>,
}

impl Visitor for Calls {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, args, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        // `FROM (SHOW MODELS)` reads as a table `show` called `models`.
        let table = name.to_string().to_ascii_lowercase();
        let alias = alias.as_ref().map(|a| a.name.value.to_ascii_lowercase());
        if args.is_none() && table == "show" && alias.as_deref() == Some("models") {
            self.error = Some(DataFusionError::Plan(
                "SHOW MODELS is a statement: in a query, use show_models() (SELECT * FROM show_models())"
                    .into(),
            ));
            return ControlFlow::Break(());
        }
        let (Some(function), Some(args)) = (called(name), args) else {
            return ControlFlow::Continue(());
        };
        let mut literals = Vec::with_capacity(args.args.len());
        for arg in &args.args {
            match literal(arg) {
                Some(text) => literals.push(text),
                None => {
                    self.error = Some(DataFusionError::Plan(format!(
                        "{function}(...) takes literal arguments ({}), not {arg}",
                        usage(&function)
                    )));
                    return ControlFlow::Break(());
                }
            }
        }
        let call = Call {
            function,
            args: literals,
        };
        if !self.found.contains(&call) {
            self.found.push(call);
        }
        ControlFlow::Continue(())
    }
}

/// A string or number literal argument, as text.
fn literal(arg: &FunctionArg) -> Option<String> {
    let FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) = arg else {
        return None;
    };
    match &v.value {
        Value::SingleQuotedString(s) => Some(s.clone()),
        Value::Number(n, _) => Some(n.clone()),
        _ => None,
    }
}

fn usage(function: &str) -> &'static str {
    match function {
        "show_models" => "show_models()",
        "describe_model" => "describe_model('name' [, version])",
        "confusion_matrix" => "confusion_matrix('name' [, 'query'])",
        _ => "evaluate('name' [, 'query'])",
    }
}

/// Runs the statement a call stands for.
async fn answer(call: &Call, ml: &MlContext) -> Result<MlOutput> {
    let args: Vec<&str> = call.args.iter().map(String::as_str).collect();
    let wrong = || {
        plan_err!(
            "{} was given {} argument(s); use {}",
            call.function,
            args.len(),
            usage(&call.function)
        )
    };
    match (call.function.as_str(), args.as_slice()) {
        ("show_models", []) => show_models(ml).await,
        ("describe_model", [name]) => describe_model(ml, name, None).await,
        ("describe_model", [name, version]) => {
            let version = version.parse::<u64>().map_err(|_| {
                DataFusionError::Plan(format!(
                    "describe_model('{name}', {version}): a version is a number from 1"
                ))
            })?;
            describe_model(ml, name, Some(version)).await
        }
        ("evaluate", [name]) => evaluate_model(ml, name, None).await,
        ("evaluate", [name, query]) => evaluate_model(ml, name, Some(query)).await,
        ("confusion_matrix", [name]) => confusion_matrix(ml, name, None).await,
        ("confusion_matrix", [name, query]) => confusion_matrix(ml, name, Some(query)).await,
        _ => wrong(),
    }
}

/// Replaces each call by its answer.
struct Rewrite {
    answers: BTreeMap<Call, Query>,
}

impl VisitorMut for Rewrite {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, args, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let (Some(function), Some(call_args)) = (called(name), args.as_ref()) else {
            return ControlFlow::Continue(());
        };
        let call = Call {
            function: function.clone(),
            args: call_args.args.iter().filter_map(literal).collect(),
        };
        let Some(query) = self.answers.get(&call) else {
            return ControlFlow::Continue(());
        };
        let alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(function),
            columns: vec![],
            at: None,
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query.clone()),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// The rows of `batches` as a query of literals, typed as `schema` says.
fn values_query(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Query> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let sql_type = sql_type(field.data_type())?;
        let source = if batches.iter().any(|b| b.num_rows() > 0) {
            format!("column{}", i + 1)
        } else {
            "NULL".to_string()
        };
        columns.push(format!(
            "CAST({source} AS {sql_type}) AS \"{}\"",
            field.name().replace('"', "\"\"")
        ));
    }
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|c| sql_literal(c.as_ref(), row))
                .collect::<Result<Vec<_>>>()?;
            rows.push(format!("({})", cells.join(", ")));
        }
    }
    let sql = if rows.is_empty() {
        format!("SELECT {} WHERE false", columns.join(", "))
    } else {
        format!(
            "SELECT {} FROM (VALUES {}) AS v",
            columns.join(", "),
            rows.join(", ")
        )
    };
    let mut parser = DFParserBuilder::new(sql.as_str()).build()?;
    match parser.parse_statement()? {
        Statement::Statement(s) => match *s {
            SqlStatement::Query(query) => Ok(*query),
            other => plan_err!("internal: a table function's answer parsed as {other}"),
        },
        other => plan_err!("internal: a table function's answer parsed as {other}"),
    }
}

fn sql_type(data_type: &DataType) -> Result<&'static str> {
    Ok(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR",
        DataType::Int64 | DataType::Int32 => "BIGINT",
        DataType::UInt64 | DataType::UInt32 => "BIGINT UNSIGNED",
        DataType::Float64 | DataType::Float32 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        other => return plan_err!("internal: a table function returned a {other} column"),
    })
}

/// One cell as a SQL literal.
fn sql_literal(column: &dyn Array, row: usize) -> Result<String> {
    if column.is_null(row) {
        return Ok("NULL".into());
    }
    Ok(match ScalarValue::try_from_array(column, row)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => text_literal(&s),
        ScalarValue::Float64(Some(v)) if v.is_finite() => format!("{v:?}"),
        ScalarValue::Float64(Some(v)) => format!("'{v}'"),
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        other => other.to_string(),
    })
}
