//! Fitting a TRANSFORM: the statistics of `standard_scale(x)`, `one_hot(x)`, ...
//! are computed over the training rows and written into the calls
//! (`standard_scale(x, 3.5, 1.2)`), which are stored with the model and applied
//! again, unchanged, by `predict`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ExprWithAlias, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
    visit_expressions, visit_expressions_mut,
};
use ember_ml_ops::functions::FITTED_FEATURE_FUNCTIONS;
use ember_ml_ops::functions::features::{IMPUTE_STRATEGIES, MAX_CATEGORIES};
use ember_ml_ops::models::TransformItem;

use super::first_row_floats;
use super::sql_text::{float_literal, text_literal};

/// A call that still needs its statistics.
#[derive(Debug, Clone)]
struct Unfitted {
    function: String,
    /// SQL of the first argument.
    input: String,
    /// Remaining arguments as written (strategy, bucket count).
    extra: Vec<SqlExpr>,
    /// The call as written, the key it is replaced by.
    text: String,
}

fn arguments(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Vec<SqlExpr>> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn is_unfitted(name: &str, arity: usize) -> bool {
    match name {
        "standard_scale" | "min_max_scale" | "one_hot" => arity == 1,
        "impute" => arity == 1 || arity == 2,
        "quantile_bucketize" => arity == 2,
        _ => false,
    }
}

/// The unfitted call `expr` is, if it is one.
fn unfitted_call(expr: &SqlExpr) -> Option<Unfitted> {
    let SqlExpr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_lowercase();
    if !FITTED_FEATURE_FUNCTIONS.contains(&name.as_str()) {
        return None;
    }
    let args = arguments(function)?;
    if !is_unfitted(&name, args.len()) {
        return None;
    }
    Some(Unfitted {
        function: name,
        input: args[0].to_string(),
        extra: args[1..].to_vec(),
        text: expr.to_string(),
    })
}

/// Unfitted calls whose arguments hold no unfitted call (fit innermost first).
fn innermost_unfitted(exprs: &[SqlExpr]) -> Vec<Unfitted> {
    let mut found = BTreeMap::new();
    for expr in exprs {
        let _ = visit_expressions(expr, |e: &SqlExpr| {
            if let Some(call) = unfitted_call(e) {
                let mut nested = false;
                if let SqlExpr::Function(f) = e {
                    for arg in arguments(f).unwrap_or_default() {
                        let _ = visit_expressions(&arg, |inner: &SqlExpr| {
                            nested |= unfitted_call(inner).is_some();
                            ControlFlow::<()>::Continue(())
                        });
                    }
                }
                if !nested {
                    found.insert(call.text.clone(), call);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    found.into_values().collect()
}

/// A number, NaN turned into NULL so statistics skip it as they skip NULL.
fn clean(input: &str) -> String {
    format!("CASE WHEN isnan(CAST({input} AS DOUBLE)) THEN NULL ELSE CAST({input} AS DOUBLE) END")
}

fn literal_text(expr: &SqlExpr) -> Option<String> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn literal_integer(expr: &SqlExpr) -> Option<i64> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

pub(super) async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// The first row as floats, NaN and infinities as missing.
fn first_row_f64(batches: &[RecordBatch]) -> Result<Vec<Option<f64>>> {
    Ok(first_row_floats(batches)?
        .into_iter()
        .map(|v| v.filter(|v| v.is_finite()))
        .collect())
}

/// Text of every value of the first column, in order.
pub(super) fn column_texts(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for batch in batches {
        let texts = cast(batch.column(0), &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        out.extend(
            (0..texts.len())
                .filter(|&i| texts.is_valid(i))
                .map(|i| texts.value(i).to_string()),
        );
    }
    Ok(out)
}

/// The bound SQL of each call of one level.
async fn fit_level(
    ctx: &SessionContext,
    rows: &str,
    calls: &[Unfitted],
) -> Result<BTreeMap<String, String>> {
    // Aggregates all simple statistics need, in one pass.
    let mut aggregates: Vec<String> = Vec::new();
    let mut slots: Vec<Vec<usize>> = Vec::new();
    let mut strategies = Vec::new();
    for call in calls {
        let input = clean(&call.input);
        let mut mine = Vec::new();
        let mut add = |agg: String| {
            aggregates.push(agg);
            mine.push(aggregates.len() - 1);
        };
        let strategy = match call.function.as_str() {
            "impute" => {
                let strategy = match call.extra.first() {
                    None => "mean".to_string(),
                    Some(e) => literal_text(e)
                        .map(|s| s.to_ascii_lowercase())
                        .unwrap_or_default(),
                };
                if !IMPUTE_STRATEGIES.contains(&strategy.as_str()) {
                    return plan_err!(
                        "{}: the strategy must be one of {}",
                        call.text,
                        IMPUTE_STRATEGIES
                            .iter()
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                strategy
            }
            _ => String::new(),
        };
        match call.function.as_str() {
            "standard_scale" => {
                add(format!("avg({input})"));
                add(format!("stddev_pop({input})"));
            }
            "min_max_scale" => {
                add(format!("min({input})"));
                add(format!("max({input})"));
            }
            "impute" if strategy == "mean" => add(format!("avg({input})")),
            "impute" if strategy == "median" => add(format!("median({input})")),
            "quantile_bucketize" => {
                let buckets = call.extra.first().and_then(literal_integer);
                let Some(buckets) = buckets.filter(|b| (2..=1000).contains(b)) else {
                    return plan_err!(
                        "{}: the number of buckets must be a whole number from 2 to 1000",
                        call.text
                    );
                };
                for i in 1..buckets {
                    add(format!(
                        "percentile_cont({input}, {})",
                        float_literal(i as f64 / buckets as f64)
                    ));
                }
            }
            _ => {}
        }
        slots.push(mine);
        strategies.push(strategy);
    }
    let values = if aggregates.is_empty() {
        vec![]
    } else {
        first_row_f64(
            &collect(
                ctx,
                &format!(
                    "SELECT {} FROM ({rows}) AS __ember_rows",
                    aggregates.join(", ")
                ),
            )
            .await?,
        )?
    };
    let mut bound = BTreeMap::new();
    for ((call, mine), strategy) in calls.iter().zip(&slots).zip(&strategies) {
        let stats: Vec<Option<f64>> = mine
            .iter()
            .map(|&i| values.get(i).copied().flatten())
            .collect();
        let need = |stats: &[Option<f64>]| -> Result<Vec<f64>> {
            stats
                .iter()
                .map(|s| match s {
                    Some(v) => Ok(*v),
                    None => plan_err!(
                        "{}: the training rows have no non-NULL numbers to fit it on",
                        call.text
                    ),
                })
                .collect()
        };
        let input = &call.input;
        let sql = match call.function.as_str() {
            "standard_scale" | "min_max_scale" => {
                let s = need(&stats)?;
                format!(
                    "{}({input}, {}, {})",
                    call.function,
                    float_literal(s[0]),
                    float_literal(s[1])
                )
            }
            "impute" if strategy == "most_frequent" => {
                let cleaned = clean(input);
                let sql = format!(
                    "SELECT v FROM (SELECT {cleaned} AS v, count(*) AS c FROM ({rows}) AS __ember_rows GROUP BY 1) AS t \
                     WHERE v IS NOT NULL ORDER BY c DESC, v ASC LIMIT 1"
                );
                let value = first_row_f64(&collect(ctx, &sql).await?)?;
                let value = need(&[value.first().copied().flatten()])?;
                format!(
                    "impute({input}, 'most_frequent', {})",
                    float_literal(value[0])
                )
            }
            "impute" => {
                let s = need(&stats)?;
                format!(
                    "impute({input}, {}, {})",
                    text_literal(strategy),
                    float_literal(s[0])
                )
            }
            "one_hot" => {
                let sql = format!(
                    "SELECT DISTINCT {input} AS v FROM ({rows}) AS __ember_rows WHERE {input} IS NOT NULL ORDER BY v LIMIT {}",
                    MAX_CATEGORIES + 1
                );
                let categories = column_texts(&collect(ctx, &sql).await?)?;
                if categories.is_empty() {
                    return plan_err!(
                        "{}: the training rows have no non-NULL values to learn categories from",
                        call.text
                    );
                }
                if categories.len() > MAX_CATEGORIES {
                    return plan_err!(
                        "{}: more than {MAX_CATEGORIES} categories; use feature_hash({input}, buckets)",
                        call.text
                    );
                }
                let literals: Vec<String> = categories.iter().map(|c| text_literal(c)).collect();
                format!("one_hot({input}, {})", literals.join(", "))
            }
            "quantile_bucketize" => {
                let mut edges = need(&stats)?;
                edges.dedup();
                let buckets = mine.len() + 1;
                let edges: Vec<String> = edges.into_iter().map(float_literal).collect();
                format!(
                    "quantile_bucketize({input}, {buckets}, {})",
                    edges.join(", ")
                )
            }
            other => return plan_err!("cannot fit {other}"),
        };
        bound.insert(call.text.clone(), sql);
    }
    Ok(bound)
}

fn parse_expr(sql: &str) -> Result<SqlExpr> {
    Ok(DFParserBuilder::new(sql).build()?.parse_into_expr()?.expr)
}

/// The output name of a TRANSFORM item: its alias, or the column it passes on.
pub fn item_name(item: &ExprWithAlias) -> Result<String> {
    let ident = match (&item.alias, &item.expr) {
        (Some(alias), _) => alias,
        (None, SqlExpr::Identifier(id)) => id,
        (None, expr) => return plan_err!("TRANSFORM item {expr} needs a name: add AS <name>"),
    };
    Ok(if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    })
}

/// Fits the TRANSFORM `items` over `rows` (SQL of the training rows) and returns
/// every item but the label's, with its statistics written in.
pub async fn fit_transform(
    ctx: &SessionContext,
    items: &[ExprWithAlias],
    label: Option<&str>,
    rows: &str,
) -> Result<Vec<TransformItem>> {
    let mut names = Vec::new();
    let mut exprs = Vec::new();
    for item in items {
        let name = item_name(item)?;
        if Some(name.as_str()) == label {
            continue;
        }
        if names.contains(&name) {
            return plan_err!("TRANSFORM names '{name}' twice");
        }
        names.push(name);
        exprs.push(item.expr.clone());
    }
    if exprs.is_empty() {
        return plan_err!("TRANSFORM has no features besides the label");
    }
    for _level in 0..8 {
        let calls = innermost_unfitted(&exprs);
        if calls.is_empty() {
            break;
        }
        let bound = fit_level(ctx, rows, &calls).await?;
        let mut parsed = BTreeMap::new();
        for (text, sql) in &bound {
            parsed.insert(text.clone(), parse_expr(sql)?);
        }
        for expr in exprs.iter_mut() {
            let _ = visit_expressions_mut(expr, |e: &mut SqlExpr| {
                if let Some(replacement) = parsed.get(&e.to_string()) {
                    *e = replacement.clone();
                }
                ControlFlow::<()>::Continue(())
            });
        }
    }
    Ok(names
        .into_iter()
        .zip(exprs)
        .map(|(name, expr)| TransformItem {
            name,
            sql: expr.to_string(),
        })
        .collect())
}
