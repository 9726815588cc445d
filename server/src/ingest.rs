//! Bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`): a client's
//! Arrow data becomes a table.
//!
//! A table that lasts is a folder of Parquet files under `--data-dir`, seen by
//! every connection. Rows are written as they arrive (the server holds one
//! row group at most) into a file outside the table, and moved in by a rename
//! once the last row is written: a failed or cancelled ingest leaves the
//! table as it was and nothing else behind. A temporary table is held in
//! memory for its connection alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::datasource::MemTable;
use ember_engine::EmberContext;
use futures::{Stream, StreamExt};
use parquet::arrow::ArrowWriter;
use tonic::Status;

use crate::tables::SharedTables;

/// What to do when the table exists, and when it does not.
struct Mode {
    if_exists: TableExistsOption,
    if_missing: TableNotExistOption,
}

/// Writes the rows of `batches` to the table `command` names; returns how many.
pub async fn ingest<S>(
    shared: &SharedTables,
    session: &EmberContext,
    command: &CommandStatementIngest,
    batches: S,
) -> Result<i64, Status>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
{
    let name = table_name(command)?;
    let options = command.table_definition_options.unwrap_or_default();
    let mode = Mode {
        if_exists: TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified),
        if_missing: TableNotExistOption::try_from(options.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified),
    };
    if command.temporary {
        return ingest_temporary(session, name, &mode, batches).await;
    }
    let dir = shared.dir().ok_or_else(|| {
        Status::failed_precondition(
            "bulk ingest writes Parquet under --data-dir, and this server has none; start \
             `ember serve --data-dir DIR`, or ingest with temporary=True",
        )
    })?;
    let exists = shared.contains(name).map_err(crate::status)? || dir.join(name).exists();
    let folder = dir.join(name);
    let decided = decide(name, exists, &mode)?;
    if exists && !folder.is_dir() {
        return Err(Status::failed_precondition(format!(
            "table '{name}' is one Parquet file ({name}.parquet); ingest appends to and \
             replaces folder tables only"
        )));
    }
    let expected = match decided {
        Decision::Append => Some(session_table_schema(session, name).await?),
        _ => None,
    };
    let staged = Staged::new(dir, name);
    let written = write_parquet(name, &staged.file, batches, expected.as_ref()).await;
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            staged.discard();
            return Err(e);
        }
    };
    let placed = match decided {
        Decision::Create => staged.create(&folder),
        Decision::Append => staged.append(&folder),
        Decision::Replace => staged.replace(&folder),
    };
    placed.map_err(|e| {
        Status::internal(format!(
            "ingest into '{name}' wrote its rows but cannot move them into {}: {e}",
            folder.display()
        ))
    })?;
    shared
        .register_folder(name, &folder)
        .await
        .map_err(crate::status)?;
    log::info!(
        "ingested {rows} rows into table '{name}' ({})",
        folder.display()
    );
    Ok(rows as i64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    Create,
    Append,
    Replace,
}

fn decide(name: &str, exists: bool, mode: &Mode) -> Result<Decision, Status> {
    if exists {
        match mode.if_exists {
            TableExistsOption::Append => Ok(Decision::Append),
            TableExistsOption::Replace => Ok(Decision::Replace),
            TableExistsOption::Fail | TableExistsOption::Unspecified => {
                Err(Status::already_exists(format!(
                    "table '{name}' already exists; ingest with mode 'append' or 'replace'"
                )))
            }
        }
    } else {
        match mode.if_missing {
            TableNotExistOption::Create | TableNotExistOption::Unspecified => Ok(Decision::Create),
            TableNotExistOption::Fail => Err(Status::not_found(format!(
                "table '{name}' does not exist; ingest with mode 'create' or 'create_append'"
            ))),
        }
    }
}

/// The table's name: a plain SQL identifier (it names a folder, so no path),
/// in the default catalog and schema.
fn table_name(command: &CommandStatementIngest) -> Result<&str, Status> {
    let name = command.table.as_str();
    let plain = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(Status::invalid_argument(format!(
            "ingest table name '{name}' is not a plain identifier (letters, digits and _, \
             not starting with a digit)"
        )));
    }
    if command.catalog.is_some() || command.schema.is_some() {
        return Err(Status::invalid_argument(
            "ingest writes to the default catalog and schema; leave catalog and db_schema unset",
        ));
    }
    Ok(name)
}

async fn session_table_schema(session: &EmberContext, name: &str) -> Result<SchemaRef, Status> {
    let table = session
        .session()
        .table_provider(name)
        .await
        .map_err(crate::status)?;
    Ok(table.schema())
}

/// Column names and types must match; nullability may differ.
fn same_columns(expected: &Schema, got: &Schema) -> bool {
    expected.fields().len() == got.fields().len()
        && expected
            .fields()
            .iter()
            .zip(got.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

fn columns(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A batch the client sent, refused when its columns are not `expected`.
fn checked(
    name: &str,
    batch: Result<RecordBatch, FlightError>,
    expected: Option<&SchemaRef>,
) -> Result<RecordBatch, Status> {
    let batch = batch.map_err(|e| Status::invalid_argument(format!("ingest data: {e}")))?;
    match expected {
        Some(expected) if !same_columns(expected, &batch.schema()) => {
            Err(Status::invalid_argument(format!(
                "ingest into '{name}': its columns ({}) differ from the table's ({})",
                columns(&batch.schema()),
                columns(expected)
            )))
        }
        _ => Ok(batch),
    }
}

fn no_rows() -> Status {
    Status::invalid_argument("ingest sent no rows; a table needs at least one batch")
}

/// Writes every batch to `file` as Parquet; returns the rows written. Encoding
/// and file writes run on tokio's blocking threads, one batch at a time, so the
/// runtime's threads keep serving other connections meanwhile.
async fn write_parquet<S>(
    name: &str,
    file: &Path,
    mut batches: S,
    expected: Option<&SchemaRef>,
) -> Result<usize, Status>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
{
    let io = |e: &dyn std::fmt::Display| {
        Status::internal(format!("cannot write {}: {e}", file.display()))
    };
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        let batch = checked(name, batch, expected)?;
        rows += batch.num_rows();
        let (open, path) = (writer.take(), file.to_path_buf());
        let written = tokio::task::spawn_blocking(move || {
            let mut writer = match open {
                Some(writer) => writer,
                None => {
                    let out = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                    ArrowWriter::try_new(out, batch.schema(), None).map_err(|e| e.to_string())?
                }
            };
            writer.write(&batch).map_err(|e| e.to_string())?;
            Ok::<_, String>(writer)
        })
        .await
        .map_err(|e| io(&e))?;
        writer = Some(written.map_err(|e| io(&e))?);
    }
    let writer = writer.ok_or_else(no_rows)?;
    tokio::task::spawn_blocking(move || writer.close().map(|_| ()))
        .await
        .map_err(|e| io(&e))?
        .map_err(|e| io(&e))?;
    Ok(rows)
}

/// A Parquet file written beside the tables, hidden (a dot name, which
/// `--data-dir` skips), until it is moved into its table.
struct Staged {
    dir: PathBuf,
    file: PathBuf,
    tag: String,
}

impl Staged {
    fn new(dir: &Path, name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let tag = format!("{nanos}-{}", std::process::id());
        Self {
            dir: dir.to_path_buf(),
            file: dir.join(format!(".ember-ingest-{name}-{tag}.parquet")),
            tag,
        }
    }

    fn part_name(&self) -> String {
        format!("part-{}.parquet", self.tag)
    }

    /// A hidden folder holding the staged file: a table made whole, to be
    /// renamed into place.
    fn hidden_folder(&self) -> std::io::Result<PathBuf> {
        let hidden = self.dir.join(format!(".ember-new-{}", self.tag));
        std::fs::create_dir(&hidden)?;
        std::fs::rename(&self.file, hidden.join(self.part_name()))?;
        Ok(hidden)
    }

    /// A new table.
    fn create(&self, folder: &Path) -> std::io::Result<()> {
        std::fs::rename(self.hidden_folder()?, folder)
    }

    /// One more file in the table's folder.
    fn append(&self, folder: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.file, folder.join(self.part_name()))
    }

    /// The table's folder swapped for a new one; the old removed after.
    fn replace(&self, folder: &Path) -> std::io::Result<()> {
        let old = self.dir.join(format!(".ember-old-{}", self.tag));
        let hidden = self.hidden_folder()?;
        std::fs::rename(folder, &old)?;
        if let Err(e) = std::fs::rename(&hidden, folder) {
            // Put the old table back rather than leave none.
            let _ = std::fs::rename(&old, folder);
            return Err(e);
        }
        if let Err(e) = std::fs::remove_dir_all(&old) {
            log::warn!("cannot remove the replaced table at {}: {e}", old.display());
        }
        Ok(())
    }

    fn discard(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A temporary table: the rows in memory, seen by this connection only.
async fn ingest_temporary<S>(
    session: &EmberContext,
    name: &str,
    mode: &Mode,
    mut batches: S,
) -> Result<i64, Status>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
{
    let ctx = session.session();
    let exists = ctx.table_exist(name).map_err(crate::status)?;
    let decided = decide(name, exists, mode)?;
    let mut kept = Vec::new();
    if decided == Decision::Append {
        kept = ctx
            .table(name)
            .await
            .map_err(crate::status)?
            .collect()
            .await
            .map_err(crate::status)?;
    }
    let mut schema = kept.first().map(RecordBatch::schema);
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        let batch = checked(name, batch, schema.as_ref())?;
        schema.get_or_insert_with(|| batch.schema());
        rows += batch.num_rows();
        kept.push(batch);
    }
    let schema = schema.ok_or_else(no_rows)?;
    let table = MemTable::try_new(schema, vec![kept]).map_err(crate::status)?;
    if exists {
        ctx.deregister_table(name).map_err(crate::status)?;
    }
    ctx.register_table(name, Arc::new(table))
        .map_err(crate::status)?;
    Ok(rows as i64)
}
