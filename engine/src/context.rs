//! The client API: one [`EmberContext`], whether statements run in this process or
//! on a cluster.
//!
//! ```no_run
//! # async fn demo() -> datafusion::common::Result<()> {
//! use ember_engine::EmberContext;
//! let ember = EmberContext::embedded()?;                       // in this process
//! let ember = EmberContext::remote("df://127.0.0.1:50050").await?; // on a cluster
//! for output in ember.sql("select 1 + 1 as two").await? {
//!     println!("{} rows", output.num_rows());
//! }
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember_ml_ops::functions::{ModelCatalog, predict_functions};
use ember_ml_ops::models::{KeepRows, Progress, Retry, SilentProgress};
use ember_ml_ops::store::ModelStore;
use ember_sql::ml::{
    FeatureImportanceFunc, MlContext, MlOutput, TrainingInfoFunc, TrainingRoundsFunc, bind_models,
    create_model, describe_model, drop_model, evaluate_model, expand_model_tables,
    explain_create_model, export_model, load_referenced_models, show_models,
};
use ember_sql::{EmberStatement, parse_statements};

use crate::broken_parquet;
use crate::cluster::ClusterSecret;
use crate::cluster::secret::check_accepted;
use crate::data_dir::{FoundTable, Skipped, find_tables};
use crate::model_store::{default_model_store, open_model_store};
use crate::session::{
    cluster_config, embedded_config, ember_session_state, register_ember_functions_on_context,
};

/// How long to wait for a scheduler to accept a connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The scheduler port when a `df://` URL names none (Ballista's default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where a context runs its statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Master {
    /// In this process.
    Embedded,
    /// On the Ballista cluster whose scheduler listens at `host:port`.
    Remote { host: String, port: u16 },
}

impl Master {
    /// Parses `df://HOST[:PORT]` (the scheduler of a cluster).
    pub fn parse(url: &str) -> Result<Self> {
        let (host, port) = parse_scheduler_url(url)?;
        Ok(Master::Remote { host, port })
    }
}

/// Splits `df://HOST[:PORT]` into the scheduler's host and port.
fn parse_scheduler_url(url: &str) -> Result<(String, u16)> {
    let Some(rest) = url.strip_prefix("df://") else {
        return plan_err!("master URL must look like df://HOST:PORT, not '{url}'");
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                DataFusionError::Plan(format!("bad port '{port}' in master URL '{url}'"))
            })?;
            (host, port)
        }
        None => (rest, DEFAULT_SCHEDULER_PORT),
    };
    if host.is_empty() {
        return plan_err!("no host in master URL '{url}'");
    }
    Ok((host.to_string(), port))
}

impl std::fmt::Display for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Master::Embedded => f.write_str("embedded"),
            Master::Remote { host, port } => write!(f, "df://{host}:{port}"),
        }
    }
}

/// What [`EmberContext::register_data_dir`] registered and skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct DataDirTables {
    /// The tables, by name, sorted.
    pub names: Vec<String>,
    /// Files and folders that are not tables, with the reason.
    pub skipped: Vec<Skipped>,
}

/// The result of one statement.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    /// The schema of the rows (empty for statements that return none).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Whether the statement is a query (DDL and `SET` are not).
    pub returns_rows: bool,
    /// What the user should know about the result, one sentence each (rows an
    /// EVALUATE left out, a training that stopped before converging).
    pub notes: Vec<String>,
}

impl StatementOutput {
    /// The number of rows over all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

impl From<MlOutput> for StatementOutput {
    fn from(output: MlOutput) -> Self {
        Self {
            schema: output.schema,
            batches: output.batches,
            returns_rows: output.returns_rows,
            notes: output.notes,
        }
    }
}

/// A session of ember: plans SQL with ember's parser and functions, and runs it in
/// this process or on a cluster.
#[derive(Clone)]
pub struct EmberContext {
    ctx: SessionContext,
    master: Master,
    /// Models loaded for the statements being planned.
    catalog: ModelCatalog,
    store: ModelStore,
    progress: Arc<dyn Progress>,
}

/// Gives `ctx` the `predict` functions, `training_info`, `training_rounds` and
/// `feature_importance` over `catalog`.
fn install_model_functions(ctx: &SessionContext, catalog: &ModelCatalog) {
    for function in predict_functions(catalog.clone()) {
        ctx.register_udf(function.as_ref().clone());
    }
    ctx.register_udtf(
        "training_info",
        Arc::new(TrainingInfoFunc::new(catalog.clone())),
    );
    ctx.register_udtf(
        "training_rounds",
        Arc::new(TrainingRoundsFunc::new(catalog.clone())),
    );
    ctx.register_udtf(
        "feature_importance",
        Arc::new(FeatureImportanceFunc::new(catalog.clone())),
    );
}

impl EmberContext {
    /// A context that runs everything in this process.
    pub fn embedded() -> Result<Self> {
        let state = ember_session_state(embedded_config())?;
        Self::assemble(
            SessionContext::new_with_state(state).enable_url_table(),
            Master::Embedded,
        )
    }

    fn assemble(ctx: SessionContext, master: Master) -> Result<Self> {
        let catalog = ModelCatalog::default();
        install_model_functions(&ctx, &catalog);
        let store = open_model_store(
            &default_model_store(),
            ctx.runtime_env().object_store_registry.as_ref(),
        )?;
        Ok(Self {
            ctx,
            master,
            catalog,
            store,
            progress: Arc::new(SilentProgress),
        })
    }

    /// Uses the model store at `url` (a directory, or an object store URL such as
    /// `s3://bucket/models`) instead of the default (`$EMBER_MODEL_STORE`, else
    /// `~/.ember/models`).
    pub fn with_model_store(mut self, url: &str) -> Result<Self> {
        self.store = open_model_store(url, self.ctx.runtime_env().object_store_registry.as_ref())?;
        Ok(self)
    }

    /// Reports training iterations to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The model store in use.
    pub fn model_store(&self) -> &ModelStore {
        &self.store
    }

    fn ml(&self) -> MlContext {
        MlContext {
            ctx: self.ctx.clone(),
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            cache_features: self.master == Master::Embedded,
            keep_rows: (self.master != Master::Embedded)
                .then(|| Arc::new(crate::cluster::ClusterKeeper) as Arc<dyn KeepRows>),
            progress: self.progress.clone(),
            retry: self.retry(),
        }
    }

    /// When work that only reads runs again: on a cluster after a lost
    /// executor; in one process, never.
    pub(crate) fn retry(&self) -> Retry {
        match self.master {
            Master::Embedded => Retry::never(),
            Master::Remote { .. } => crate::cluster::cluster_retry(),
        }
    }

    /// A context whose queries run on the cluster at `url` (`df://HOST:PORT`).
    ///
    /// Fails with a clear error when no scheduler answers there.
    /// The cluster secret comes from `EMBER_CLUSTER_TOKEN` when set.
    pub async fn remote(url: &str) -> Result<Self> {
        Self::remote_with_secret(url, ClusterSecret::resolve(None)?).await
    }

    /// A context on the cluster at `url` whose channels are TLS between the
    /// members that hold `secret` (see [`ClusterSecret`]).
    pub async fn remote_with_secret(url: &str, secret: Option<Arc<ClusterSecret>>) -> Result<Self> {
        let (host, port) = parse_scheduler_url(url)?;
        check_reachable(&host, port).await?;
        check_accepted(&host, port, secret.as_deref()).await?;
        let config = ClusterSecret::secure_config(secret.as_ref(), cluster_config());
        let state = ember_session_state(config)?;
        let ctx = SessionContext::remote_with_state(&format!("df://{host}:{port}"), state)
            .await?
            .enable_url_table();
        register_ember_functions_on_context(&ctx)?;
        Self::assemble(ctx, Master::Remote { host, port })
    }

    /// Embedded when `master` is `None`, else on that cluster.
    pub async fn connect(master: Option<&str>) -> Result<Self> {
        match master {
            None => Self::embedded(),
            Some(url) => Self::remote(url).await,
        }
    }

    /// As [`Self::connect`], a member of the cluster that holds `secret`.
    pub async fn connect_with_secret(
        master: Option<&str>,
        secret: Option<Arc<ClusterSecret>>,
    ) -> Result<Self> {
        match master {
            None => Self::embedded(),
            Some(url) => Self::remote_with_secret(url, secret).await,
        }
    }

    /// Where this context runs its statements.
    pub fn master(&self) -> &Master {
        &self.master
    }

    /// The DataFusion context underneath, for anything ember does not wrap.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The SQL dialect statements are parsed with.
    fn dialect(&self) -> String {
        self.ctx
            .state()
            .config()
            .options()
            .sql_parser
            .dialect
            .to_string()
    }

    /// Registers every Parquet file (`NAME.parquet`) and every folder of Parquet
    /// files directly under `dir` as a table named after it; a folder
    /// partitioned Hive-style (`year=2024/`) gets its keys as columns. Returns the
    /// names, sorted, and what was skipped with the reason.
    pub async fn register_data_dir(&self, dir: &Path) -> Result<DataDirTables> {
        let (tables, skipped) = find_tables(dir)?;
        let mut names = Vec::with_capacity(tables.len());
        for table in tables {
            let FoundTable {
                name,
                path,
                partitions,
            } = table;
            let location = path.to_str().ok_or_else(|| {
                DataFusionError::Plan(format!("path is not UTF-8: {}", path.display()))
            })?;
            let location = if path.is_dir() {
                format!("{location}/")
            } else {
                location.to_string()
            };
            if self.ctx.table_exist(name.as_str())? {
                self.ctx.deregister_table(name.as_str())?;
            }
            let options = ParquetReadOptions::default().table_partition_cols(partitions);
            self.ctx
                .register_parquet(&name, &location, options)
                .await
                .map_err(|e| {
                    broken_parquet::name_broken_file(e, std::slice::from_ref(&path)).context(
                        format!("cannot read table '{name}' from {}", path.display()),
                    )
                })?;
            names.push(name);
        }
        Ok(DataDirTables { names, skipped })
    }

    /// Parses a script into statements with this session's SQL dialect.
    pub fn parse(&self, sql: &str) -> Result<Vec<EmberStatement>> {
        parse_statements(sql, &self.dialect())
    }

    /// Parses `sql` and runs its statements in order, stopping at the first error.
    pub async fn sql(&self, sql: &str) -> Result<Vec<StatementOutput>> {
        let statements = self.parse(sql)?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.execute(statement).await?);
        }
        Ok(outputs)
    }

    /// Parses `sql`, which must hold exactly one statement, and runs it.
    pub async fn sql_one(&self, sql: &str) -> Result<StatementOutput> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return plan_err!("expected one SQL statement, found {}", statements.len());
        }
        self.execute(statements.remove(0)).await
    }

    /// Plans and runs one parsed statement. On a cluster, a statement that only
    /// reads and whose job failed because an executor was lost is run again
    /// (twice at most) on the executors left.
    pub async fn execute(&self, statement: EmberStatement) -> Result<StatementOutput> {
        let may_retry = matches!(self.master, Master::Remote { .. }) && only_reads(&statement);
        let relations = broken_parquet::relations(&statement);
        let retry = if may_retry {
            self.retry()
        } else {
            Retry::never()
        };
        let result = retry
            .run("the statement", || self.run(statement.clone()))
            .await;
        match result {
            Err(e) => Err(self.explain_failure(e, &relations).await),
            result => result,
        }
    }

    /// Says what a failed statement's error means where it names nothing the
    /// user knows: a scheduler that went away, or a broken Parquet file among
    /// the `relations` the statement reads.
    pub(crate) async fn explain_failure(
        &self,
        e: DataFusionError,
        relations: &[String],
    ) -> DataFusionError {
        // A scheduler that died mid-query shows as a transport error (h2, broken
        // pipe) that names nothing the user knows; say what happened instead.
        if let Master::Remote { host, port } = &self.master
            && scheduler_gone(&e, host, *port).await
        {
            return DataFusionError::Execution(format!(
                "lost the connection to the scheduler at df://{host}:{port} (did it stop?): {}",
                crate::errors::one_line(&e)
            ));
        }
        if broken_parquet::is_parquet_error(&e) {
            let paths = broken_parquet::local_paths(&self.ctx, relations).await;
            return broken_parquet::name_broken_file(e, &paths);
        }
        e
    }

    /// The logical plan of a DataFusion statement, models bound: what
    /// [`Self::execute`] runs and [`Self::plan_query`] streams.
    pub(crate) async fn plan_statement(
        &self,
        mut statement: Box<datafusion::sql::parser::Statement>,
    ) -> Result<LogicalPlan> {
        if let datafusion::sql::parser::Statement::CopyTo(copy) = statement.as_ref()
            && self.store.contains(&copy.target)
        {
            return plan_err!(
                "COPY TO '{}' would write inside the model store ({}); write elsewhere",
                copy.target,
                self.store.url()
            );
        }
        expand_model_tables(&mut statement, &self.ml()).await?;
        load_referenced_models(&statement, &self.store, &self.catalog).await?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(*statement).await?;
        refuse_adaptive_planner(&plan)?;
        bind_models(plan, &state, &self.catalog)
    }

    async fn run(&self, statement: EmberStatement) -> Result<StatementOutput> {
        match statement {
            EmberStatement::DataFusion(statement) => {
                let plan = self.plan_statement(statement).await?;
                let returns_rows = returns_rows(&plan);
                let frame = self.ctx.execute_logical_plan(plan).await?;
                let schema = frame.schema().inner().clone();
                let batches = frame.collect().await?;
                Ok(StatementOutput {
                    schema,
                    batches,
                    returns_rows,
                    notes: vec![],
                })
            }
            EmberStatement::CreateModel(create) => {
                Ok(create_model(&self.ml(), &create).await?.into())
            }
            EmberStatement::ExplainCreateModel(create) => {
                Ok(explain_create_model(&self.ml(), &create).await?.into())
            }
            EmberStatement::EvaluateModel { name, on } => {
                let on = on.map(|q| q.to_string());
                Ok(evaluate_model(&self.ml(), &name, on.as_deref())
                    .await?
                    .into())
            }
            EmberStatement::ShowModels => Ok(show_models(&self.ml()).await?.into()),
            EmberStatement::DescribeModel { name, version } => {
                Ok(describe_model(&self.ml(), &name, version).await?.into())
            }
            EmberStatement::DropModel {
                name,
                if_exists,
                version,
            } => Ok(drop_model(&self.ml(), &name, if_exists, version)
                .await?
                .into()),
            EmberStatement::ExportModel {
                name,
                version,
                path,
            } => Ok(export_model(&self.ml(), &name, version, &path)
                .await?
                .into()),
        }
    }
}

/// Statements that can run again with no effect but their answer: queries,
/// EXPLAIN, and the model statements (a model is written only at the end).
pub(crate) fn only_reads(statement: &EmberStatement) -> bool {
    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
    match statement {
        EmberStatement::DataFusion(statement) => match statement.as_ref() {
            DfStatement::Statement(s) => matches!(s.as_ref(), SqlStatement::Query(_)),
            DfStatement::Explain(_) => true,
            _ => false,
        },
        EmberStatement::CreateModel(_)
        | EmberStatement::ExplainCreateModel(_)
        | EmberStatement::EvaluateModel { .. }
        | EmberStatement::ShowModels
        | EmberStatement::DescribeModel { .. } => true,
        EmberStatement::DropModel { .. } | EmberStatement::ExportModel { .. } => false,
    }
}

/// Lets `SET ballista.planner.adaptive.enabled = true` through (for work on the
/// adaptive planner itself, such as the differential fuzzer's runs of it).
pub const ALLOW_ADAPTIVE_PLANNER: &str = "EMBER_ALLOW_ADAPTIVE_PLANNER";

/// Refuses to turn on Ballista 55's adaptive planner, which gives wrong answers:
/// no rows at all for two `ORDER BY ... LIMIT` branches, and an `ORDER BY` lost
/// after it swaps a join (docs/upstream/adaptive-*.md), and hangs a job after a
/// lost executor.
fn refuse_adaptive_planner(plan: &LogicalPlan) -> Result<()> {
    use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
    use datafusion::logical_expr::Statement;
    let LogicalPlan::Statement(Statement::SetVariable(set)) = plan else {
        return Ok(());
    };
    let on = set
        .value
        .trim()
        .trim_matches('\'')
        .eq_ignore_ascii_case("true");
    if set
        .variable
        .eq_ignore_ascii_case(BALLISTA_ADAPTIVE_PLANNER_ENABLED)
        && on
        && std::env::var_os(ALLOW_ADAPTIVE_PLANNER).is_none()
    {
        return plan_err!(
            "{BALLISTA_ADAPTIVE_PLANNER_ENABLED} = true is refused: Ballista 55's adaptive planner \
             returns wrong answers (no rows for joined or unioned ORDER BY ... LIMIT subqueries, \
             unsorted ORDER BY results) and hangs after a lost executor; ember uses the static planner"
        );
    }
    Ok(())
}

/// Whether a plan is a query whose rows a user reads: DDL and `SET`-like
/// statements are not.
pub fn returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_))
}

/// Whether `error` came from losing the scheduler: it no longer accepts
/// connections. A dying process may still hold its listening socket for a
/// moment after the client's stream broke, so a transport error is given up to
/// a second to show it.
async fn scheduler_gone(error: &DataFusionError, host: &str, port: u16) -> bool {
    let message = error.to_string().to_lowercase();
    let transport = [
        "h2 protocol error",
        "transport error",
        "broken pipe",
        "connection reset",
        "connection refused",
    ]
    .iter()
    .any(|sign| message.contains(sign));
    let checks = if transport { 10 } else { 1 };
    for check in 0..checks {
        if check > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if check_reachable(host, port).await.is_err() {
            return true;
        }
    }
    false
}

/// Tries a TCP connection to the scheduler, so that a wrong `--master` fails at
/// once with the address named instead of at the first query.
async fn check_reachable(host: &str, port: u16) -> Result<()> {
    let address = format!("{host}:{port}");
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(DataFusionError::Execution(format!(
            "cannot reach scheduler at df://{address}: {e}"
        ))),
        Err(_) => Err(DataFusionError::Execution(format!(
            "cannot reach scheduler at df://{address}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_urls() {
        assert_eq!(
            Master::parse("df://127.0.0.1:50051").unwrap(),
            Master::Remote {
                host: "127.0.0.1".into(),
                port: 50051
            }
        );
        assert_eq!(
            Master::parse("df://example").unwrap(),
            Master::Remote {
                host: "example".into(),
                port: DEFAULT_SCHEDULER_PORT
            }
        );
        assert!(Master::parse("http://x:1").is_err());
        assert!(Master::parse("df://x:notaport").is_err());
        assert!(Master::parse("df://:1").is_err());
    }

    /// Only statements that change nothing but their answer may run twice.
    #[test]
    fn what_may_run_again_after_a_lost_executor() {
        let reads = |sql: &str| only_reads(&parse_statements(sql, "generic").unwrap()[0]);
        for sql in [
            "select 1",
            "with t as (select 1 as a) select a from t",
            "explain select 1",
            "create model m options (model_type = 'kmeans', num_clusters = 2) as select 1 as x",
            "evaluate model m",
            "show models",
            "describe model m version 2",
        ] {
            assert!(reads(sql), "{sql}");
        }
        for sql in [
            "insert into t values (1)",
            "create table t as select 1",
            "copy (select 1) to '/tmp/x.parquet'",
            "create external table t stored as parquet location '/tmp/t/'",
            "drop model m",
            "drop model m version 1",
            "set datafusion.execution.target_partitions = 4",
        ] {
            assert!(!reads(sql), "{sql}");
        }
    }

    #[tokio::test]
    async fn statements_run_in_order_and_ddl_returns_no_rows() {
        let ember = EmberContext::embedded().unwrap();
        let outputs = ember
            .sql("create view v as select 1 as a union all select 2; select sum(a) as s from v; drop view v")
            .await
            .unwrap();
        assert_eq!(outputs.len(), 3);
        assert!(!outputs[0].returns_rows && outputs[1].returns_rows && !outputs[2].returns_rows);
        assert_eq!(outputs[1].num_rows(), 1);
    }

    #[tokio::test]
    async fn a_scheduler_that_stops_listening_late_is_still_seen_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broken = DataFusionError::Execution(
            "h2 protocol error: error reading a body from connection".into(),
        );
        let other = DataFusionError::Plan("table 'x' not found".into());
        // Still listening: neither error is a lost scheduler.
        assert!(!scheduler_gone(&broken, "127.0.0.1", port).await);
        assert!(!scheduler_gone(&other, "127.0.0.1", port).await);
        // The stream broke before the listening socket closed (a dying process).
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(listener);
        });
        assert!(scheduler_gone(&broken, "127.0.0.1", port).await);
    }

    #[tokio::test]
    async fn unreachable_master_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let err = EmberContext::remote("df://127.0.0.1:1")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cannot reach scheduler at df://127.0.0.1:1"),
            "{err}"
        );
    }
}
