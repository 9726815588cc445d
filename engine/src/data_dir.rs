//! What `--data-dir DIR` makes tables of: each `NAME.parquet` file and each
//! folder of Parquet files directly under DIR, a folder either flat or
//! partitioned Hive-style (`year=2024/month=01/part.parquet`, whose keys become
//! columns). Anything else is skipped with the reason, so one odd folder never
//! stops the others from being read.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};

/// A table found under a data directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundTable {
    /// The table's name: the file's stem or the folder's name.
    pub name: String,
    /// The file or folder.
    pub path: PathBuf,
    /// Hive partition columns, outermost first, with the type their values
    /// share (integers when every value is one, else text).
    pub partitions: Vec<(String, DataType)>,
}

/// A file or folder directly under a data directory that is not a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Its name.
    pub name: String,
    /// Why it is not a table, as a phrase ("holds no Parquet files").
    pub reason: String,
}

/// The tables directly under `dir`, by name, and what was skipped.
pub fn find_tables(dir: &Path) -> Result<(Vec<FoundTable>, Vec<Skipped>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        DataFusionError::Plan(format!("cannot read data directory {}: {e}", dir.display()))
    })?;
    let mut tables = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file_name.starts_with('.') || file_name.starts_with('_') {
            continue;
        }
        let name = file_name.to_string();
        if path.is_dir() {
            match folder_layout(&path)? {
                Layout::Table(partitions) => tables.push(FoundTable {
                    name,
                    path,
                    partitions,
                }),
                Layout::Not(reason) => skipped.push(Skipped { name, reason }),
            }
        } else if let Some(stem) = file_name.strip_suffix(".parquet") {
            tables.push(FoundTable {
                name: stem.to_string(),
                path,
                partitions: vec![],
            });
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((tables, skipped))
}

/// How a folder reads as a table.
enum Layout {
    /// A table, with these partition columns (none when flat).
    Table(Vec<(String, DataType)>),
    /// Not a table, for this reason.
    Not(String),
}

fn folder_layout(dir: &Path) -> Result<Layout> {
    let (files, folders) = list(dir)?;
    if files > 0 {
        // Flat: its own files are the table (DataFusion reads no sub-folder
        // that is not a partition).
        return Ok(Layout::Table(vec![]));
    }
    if folders.is_empty() {
        return Ok(Layout::Not("holds no Parquet files".into()));
    }
    let mut levels: Vec<(String, Vec<String>)> = Vec::new();
    match partition_levels(dir, 0, &mut levels)? {
        Ok(()) => {}
        Err(reason) => return Ok(Layout::Not(reason)),
    }
    let columns = levels
        .into_iter()
        .map(|(key, values)| {
            let integers = values.iter().all(|v| v.parse::<i64>().is_ok());
            let data_type = if integers {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            (key, data_type)
        })
        .collect();
    Ok(Layout::Table(columns))
}

/// Walks `key=value` folders below `dir` (at `depth`), gathering each level's
/// key and values; `Err(reason)` when the folders are not partitions.
fn partition_levels(
    dir: &Path,
    depth: usize,
    levels: &mut Vec<(String, Vec<String>)>,
) -> Result<std::result::Result<(), String>> {
    let (files, folders) = list(dir)?;
    if folders.is_empty() {
        return Ok(if files > 0 {
            if depth == levels.len() {
                Ok(())
            } else {
                Err(format!(
                    "its partition folders are not all {} levels deep",
                    levels.len()
                ))
            }
        } else {
            Ok(()) // an empty partition holds no rows
        });
    }
    if files > 0 {
        return Ok(Err(
            "it holds Parquet files both beside and inside sub-folders".into(),
        ));
    }
    for folder in folders {
        let Some((key, value)) = folder
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('='))
        else {
            return Ok(Err(format!(
                "its Parquet files are in sub-folders that are not partitions (key=value): {}",
                folder.display()
            )));
        };
        match levels.get_mut(depth) {
            None => levels.push((key.to_string(), vec![value.to_string()])),
            Some((known, values)) if known == key => values.push(value.to_string()),
            Some((known, _)) => {
                return Ok(Err(format!(
                    "its partition folders mix keys '{known}' and '{key}' at one level"
                )));
            }
        }
        if let Err(reason) = partition_levels(&folder, depth + 1, levels)? {
            return Ok(Err(reason));
        }
    }
    Ok(Ok(()))
}

/// The number of Parquet files directly in `dir`, and its visible sub-folders.
fn list(dir: &Path) -> Result<(usize, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DataFusionError::Plan(format!("cannot read folder {}: {e}", dir.display())))?;
    let mut files = 0;
    let mut folders = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.') || n.starts_with('_'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            folders.push(path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            files += 1;
        }
    }
    folders.sort();
    Ok((files, folders))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn flat_partitioned_and_odd_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("flat/a.parquet"));
        touch(&d.join("one.parquet"));
        touch(&d.join("events/year=2024/month=01/a.parquet"));
        touch(&d.join("events/year=2025/month=feb/b.parquet"));
        touch(&d.join("raw/nested/x.parquet"));
        touch(&d.join("mixed/k=1/a.parquet"));
        touch(&d.join("mixed/j=2/a.parquet"));
        std::fs::create_dir_all(d.join("empty")).unwrap();
        touch(&d.join("notes.txt"));
        let (tables, skipped) = find_tables(d).unwrap();
        let names: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["events", "flat", "one"]);
        assert_eq!(
            tables[0].partitions,
            vec![
                ("year".to_string(), DataType::Int64),
                ("month".to_string(), DataType::Utf8)
            ]
        );
        let skipped: Vec<_> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].starts_with("empty: holds no Parquet files"));
        assert!(skipped[1].starts_with("mixed: its partition folders mix keys"));
        assert!(skipped[2].contains("not partitions (key=value)"));
    }
}
