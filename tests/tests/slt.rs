//! SQL behaviour as `.slt` files (tests/slt/), each run on a fresh session
//! embedded and on an in-process cluster of 2 executors.

use std::path::PathBuf;
use std::time::Duration;

use datafusion::common::DataFusionError;
use ember_engine::EmberContext;
use ember_engine::cluster::InProcessCluster;
use ember_tests::{fixtures, to_text_with_null, tpch_data};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

/// An ember session as sqllogictest sees it.
struct EmberDb {
    ember: EmberContext,
}

#[async_trait::async_trait]
impl AsyncDB for EmberDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let output = self.ember.sql_one(sql).await?;
        if !output.returns_rows {
            return Ok(DBOutput::StatementComplete(0));
        }
        let text = to_text_with_null(&output, "NULL");
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; text.header.len()],
            rows: text.rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "ember"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Runs every file, each on a fresh session from `connect`.
async fn run_all<F, Fut>(connect: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = EmberContext> + Send,
{
    for file in slt_files() {
        let connect = connect.clone();
        // Each file gets its own model store.
        let store = tempfile::tempdir().unwrap();
        let store_url = store.path().to_str().unwrap().to_string();
        let mut runner = Runner::new(move || {
            let connect = connect.clone();
            let store_url = store_url.clone();
            async move {
                let ember = connect().await.with_model_store(&store_url)?;
                ember.register_data_dir(tpch_data()).await?;
                ember.register_data_dir(&fixtures().join("ml")).await?;
                Ok(EmberDb { ember })
            }
        });
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slt_embedded() {
    run_all(|| async { EmberContext::embedded().unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slt_on_two_executors() {
    let cluster = InProcessCluster::start(2, 2).await.unwrap();
    let url = cluster.url();
    run_all(move || {
        let url = url.clone();
        async move { EmberContext::remote(&url).await.unwrap() }
    })
    .await;
}
