//! Which tables a connection sees: the `--data-dir` tables, shared by every
//! connection (a table ingested by one is seen by all), under the tables the
//! connection made itself (CREATE EXTERNAL TABLE, CREATE VIEW, a temporary
//! ingest), which no other connection sees.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::ParquetReadOptions;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectNamePart, ObjectType, Statement};
use ember_engine::{EmberContext, EmberStatement};

/// The `--data-dir` tables, loaded once and kept by one context of their own.
pub struct SharedTables {
    dir: Option<PathBuf>,
    loader: EmberContext,
}

impl SharedTables {
    /// Registers the tables under `dir` (none without one).
    pub async fn load(dir: Option<&Path>) -> Result<Self> {
        let loader = EmberContext::embedded()?;
        if let Some(dir) = dir {
            let found = loader.register_data_dir(dir).await?;
            for skipped in &found.skipped {
                log::warn!(
                    "{}: skipped '{}': {}",
                    dir.display(),
                    skipped.name,
                    skipped.reason
                );
            }
            log::info!("{}: {} tables", dir.display(), found.names.len());
        }
        Ok(Self {
            dir: dir.map(Path::to_path_buf),
            loader,
        })
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn schema(&self) -> Result<Arc<dyn SchemaProvider>> {
        default_schema(&self.loader)
    }

    /// Whether a shared table is named `name`.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.schema()?.table_exist(name))
    }

    /// Registers (again) the folder of Parquet files `dir/name/` as table
    /// `name`, seen by every connection from their next statement.
    pub async fn register_folder(&self, name: &str, folder: &Path) -> Result<()> {
        let location = format!("{}/", folder.display());
        if self.loader.session().table_exist(name)? {
            self.loader.session().deregister_table(name)?;
        }
        self.loader
            .session()
            .register_parquet(name, &location, ParquetReadOptions::default())
            .await
    }

    /// A clear error for a `DROP TABLE` of a shared table (DataFusion would say
    /// it "doesn't exist", as the schema refuses to drop it).
    pub async fn refuse_shared_drop(
        &self,
        session: &EmberContext,
        statement: &EmberStatement,
    ) -> Result<()> {
        let EmberStatement::DataFusion(inner) = statement else {
            return Ok(());
        };
        let DFStatement::Statement(inner) = inner.as_ref() else {
            return Ok(());
        };
        let Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } = inner.as_ref()
        else {
            return Ok(());
        };
        let shared = self.schema()?;
        for name in names {
            let Some(ObjectNamePart::Identifier(ident)) = name.0.last() else {
                continue;
            };
            let name = match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            };
            let (Some(theirs), Ok(seen)) = (
                shared.table(&name).await?,
                session.session().table_provider(name.as_str()).await,
            ) else {
                continue;
            };
            if std::ptr::addr_eq(Arc::as_ptr(&theirs), Arc::as_ptr(&seen)) {
                return Err(shared_drop(&name));
            }
        }
        Ok(())
    }

    /// Gives `session` the shared tables under its own.
    pub fn install(&self, session: &EmberContext) -> Result<()> {
        let state = session.session().state();
        let options = &state.config().options().catalog;
        let catalog = session
            .session()
            .catalog(&options.default_catalog)
            .ok_or_else(|| DataFusionError::Internal("no default catalog".into()))?;
        let own = default_schema(session)?;
        let layered = Layered {
            own,
            shared: self.schema()?,
        };
        catalog.register_schema(&options.default_schema, Arc::new(layered))?;
        Ok(())
    }
}

fn shared_drop(name: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "table '{name}' is a --data-dir table, shared by every connection; remove its files to \
         drop it"
    ))
}

/// The schema unqualified table names resolve in.
pub fn default_schema(session: &EmberContext) -> Result<Arc<dyn SchemaProvider>> {
    let state = session.session().state();
    let options = &state.config().options().catalog;
    session
        .session()
        .catalog(&options.default_catalog)
        .and_then(|catalog| catalog.schema(&options.default_schema))
        .ok_or_else(|| DataFusionError::Internal("no default schema".into()))
}

/// A connection's tables over the shared ones: its own win a name, and what it
/// registers or drops is its own.
#[derive(Debug)]
struct Layered {
    own: Arc<dyn SchemaProvider>,
    shared: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for Layered {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.own.table_names();
        names.extend(self.shared.table_names());
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.own.table(name).await? {
            Some(table) => Ok(Some(table)),
            None => self.shared.table(name).await,
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.own.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.own.table_exist(name) && self.shared.table_exist(name) {
            return Err(shared_drop(name));
        }
        self.own.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.own.table_exist(name) || self.shared.table_exist(name)
    }
}
