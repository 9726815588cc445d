//! Printing result sets as a table, CSV or JSON lines.

use std::io::Write;

use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::{LineDelimitedWriter, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{DataFusionError, Result};
use ember_engine::StatementOutput;

use crate::args::Format;

/// Writes one statement's output. Statements that return no rows (DDL, `SET`)
/// print nothing.
pub fn print_output(out: &mut dyn Write, output: &StatementOutput, format: Format) -> Result<()> {
    if !output.returns_rows {
        return Ok(());
    }
    match format {
        Format::Table => {
            if output.batches.is_empty() || output.num_rows() == 0 {
                let empty = datafusion::arrow::array::RecordBatch::new_empty(output.schema.clone());
                writeln!(out, "{}", pretty_format_batches(&[empty])?).map_err(io)?;
            } else {
                writeln!(out, "{}", pretty_format_batches(&output.batches)?).map_err(io)?;
            }
            let rows = output.num_rows();
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" }).map_err(io)?;
        }
        Format::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut *out);
            if output.batches.is_empty() {
                let empty = datafusion::arrow::array::RecordBatch::new_empty(output.schema.clone());
                writer.write(&empty)?;
            }
            for batch in &output.batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer: LineDelimitedWriter<_> = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build(&mut *out);
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush().map_err(io)
}

fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
