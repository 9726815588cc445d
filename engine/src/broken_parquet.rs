//! Naming the file behind a Parquet error. DataFusion reports a broken footer
//! as "Invalid Parquet file. Corrupt footer" without saying which file; with
//! many files in a table the user cannot tell which one to fix. When a local
//! read fails that way, ember opens each file's footer itself to find it.

use std::path::{Path, PathBuf};

use datafusion::common::DataFusionError;
use datafusion::parquet::file::reader::SerializedFileReader;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::visit_relations;

/// How many files a scan looks at before giving up on naming one.
const MAX_FILES: usize = 10_000;

/// Whether `error` came from reading Parquet.
pub fn is_parquet_error(error: &DataFusionError) -> bool {
    error.to_string().contains("Parquet error")
}

/// The first `.parquet` file at or under `path` whose footer cannot be read,
/// with the reason.
pub fn find_broken(path: &Path) -> Option<(PathBuf, String)> {
    let mut stack = vec![path.to_path_buf()];
    let mut seen = 0;
    while let Some(next) = stack.pop() {
        if next.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&next)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            stack.extend(entries.into_iter().rev());
            continue;
        }
        if next.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        seen += 1;
        if seen > MAX_FILES {
            return None;
        }
        let Ok(file) = std::fs::File::open(&next) else {
            continue;
        };
        // Zero-byte files read as empty tables.
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            continue;
        }
        if let Err(e) = SerializedFileReader::new(file) {
            return Some((next, e.to_string()));
        }
    }
    None
}

/// `error` with the broken file named, when one of `paths` holds it.
pub fn name_broken_file(error: DataFusionError, paths: &[PathBuf]) -> DataFusionError {
    if !is_parquet_error(&error) {
        return error;
    }
    match paths.iter().find_map(|p| find_broken(p)) {
        Some((file, reason)) => DataFusionError::Execution(format!(
            "{} is not a readable Parquet file: {reason}",
            file.display()
        )),
        None => error,
    }
}

/// The table names a statement reads, as paths (`FROM '/data/x.parquet'`); only
/// those that exist are looked at, and only after a Parquet error.
pub fn local_paths(statement: &Statement) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Statement::Statement(statement) = statement {
        let _ = visit_relations(statement.as_ref(), |name| {
            let text = name.to_string();
            let text = text.trim_matches(|c| c == '\'' || c == '"');
            paths.push(PathBuf::from(text.strip_prefix("file://").unwrap_or(text)));
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    paths
}
