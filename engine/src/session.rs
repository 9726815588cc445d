//! One session builder for every process.
//!
//! The client, the scheduler and each executor build their DataFusion session here,
//! so all of them know the same functions, settings, codecs and object stores:
//!
//! ```text
//!   embedded_config() ─┐
//!   cluster_config()  ─┴─> ember_session_state(config) ─> SessionState
//!                             + DataFusion's functions (nested/array included)
//!                             + ember's functions (ember_ml_ops::functions)
//!                             + ember settings (EmberConfig) and codecs
//!                             + object stores (local files; s3:// when configured)
//! ```

use std::path::Path;
use std::sync::Arc;

use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
use ballista_core::extension::SessionConfigExt;
use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use ember_ml_ops::functions::ember_functions;

use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use crate::config::EmberConfig;
use crate::object_store::EmberObjectStoreRegistry;

/// Settings for a session that runs in this process: DataFusion's defaults plus
/// ember's extension.
pub fn embedded_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(EmberConfig::default())
}

/// Settings for a session whose plans run on a Ballista cluster: Ballista's
/// defaults, ember's extension and ember's codecs. The scheduler and executors use
/// this as their config producer, so settings sent by a client land on known keys.
///
/// Partitions per stage default to [`default_cluster_partitions`] rather than
/// Ballista's fixed 16: every partition is a task with its own launch and shuffle
/// files, and on a local cluster 16 of them queue up in waves behind a few slots.
pub fn cluster_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_target_partitions(default_cluster_partitions())
        .with_ballista_grpc_client_max_message_size(MAX_MESSAGE_BYTES)
        .with_information_schema(true)
        .with_option_extension(EmberConfig::default())
        .with_ballista_logical_extension_codec(Arc::new(EmberLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(EmberPhysicalCodec::default()))
        // Ballista 55's adaptive planner does not recover from a lost executor:
        // after it rolls a stage back, task updates fail with "Can't find active
        // stage" and the job never ends (RELIABILITY.md). With the static planner
        // the scheduler sees the re-run coming and fails the job cleanly
        // (cluster/refused.rs), and the client runs it again.
        .set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
        // Ballista turns hash joins off for the static planner (they cannot
        // spill), which made every join a sort-merge join and the cluster 4-6x
        // slower; the scheduler keeps a sort-merge join only where the build
        // side does not fit (cluster/join_fit.rs).
        .set_bool("datafusion.optimizer.prefer_hash_join", true)
}

/// The largest gRPC/Flight message any ember process sends or accepts. gRPC's
/// default of 16 MiB is smaller than one shuffle batch of wide rows (TPC-H q10 at
/// scale 10 moves 33 MB batches) and than the plans that will carry model weights.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// This machine's cores, as DataFusion partitions a query in one process: a
/// local cluster's executors share these cores, whatever slots each claims, and
/// each partition more than they can run at once costs its own shuffle files
/// and reads. Twice the cores (a 2-executor local cluster's slots) made TPC-H
/// SF1 6 % slower on 2 cores (BENCHMARKS.md). On a cluster of several machines,
/// `SET datafusion.execution.target_partitions` to its total slots.
pub fn default_cluster_partitions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The runtime every ember process uses: ember's object store registry, and spill
/// files under `temp_dir` when given.
pub fn ember_runtime_env(temp_dir: Option<&Path>) -> Result<Arc<RuntimeEnv>> {
    // DataFusion keeps a folder's file list for the whole session by default, so
    // a file added to a table's folder stayed unseen in a REPL or by a long-lived
    // client. Every query lists the folder again instead.
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let mut builder = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new()))
        .with_cache_manager(caches);
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

/// Builds the session state for `config` with every DataFusion and ember function.
pub fn ember_session_state(config: SessionConfig) -> Result<SessionState> {
    ember_session_state_with_runtime(config, ember_runtime_env(None)?)
}

/// [`ember_session_state`] over a given runtime (executors bring their own, with
/// their work directory and memory pool).
pub fn ember_session_state_with_runtime(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> Result<SessionState> {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let rules = crate::topk_guard::physical_rules(state.physical_optimizers());
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(rules)
        .with_query_planner(Arc::new(crate::planner::EmberQueryPlanner))
        .build();
    register_ember_functions(&mut state)?;
    Ok(state)
}

/// The scheduler's session: [`ember_session_state`] with
/// [`crate::cluster::FitHashJoins`] right after DataFusion's join selection, so a
/// hash join whose build side does not fit becomes a sort-merge join, and whose
/// physical planning ends with [`crate::cluster::KeepMergeLimits`], so Ballista's stage split keeps
/// every ordered merge's limit, [`crate::cluster::SortAfterShuffle`], so an order
/// the plan relies on is declared again after a shuffle,
/// [`crate::cluster::KeepPartitionedJoins`], so Ballista's stage split keeps
/// the partitioned joins ember chose, and [`crate::cluster::StageGuard`], so no
/// stage is computed whole by each of its tasks.
pub fn scheduler_session_state(config: SessionConfig) -> Result<SessionState> {
    let state = ember_session_state(config)?;
    let mut rules = Vec::with_capacity(state.physical_optimizers().len() + 1);
    for rule in state.physical_optimizers() {
        rules.push(rule.clone());
        if rule.name() == "join_selection" {
            rules.push(Arc::new(crate::cluster::FitHashJoins) as _);
        }
    }
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(rules)
        .with_physical_optimizer_rule(Arc::new(crate::cluster::KeepMergeLimits))
        .with_physical_optimizer_rule(Arc::new(crate::cluster::SortAfterShuffle))
        .with_physical_optimizer_rule(Arc::new(crate::cluster::KeepPartitionedJoins))
        .with_physical_optimizer_rule(Arc::new(crate::cluster::StageGuard))
        .build())
}

/// Registers ember's functions on a registry (a session state or a context).
pub fn register_ember_functions(registry: &mut dyn FunctionRegistry) -> Result<()> {
    let functions = ember_functions();
    for udf in functions.scalar {
        registry.register_udf(udf)?;
    }
    for udaf in functions.aggregate {
        registry.register_udaf(udaf)?;
    }
    Ok(())
}

/// Registers ember's functions on a context. Ballista's client replaces the
/// function list of the state it is given, so remote contexts need this after
/// they are created.
pub fn register_ember_functions_on_context(ctx: &SessionContext) -> Result<()> {
    register_ember_functions(&mut *ctx.state_ref().write())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_has_nested_and_ember_functions() {
        let state = ember_session_state(cluster_config()).unwrap();
        assert!(state.scalar_functions().contains_key("make_array"));
        assert!(state.scalar_functions().contains_key("array_length"));
        assert!(state.scalar_functions().contains_key("sigmoid"));
        let ctx = SessionContext::new_with_state(state);
        let batches = ctx
            .sql("select array_length(make_array(1, 2, 3)) as n, sigmoid(0) as s")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 3 | 0.5 |"), "{text}");
    }
}
