//! TPC-H: each query and the total, DataFusion alone (the baseline) vs ember
//! embedded vs ember on a cluster, measured in the same run on the same Parquet.
//!
//! ```text
//! cargo run --release -p ember-benches --bin tpch -- --scale 1 --data data/tpch-sf1
//! cargo run --release -p ember-benches --bin tpch -- --scale 1 --data data/tpch-sf1 --master df://127.0.0.1:50050
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use datafusion::common::Result;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember_benches::{best_of, tpch_query};
use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_engine::context::returns_rows;
use ember_engine::datagen::{TPCH_TABLES, TpchOptions, generate_tpch};

/// TPC-H: DataFusion alone vs ember embedded vs ember on a cluster.
#[derive(Debug, Parser)]
struct Args {
    /// Scale factor of the data (generated into --data when that folder is empty).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Folder of TPC-H Parquet tables.
    #[arg(long, default_value = "data/tpch-sf1")]
    data: PathBuf,
    /// Files per table when generating.
    #[arg(long, default_value_t = 2)]
    parts: usize,
    /// Runs per query; the fastest counts.
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Queries to run (default: all 22), e.g. 1,3,6.
    #[arg(long, value_delimiter = ',')]
    queries: Vec<usize>,
    /// Cluster to measure (e.g. one started by `ember cluster up`); without it, a
    /// cluster of --executors executors is started in this process.
    #[arg(long)]
    master: Option<String>,
    /// Executors of the in-process cluster.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Skip the cluster measurement.
    #[arg(long)]
    no_cluster: bool,
    /// `KEY=VALUE` settings for the cluster's session, as `SET KEY = VALUE` would
    /// make them: to compare planner settings. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// `SET` statements for `--set KEY=VALUE` arguments.
fn set_statements(settings: &[String]) -> Result<String> {
    settings
        .iter()
        .map(|setting| match setting.split_once('=') {
            Some((key, value)) => Ok(format!("SET {} = '{}';", key.trim(), value.trim())),
            None => Err(datafusion::error::DataFusionError::Configuration(format!(
                "--set {setting}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// DataFusion alone, with its defaults: the baseline.
async fn datafusion_alone(args: &Args) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    for (table, _) in TPCH_TABLES {
        let location = format!("{}/{table}/", args.data.display());
        ctx.register_parquet(table, &location, ParquetReadOptions::default())
            .await?;
    }
    Ok(ctx)
}

/// Runs a query's statements in turn on plain DataFusion; returns the rows of the
/// last one that returns rows (q15 ends with a DROP VIEW).
async fn run_datafusion(ctx: &SessionContext, sql: &str) -> Result<usize> {
    let mut rows = 0;
    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
        // The plan before it runs: DDL runs at once and leaves an empty relation.
        let plan = ctx.state().create_logical_plan(statement).await?;
        let is_query = returns_rows(&plan);
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        if is_query {
            rows = batches.iter().map(|b| b.num_rows()).sum();
        }
    }
    Ok(rows)
}

async fn run_ember(ember: &EmberContext, sql: &str) -> Result<usize> {
    let outputs = ember.sql(sql).await?;
    Ok(outputs
        .iter()
        .rev()
        .find(|o| o.returns_rows)
        .map(|o| o.num_rows())
        .unwrap_or(0))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The cluster's two columns: seconds and ratio, or dashes when not measured.
fn cluster_cells(seconds: Option<f64>, baseline: f64) -> String {
    match seconds {
        Some(s) => format!("{s:>12.3} {:>8.2}", s / baseline),
        None => format!("{:>12} {:>8}", "-", "-"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.data.join("lineitem").exists() {
        eprintln!(
            "generating TPC-H scale {} into {}",
            args.scale,
            args.data.display()
        );
        generate_tpch(
            &TpchOptions {
                scale: args.scale,
                out: args.data.clone(),
                parts: args.parts,
            },
            &|_, _| {},
        )?;
    }
    let queries: Vec<usize> = if args.queries.is_empty() {
        (1..=22).collect()
    } else {
        args.queries.clone()
    };

    let baseline = datafusion_alone(&args).await?;
    let embedded = EmberContext::embedded()?;
    embedded.register_data_dir(&args.data).await?;
    let (_cluster, distributed) = if args.no_cluster {
        (None, None)
    } else if let Some(master) = &args.master {
        (None, Some(EmberContext::remote(master).await?))
    } else {
        let cluster = InProcessCluster::start(args.executors, 0).await?;
        let ember = cluster.context().await?;
        (Some(cluster), Some(ember))
    };
    if let Some(ember) = &distributed {
        ember.register_data_dir(&args.data).await?;
    }
    let settings = set_statements(&args.settings)?;
    if let Some(ember) = distributed.as_ref().filter(|_| !settings.is_empty()) {
        ember.sql(&settings).await?;
        println!("cluster settings: {settings}");
    }

    println!(
        "TPC-H SF{} from {}, best of {} runs, seconds (ratio = ember / DataFusion alone)",
        args.scale,
        args.data.display(),
        args.iterations
    );
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>12} {:>8}",
        "query", "datafusion", "embedded", "ratio", "cluster", "ratio"
    );
    let (mut total_df, mut total_embedded, mut total_cluster) = (0.0, 0.0, 0.0);
    for n in queries {
        let sql = tpch_query(n);
        let (df_time, df_rows) = best_of(args.iterations, || run_datafusion(&baseline, &sql)).await;
        let df_rows = df_rows?;
        let (em_time, em_rows) = best_of(args.iterations, || run_ember(&embedded, &sql)).await;
        let em_rows = em_rows?;
        if em_rows != df_rows {
            eprintln!("q{n}: embedded returned {em_rows} rows, DataFusion {df_rows}");
        }
        total_df += secs(df_time);
        total_embedded += secs(em_time);
        let cluster_time = match &distributed {
            Some(ember) => {
                let (time, rows) = best_of(args.iterations, || run_ember(ember, &sql)).await;
                let rows = rows?;
                if rows != df_rows {
                    eprintln!("q{n}: cluster returned {rows} rows, DataFusion {df_rows}");
                }
                total_cluster += secs(time);
                Some(secs(time))
            }
            None => None,
        };
        println!(
            "{:>5} {:>12.3} {:>12.3} {:>8.2} {}",
            format!("q{n}"),
            secs(df_time),
            secs(em_time),
            secs(em_time) / secs(df_time),
            cluster_cells(cluster_time, secs(df_time))
        );
    }
    println!(
        "{:>5} {total_df:>12.3} {total_embedded:>12.3} {:>8.2} {}",
        "total",
        total_embedded / total_df,
        cluster_cells(distributed.is_some().then_some(total_cluster), total_df)
    );
    Ok(())
}
