//! Helpers shared by ember's integration tests: TPC-H data made once per test
//! binary, result sets as text, and comparisons with a stated tolerance.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use std::collections::BTreeMap;

pub use ember_benches::{TextTable, to_text, to_text_with_null};
use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_engine::datagen::{TpchOptions, generate_tpch};

/// The scale of the TPC-H data the tests use; the DuckDB answers in
/// `fixtures/tpch/sf0.01` were computed on the same data.
pub const TPCH_SCALE: f64 = 0.01;

/// The folder of this crate's fixtures.
/// The folder of this crate's fixtures; `EMBER_FIXTURES` names another copy
/// (a test binary run on another machine, as `benches/gpu/device.sh` does).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("EMBER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// The text of TPC-H query `n`.
pub fn tpch_query(n: usize) -> String {
    let path = fixtures().join("tpch/queries").join(format!("q{n}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// TPC-H at [`TPCH_SCALE`], two files per table, generated once per process into
/// a temporary folder that lives as long as the process.
pub fn tpch_data() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    tpch_at(&DATA, TPCH_SCALE)
}

/// The queries whose answers are degenerate at [`TPCH_SCALE`] (q8's market
/// shares are all 0.0, q17's average is NULL): checked at [`LARGER_SCALE`].
pub const DEGENERATE_AT_TPCH_SCALE: [usize; 2] = [8, 17];

/// The scale of `fixtures/tpch/sf0.1`.
pub const LARGER_SCALE: f64 = 0.1;

/// TPC-H at [`LARGER_SCALE`], generated once per process.
pub fn tpch_data_larger() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    tpch_at(&DATA, LARGER_SCALE)
}

fn tpch_at(cell: &'static OnceLock<tempfile::TempDir>, scale: f64) -> &'static Path {
    cell.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ember-tpch-")
            .tempdir()
            .expect("temp dir");
        let options = TpchOptions {
            scale,
            out: dir.path().to_path_buf(),
            parts: 2,
        };
        generate_tpch(&options, &|_, _| {}).expect("generate TPC-H");
        dir
    })
    .path()
}

/// An engine to test on, with its own model store and the ML fixtures
/// (`fixtures/ml/*.parquet`) as tables.
pub struct Engine {
    pub ember: EmberContext,
    pub store: tempfile::TempDir,
    _cluster: Option<InProcessCluster>,
}

/// Embedded, or on an in-process cluster of 2 executors.
pub async fn engine(cluster: bool) -> Engine {
    let store = tempfile::tempdir().unwrap();
    let (ember, cluster) = if cluster {
        let cluster = InProcessCluster::start(2, 2).await.unwrap();
        (cluster.context().await.unwrap(), Some(cluster))
    } else {
        (EmberContext::embedded().unwrap(), None)
    };
    Engine {
        ember: with_ml_fixtures(ember, &store).await,
        store,
        _cluster: cluster,
    }
}

/// A client of `cluster` with its model store in `store` and the ML fixtures as tables.
pub async fn ml_client(cluster: &InProcessCluster, store: &tempfile::TempDir) -> EmberContext {
    with_ml_fixtures(cluster.context().await.unwrap(), store).await
}

async fn with_ml_fixtures(ember: EmberContext, store: &tempfile::TempDir) -> EmberContext {
    let ember = ember
        .with_model_store(store.path().to_str().unwrap())
        .unwrap();
    ember
        .register_data_dir(&fixtures().join("ml"))
        .await
        .unwrap();
    ember
}

/// The `distributed_plan` text of `EXPLAIN sql` on a cluster: the stages.
pub async fn distributed_plan(ember: &EmberContext, sql: &str) -> String {
    let text = to_text(&ember.sql_one(&format!("EXPLAIN {sql}")).await.unwrap());
    text.rows
        .iter()
        .find(|r| r[0] == "distributed_plan")
        .unwrap_or_else(|| panic!("no distributed plan in {text:?}"))[1]
        .clone()
}

/// The first row of `sql`'s result, by column name, as numbers (NaN for text
/// and NULL).
pub async fn metrics(ember: &EmberContext, sql: &str) -> BTreeMap<String, f64> {
    let text = to_text(&ember.sql_one(sql).await.unwrap());
    text.header
        .iter()
        .zip(&text.rows[0])
        .map(|(h, v)| (h.clone(), v.parse::<f64>().unwrap_or(f64::NAN)))
        .collect()
}

/// The numbers of a JSON array.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// Reads a CSV fixture (header line, then rows).
pub fn read_csv(path: &Path) -> TextTable {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("record").iter().map(String::from).collect())
        .collect();
    TextTable { header, rows }
}

/// Two cells agree: equal text; numbers with at most two decimals (DECIMAL
/// sums) equal exactly; other numbers within a relative tolerance of 1e-6
/// (absolute below 1): DataFusion rounds decimal averages to 6 places where
/// DuckDB answers in double precision, so that is the tightest bound both meet.
pub fn cells_agree(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        // Money: DECIMAL sums are exact in both engines, so to the cent.
        (Ok(x), Ok(y)) if cents(a) && cents(b) => (x - y).abs() < 0.005,
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Whether a number is written with at most two decimals (a DECIMAL(_, 2)).
fn cents(text: &str) -> bool {
    !text.contains(['e', 'E']) && text.split_once('.').is_none_or(|(_, f)| f.len() <= 2)
}

/// Compares two result tables row by row (the queries order their results) and
/// returns a description of the first difference.
pub fn compare(actual: &TextTable, expected: &TextTable) -> Result<(), String> {
    if actual.rows.len() != expected.rows.len() {
        return Err(format!(
            "{} rows, expected {}",
            actual.rows.len(),
            expected.rows.len()
        ));
    }
    for (i, (a, e)) in actual.rows.iter().zip(&expected.rows).enumerate() {
        if a.len() != e.len() {
            return Err(format!(
                "row {i} has {} columns, expected {}",
                a.len(),
                e.len()
            ));
        }
        for (j, (x, y)) in a.iter().zip(e).enumerate() {
            if !cells_agree(x, y) {
                let column = expected.header.get(j).map(String::as_str).unwrap_or("?");
                return Err(format!("row {i}, column {column}: '{x}', expected '{y}'"));
            }
        }
    }
    Ok(())
}

/// Every file under `dir`, relative, sorted.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `file`'s bytes with one byte flipped in the middle of `column`'s first
/// column chunk.
pub fn flip_a_page_byte(file: &Path, column: &str) -> Vec<u8> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let chunk = group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == column)
        .unwrap();
    let middle = chunk.data_page_offset() + chunk.compressed_size() / 2;
    let mut bytes = std::fs::read(file).unwrap();
    bytes[middle as usize] ^= 0x5a;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_relative_above_one_and_absolute_below() {
        assert!(cells_agree("25.575154", "25.575154611454693"));
        assert!(cells_agree("0.050081", "0.05008133906964238"));
        assert!(!cells_agree("0.0501", "0.05008133906964238"));
        assert!(!cells_agree("1000.01", "1000.02"));
        // Exact to the cent, however large the sum.
        assert!(!cells_agree("1234567890.11", "1234567890.12"));
        assert!(cells_agree("1234567890.1", "1234567890.10"));
        assert!(cells_agree("BRAZIL", "BRAZIL"));
        assert!(!cells_agree("BRAZIL", "CHINA"));
    }
}
