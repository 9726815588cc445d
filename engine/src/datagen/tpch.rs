//! TPC-H tables from the `tpchgen` crates, as Parquet: `OUT/<table>/part-<i>.parquet`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::{DataFusionError, Result};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

use super::write_parquet_atomically;

/// The eight TPC-H tables, with their approximate rows at scale factor 1 (used
/// only to size progress bars).
pub const TPCH_TABLES: [(&str, u64); 8] = [
    ("lineitem", 6_001_215),
    ("orders", 1_500_000),
    ("partsupp", 800_000),
    ("part", 200_000),
    ("customer", 150_000),
    ("supplier", 10_000),
    ("nation", 25),
    ("region", 5),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct TpchOptions {
    /// TPC-H scale factor (1 is about 1 GB of text, 8.7M rows).
    pub scale: f64,
    /// Output folder; one sub-folder per table.
    pub out: PathBuf,
    /// Files per table (nation and region always get one).
    pub parts: usize,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct TpchSummary {
    /// Rows per table, in [`TPCH_TABLES`] order.
    pub rows: Vec<(String, u64)>,
    /// Files written.
    pub files: usize,
}

/// The approximate total rows `options` generates (for progress bars).
pub fn estimated_rows(scale: f64) -> u64 {
    TPCH_TABLES
        .iter()
        .map(|(name, rows)| {
            if matches!(*name, "nation" | "region") {
                *rows
            } else {
                (*rows as f64 * scale) as u64
            }
        })
        .sum()
}

fn batches(table: &str, scale: f64, part: i32, parts: i32) -> Box<dyn RecordBatchIterator> {
    match table {
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(
            scale, part, parts,
        ))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(scale, part, parts))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(
            scale, part, parts,
        ))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(scale, part, parts))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(
            scale, part, parts,
        ))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(
            scale, part, parts,
        ))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(scale, part, parts))),
        _ => Box::new(RegionArrow::new(RegionGenerator::new(scale, part, parts))),
    }
}

/// Generates the eight tables under `options.out`, using every core. `progress`
/// is called with the rows written so far and [`estimated_rows`].
pub fn generate_tpch(
    options: &TpchOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<TpchSummary> {
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(DataFusionError::Configuration(format!(
            "scale must be a positive number, not {}",
            options.scale
        )));
    }
    if options.parts == 0 || options.parts > 10_000 {
        return Err(DataFusionError::Configuration(format!(
            "parts must be 1 to 10000, not {}",
            options.parts
        )));
    }
    let total = estimated_rows(options.scale);
    let done = AtomicU64::new(0);

    // One job per (table, part), largest first, spread over the cores.
    let mut jobs: Vec<(&str, usize, usize)> = Vec::new();
    for (table, _) in TPCH_TABLES {
        let parts = if matches!(table, "nation" | "region") {
            1
        } else {
            options.parts
        };
        let dir = options.out.join(table);
        std::fs::create_dir_all(&dir).map_err(|e| {
            DataFusionError::Execution(format!("cannot create {}: {e}", dir.display()))
        })?;
        for part in 1..=parts {
            jobs.push((table, part, parts));
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len());
    let next = AtomicU64::new(0);
    let results: Vec<Result<Vec<(String, u64)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut written = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&(table, part, parts)) = jobs.get(index) else {
                            break;
                        };
                        let path = part_path(&options.out, table, part);
                        let batches = batches(table, options.scale, part as i32, parts as i32);
                        let schema = batches.schema().clone();
                        let rows = write_parquet_atomically(&path, schema, batches, |n| {
                            let so_far = done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                            progress(so_far, total);
                        })?;
                        written.push((table.to_string(), rows));
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
                        "data generation thread panicked".into(),
                    ))
                })
            })
            .collect()
    });

    let mut summary = TpchSummary::default();
    for (table, _) in TPCH_TABLES {
        summary.rows.push((table.to_string(), 0));
    }
    for result in results {
        for (table, rows) in result? {
            summary.files += 1;
            if let Some(entry) = summary.rows.iter_mut().find(|(name, _)| *name == table) {
                entry.1 += rows;
            }
        }
    }
    Ok(summary)
}

fn part_path(out: &Path, table: &str, part: usize) -> PathBuf {
    out.join(table).join(format!("part-{part}.parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_table_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let options = TpchOptions {
            scale: 0.001,
            out: dir.path().to_path_buf(),
            parts: 2,
        };
        let summary = generate_tpch(&options, &|_, _| {}).unwrap();
        assert_eq!(summary.files, 6 * 2 + 2);
        let rows: std::collections::HashMap<_, _> = summary.rows.into_iter().collect();
        assert_eq!(rows["nation"], 25);
        assert_eq!(rows["region"], 5);
        assert_eq!(rows["orders"], 1500);
        assert_eq!(rows["customer"], 150);
        assert!(dir.path().join("lineitem/part-2.parquet").exists());
        // No temporary files left behind.
        let leftovers = std::fs::read_dir(dir.path().join("lineitem"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            });
        assert_eq!(leftovers.count(), 0);
    }

    #[test]
    fn bad_scale_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = TpchOptions {
            scale: -1.0,
            out: dir.path().to_path_buf(),
            parts: 1,
        };
        assert!(
            generate_tpch(&options, &|_, _| {})
                .unwrap_err()
                .to_string()
                .contains("scale")
        );
    }
}
