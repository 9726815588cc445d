//! Binding `predict` calls: load the models a statement names, then replace each
//! unbound call by one carrying the model, its TRANSFORM inlined.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, ScalarUDF};
use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, TableFactor, Value, Visit,
    Visitor,
};
use ember_ml_ops::functions::{ModelCatalog, PredictFunc};
use ember_ml_ops::models::{BoundModel, Model};
use ember_ml_ops::store::{ModelStore, parse_model_ref};

/// Functions whose first argument names a model.
const MODEL_FUNCTIONS: &[&str] = &[
    "predict",
    "predict_proba",
    "predict_probabilities",
    "training_info",
    "training_rounds",
    "feature_importance",
];

/// Collects the model names given as the first argument of model functions.
#[derive(Default)]
struct ModelNames(BTreeSet<String>);

impl ModelNames {
    fn take(&mut self, name: &str, args: &[FunctionArg]) {
        if !MODEL_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
            return;
        }
        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))) = args.first()
            && let Value::SingleQuotedString(model) = &v.value
        {
            self.0.insert(model.to_ascii_lowercase());
        }
    }
}

impl Visitor for ModelNames {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::Function(f) = expr
            && let FunctionArguments::List(list) = &f.args
        {
            self.take(&f.name.to_string(), &list.args);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            self.take(&name.to_string(), &args.args);
        }
        ControlFlow::Continue(())
    }
}

/// Loads into `catalog` the newest version of every model `statement` names in
/// `predict`, `predict_proba`, `training_info` or `training_rounds`. Unknown names are left out:
/// planning then reports them.
pub async fn load_referenced_models(
    statement: &Statement,
    store: &ModelStore,
    catalog: &ModelCatalog,
) -> Result<()> {
    let mut names = ModelNames::default();
    collect_model_names(statement, &mut names);
    for reference in names.0 {
        // A model that is not there: planning says so.
        let (name, version) = parse_model_ref(&reference)?;
        let model = match version {
            None => store.latest(&name).await?,
            Some(_) => match store.load_ref(&reference).await {
                Ok(model) => Some(model),
                Err(e) if store.latest(&name).await?.is_some() => return Err(e),
                Err(_) => None,
            },
        };
        if let Some(model) = model {
            insert_as(catalog, &reference, model)?;
        }
    }
    Ok(())
}

/// Gathers the model names of every query `statement` holds: the statement
/// itself, what an EXPLAIN explains, and the query of a `COPY (query) TO`.
fn collect_model_names(statement: &Statement, names: &mut ModelNames) {
    match statement {
        Statement::Statement(s) => {
            let _ = s.visit(names);
        }
        Statement::Explain(explain) => collect_model_names(&explain.statement, names),
        Statement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &copy.source {
                let _ = query.visit(names);
            }
        }
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
}

/// Puts `model` in `catalog` under its name.
pub fn insert(catalog: &ModelCatalog, model: Model) -> Result<()> {
    let name = model.name.clone();
    insert_as(catalog, &name, model)
}

/// Puts `model` in `catalog` under `reference` (`name` or `name@N`, as a
/// statement wrote it, lower-cased).
fn insert_as(catalog: &ModelCatalog, reference: &str, model: Model) -> Result<()> {
    catalog
        .write()
        .map_err(|_| DataFusionError::Internal("model catalog poisoned".into()))?
        .insert(reference.to_ascii_lowercase(), Arc::new(model));
    Ok(())
}

/// The features `model` computes from `inputs`: its TRANSFORM with each input
/// column replaced by the given expression, or the inputs themselves.
pub fn feature_exprs(model: &Model, inputs: &[Expr], state: &SessionState) -> Result<Vec<Expr>> {
    if model.transform.is_empty() {
        return Ok(inputs.to_vec());
    }
    let fields = model
        .inputs
        .iter()
        .map(|i| {
            let data_type = DataType::from_str(&i.data_type).map_err(|e| {
                DataFusionError::Plan(format!(
                    "model '{}': bad input type {}: {e}",
                    model.name, i.data_type
                ))
            })?;
            Ok(Field::new(&i.name, data_type, true))
        })
        .collect::<Result<Vec<_>>>()?;
    let schema = DFSchema::try_from(Schema::new(fields))?;
    model
        .transform
        .iter()
        .map(|item| {
            let expr = state.create_logical_expr(&item.sql, &schema)?;
            expr.transform_up(|e| match &e {
                Expr::Column(Column {
                    relation: None,
                    name,
                    ..
                }) => match model.inputs.iter().position(|i| &i.name == name) {
                    Some(i) => Ok(Transformed::yes(inputs[i].clone())),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })
            .map(|t| t.data)
        })
        .collect()
}

/// Replaces every unbound `predict`/`predict_proba` call in `plan` by one bound
/// to its model (which must be in `catalog`).
pub fn bind_models(
    plan: LogicalPlan,
    state: &SessionState,
    catalog: &ModelCatalog,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        // A bound call takes the model's features, not its name and inputs, so
        // an expression around it (a window's or an aggregate's ORDER BY) would
        // change its name, and the nodes above would no longer find it: keep
        // each expression's name as DataFusion's optimizer does.
        let names = NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let saved = names.save(&expr);
            let bound = expr.transform_up(|e| bind_call(e, state, catalog))?;
            Ok(if bound.transformed {
                bound.update_data(|e| saved.restore(e))
            } else {
                bound
            })
        })
    })
    .map(|t| t.data)
}

fn bind_call(
    expr: Expr,
    state: &SessionState,
    catalog: &ModelCatalog,
) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(call) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let Some(predict) = call.func.inner().downcast_ref::<PredictFunc>() else {
        return Ok(Transformed::no(expr));
    };
    if predict.bound_model().is_some() {
        return Ok(Transformed::no(expr));
    }
    let name = match call.args.first() {
        Some(Expr::Literal(ScalarValue::Utf8(Some(n)), _))
        | Some(Expr::Literal(ScalarValue::LargeUtf8(Some(n)), _))
        | Some(Expr::Literal(ScalarValue::Utf8View(Some(n)), _)) => n.to_ascii_lowercase(),
        _ => {
            return plan_err!(
                "{}('model', ...) needs the model name as a string literal first",
                predict.output().name()
            );
        }
    };
    let model = catalog
        .read()
        .map_err(|_| DataFusionError::Internal("model catalog poisoned".into()))?
        .get(&name)
        .cloned();
    let Some(model) = model else {
        return plan_err!("unknown model '{name}'");
    };
    let features = feature_exprs(&model, &call.args[1..], state)?;
    let bound = BoundModel {
        name: model.name.clone(),
        model_type: model.model_type,
        params: model.params.clone(),
        features: model.features.iter().map(|f| f.name.clone()).collect(),
        width: model.width(),
        display: expr.schema_name().to_string(),
        classes: model.classes.clone(),
        label_type: model.label_type.clone(),
    };
    let function = Arc::new(ScalarUDF::from(PredictFunc::bound(predict.output(), bound)));
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(function, features),
    )))
}
