//! Test data sets written as Parquet: TPC-H, and a HIGGS-shaped classification set.

mod classification;
mod tpch;

pub use classification::{
    ClassificationOptions, DataKind, classification_schema, generate_classification,
};

pub use tpch::{
    TPCH_TABLES, TpchOptions, TpchSummary, estimated_rows as estimated_tpch_rows, generate_tpch,
};

use std::fs::File;
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

/// Writes `batches` to `path` as one Parquet file, atomically: the rows go to a
/// temporary name beside it that is renamed into place only once complete, so a
/// failure or a kill never leaves half a file under the final name. Returns the
/// number of rows written.
pub fn write_parquet_atomically(
    path: &Path,
    schema: SchemaRef,
    batches: impl Iterator<Item = RecordBatch>,
    mut on_batch: impl FnMut(usize),
) -> Result<u64> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DataFusionError::Execution(format!("bad output path {}", path.display())))?;
    let temp = path.with_file_name(format!(".{file_name}.inprogress"));
    let write = || -> Result<u64> {
        let file = File::create(&temp).map_err(|e| {
            DataFusionError::Execution(format!("cannot create {}: {e}", temp.display()))
        })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
        let mut rows = 0u64;
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
            on_batch(batch.num_rows());
        }
        writer.close()?;
        std::fs::rename(&temp, path).map_err(|e| {
            DataFusionError::Execution(format!("cannot rename to {}: {e}", path.display()))
        })?;
        Ok(rows)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::compute::concat_batches;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// The rows of `dir`'s `part-<i>.parquet` files, in part order, as one batch.
    fn read_parts(dir: &Path) -> RecordBatch {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let number = |p: &std::path::PathBuf| -> u64 {
            let name = p.file_stem().unwrap().to_str().unwrap();
            name.trim_start_matches("part-").parse().unwrap()
        };
        files.sort_by_key(number);
        let mut batches = Vec::new();
        for file in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            batches.extend(reader.map(|b| b.unwrap()));
        }
        concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// Data sets are the same rows whatever the number of files they are split
    /// into (the data a benchmark reads must not depend on --parts).
    #[test]
    fn the_same_rows_on_any_number_of_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut classification = Vec::new();
        let mut orders_and_lineitem = Vec::new();
        for parts in [1, 3] {
            let out = dir.path().join(format!("c{parts}"));
            let options = ClassificationOptions {
                rows: 3 * 65_536 + 77,
                features: 3,
                out: out.clone(),
                parts,
                seed: 11,
                kind: Default::default(),
            };
            generate_classification(&options, &|_, _| {}).unwrap();
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), parts);
            classification.push(read_parts(&out));
            let out = dir.path().join(format!("t{parts}"));
            let options = TpchOptions {
                scale: 0.01,
                out: out.clone(),
                parts,
            };
            generate_tpch(&options, &|_, _| {}).unwrap();
            orders_and_lineitem.push((
                read_parts(&out.join("orders")),
                read_parts(&out.join("lineitem")),
            ));
        }
        assert_eq!(classification[0].num_rows(), 3 * 65_536 + 77);
        assert_eq!(classification[0], classification[1]);
        assert_eq!(orders_and_lineitem[0].0.num_rows(), 15_000);
        assert_eq!(orders_and_lineitem[0], orders_and_lineitem[1]);
    }
}
