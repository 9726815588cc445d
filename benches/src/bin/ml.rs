//! Training on a HIGGS-shaped set (`ember datagen classification`): logistic
//! regression to the optimum, linear regression, k-means (k = 8, 20 iterations),
//! ember embedded and on a cluster, against scikit-learn and Spark MLlib local[2]
//! run on the same Parquet in the same run (benches/python/ml_baselines.py).
//!
//! ```text
//! ember datagen classification --rows 2000000 --features 28 --out data/higgs-2m --parts 4
//! ember cluster up --executors 2 --port 50050 &
//! cargo run --release -p ember-benches --bin ml -- --data data/higgs-2m \
//!     --master df://127.0.0.1:50050 --baselines sklearn,spark
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, Result};
use ember_engine::EmberContext;
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// Folder of the data set's Parquet files.
    #[arg(long, default_value = "data/higgs-2m")]
    data: PathBuf,
    /// Feature columns f0.. to train on.
    #[arg(long, default_value_t = 28)]
    features: usize,
    /// Cluster to measure as well (e.g. one started by `ember cluster up`).
    #[arg(long)]
    master: Option<String>,
    /// Baselines to run: sklearn, spark (comma-separated), or none.
    #[arg(long, default_value = "sklearn")]
    baselines: String,
    /// Python with scikit-learn / pyspark.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Memory bandwidth of this machine in GB/s, for the bytes-per-pass limit.
    #[arg(long, default_value_t = 16.0)]
    bandwidth_gbs: f64,
    /// ember.ml.device settings to measure embedded (auto, cpu, cuda).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    devices: Vec<String>,
    /// Workloads (logistic, linear, kmeans).
    #[arg(long, value_delimiter = ',', default_value = "logistic,linear,kmeans")]
    workloads: Vec<String>,
}

/// One measured training run.
#[derive(Debug, Clone, Default)]
struct Run {
    seconds: f64,
    /// EVALUATE MODEL on the training data, timed separately (ember only).
    evaluate_seconds: Option<f64>,
    train_seconds: Option<f64>,
    passes: Option<usize>,
    loss: Option<f64>,
    rows: Option<u64>,
}

fn create_sql(workload: &str, features: usize) -> String {
    let f: Vec<String> = (0..features).map(|i| format!("f{i}")).collect();
    let f = f.join(", ");
    match workload {
        "logistic" => format!(
            "create or replace model bench_logistic options (model_type = 'logistic_regression', label = 'label', max_iterations = 50) as select label, {f} from higgs"
        ),
        "linear" => format!(
            "create or replace model bench_linear options (model_type = 'linear_regression', label = 'target') as select target, {f} from higgs"
        ),
        "kmeans" => format!(
            "create or replace model bench_kmeans options (model_type = 'kmeans', num_clusters = 8, max_iterations = 20, seed = 1) as select {f} from higgs"
        ),
        other => panic!("unknown workload {other}"),
    }
}

async fn describe(ember: &EmberContext, model: &str) -> Result<BTreeMap<String, String>> {
    let output = ember.sql_one(&format!("describe model {model}")).await?;
    let mut rows = BTreeMap::new();
    for batch in &output.batches {
        let keys = cast(batch.column(0), &DataType::Utf8)?;
        let values = cast(batch.column(1), &DataType::Utf8)?;
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        for i in 0..keys.len() {
            rows.insert(keys.value(i).to_string(), values.value(i).to_string());
        }
    }
    Ok(rows)
}

async fn run_ember(ember: &EmberContext, workload: &str, features: usize) -> Result<Run> {
    let started = Instant::now();
    ember.sql(&create_sql(workload, features)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let model = format!("bench_{workload}");
    let started = Instant::now();
    ember.sql(&format!("evaluate model {model}")).await?;
    let evaluate_seconds = Some(started.elapsed().as_secs_f64());
    let d = describe(ember, &model).await?;
    let info = ember
        .sql_one(&format!(
            "select max(elapsed_seconds) from training_info('{model}')"
        ))
        .await?;
    let train_seconds = info.batches.first().and_then(|b| {
        b.column(0)
            .as_primitive::<Float64Type>()
            .values()
            .first()
            .copied()
    });
    Ok(Run {
        seconds,
        evaluate_seconds,
        train_seconds,
        passes: d.get("passes").and_then(|p| p.parse().ok()),
        loss: d.get("final_loss").and_then(|p| p.parse().ok()),
        rows: d.get("training_rows").and_then(|p| p.parse().ok()),
    })
}

async fn ember_context(
    master: Option<&str>,
    store: &std::path::Path,
    data: &std::path::Path,
) -> Result<EmberContext> {
    let ember = EmberContext::connect(master)
        .await?
        .with_model_store(store.to_str().unwrap())?;
    let location = std::fs::canonicalize(data)
        .map_err(|e| DataFusionError::Execution(format!("{}: {e}", data.display())))?;
    ember
        .sql(&format!(
            "create external table higgs stored as parquet location '{}/'",
            location.display()
        ))
        .await?;
    Ok(ember)
}

fn baselines(args: &Args) -> Vec<(String, String, Run)> {
    if args.baselines == "none" {
        return vec![];
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/ml_baselines.py");
    let output = Command::new(&args.python)
        .arg(&script)
        .arg("--data")
        .arg(&args.data)
        .arg("--engines")
        .arg(&args.baselines)
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("baselines failed: {}", String::from_utf8_lossy(&o.stderr));
            return vec![];
        }
        Err(e) => {
            eprintln!("cannot run {}: {e}", args.python);
            return vec![];
        }
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let load = v["load_s"].as_f64().unwrap_or(0.0);
            let fit = v["fit_s"].as_f64().unwrap_or(0.0);
            (
                v["engine"].as_str().unwrap_or("?").to_string(),
                v["workload"].as_str().unwrap_or("?").to_string(),
                Run {
                    seconds: load + fit,
                    evaluate_seconds: None,
                    train_seconds: Some(fit),
                    passes: v["iterations"].as_u64().map(|i| i as usize),
                    loss: v["loss"].as_f64(),
                    rows: None,
                },
            )
        })
        .collect()
}

fn show(value: Option<f64>, digits: usize) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let store = tempfile::tempdir().map_err(|e| DataFusionError::Execution(e.to_string()))?;
    let mut results: Vec<(String, String, Run)> = Vec::new();
    for device in &args.devices {
        let embedded = ember_context(
            None,
            &store.path().join(format!("embedded-{device}")),
            &args.data,
        )
        .await?;
        embedded
            .sql(&format!("set ember.ml.device = '{device}'"))
            .await?;
        let engine = match device.as_str() {
            "auto" => "ember embedded".to_string(),
            other => format!("ember {other}"),
        };
        for workload in &args.workloads {
            results.push((
                engine.clone(),
                workload.clone(),
                run_ember(&embedded, workload, args.features).await?,
            ));
        }
    }
    if let Some(master) = &args.master {
        let cluster =
            ember_context(Some(master), &store.path().join("cluster"), &args.data).await?;
        for workload in &args.workloads {
            results.push((
                "ember cluster".into(),
                workload.clone(),
                run_ember(&cluster, workload, args.features).await?,
            ));
        }
    }
    results.extend(baselines(&args));

    let rows = results.iter().find_map(|(_, _, r)| r.rows).unwrap_or(0);
    let bytes_per_pass = rows as f64 * (args.features + 1) as f64 * 8.0;
    println!(
        "data: {} ({rows} rows x {} features; {:.0} MB of float64 per pass, {:.3} s per pass at {} GB/s)",
        args.data.display(),
        args.features,
        bytes_per_pass / 1e6,
        bytes_per_pass / (args.bandwidth_gbs * 1e9),
        args.bandwidth_gbs
    );
    println!(
        "{:<9} {:<15} {:>9} {:>9} {:>9} {:>7} {:>14} {:>10} {:>10} {:>10}",
        "workload",
        "engine",
        "total s",
        "train s",
        "eval s",
        "passes",
        "loss",
        "vs sklearn",
        "vs spark",
        "pass GB/s"
    );
    for workload in &args.workloads {
        let baseline = |engine: &str| {
            results
                .iter()
                .find(|(e, w, _)| e == engine && w == workload)
                .map(|(_, _, r)| r.seconds)
        };
        for (engine, w, run) in results.iter().filter(|(_, w, _)| w == workload) {
            let _ = w;
            let ratio =
                |b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}x", run.seconds / b));
            let throughput = match (run.passes, run.train_seconds, engine.starts_with("ember")) {
                (Some(p), Some(t), true) if t > 0.0 => {
                    format!("{:.1}", bytes_per_pass * p as f64 / t / 1e9)
                }
                _ => "-".to_string(),
            };
            println!(
                "{:<9} {:<15} {:>9.3} {:>9} {:>9} {:>7} {:>14} {:>10} {:>10} {:>10}",
                workload,
                engine,
                run.seconds,
                show(run.train_seconds, 3),
                show(run.evaluate_seconds, 3),
                run.passes.map_or("-".to_string(), |p| p.to_string()),
                run.loss.map_or("-".to_string(), |l| format!("{l:.12}")),
                ratio(baseline("sklearn")),
                ratio(baseline("spark")),
                throughput
            );
        }
    }
    Ok(())
}
