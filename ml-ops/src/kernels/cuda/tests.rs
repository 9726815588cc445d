//! CPU/GPU parity: every CUDA kernel against its CPU twin on fresh random
//! inputs, by ‖gpu − cpu‖ / ‖cpu‖. Skipped, with a message, where this process
//! has no GPU.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array};

use super::*;
use crate::hashing::splitmix64;
use crate::kernels::{FeatureBlock, FeatureColumns, for_each_block, gram, kmeans as cpu_kmeans};
use crate::kernels::{logistic as cpu_logistic, transform};

/// Float64 sums differ only in order: far below this.
const TOLERANCE: f64 = 1e-12;

/// Set on a machine that has a GPU (`benches/gpu/device.sh`): there a parity
/// test that cannot reach the GPU fails instead of skipping.
pub(crate) const REQUIRE_GPU: &str = "EMBER_REQUIRE_GPU";

fn the_gpu() -> Option<&'static Gpu> {
    match gpu() {
        Ok(gpu) => Some(gpu),
        Err(reason) => {
            assert!(
                std::env::var_os(REQUIRE_GPU).is_none(),
                "{REQUIRE_GPU} is set but there is no usable GPU: {reason}"
            );
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// Uniform numbers in [-scale, scale) from a seeded stream; a fresh seed per
/// test run unless EMBER_TEST_SEED fixes it.
struct Random(u64);

impl Random {
    fn new(salt: u64) -> Self {
        let seed = std::env::var("EMBER_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("seed {seed}");
        Self(seed ^ salt)
    }

    fn next(&mut self, scale: f64) -> f64 {
        self.0 = splitmix64(self.0);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    }
}

fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    assert!(got.iter().all(|v| v.is_finite()), "non-finite GPU output");
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

fn random_columns(
    random: &mut Random,
    rows: usize,
    width: usize,
) -> (Vec<ArrayRef>, FeatureColumns) {
    let arrays: Vec<ArrayRef> = (0..width)
        .map(|j| {
            let scale = 1.0 + j as f64;
            Arc::new(Float64Array::from(
                (0..rows).map(|_| random.next(scale)).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    let names: Vec<String> = (0..width).map(|j| format!("f{j}")).collect();
    let columns = FeatureColumns::new(&arrays, &names).unwrap();
    (arrays, columns)
}

fn cpu(columns: &FeatureColumns, mut f: impl FnMut(usize, &FeatureBlock)) {
    let mut block = FeatureBlock::new(columns.width());
    for_each_block(columns, &mut block, |start, block| f(start, block)).unwrap();
}

/// Sizes that are not multiples of any tile or block.
const SHAPES: &[(usize, usize)] = &[(1, 1), (1000, 3), (100_003, 28), (20_011, 77)];

#[test]
fn least_squares_matches_cpu() {
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(1);
    for &(rows, width) in SHAPES {
        let (_, columns) = random_columns(&mut random, rows, width);
        let y: Vec<f64> = (0..rows).map(|_| random.next(10.0)).collect();
        let mut want = vec![0.0; gram::stats_len(width)];
        cpu(&columns, |start, block| {
            gram::accumulate(block, &y[start..start + block.rows], &mut want)
        });
        let data = DeviceData::upload(gpu, &columns, Some(&y)).unwrap();
        let mut got = vec![0.0; want.len()];
        least_squares(gpu, &data, &mut got).unwrap();
        let error = relative_error(&got, &want);
        assert!(error < TOLERANCE, "{rows}x{width}: error {error:e}");
    }
}

#[test]
fn logistic_matches_cpu() {
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(2);
    for &(rows, width) in SHAPES {
        for hessian in [true, false] {
            let (_, columns) = random_columns(&mut random, rows, width);
            let y: Vec<f64> = (0..rows)
                .map(|_| (random.next(1.0) > 0.0) as u8 as f64)
                .collect();
            let weights: Vec<f64> = (0..=width).map(|_| random.next(0.3)).collect();
            let mut want = vec![0.0; cpu_logistic::stats_len(width, hessian)];
            cpu(&columns, |start, block| {
                cpu_logistic::accumulate(
                    block,
                    &y[start..start + block.rows],
                    &weights,
                    hessian,
                    &mut want,
                )
            });
            let data = DeviceData::upload(gpu, &columns, Some(&y)).unwrap();
            let mut got = vec![0.0; want.len()];
            logistic(gpu, &data, &weights, hessian, &mut got).unwrap();
            let error = relative_error(&got, &want);
            assert!(
                error < TOLERANCE,
                "{rows}x{width} hessian {hessian}: error {error:e}"
            );
        }
    }
}

#[test]
fn kmeans_matches_cpu() {
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(3);
    for &(rows, width) in SHAPES {
        for k in [1, 8, 20] {
            let (_, columns) = random_columns(&mut random, rows, width);
            let centroids: Vec<f64> = (0..k * width).map(|_| random.next(3.0)).collect();
            let measure: Vec<f64> = (0..k * width).map(|_| random.next(3.0)).collect();
            for measure in [None, Some(measure.as_slice())] {
                let mut want = vec![0.0; cpu_kmeans::stats_len(k, width)];
                cpu(&columns, |_, block| {
                    cpu_kmeans::accumulate(block, &centroids, measure, &mut want)
                });
                let data = DeviceData::upload(gpu, &columns, None).unwrap();
                let mut got = vec![0.0; want.len()];
                kmeans(gpu, &data, &centroids, measure, &mut got).unwrap();
                // Random centroids leave no exact ties, so assignments agree.
                let counts = k * width..k * width + k;
                assert_eq!(&got[counts.clone()], &want[counts], "{rows}x{width} k={k}");
                let error = relative_error(&got, &want);
                assert!(error < TOLERANCE, "{rows}x{width} k={k}: error {error:e}");
            }
        }
    }
}

#[test]
fn transforms_match_cpu() {
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(4);
    for &(rows, width) in SHAPES {
        let x: Vec<f64> = (0..rows * width).map(|_| random.next(5.0)).collect();
        let shift: Vec<f64> = (0..width).map(|_| random.next(1.0)).collect();
        let scale: Vec<f64> = (0..width).map(|_| random.next(2.0)).collect();
        let want = transform::affine_columns(&x, rows, &shift, &scale);
        let got = affine_columns(gpu, &x, rows, &shift, &scale).unwrap();
        assert!(relative_error(&got, &want) < 1e-15, "affine {rows}x{width}");

        let inputs = width.min(6);
        let monomials = crate::functions::features::monomials(inputs, 3);
        let want = transform::polynomial_expand(&x, rows, &monomials);
        let got = polynomial_expand(gpu, &x, rows, &monomials).unwrap();
        assert!(
            relative_error(&got, &want) < 1e-15,
            "polynomial {rows}x{inputs}"
        );

        let index: Vec<i32> = (0..rows)
            .map(|_| (random.next(6.0) as i32).max(-1))
            .collect();
        let want = transform::one_hot_expand(&index, width.max(6));
        let got = one_hot_expand(gpu, &index, width.max(6)).unwrap();
        assert_eq!(got, want, "one_hot {rows}x{width}");
    }
}

#[test]
fn resident_copies_are_reused_while_their_arrays_live() {
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(5);
    let (arrays, columns) = random_columns(&mut random, 1000, 4);
    let first = resident(gpu, &arrays, || DeviceData::upload(gpu, &columns, None)).unwrap();
    let again = resident(gpu, &arrays, || panic!("uploaded twice")).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let (other_arrays, other) = random_columns(&mut random, 1000, 4);
    let second = resident(gpu, &other_arrays, || DeviceData::upload(gpu, &other, None)).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    drop((arrays, columns, other_arrays, other));
    release_unused();
    assert_eq!(resident_bytes(), 0);
}

/// A node's gradient histogram on the GPU equals the CPU's (every listed
/// row, every feature; a sparse node and every row; codes of every value).
#[test]
fn histogram_matches_cpu() {
    use crate::kernels::histogram::{self, RowGradient, SLOTS};
    let Some(gpu) = the_gpu() else { return };
    let mut random = Random::new(5);
    for &(rows, width) in SHAPES {
        let codes: Vec<u8> = (0..rows * width)
            .map(|_| ((random.next(1.0) + 1.0) * 128.0).min(255.0) as u8)
            .collect();
        let gradients: Vec<RowGradient> = (0..rows)
            .map(|_| {
                [
                    (random.next(1.0) * f64::from(1 << 30)) as i32,
                    ((random.next(1.0).abs() + 0.01) * f64::from(1 << 29)) as i32,
                ]
            })
            .collect();
        let device = TreeRows::upload(gpu, &codes, width).unwrap();
        device.set_gradients(&gradients).unwrap();
        let every: Vec<u32> = (0..rows as u32).collect();
        let some: Vec<u32> = (0..rows as u32).filter(|r| r % 3 == 1).collect();
        for listed in [&every, &some] {
            let mut want = vec![[0; 2]; width * SLOTS];
            histogram::accumulate(&codes, width, listed, &gradients, &mut want);
            // Integer sums: equal bit for bit, in any order of atomics.
            let got = device.histogram(listed).unwrap();
            assert!(
                got == want,
                "{rows}x{width}, {} rows: the GPU's histogram differs",
                listed.len()
            );
        }
    }
}
