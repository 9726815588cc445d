//! The differential query fuzzer: seeded random SQL over TPC-H, each query run
//! embedded (the reference) and on an in-process cluster of 2 executors at
//! several `target_partitions`, with the static planner and, on request,
//! Ballista's adaptive one; answers compared as multisets, and in order where
//! the query orders.
//!
//! ```text
//!   query(seed, n) ──> embedded ──────────────────────────┐ reference
//!                  └─> cluster × partitions × planners ───┴─> same rows? same order?
//! ```
//!
//! `cargo run --release -p ember-benches --bin fuzz -- --seed S --queries N` runs
//! it; `tests/tests/fuzz.rs` (crate ember-tests) runs a short seeded run in CI.

mod compare;
mod generate;

use std::path::Path;

use datafusion::common::Result;
use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_engine::config::JOIN_REORDER;
use ember_engine::errors::one_line;

pub use compare::{Rows, compare};
pub use generate::{Query, Rng, query};

use crate::to_text_with_null;

/// Which Ballista planner a cluster run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Planner {
    /// The static planner, ember's (with its stage guard), hash joins where the
    /// build side fits.
    Static,
    /// The static planner with every partitioned hash join made a sort-merge
    /// join, as for build sides that do not fit (the fuzzer's data is small).
    SortMerge,
    /// The static planner with DataFusion collecting no build side itself: the
    /// broadcasts are those ember chooses from its estimates
    /// (`engine/src/statistics.rs`) and Ballista's own, by its threshold.
    Broadcast,
    /// Ballista's adaptive planner, which ember refuses
    /// (`EMBER_ALLOW_ADAPTIVE_PLANNER` must be set to fuzz it).
    Adaptive,
}

impl Planner {
    pub fn name(self) -> &'static str {
        match self {
            Planner::Static => "static",
            Planner::SortMerge => "sort-merge",
            Planner::Broadcast => "broadcast",
            Planner::Adaptive => "adaptive",
        }
    }

    /// The settings that choose this planner.
    fn settings(self) -> String {
        let adaptive = self == Planner::Adaptive;
        // 1 byte: every build side is over it. 64 MiB is the default.
        let build_bytes = if self == Planner::SortMerge {
            1
        } else {
            64 << 20
        };
        // 0: no side is under DataFusion's threshold (128 K rows by default).
        let collect_rows = if self == Planner::Broadcast {
            0
        } else {
            128 << 10
        };
        format!(
            "SET ballista.planner.adaptive.enabled = {adaptive}; \
             SET ballista.optimizer.hash_join_max_build_partition_bytes = {build_bytes}; \
             SET datafusion.optimizer.hash_join_single_partition_threshold = {collect_bytes}; \
             SET datafusion.optimizer.hash_join_single_partition_threshold_rows = {collect_rows};",
            collect_bytes = if collect_rows == 0 { 0 } else { 1 << 20 },
        )
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub seed: u64,
    /// The number of the first query (a run can resume where another stopped).
    pub first: u64,
    pub queries: u64,
    pub partitions: Vec<usize>,
    pub planners: Vec<Planner>,
}

/// One query whose cluster answer differed from the embedded one.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub n: u64,
    pub sql: String,
    pub planner: Planner,
    pub partitions: usize,
    /// What differed.
    pub difference: String,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    /// Queries generated and answered embedded.
    pub queries: u64,
    /// Cluster runs compared.
    pub runs: u64,
    /// Queries the embedded engine refused (the generator's mistakes, not
    /// disagreements).
    pub invalid: u64,
    /// Cluster runs ember refused with a clear error because the plan would
    /// have given a wrong answer (its stage guard).
    pub refused: u64,
    pub disagreements: Vec<Disagreement>,
}

/// Longest a cluster run may take before it counts as a hang (the embedded run
/// of the same query takes well under a second at TPC-H scale 0.01).
const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The model the queries' `predict('fz', ...)` calls use.
const MODEL: &str = "CREATE OR REPLACE MODEL fz OPTIONS (model_type = 'linear_regression', label = 'y') \
    AS SELECT CAST(l_quantity AS DOUBLE) AS q, CAST(l_discount AS DOUBLE) AS d, \
    CAST(l_extendedprice AS DOUBLE) AS y FROM lineitem";

/// Runs the fuzzer over the TPC-H tables in `data`, calling `progress` after each
/// query with the report so far.
pub async fn run(
    options: &FuzzOptions,
    data: &Path,
    progress: &mut dyn FnMut(u64, &FuzzReport),
) -> Result<FuzzReport> {
    let store = tempfile::tempdir()?;
    let store_url = store.path().to_str().unwrap_or_default().to_string();
    let embedded = EmberContext::embedded()?.with_model_store(&store_url)?;
    embedded.register_data_dir(data).await?;
    // The reference joins in the written order, as DataFusion plans it; the
    // cluster runs reorder them (ember's default), so every many-way join
    // checks the reordering too.
    embedded.sql(&format!("SET {JOIN_REORDER} = false")).await?;
    embedded.sql(MODEL).await?;
    let cluster = InProcessCluster::start(2, 2).await?;
    let remote = cluster.context().await?.with_model_store(&store_url)?;
    remote.register_data_dir(data).await?;

    let mut report = FuzzReport::default();
    for n in options.first..options.first + options.queries {
        let q = query(options.seed, n);
        let expected = match embedded.sql_one(&q.sql).await {
            Ok(output) => Rows::new(to_text_with_null(&output, "NULL"), q.ordered_by),
            Err(_) => {
                report.invalid += 1;
                progress(n, &report);
                continue;
            }
        };
        report.queries += 1;
        for &planner in &options.planners {
            remote.sql(&planner.settings()).await?;
            for &partitions in &options.partitions {
                remote
                    .sql(&format!(
                        "SET datafusion.execution.target_partitions = {partitions}"
                    ))
                    .await?;
                report.runs += 1;
                let answer = tokio::time::timeout(RUN_TIMEOUT, remote.sql_one(&q.sql)).await;
                let Ok(answer) = answer else {
                    report.disagreements.push(Disagreement {
                        n,
                        sql: q.sql.clone(),
                        planner,
                        partitions,
                        difference: format!("no answer within {} s", RUN_TIMEOUT.as_secs()),
                    });
                    continue;
                };
                let difference = match answer {
                    Ok(output) => {
                        let actual = Rows::new(to_text_with_null(&output, "NULL"), q.ordered_by);
                        compare(&actual, &expected).err()
                    }
                    Err(e) => {
                        let message = one_line(&e);
                        if message.contains("cannot run correctly on the cluster") {
                            report.refused += 1;
                            None
                        } else {
                            Some(format!("failed on the cluster: {message}"))
                        }
                    }
                };
                if let Some(difference) = difference {
                    report.disagreements.push(Disagreement {
                        n,
                        sql: q.sql.clone(),
                        planner,
                        partitions,
                        difference,
                    });
                }
            }
        }
        progress(n, &report);
    }
    remote
        .sql("SET ballista.planner.adaptive.enabled = false")
        .await?;
    Ok(report)
}
