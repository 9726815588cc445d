//! Test data sets written as Parquet: TPC-H, and a HIGGS-shaped classification set.

mod classification;
mod tpch;

pub use classification::{ClassificationOptions, classification_schema, generate_classification};

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
