//! Naming the file behind a Parquet error. DataFusion reports a broken footer
//! as "Invalid Parquet file. Corrupt footer", and a broken page as "Page CRC
//! checksum mismatch" or a decompression error, without saying which file;
//! with many files in a table the user cannot tell which one to fix. When a
//! statement fails that way, ember reads the local files it names itself to
//! find the broken one: footers first (cheap), then every page.

use std::path::{Path, PathBuf};

use datafusion::common::DataFusionError;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{ViewTable, source_as_provider};
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Query, visit_relations};
use ember_sql::EmberStatement;

/// How many files a search looks at before giving up on naming one.
const MAX_FILES: usize = 10_000;

/// How many bytes of pages a search reads before giving up: it runs only after
/// an error, but should not turn one into minutes of reading.
const MAX_PAGE_BYTES: u64 = 8 << 30;

/// Whether `error` came from reading Parquet: typed when this process read
/// the file; text when an executor did (Ballista sends a failed task's error
/// to the client as its message only).
pub fn is_parquet_error(error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::ParquetError(_))
        || error.to_string().contains("Parquet error")
}

/// The `.parquet` files at or under `path`, sorted, at most [`MAX_FILES`];
/// zero-byte files (they read as empty tables) left out.
fn parquet_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(next) = stack.pop() {
        if next.is_dir() {
            let Ok(entries) = std::fs::read_dir(&next) else {
                continue;
            };
            let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            stack.extend(entries.into_iter().rev());
        } else if next.extension().is_some_and(|e| e == "parquet")
            && std::fs::metadata(&next).is_ok_and(|m| m.len() > 0)
        {
            files.push(next);
            if files.len() == MAX_FILES {
                break;
            }
        }
    }
    files
}

/// Why `file`'s footer cannot be read, if it cannot.
fn footer_fault(file: &Path) -> Option<String> {
    let opened = std::fs::File::open(file).ok()?;
    SerializedFileReader::new(opened)
        .err()
        .map(|e| e.to_string())
}

/// Why one of `file`'s pages cannot be read (a CRC mismatch, a page that does
/// not decompress), and where; adds the bytes read to `budget_used`.
fn page_fault(file: &Path, budget_used: &mut u64) -> Option<String> {
    let opened = std::fs::File::open(file).ok()?;
    let reader = SerializedFileReader::new(opened).ok()?;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).ok()?;
        let meta = reader.metadata().row_group(g);
        for c in 0..meta.num_columns() {
            *budget_used += meta.column(c).compressed_size().max(0) as u64;
            if *budget_used > MAX_PAGE_BYTES {
                return None;
            }
            let column = meta.column(c).column_path().string();
            let mut pages = match group.get_column_page_reader(c) {
                Ok(pages) => pages,
                Err(e) => return Some(format!("{e} (row group {g}, column {column})")),
            };
            loop {
                match pages.get_next_page() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Some(format!("{e} (row group {g}, column {column})")),
                }
            }
        }
    }
    None
}

/// The first file at or under `paths` that cannot be read, with the reason:
/// a broken footer, or else a broken page.
pub fn find_broken(paths: &[PathBuf]) -> Option<(PathBuf, String)> {
    let files: Vec<PathBuf> = paths.iter().flat_map(|p| parquet_files(p)).collect();
    if let Some(found) = files
        .iter()
        .find_map(|f| footer_fault(f).map(|why| (f.clone(), why)))
    {
        return Some(found);
    }
    let mut budget_used = 0;
    files
        .iter()
        .find_map(|f| page_fault(f, &mut budget_used).map(|why| (f.clone(), why)))
}

/// `error` with the broken file named, when one of `paths` holds it.
pub fn name_broken_file(error: DataFusionError, paths: &[PathBuf]) -> DataFusionError {
    if !is_parquet_error(&error) {
        return error;
    }
    match find_broken(paths) {
        Some((file, reason)) => DataFusionError::Execution(format!(
            "{} is not a readable Parquet file: {reason}",
            file.display()
        )),
        None => error,
    }
}

/// The relations a statement reads, as written: table names, or paths
/// (`FROM '/data/x.parquet'`).
pub fn relations(statement: &EmberStatement) -> Vec<String> {
    fn visit<V: datafusion::sql::sqlparser::ast::Visit>(node: &V, names: &mut Vec<String>) {
        let _ = visit_relations(node, |name| {
            names.push(name.to_string());
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    let mut names = Vec::new();
    match statement {
        EmberStatement::DataFusion(statement) => {
            if let Statement::Statement(statement) = statement.as_ref() {
                visit(statement.as_ref(), &mut names);
            }
        }
        EmberStatement::CreateModel(create) | EmberStatement::ExplainCreateModel(create) => {
            visit::<Query>(&create.query, &mut names)
        }
        EmberStatement::EvaluateModel {
            on: Some(query), ..
        } => visit::<Query>(query, &mut names),
        _ => {}
    }
    names
}

/// The local files and folders behind `relations`: a registered table's
/// listing paths, or the relation itself read as a path.
pub async fn local_paths(ctx: &SessionContext, relations: &[String]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for name in relations {
        match ctx.table_provider(name.as_str()).await {
            Ok(provider) => {
                if let Some(listing) = provider.downcast_ref::<ListingTable>() {
                    paths.extend(listing_paths(listing));
                } else if let Some(view) = provider.downcast_ref::<ViewTable>() {
                    paths.extend(plan_paths(view.logical_plan()));
                }
            }
            Err(_) => {
                let text = name.trim_matches(|c| c == '\'' || c == '"');
                paths.push(PathBuf::from(text.strip_prefix("file://").unwrap_or(text)));
            }
        }
    }
    paths
}

/// The local files and folders `plan`'s table scans read (a view's plan).
pub fn plan_paths(plan: &LogicalPlan) -> Vec<PathBuf> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut paths = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(listing) = provider.downcast_ref::<ListingTable>()
        {
            paths.extend(listing_paths(listing));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    paths
}

fn listing_paths(listing: &ListingTable) -> impl Iterator<Item = PathBuf> + '_ {
    listing
        .table_paths()
        .iter()
        .filter_map(|url| AsRef::<url::Url>::as_ref(url).to_file_path().ok())
}
