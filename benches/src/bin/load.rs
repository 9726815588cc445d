//! Load: N concurrent clients, each its own session, run TPC-H queries and
//! predictions against one cluster for a bounded time. Every answer is checked
//! against the embedded engine's; at the end the peak RSS (VmHWM) of the
//! scheduler, each executor and this client process is reported.
//!
//! ```text
//! ember datagen tpch --scale 1 --out data/tpch-sf1
//! ember cluster up --executors 3 --port 50050 &
//! ./target/release/load --master df://127.0.0.1:50050 --data data/tpch-sf1 --clients 32 --seconds 120
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{DataFusionError, Result};
use ember_benches::tpch_query;
use ember_engine::{EmberContext, StatementOutput};

#[derive(Parser)]
struct Args {
    /// The cluster (`ember cluster up` prints it).
    #[arg(long)]
    master: String,
    /// A TPC-H data directory (`ember datagen tpch`).
    #[arg(long)]
    data: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long the clients run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// The workload: TPC-H queries of every shape, and a prediction over a model
/// trained at the start.
const TPCH: &[usize] = &[1, 3, 5, 6, 10, 12, 14, 18];
const PREDICT: &str = "select round(sum(predict('load_price', l_quantity, l_discount)), 0) as s, \
    count(*) as n from lineitem where l_shipdate < date '1993-01-01'";
const TRAIN: &str = "create or replace model load_price options (model_type = 'linear_regression', \
    label = 'l_extendedprice') as select l_extendedprice, l_quantity, l_discount from lineitem \
    where l_orderkey % 50 = 0";

/// The answer as text, to compare with the embedded engine's.
fn text(outputs: &[StatementOutput]) -> Result<String> {
    let batches: Vec<_> = outputs.iter().flat_map(|o| o.batches.clone()).collect();
    Ok(pretty_format_batches(&batches)?.to_string())
}

/// Peak resident memory of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The ember scheduler and executors serving `port`, by their command lines.
fn cluster_processes(port: u16) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let has = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
        if args.iter().any(|a| a == "scheduler") && has("--port", &port.to_string()) {
            found.push(("scheduler".to_string(), pid));
        } else if args.iter().any(|a| a == "executor")
            && args.iter().any(|a| a.ends_with(&format!(":{port}")))
        {
            found.push((format!("executor (pid {pid})"), pid));
        }
    }
    found.sort();
    found
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let port: u16 = args
        .master
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| DataFusionError::Configuration("--master must be df://HOST:PORT".into()))?;
    let models = tempfile::tempdir()?;
    let store = models.path().to_str().unwrap().to_string();

    // Expected answers from the embedded engine, same data, same model store.
    let embedded = EmberContext::embedded()?.with_model_store(&store)?;
    embedded.register_data_dir(&args.data).await?;
    embedded.sql(TRAIN).await?;
    let mut work = Vec::new();
    for &q in TPCH {
        let sql = tpch_query(q);
        let expected = text(&embedded.sql(&sql).await?)?;
        work.push((format!("q{q}"), sql, expected));
    }
    let expected = text(&embedded.sql(PREDICT).await?)?;
    work.push(("predict".to_string(), PREDICT.to_string(), expected));
    let work = Arc::new(work);

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (ok, wrong, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..args.clients {
        let (work, ok, wrong, failed) = (work.clone(), ok.clone(), wrong.clone(), failed.clone());
        let (master, data, store) = (args.master.clone(), args.data.clone(), store.clone());
        clients.push(tokio::spawn(async move {
            let ember = EmberContext::remote(&master)
                .await?
                .with_model_store(&store)?;
            ember.register_data_dir(&data).await?;
            let mut i = client;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let (name, sql, expected) = &work[i % work.len()];
                i += 1;
                let t = Instant::now();
                match ember.sql(sql).await.and_then(|o| text(&o)) {
                    Ok(actual) if &actual == expected => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                        eprintln!("client {client}: WRONG answer to {name}");
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("client {client}: {name} failed: {e}");
                    }
                }
                latencies.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, DataFusionError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(
            client
                .await
                .map_err(|e| DataFusionError::Execution(e.to_string()))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];

    let (ok, wrong, failed) = (
        ok.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "{} clients, {elapsed:.0} s: {} statements, {ok} right, {wrong} wrong, {failed} failed; {:.1} statements/s",
        args.clients,
        ok + wrong + failed,
        (ok + wrong + failed) as f64 / elapsed
    );
    if !latencies.is_empty() {
        println!(
            "latency: median {:.2} s, p95 {:.2} s, max {:.2} s",
            pct(0.5),
            pct(0.95),
            pct(1.0)
        );
    }
    println!("peak RSS (VmHWM):");
    let processes = cluster_processes(port);
    for (name, pid) in &processes {
        let rss = peak_rss_mib(*pid).map_or("?".into(), |m| format!("{m:.0} MiB"));
        println!("  {name:<24} {rss}");
    }
    let own = peak_rss_mib(std::process::id()).map_or("?".into(), |m| format!("{m:.0} MiB"));
    println!(
        "  {:<24} {own}",
        format!("{} clients (this process)", args.clients)
    );
    if processes.is_empty() {
        println!("  (no ember scheduler or executor found for port {port})");
    }
    if wrong + failed > 0 {
        return Err(DataFusionError::Execution(format!(
            "{wrong} wrong answers and {failed} failures"
        )));
    }
    Ok(())
}
