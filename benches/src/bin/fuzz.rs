//! The differential query fuzzer: seeded random SQL over TPC-H, embedded against
//! an in-process cluster of 2 executors at several partition counts and with
//! both Ballista planners (see `ember_benches::fuzz`).
//!
//! ```text
//! cargo run --release -p ember-benches --bin fuzz -- --seed 1 --queries 500
//! cargo run --release -p ember-benches --bin fuzz -- --seed 1 --queries 200 --planners static
//! cargo run --release -p ember-benches --bin fuzz -- --seed 7 --first 95 --queries 1 --show
//! ```
//!
//! Exits non-zero when the static planner (ember's) disagrees with the embedded
//! answer; disagreements of the adaptive planner, which ember refuses, are
//! reported as contained.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ember_benches::fuzz::{FuzzOptions, Planner, run};
use ember_engine::context::ALLOW_ADAPTIVE_PLANNER;
use ember_engine::datagen::{TpchOptions, generate_tpch};

#[derive(Debug, Parser)]
struct Args {
    /// Seed of the queries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Queries to generate.
    #[arg(long, default_value_t = 200)]
    queries: u64,
    /// The number of the first query: a run can resume where another stopped.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// target_partitions to run each query at on the cluster.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,8")]
    partitions: Vec<usize>,
    /// Planners to run on: static (ember's), sort-merge (ember's, every partitioned
    /// join a sort-merge join), broadcast (ember's, DataFusion collecting no side
    /// itself), adaptive (refused by ember).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Planner::Static, Planner::SortMerge, Planner::Broadcast, Planner::Adaptive])]
    planners: Vec<Planner>,
    /// Print the queries' SQL, one per line, and run nothing (to replay one by hand).
    #[arg(long)]
    show: bool,
    /// TPC-H Parquet tables (generated at scale 0.01 when the folder is empty).
    #[arg(long, default_value = "data/tpch-sf0.01")]
    data: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.show {
        for n in args.first..args.first + args.queries {
            println!("{n}\t{}", ember_benches::fuzz::query(args.seed, n).sql);
        }
        return ExitCode::SUCCESS;
    }
    if args.planners.contains(&Planner::Adaptive) {
        // SAFETY: no other thread exists yet; ember reads this when a statement
        // turns the adaptive planner on.
        unsafe { std::env::set_var(ALLOW_ADAPTIVE_PLANNER, "1") };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fuzz(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn fuzz(args: &Args) -> datafusion::common::Result<bool> {
    let empty = std::fs::read_dir(&args.data).map_or(true, |mut d| d.next().is_none());
    if empty {
        let options = TpchOptions {
            scale: 0.01,
            out: args.data.clone(),
            parts: 2,
        };
        generate_tpch(&options, &|_, _| {})?;
    }
    let options = FuzzOptions {
        seed: args.seed,
        first: args.first,
        queries: args.queries,
        partitions: args.partitions.clone(),
        planners: args.planners.clone(),
    };
    let started = std::time::Instant::now();
    let report = run(&options, &args.data, &mut |n, report| {
        if (n + 1) % 25 == 0 {
            eprintln!(
                "{} queries, {} cluster runs, {} disagreements",
                n + 1,
                report.runs,
                report.disagreements.len()
            );
        }
    })
    .await?;
    for d in &report.disagreements {
        println!(
            "query {} ({} planner, target_partitions = {}): {}\n  {}",
            d.n,
            d.planner.name(),
            d.partitions,
            d.difference,
            d.sql
        );
    }
    let count = |planner: Planner| {
        report
            .disagreements
            .iter()
            .filter(|d| d.planner == planner)
            .count()
    };
    let queries = |planner: Planner| {
        let mut n: Vec<u64> = report
            .disagreements
            .iter()
            .filter(|d| d.planner == planner)
            .map(|d| d.n)
            .collect();
        n.dedup();
        n.len()
    };
    println!(
        "seed {}: {} queries ({} invalid, skipped), {} cluster runs in {:.0} s; \
         static planner: {} disagreements in {} queries, {} runs refused by the stage guard; \
         sort-merge joins: {} disagreements in {} queries; \
         broadcasts from estimates: {} disagreements in {} queries; \
         adaptive planner (refused by ember): {} disagreements in {} queries",
        args.seed,
        report.queries,
        report.invalid,
        report.runs,
        started.elapsed().as_secs_f64(),
        count(Planner::Static),
        queries(Planner::Static),
        report.refused,
        count(Planner::SortMerge),
        queries(Planner::SortMerge),
        count(Planner::Broadcast),
        queries(Planner::Broadcast),
        count(Planner::Adaptive),
        queries(Planner::Adaptive),
    );
    Ok(count(Planner::Static) + count(Planner::SortMerge) + count(Planner::Broadcast) == 0)
}
