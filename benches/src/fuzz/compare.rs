//! Comparing two engines' answers: as multisets of rows, numbers within a
//! tolerance (sums of floats depend on the order they are added in), and, for
//! an ordered query, the sequence of its sort keys.

use crate::TextTable;

/// A result set ready to compare.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The rows in the order they came.
    pub table: TextTable,
    /// Leading columns the query orders by; 0 when unordered.
    pub ordered_by: usize,
}

impl Rows {
    pub fn new(table: TextTable, ordered_by: usize) -> Self {
        Self { table, ordered_by }
    }
}

/// A cell as it sorts: numbers rounded to 8 significant digits, so that two
/// engines' last-bit differences sort alike.
fn sort_key(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() && (cell.contains('.') || cell.contains('e')) => {
            format!("{v:.8e}")
        }
        _ => cell.to_string(),
    }
}

fn sorted(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut keyed: Vec<(Vec<String>, Vec<String>)> = rows
        .iter()
        .map(|r| (r.iter().map(|c| sort_key(c)).collect(), r.clone()))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, r)| r).collect()
}

fn rows_agree(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cells_agree_closely(x, y))
}

/// Equal text, or numbers within 1e-9 relative (1e-9 absolute below 1).
fn cells_agree_closely(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// `Ok` when `actual` holds the rows `expected` holds; for an ordered query,
/// also in the same order of sort keys. The error says what differs.
pub fn compare(actual: &Rows, expected: &Rows) -> Result<(), String> {
    let (a, e) = (&actual.table.rows, &expected.table.rows);
    if a.len() != e.len() {
        return Err(format!("{} rows, expected {}", a.len(), e.len()));
    }
    if actual.table.header != expected.table.header {
        return Err(format!(
            "columns {:?}, expected {:?}",
            actual.table.header, expected.table.header
        ));
    }
    let (sa, se) = (sorted(a), sorted(e));
    for (i, (x, y)) in sa.iter().zip(&se).enumerate() {
        if !rows_agree(x, y) {
            return Err(format!("row {i} (sorted) is {x:?}, expected {y:?}"));
        }
    }
    let keys = expected.ordered_by;
    if keys > 0 {
        for (i, (x, y)) in a.iter().zip(e).enumerate() {
            if !rows_agree(&x[..keys.min(x.len())], &y[..keys.min(y.len())]) {
                return Err(format!(
                    "row {i} out of order: sort keys {:?}, expected {:?}",
                    &x[..keys.min(x.len())],
                    &y[..keys.min(y.len())]
                ));
            }
        }
    }
    Ok(())
}
