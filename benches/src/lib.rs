//! ember's benchmark suites. Each prints its figures next to a baseline measured in
//! the same run on the same data (DESIGN §4); none asserts a time.
//!
//! - `tpch`: the 22 TPC-H queries, DataFusion alone vs ember embedded vs ember on
//!   a cluster.
//! - `ml`: training (logistic regression, linear regression, k-means) on a
//!   HIGGS-shaped set, ember embedded and on a cluster vs scikit-learn and Spark
//!   MLlib on the same Parquet.

use std::time::{Duration, Instant};

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
