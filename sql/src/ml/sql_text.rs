//! Building the SQL text of the queries model statements run: each one is
//! planned like a user's query, so it runs embedded or on a cluster alike.

use datafusion::sql::sqlparser::ast::Ident;
use ember_ml_ops::hashing::ROW_HASH;
use ember_ml_ops::models::{DataSplit, ModelOptions};

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    Ident::with_quote('"', name).to_string()
}

/// A quoted string literal.
pub fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A float literal that reads back as the same float.
pub fn float_literal(v: f64) -> String {
    format!("CAST({v:?} AS DOUBLE)")
}

/// The label as the estimator sees it, a DOUBLE: the column itself, or for a
/// classifier with named classes, its class index (NULL for anything else).
pub fn label_value(label: &str, classes: &[String]) -> String {
    class_index(&ident(label), classes)
}

/// The class index of `value` (SQL: a label, or a prediction), a DOUBLE: its
/// place among the named `classes` (NULL for none of them), or without named
/// classes the value itself.
pub fn class_index(value: &str, classes: &[String]) -> String {
    if classes.is_empty() {
        return format!("CAST({value} AS DOUBLE)");
    }
    let arms: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("WHEN {} THEN {i}.0", text_literal(c)))
        .collect();
    format!("CASE CAST({value} AS VARCHAR) {} END", arms.join(" "))
}

/// A prediction as 0/1 (a DOUBLE), whether `predict` returns numbers or the
/// model's named classes.
pub fn class_value(prediction: &str, classes: &[String]) -> String {
    match classes {
        [_, one] => format!(
            "CASE WHEN {prediction} IS NULL THEN NULL WHEN CAST({prediction} AS VARCHAR) = {} THEN 1.0 ELSE 0.0 END",
            text_literal(one)
        ),
        _ => format!("CAST({prediction} AS DOUBLE)"),
    }
}

/// Which rows of a split a query reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rows {
    All,
    Training,
    Evaluation,
}

/// `SELECT * FROM (query)` restricted to `rows` of the model's split. The split
/// hashes every column of the query's rows, so it does not depend on partitioning.
pub fn rows_sql(query: &str, columns: &[String], options: &ModelOptions, rows: Rows) -> String {
    let base = format!("SELECT * FROM ({query}) AS __ember_input");
    if options.data_split == DataSplit::None || rows == Rows::All {
        return base;
    }
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let op = if rows == Rows::Training { ">=" } else { "<" };
    format!(
        "{base} WHERE {ROW_HASH}({}, {}) {op} {}",
        options.seed,
        cols.join(", "),
        float_literal(options.eval_fraction)
    )
}
