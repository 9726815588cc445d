//! Printing result sets as a table, CSV or JSON lines.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::{LineDelimitedWriter, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
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
                let empty = RecordBatch::new_empty(output.schema.clone());
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
                let empty = RecordBatch::new_empty(output.schema.clone());
                writer.write(&nested_as_text(&empty)?)?;
            }
            for batch in &output.batches {
                writer.write(&nested_as_text(batch)?)?;
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

/// `batch` with every nested column (a vector such as `one_hot`'s, a list, a
/// struct, a map) as text, as the table format shows it (`[0.0, 1.0]`): CSV has
/// no nested values.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray = (0..column.len())
            .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
            .collect();
        fields.push(Field::new(
            field.name(),
            DataType::Utf8,
            field.is_nullable(),
        ));
        columns.push(Arc::new(text) as ArrayRef);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
