//! Kernels alone, CPU and CUDA, in GB/s of feature data read per pass.
//!
//! ```text
//! cargo run --release -p ember-benches --bin kernels -- --rows 10000000 --features 28
//! ```
//!
//! The CPU kernels run on every core (rows split evenly, as partitions are);
//! the CUDA ones on device-resident data, against the device's own measured
//! copy bandwidth. Transforms copy in and out over PCIe, so their GB/s counts
//! that too. A machine without a GPU prints the CPU rows only.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use datafusion::arrow::array::{ArrayRef, Float64Array};
use ember_ml_ops::hashing::splitmix64;
use ember_ml_ops::kernels::{
    FeatureBlock, FeatureColumns, cuda, for_each_block, gram, kmeans, logistic, transform,
};

#[derive(Parser)]
#[command(about = "ember's kernels, CPU and CUDA, in GB/s")]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 28)]
    features: usize,
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

fn median_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs `f` over each core's share of rows, as partitions would, and sums.
fn on_all_cores(
    columns: &[FeatureColumns],
    len: usize,
    f: impl Fn(&FeatureColumns, &mut [f64]) + Sync,
) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = columns
            .iter()
            .map(|c| {
                let f = &f;
                scope.spawn(move || {
                    let mut stats = vec![0.0; len];
                    f(c, &mut stats);
                    stats
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = vec![0.0; len];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

fn row(name: &str, device: &str, seconds: f64, bytes: f64, limit: f64) {
    let gbps = bytes / seconds / 1e9;
    println!(
        "{name:<20} {device:<5} {:>10.3} {gbps:>9.1} {:>8.0}%",
        seconds * 1e3,
        100.0 * gbps / limit
    );
}

fn main() -> datafusion::common::Result<()> {
    let args = Args::parse();
    let (n, d, k) = (args.rows, args.features, args.clusters);
    let mut state = 42u64;
    let mut next = move || {
        state = splitmix64(state);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let x: Vec<f64> = (0..n * d).map(|_| next()).collect(); // column-major
    let y: Vec<f64> = (0..n)
        .map(|i| (x[i] + 0.3 * next() > 0.0) as u8 as f64)
        .collect();
    let weights: Vec<f64> = (0..=d).map(|_| 0.1 * next()).collect();
    let centroids: Vec<f64> = (0..k * d).map(|_| next()).collect();
    let names: Vec<String> = (0..d).map(|j| format!("f{j}")).collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let share = n.div_ceil(cores);
    let mut parts = Vec::new();
    let mut labels = Vec::new();
    for start in (0..n).step_by(share) {
        let end = (start + share).min(n);
        let arrays: Vec<ArrayRef> = (0..d)
            .map(|j| {
                Arc::new(Float64Array::from(x[j * n + start..j * n + end].to_vec())) as ArrayRef
            })
            .collect();
        parts.push(FeatureColumns::new(&arrays, &names)?);
        labels.push((start, end));
    }
    let bytes = (n * d * 8) as f64;
    println!(
        "{n} rows x {d} features, float64: {:.2} GB per pass; {cores} CPU cores",
        bytes / 1e9
    );

    let gpu = cuda::gpu();
    let limit = match gpu {
        Ok(gpu) => {
            let bandwidth = cuda::copy_bandwidth(gpu, 2 << 30, 10)?;
            println!(
                "{}: device copy {bandwidth:.0} GB/s (read + write)",
                gpu.describe()
            );
            bandwidth
        }
        Err(reason) => {
            println!("no GPU: {reason}");
            f64::NAN
        }
    };
    println!(
        "{:<20} {:<5} {:>10} {:>9} {:>9}",
        "kernel", "where", "ms", "GB/s", "of limit"
    );

    let blocks = |c: &FeatureColumns, f: &mut dyn FnMut(usize, &FeatureBlock)| {
        let mut block = FeatureBlock::new(c.width());
        for_each_block(c, &mut block, |s, b| f(s, b)).unwrap();
    };
    let ls_len = gram::stats_len(d);
    let cpu_ls = median_seconds(args.repeats, || {
        on_all_cores(&parts, ls_len, |c, stats| {
            let start = labels[parts.iter().position(|p| std::ptr::eq(p, c)).unwrap()].0;
            blocks(c, &mut |s, b| {
                gram::accumulate(b, &y[start + s..start + s + b.rows], stats)
            });
        });
    });
    row("least_squares", "cpu", cpu_ls, bytes, f64::NAN);
    let lr_len = logistic::stats_len(d, true);
    let cpu_lr = median_seconds(args.repeats, || {
        on_all_cores(&parts, lr_len, |c, stats| {
            let start = labels[parts.iter().position(|p| std::ptr::eq(p, c)).unwrap()].0;
            blocks(c, &mut |s, b| {
                logistic::accumulate(b, &y[start + s..start + s + b.rows], &weights, true, stats)
            });
        });
    });
    row("logistic+hessian", "cpu", cpu_lr, bytes, f64::NAN);
    let km_len = kmeans::stats_len(k, d);
    let cpu_km = median_seconds(args.repeats, || {
        on_all_cores(&parts, km_len, |c, stats| {
            kmeans::accumulate_columns(c, &centroids, None, stats).unwrap();
        });
    });
    row("kmeans", "cpu", cpu_km, bytes, f64::NAN);
    let shift: Vec<f64> = (0..d).map(|_| next()).collect();
    let scale: Vec<f64> = (0..d).map(|_| 1.0 + next()).collect();
    let cpu_affine = median_seconds(args.repeats, || {
        std::hint::black_box(transform::affine_columns(&x, n, &shift, &scale));
    });
    row("affine (scale)", "cpu", cpu_affine, 2.0 * bytes, f64::NAN);

    let Ok(gpu) = gpu else { return Ok(()) };
    let all = FeatureColumns::new(
        &(0..d)
            .map(|j| Arc::new(Float64Array::from(x[j * n..(j + 1) * n].to_vec())) as ArrayRef)
            .collect::<Vec<_>>(),
        &names,
    )?;
    let data = cuda::DeviceData::upload(gpu, &all, Some(&y))?;
    let mut stats = vec![0.0; ls_len];
    let t = median_seconds(args.repeats, || {
        cuda::least_squares(gpu, &data, &mut stats).unwrap()
    });
    row("least_squares", "cuda", t, bytes, limit);
    println!("{:<20} cuda is {:.1}x the CPU", "", cpu_ls / t);
    let mut stats = vec![0.0; lr_len];
    let t = median_seconds(args.repeats, || {
        cuda::logistic(gpu, &data, &weights, true, &mut stats).unwrap()
    });
    // logistic_rows reads x once and gram_pairs once more.
    row("logistic+hessian", "cuda", t, bytes, limit);
    println!("{:<20} cuda is {:.1}x the CPU", "", cpu_lr / t);
    let mut stats = vec![0.0; km_len];
    let t = median_seconds(args.repeats, || {
        cuda::kmeans(gpu, &data, &centroids, None, &mut stats).unwrap()
    });
    row("kmeans", "cuda", t, bytes, limit);
    println!("{:<20} cuda is {:.1}x the CPU", "", cpu_km / t);
    let t = median_seconds(args.repeats, || {
        std::hint::black_box(cuda::affine_columns(gpu, &x, n, &shift, &scale).unwrap());
    });
    row("affine (scale)", "cuda", t, 2.0 * bytes, limit);
    println!(
        "{:<20} cuda incl. PCIe both ways is {:.1}x the CPU",
        "",
        cpu_affine / t
    );
    cuda::synchronize(gpu)?;
    Ok(())
}
