//! A seeded, HIGGS-shaped data set: `features` float columns (three quarters
//! Gaussian "low-level" measurements, the rest nonlinear "high-level" functions
//! of them), a binary `label` drawn from a logistic model of the features (so
//! classes overlap and logistic regression has a finite optimum), and a
//! regression `target`. Written as `OUT/part-<i>.parquet`.
//!
//! Rows are generated in blocks, each from its own seed, so the data depend on
//! the seed only, not on the number of files or threads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::hashing::splitmix64;
use ember_ml_ops::kernels::logistic::sigmoid;

use super::write_parquet_atomically;

/// Rows per generated block (and per Parquet batch).
const BLOCK: u64 = 65_536;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ClassificationOptions {
    pub rows: u64,
    pub features: usize,
    pub out: PathBuf,
    pub parts: usize,
    pub seed: u64,
    pub kind: DataKind,
}

/// How the label and target depend on the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataKind {
    /// Through a logistic (label) and a linear (target) model of all features:
    /// logistic regression has the best possible fit.
    #[default]
    Linear,
    /// Through nonlinear terms in pairs of low-level features (sines,
    /// thresholds, absolute values, products): each class is several regions
    /// of the feature space, which trees find and a linear model cannot.
    Nonlinear,
}

impl std::str::FromStr for DataKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linear" => Ok(DataKind::Linear),
            "nonlinear" => Ok(DataKind::Nonlinear),
            other => Err(format!(
                "kind must be 'linear' or 'nonlinear', not '{other}'"
            )),
        }
    }
}

/// The score behind a row of the nonlinear kind: a sum over pairs of
/// low-level features of one term each (a sine, a threshold, an absolute
/// value, products), scaled to unit size. Each term moves with its features
/// one at a time as well as together, so greedy splits find them; a linear
/// model sees only their slopes.
fn interactions(x: &[f64], low: usize) -> f64 {
    let pairs = (low / 2).max(1);
    let mut z = 0.0;
    for t in 0..pairs {
        let (a, b) = (x[(2 * t) % low], x[(2 * t + 1) % low]);
        z += match t % 4 {
            0 => (2.0 * a).sin() + 0.5 * a * b,
            1 => {
                if a > 0.5 {
                    1.0 + b
                } else {
                    -0.5
                }
            }
            2 => (a.abs() - 0.8) + 0.3 * b * b,
            _ => 0.5 * (a + b) + 0.5 * a * b,
        };
    }
    z * 2.0 / (pairs as f64).sqrt()
}

/// A small, fast, seeded generator (splitmix64), with Gaussian draws.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        (splitmix64(self.0) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The schema: `label`, `target`, `f0`..`f{d-1}`.
pub fn classification_schema(features: usize) -> SchemaRef {
    let mut fields = vec![
        Field::new("label", DataType::Int64, false),
        Field::new("target", DataType::Float64, false),
    ];
    fields.extend((0..features).map(|j| Field::new(format!("f{j}"), DataType::Float64, false)));
    Arc::new(Schema::new(fields))
}

/// The true model behind the data: weights for the label and for the target.
fn truth(seed: u64, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(splitmix64(seed ^ 0x5eed));
    let scale = 2.0 / (d as f64).sqrt();
    let w = (0..d).map(|_| rng.normal() * scale).collect();
    let v = (0..d).map(|_| rng.normal()).collect();
    (w, v)
}

#[allow(clippy::too_many_arguments)]
fn block(
    seed: u64,
    index: u64,
    rows: usize,
    d: usize,
    w: &[f64],
    v: &[f64],
    kind: DataKind,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut rng = Rng(splitmix64(seed.wrapping_mul(0x100_0000_01b3) ^ index));
    let low = (d * 3).div_ceil(4).max(1);
    let mut columns = vec![Vec::with_capacity(rows); d];
    let mut labels = Vec::with_capacity(rows);
    let mut targets = Vec::with_capacity(rows);
    let mut x = vec![0.0; d];
    for _ in 0..rows {
        for value in x.iter_mut().take(low) {
            *value = rng.normal();
        }
        for j in low..d {
            // High-level features: nonlinear mixes of two low-level ones.
            let (a, b) = (x[(j * 7) % low], x[(j * 3 + 1) % low]);
            x[j] = match j % 3 {
                0 => (a * a + b * b).sqrt(),
                1 => a * b,
                _ => (a - b).abs(),
            } + 0.1 * rng.normal();
        }
        match kind {
            DataKind::Linear => {
                let z: f64 = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() - 0.5;
                labels.push(i64::from(rng.uniform() < sigmoid(z)));
                targets.push(x.iter().zip(v).map(|(a, b)| a * b).sum::<f64>() + 0.5 * rng.normal());
            }
            DataKind::Nonlinear => {
                let z = interactions(&x, low);
                labels.push(i64::from(rng.uniform() < sigmoid(2.0 * z)));
                targets.push(z + 0.3 * rng.normal());
            }
        }
        for (column, value) in columns.iter_mut().zip(&x) {
            column.push(*value);
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(labels)),
        Arc::new(Float64Array::from(targets)),
    ];
    arrays.extend(
        columns
            .into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// Writes the data set; returns the rows written.
pub fn generate_classification(
    options: &ClassificationOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64> {
    let bad = |m: String| Err(DataFusionError::Configuration(m));
    if options.rows == 0 {
        return bad("rows must be at least 1".into());
    }
    if options.features == 0 || options.features > 10_000 {
        return bad(format!(
            "features must be 1 to 10000, not {}",
            options.features
        ));
    }
    if options.parts == 0 || options.parts > 10_000 {
        return bad(format!("parts must be 1 to 10000, not {}", options.parts));
    }
    std::fs::create_dir_all(&options.out).map_err(|e| {
        DataFusionError::Execution(format!("cannot create {}: {e}", options.out.display()))
    })?;
    let d = options.features;
    let schema = classification_schema(d);
    let (w, v) = truth(options.seed, d);
    let blocks = options.rows.div_ceil(BLOCK);
    let parts = (options.parts as u64).min(blocks);
    let done = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
        .min(parts);
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut written = 0;
                    loop {
                        let part = next.fetch_add(1, Ordering::Relaxed);
                        if part >= parts {
                            break;
                        }
                        // Part p takes blocks [p·blocks/parts, (p+1)·blocks/parts).
                        let (first, last) = (part * blocks / parts, (part + 1) * blocks / parts);
                        let batches = (first..last).map(|b| {
                            let rows = BLOCK.min(options.rows - b * BLOCK) as usize;
                            block(options.seed, b, rows, d, &w, &v, options.kind, &schema)
                                .expect("columns match the schema")
                        });
                        let path = options.out.join(format!("part-{part}.parquet"));
                        written += write_parquet_atomically(&path, schema.clone(), batches, |n| {
                            let so_far = done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                            progress(so_far, options.rows);
                        })?;
                    }
                    Ok(written)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(DataFusionError::Execution(
                        "a generator thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    results.into_iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_block() {
        let schema = classification_schema(5);
        let (w, v) = truth(1, 5);
        let a = block(1, 3, 100, 5, &w, &v, DataKind::Linear, &schema).unwrap();
        let b = block(1, 3, 100, 5, &w, &v, DataKind::Linear, &schema).unwrap();
        assert_eq!(a, b);
        let c = block(2, 3, 100, 5, &w, &v, DataKind::Linear, &schema).unwrap();
        assert_ne!(a, c);
        let labels = a.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let ones = labels.values().iter().sum::<i64>();
        assert!(ones > 10 && ones < 90, "{ones} of 100 labels are 1");
    }
}
