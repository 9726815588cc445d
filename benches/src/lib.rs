//! ember's benchmark suites. Each prints its figures next to a baseline measured in
//! the same run on the same data (DESIGN §4); none asserts a time.
//!
//! - `tpch`: the 22 TPC-H queries, DataFusion alone vs ember embedded vs ember on
//!   a cluster.
//! - `ml`: training (logistic regression, linear regression, k-means) on a
//!   HIGGS-shaped set, ember embedded and on a cluster vs scikit-learn and Spark
//!   MLlib on the same Parquet.
//! - `kernels`: each ML kernel alone, CPU and CUDA, in GB/s.
//! - `load`: concurrent clients against one cluster, answers checked, peak RSS.
//! - `fuzz`: the differential query fuzzer (module [`fuzz`]), embedded against a
//!   cluster on seeded random SQL.

pub mod fuzz;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ember_engine::StatementOutput;

/// The text of TPC-H query `n` from the repository's query files.
pub fn tpch_query(n: usize) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/tpch/queries/q{n}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `f` `iterations` times and returns the fastest run and the last result.
pub async fn best_of<T, F, Fut>(iterations: usize, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        let result = f().await;
        best = best.min(started.elapsed());
        last = Some(result);
    }
    (best, last.expect("at least one iteration"))
}

/// A table of text: a header and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The rows of a statement's output as text (NULL as an empty string, as in the
/// CSV fixtures).
pub fn to_text(output: &StatementOutput) -> TextTable {
    to_text_with_null(output, "")
}

/// The rows of a statement's output as text, NULL written as `null` (sqllogictest
/// files write `NULL`).
pub fn to_text_with_null(output: &StatementOutput, null: &str) -> TextTable {
    let header = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let options = FormatOptions::default().with_null(null);
    let mut rows = Vec::new();
    for batch in &output.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    TextTable { header, rows }
}
