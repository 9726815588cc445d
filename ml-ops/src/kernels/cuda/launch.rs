//! The CUDA kernels launched over device-resident data, each producing the
//! same statistics layout as its CPU twin in [`crate::kernels`], added into
//! the caller's `stats`.
//!
//! Tolerances against the CPU kernels (float64 throughout; the difference is
//! summation order and fused multiply-adds): Gram, gradient and Hessian sums
//! within 1e-12 relative to the sum of absolute terms; k-means sums and
//! distances likewise, assignments equal except at exact ties within
//! rounding; transforms within 1 ulp-scale (1e-15 relative).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use datafusion::common::Result;

use super::device::Gpu;
use super::resident::{DeviceData, cuda_error};

/// Doubles of dynamic shared memory a block may use without opting in.
const SHARED_DOUBLES: usize = 48 * 1024 / 8;
const GRAM_THREADS: u32 = 256;
const GRAM_PAIRS_PER_THREAD: usize = 4;

fn grid(gpu: &Gpu, work: usize, per_block: usize) -> u32 {
    (work.div_ceil(per_block).max(1) as u32).min(gpu.multiprocessors * 8)
}

/// Σ col(a)·col(b)(·w) for each pair, over the columns `x`, the intercept (index
/// `width`) and `v` (index `width + 1`); see gram.cu.
fn gram_pairs(
    gpu: &Gpu,
    data: &DeviceData,
    w: Option<&CudaSlice<f64>>,
    v: Option<&CudaSlice<f64>>,
    pairs: &[(usize, usize)],
) -> Result<Vec<f64>> {
    let stream = &gpu.stream;
    let d = data.width;
    let tile = (SHARED_DOUBLES / (d + 3)).saturating_sub(1).min(32);
    if tile == 0 {
        return Err(cuda_error(format!(
            "{d} features are too wide for the Gram kernel"
        )));
    }
    let flat: Vec<i32> = pairs
        .iter()
        .flat_map(|&(a, b)| [a.min(b) as i32, a.max(b) as i32])
        .collect();
    let pairs_dev = stream.clone_htod(&flat).map_err(cuda_error)?;
    let mut out = stream.alloc_zeros::<f64>(pairs.len()).map_err(cuda_error)?;
    let dummy = stream.alloc_zeros::<f64>(1).map_err(cuda_error)?;
    let (n, d_i, has_w, has_v) = (
        data.rows as i64,
        d as i32,
        w.is_some() as i32,
        v.is_some() as i32,
    );
    let (npairs, tile_i) = (pairs.len() as i32, tile as i32);
    let per_block = GRAM_THREADS as usize * GRAM_PAIRS_PER_THREAD;
    let config = LaunchConfig {
        grid_dim: (
            grid(gpu, data.rows, tile),
            pairs.len().div_ceil(per_block) as u32,
            1,
        ),
        block_dim: (GRAM_THREADS, 1, 1),
        shared_mem_bytes: ((d + 3) * (tile + 1) * 8) as u32,
    };
    let mut launch = stream.launch_builder(gpu.function("gram_pairs"));
    launch
        .arg(&data.x)
        .arg(&n)
        .arg(&d_i)
        .arg(w.unwrap_or(&dummy))
        .arg(&has_w)
        .arg(v.unwrap_or(&dummy))
        .arg(&has_v)
        .arg(&pairs_dev)
        .arg(&npairs)
        .arg(&tile_i)
        .arg(&mut out);
    // SAFETY: the arguments match gram_pairs' parameters in type and order, and
    // every buffer holds what the kernel indexes (n·d features, n weights and
    // values, 2·npairs indices, npairs outputs).
    unsafe { launch.launch(config) }.map_err(cuda_error)?;
    stream.clone_dtoh(&out).map_err(cuda_error)
}

/// The upper triangle of the (m = width + 1)² Gram matrix, as pairs.
fn upper_pairs(m: usize) -> Vec<(usize, usize)> {
    (0..m).flat_map(|a| (a..m).map(move |b| (a, b))).collect()
}

/// [`crate::kernels::gram::accumulate`] on the GPU.
pub fn least_squares(gpu: &Gpu, data: &DeviceData, stats: &mut [f64]) -> Result<()> {
    let _turn = gpu.turn()?;
    let (d, m) = (data.width, data.width + 1);
    let y = data
        .y
        .as_ref()
        .ok_or_else(|| cuda_error("least squares needs labels"))?;
    let mut pairs = upper_pairs(m);
    pairs.extend((0..m).map(|j| (j, d + 1)));
    pairs.push((d + 1, d + 1));
    let sums = gram_pairs(gpu, data, None, Some(y), &pairs)?;
    let (gram, rest) = sums.split_at(m * (m + 1) / 2);
    for (&(a, b), value) in upper_pairs(m).iter().zip(gram) {
        stats[a * m + b] += value;
    }
    for (j, value) in rest[..m].iter().enumerate() {
        stats[m * m + j] += value;
    }
    stats[m * m + m] += rest[m];
    stats[m * m + m + 1] += data.rows as f64;
    Ok(())
}

/// [`crate::kernels::logistic::accumulate`] on the GPU.
pub fn logistic(
    gpu: &Gpu,
    data: &DeviceData,
    weights: &[f64],
    hessian: bool,
    stats: &mut [f64],
) -> Result<()> {
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let (d, m) = (data.width, data.width + 1);
    let y = data
        .y
        .as_ref()
        .ok_or_else(|| cuda_error("logistic regression needs labels"))?;
    let weights_dev = stream.clone_htod(weights).map_err(cuda_error)?;
    let mut residual = stream.alloc_zeros::<f64>(data.rows).map_err(cuda_error)?;
    let mut curvature = stream.alloc_zeros::<f64>(data.rows).map_err(cuda_error)?;
    let mut loss = stream.alloc_zeros::<f64>(1).map_err(cuda_error)?;
    let (n, d_i) = (data.rows as i64, d as i32);
    let config = LaunchConfig {
        grid_dim: (grid(gpu, data.rows, 256), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(gpu.function("logistic_rows"));
    launch
        .arg(&data.x)
        .arg(y)
        .arg(&n)
        .arg(&d_i)
        .arg(&weights_dev)
        .arg(&mut residual)
        .arg(&mut curvature)
        .arg(&mut loss);
    // SAFETY: arguments match logistic_rows' parameters; x holds n·d values,
    // y, residual and curvature n, weights d + 1, loss 1.
    unsafe { launch.launch(config) }.map_err(cuda_error)?;
    let mut pairs: Vec<(usize, usize)> = (0..m).map(|j| (j, d + 1)).collect();
    if hessian {
        pairs.extend(upper_pairs(m));
    }
    let sums = gram_pairs(gpu, data, Some(&curvature), Some(&residual), &pairs)?;
    stats[0] += stream.clone_dtoh(&loss).map_err(cuda_error)?[0];
    stats[1] += data.rows as f64;
    for (j, value) in sums[..m].iter().enumerate() {
        stats[2 + j] += value;
    }
    if hessian {
        for (&(a, b), value) in upper_pairs(m).iter().zip(&sums[m..]) {
            stats[2 + m + a * m + b] += value;
        }
    }
    Ok(())
}

/// [`crate::kernels::kmeans::accumulate`] on the GPU.
pub fn kmeans(
    gpu: &Gpu,
    data: &DeviceData,
    centroids: &[f64],
    measure: Option<&[f64]>,
    stats: &mut [f64],
) -> Result<()> {
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let d = data.width;
    let k = centroids.len() / d.max(1);
    // Distances of each thread's row to every centroid live in shared memory.
    let threads = [128usize, 64, 32]
        .into_iter()
        .find(|t| k * (d + t) <= SHARED_DOUBLES)
        .ok_or_else(|| {
            cuda_error(format!(
                "{k} centroids of {d} features exceed shared memory"
            ))
        })?;
    let centroids_dev = stream.clone_htod(centroids).map_err(cuda_error)?;
    let measure_dev = stream
        .clone_htod(measure.unwrap_or(&[0.0]))
        .map_err(cuda_error)?;
    let mut assign = stream.alloc_zeros::<i32>(data.rows).map_err(cuda_error)?;
    let mut squared = stream.alloc_zeros::<f64>(data.rows).map_err(cuda_error)?;
    let mut measured = stream
        .alloc_zeros::<f64>(data.rows.max(1))
        .map_err(cuda_error)?;
    let (n, d_i, k_i, has_measure) = (
        data.rows as i64,
        d as i32,
        k as i32,
        measure.is_some() as i32,
    );
    let config = LaunchConfig {
        grid_dim: (grid(gpu, data.rows, threads), 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: (k * (d + threads) * 8) as u32,
    };
    let mut launch = stream.launch_builder(gpu.function("kmeans_assign"));
    launch
        .arg(&data.x)
        .arg(&n)
        .arg(&d_i)
        .arg(&centroids_dev)
        .arg(&k_i)
        .arg(&measure_dev)
        .arg(&has_measure)
        .arg(&mut assign)
        .arg(&mut squared)
        .arg(&mut measured);
    // SAFETY: arguments match kmeans_assign's parameters; centroids (and
    // measure, when flagged) hold k·d values, the outputs n each.
    unsafe { launch.launch(config) }.map_err(cuda_error)?;

    let cols = d + 3;
    // Shared memory: (d + 3)·(tile + 1) doubles and tile owners (as int).
    let tile = (SHARED_DOUBLES / (cols + 1)).saturating_sub(1).min(32);
    let mut out = stream
        .alloc_zeros::<f64>(k * d + 3 * k)
        .map_err(cuda_error)?;
    let tile_i = tile as i32;
    let config = LaunchConfig {
        grid_dim: (
            grid(gpu, data.rows, tile),
            (k * cols).div_ceil(256) as u32,
            1,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: (cols * (tile + 1) * 8 + tile * 4) as u32,
    };
    let mut launch = stream.launch_builder(gpu.function("kmeans_sums"));
    launch
        .arg(&data.x)
        .arg(&n)
        .arg(&d_i)
        .arg(&assign)
        .arg(&squared)
        .arg(&measured)
        .arg(&has_measure)
        .arg(&k_i)
        .arg(&tile_i)
        .arg(&mut out);
    // SAFETY: arguments match kmeans_sums' parameters; out holds k·d + 3k.
    unsafe { launch.launch(config) }.map_err(cuda_error)?;
    for (s, value) in stats
        .iter_mut()
        .zip(stream.clone_dtoh(&out).map_err(cuda_error)?)
    {
        *s += value;
    }
    Ok(())
}

fn elementwise_config(gpu: &Gpu, total: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid(gpu, total, 256), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// [`crate::kernels::transform::affine_columns`] on the GPU (copies in and out).
pub fn affine_columns(
    gpu: &Gpu,
    x: &[f64],
    rows: usize,
    shift: &[f64],
    scale: &[f64],
) -> Result<Vec<f64>> {
    let d = shift.len();
    if rows * d == 0 {
        return Ok(vec![]);
    }
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let x_dev = stream.clone_htod(x).map_err(cuda_error)?;
    let shift_dev = stream.clone_htod(shift).map_err(cuda_error)?;
    let scale_dev = stream.clone_htod(scale).map_err(cuda_error)?;
    let mut out = stream.alloc_zeros::<f64>(rows * d).map_err(cuda_error)?;
    let (n, d_i) = (rows as i64, d as i32);
    let mut launch = stream.launch_builder(gpu.function("affine_columns"));
    launch
        .arg(&x_dev)
        .arg(&n)
        .arg(&d_i)
        .arg(&shift_dev)
        .arg(&scale_dev)
        .arg(&mut out);
    // SAFETY: arguments match affine_columns' parameters; x and out hold n·d.
    unsafe { launch.launch(elementwise_config(gpu, rows * d)) }.map_err(cuda_error)?;
    stream.clone_dtoh(&out).map_err(cuda_error)
}

/// [`crate::kernels::transform::polynomial_expand`] on the GPU.
pub fn polynomial_expand(
    gpu: &Gpu,
    x: &[f64],
    rows: usize,
    monomials: &[Vec<usize>],
) -> Result<Vec<f64>> {
    let terms = monomials.len();
    let degree = monomials.iter().map(Vec::len).max().unwrap_or(0);
    if rows * terms == 0 {
        return Ok(vec![]);
    }
    let factors: Vec<i32> = monomials
        .iter()
        .flat_map(|m| (0..degree).map(|k| m.get(k).map_or(-1, |&f| f as i32)))
        .collect();
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let x_dev = stream.clone_htod(x).map_err(cuda_error)?;
    let factors_dev = stream.clone_htod(&factors).map_err(cuda_error)?;
    let mut out = stream
        .alloc_zeros::<f64>(rows * terms)
        .map_err(cuda_error)?;
    let (n, terms_i, degree_i) = (rows as i64, terms as i32, degree as i32);
    let mut launch = stream.launch_builder(gpu.function("polynomial_expand"));
    launch
        .arg(&x_dev)
        .arg(&n)
        .arg(&factors_dev)
        .arg(&terms_i)
        .arg(&degree_i)
        .arg(&mut out);
    // SAFETY: arguments match polynomial_expand's parameters; factors holds
    // terms·degree indices into x's columns, out n·terms.
    unsafe { launch.launch(elementwise_config(gpu, rows * terms)) }.map_err(cuda_error)?;
    stream.clone_dtoh(&out).map_err(cuda_error)
}

/// [`crate::kernels::transform::one_hot_expand`] on the GPU.
pub fn one_hot_expand(gpu: &Gpu, index: &[i32], width: usize) -> Result<Vec<f64>> {
    if index.len() * width == 0 {
        return Ok(vec![]);
    }
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let index_dev = stream.clone_htod(index).map_err(cuda_error)?;
    let mut out = stream
        .alloc_zeros::<f64>(index.len() * width)
        .map_err(cuda_error)?;
    let (n, width_i) = (index.len() as i64, width as i32);
    let mut launch = stream.launch_builder(gpu.function("one_hot_expand"));
    launch.arg(&index_dev).arg(&n).arg(&width_i).arg(&mut out);
    // SAFETY: arguments match one_hot_expand's parameters; out holds n·width.
    unsafe { launch.launch(elementwise_config(gpu, index.len() * width)) }.map_err(cuda_error)?;
    stream.clone_dtoh(&out).map_err(cuda_error)
}

/// The device's memory bandwidth in GB/s, bytes read plus bytes written, from
/// a device-to-device copy of `bytes` (the median of `repeats`).
pub fn copy_bandwidth(gpu: &Gpu, bytes: usize, repeats: usize) -> Result<f64> {
    let _turn = gpu.turn()?;
    let stream = &gpu.stream;
    let n = bytes / 8;
    let source = stream.alloc_zeros::<f64>(n).map_err(cuda_error)?;
    let mut target = stream.alloc_zeros::<f64>(n).map_err(cuda_error)?;
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..=repeats {
        stream.synchronize().map_err(cuda_error)?;
        let start = std::time::Instant::now();
        stream
            .memcpy_dtod(&source, &mut target)
            .map_err(cuda_error)?;
        stream.synchronize().map_err(cuda_error)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.remove(0); // warm-up
    seconds.sort_by(f64::total_cmp);
    Ok(2.0 * (n * 8) as f64 / seconds[seconds.len() / 2] / 1e9)
}

/// Waits for everything queued on ember's stream (for timing).
pub fn synchronize(gpu: &Gpu) -> Result<()> {
    gpu.stream.synchronize().map_err(cuda_error)
}
