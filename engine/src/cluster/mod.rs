//! Ballista clusters wired with ember's session: the scheduler, the executors, and
//! an in-process cluster of both for tests and for embedding.
//!
//! ```text
//!   start_scheduler(opts) ──> SchedulerHandle (df://host:port)
//!   run_executor(opts)    ──> registers with the scheduler, runs tasks until stopped
//!   InProcessCluster::start(n) = one scheduler + n executors in this process
//! ```
//!
//! The `ember scheduler` and `ember executor` processes are thin shells over
//! [`start_scheduler`] and [`run_executor`].

mod client_pool;
mod estimated;
mod executor;
mod fault;
mod in_process;
mod job_watch;
mod join_fit;
mod keep_partitioned;
mod member_port;
mod merge_limit;
mod placement;
mod refused;
mod scheduler;
pub(crate) mod secret;
mod shares;
mod shuffle_order;
mod stage_guard;
mod task_stop;

pub use estimated::EstimatedExec;
pub use executor::{ExecutorOptions, ReadyExecutor, run_executor};
pub use fault::{EXECUTOR_LOST, Fault, RUN_ATTEMPTS, cluster_retry, executor_lost};
pub use in_process::InProcessCluster;
pub use join_fit::FitHashJoins;
pub use keep_partitioned::KeepPartitionedJoins;
pub use merge_limit::KeepMergeLimits;
pub use placement::{BindingPolicy, GPU_EXECUTOR_PREFIX, is_gpu_executor, wants_gpu};
pub use refused::RefusedExec;
pub use scheduler::{SchedulerHandle, SchedulerOptions, start_scheduler};
pub use secret::{CLUSTER_TOKEN_ENV, ClusterSecret, cluster_endpoint, reached_handler};
pub(crate) use shares::KeepRowsExtension;
pub use shares::{ClusterKeeper, KeepRowsExec, KeepRowsNode, ShareStore, decode_spec, encode_spec};
pub use shuffle_order::SortAfterShuffle;
pub use stage_guard::{StageGuard, WholeStage, whole_stage};
pub(crate) use task_stop::{TurnOnDrop, switch_leaves};

use std::net::{IpAddr, SocketAddr};

use datafusion::common::{DataFusionError, Result};

/// The one child a single-input plan node is rebuilt with, or an error naming
/// the node.
pub(crate) fn only_child(
    mut children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
    node: &str,
) -> Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    match (children.pop(), children.is_empty()) {
        (Some(child), true) => Ok(child),
        _ => Err(DataFusionError::Internal(format!("{node} takes one input"))),
    }
}

/// Parses a bind address (`127.0.0.1`, `0.0.0.0`, `::1`).
pub fn parse_bind(bind: &str) -> Result<IpAddr> {
    bind.parse::<IpAddr>().map_err(|_| {
        DataFusionError::Configuration(format!(
            "bad bind address '{bind}': expected an IP address such as 127.0.0.1"
        ))
    })
}

/// A free TCP port on `ip`, found by binding port 0. Ballista's executor advertises
/// the port it was configured with, so an executor asked for port 0 gets one of
/// these instead.
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| DataFusionError::Execution(format!("cannot find a free port on {ip}: {e}")))?;
    Ok(listener.local_addr()?.port())
}

/// The host other processes use to reach a service bound to `bind`: the bind
/// address itself, or loopback when bound to every interface.
pub fn advertised_host(bind: IpAddr) -> String {
    if bind.is_unspecified() {
        if bind.is_ipv4() {
            "127.0.0.1".into()
        } else {
            "::1".into()
        }
    } else {
        bind.to_string()
    }
}
