//! ember's engine: the session every process builds, settings, codecs, the client
//! API, clusters and test data.
//!
//! ```text
//!            ember (cli)      tests/   benches/
//!                 │
//!   scheduler ────┼──── executor       thin processes over engine::cluster
//!                 │
//!               engine                 session, config, codecs, EmberContext, cluster, datagen
//!                 │
//!                sql                   parser extensions, model statements
//!                 │
//!              ml-ops                  functions, kernels, models
//! ```
//!
//! Start with [`EmberContext`]: `embedded()` runs in this process, `remote(url)` on a
//! cluster, and [`cluster::InProcessCluster`] starts a whole cluster in process.

mod broken_parquet;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod context;
pub mod data_dir;
pub mod datagen;
pub mod errors;
pub mod join_order;
pub mod model_store;
pub mod object_store;
pub mod planner;
pub mod query_stream;
pub mod session;
pub mod statistics;
mod topk_guard;

pub use config::{EmberConfig, MlDevice};
pub use context::{DataDirTables, EmberContext, Master, StatementOutput};
pub use ember_sql::EmberStatement;
pub use query_stream::QueryPlan;
