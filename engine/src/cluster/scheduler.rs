//! The scheduler: ballista-scheduler with ember's session builder and codecs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::common::{DataFusionError, Result};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::task::JoinHandle;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::job_watch::WatchingScheduler;
use super::placement::BindingPolicy;
use super::secret::ClusterSecret;
use super::{advertised_host, parse_bind};
use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use crate::session::{MAX_MESSAGE_BYTES, cluster_config, scheduler_session_state};

/// Where and how a scheduler listens.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to bind (loopback unless told otherwise).
    pub bind: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Host name executors and clients use to reach this scheduler; by default
    /// the bind address (loopback when bound to every interface).
    pub external_host: Option<String>,
    /// Seconds without a heartbeat before an executor counts as lost and its
    /// tasks run again elsewhere. A killed executor says nothing, so this bounds
    /// how long a query waits on one; executors beat every
    /// [`super::ExecutorOptions::heartbeat_seconds`], well inside it.
    pub executor_timeout_seconds: u64,
    /// The cluster secret: when set, every call in or out is TLS between
    /// members (see [`ClusterSecret`]).
    pub secret: Option<Arc<ClusterSecret>>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 50050,
            external_host: None,
            executor_timeout_seconds: 15,
            secret: None,
        }
    }
}

/// A running scheduler.
pub struct SchedulerHandle {
    address: SocketAddr,
    host: String,
    placement: Arc<BindingPolicy>,
    server: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
}

impl SchedulerHandle {
    /// The address the scheduler listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL clients pass as `--master`: `df://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("df://{}:{}", self.host, self.address.port())
    }

    /// How many tasks of GPU-eligible stages each executor has been given (see
    /// [`BindingPolicy`]).
    pub fn gpu_tasks(&self) -> std::collections::HashMap<String, usize> {
        self.placement.gpu_tasks()
    }

    /// Waits until the server stops (it runs until the process ends or fails).
    pub async fn wait(&mut self) -> Result<()> {
        match (&mut self.server).await {
            Ok(result) => result.map_err(|e| DataFusionError::External(Box::new(e))),
            Err(e) => Err(DataFusionError::Execution(format!(
                "scheduler task failed: {e}"
            ))),
        }
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Binds and starts a scheduler in this process; returns once it accepts connections.
pub async fn start_scheduler(options: &SchedulerOptions) -> Result<SchedulerHandle> {
    let ip = parse_bind(&options.bind)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, options.port))
        .await
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot listen on {}:{}: {e}",
                options.bind, options.port
            ))
        })?;
    let address = listener.local_addr()?;
    let host = options
        .external_host
        .clone()
        .unwrap_or_else(|| advertised_host(ip));

    let secret = options.secret.clone();
    let mut config = SchedulerConfig::default()
        .with_hostname(host.clone())
        .with_port(address.port())
        .with_override_config_producer(Arc::new(move || {
            ClusterSecret::secure_config(secret.as_ref(), cluster_config())
        }))
        .with_override_session_builder(Arc::new(scheduler_session_state));
    if let Some(secret) = &options.secret {
        config = config
            .with_use_tls(true)
            .with_override_create_grpc_client_endpoint(secret.endpoint_override());
    }
    config.bind_host = ip.to_string();
    config.override_logical_codec = Some(Arc::new(EmberLogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(EmberPhysicalCodec::default()));
    config.grpc_server_max_decoding_message_size = MAX_MESSAGE_BYTES as u32;
    config.grpc_server_max_encoding_message_size = MAX_MESSAGE_BYTES as u32;
    config.grpc_client_max_message_size = MAX_MESSAGE_BYTES as u32;
    config.executor_timeout_seconds = options.executor_timeout_seconds.max(2);
    // Look for silent executors often enough that the timeout is what counts.
    config.expire_dead_executor_interval_seconds = (config.executor_timeout_seconds / 5).max(1);
    config.no_executors_grace_period_seconds = config.executor_timeout_seconds;
    config.validate().map_err(ballista_error)?;

    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error)?;
    // Training rounds that may use a GPU go to executors that have one, and no
    // job re-runs part of itself.
    let placement = Arc::new(BindingPolicy::new(cluster.cluster_state()));
    config.task_distribution = TaskDistributionPolicy::Custom(placement.clone());
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(ballista_error)?;
    let server = tokio::spawn(serve(listener, scheduler, options.secret.clone()));
    Ok(SchedulerHandle {
        address,
        host,
        placement,
        server,
    })
}

/// TCP keepalive on every connection to the scheduler: a client whose machine
/// vanished without closing its connection is found by the kernel (idle for
/// [`KEEPALIVE_IDLE`], then [`KEEPALIVE_RETRIES`] unanswered probes
/// [`KEEPALIVE_INTERVAL`] apart), its connection fails, and its job is
/// cancelled (see [`WatchingScheduler`]): about 4 s. The peer's kernel answers
/// the probes, so a client or executor too busy to run its own tasks for a
/// while is never taken for gone, as it was with HTTP/2 pings that its runtime
/// had to answer (a loaded test machine lost jobs that way).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 2;

/// Serves Ballista's scheduler API (what `start_grpc_service_with_listener` does
/// for it, less its optional REST, Flight SQL and health routes, which ember
/// builds without), with jobs cancelled when their client goes away. With a
/// cluster secret only members get in, and executors are told to be reached
/// for tasks at their TLS port (see `executor.rs`).
async fn serve(
    listener: tokio::net::TcpListener,
    scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    secret: Option<Arc<ClusterSecret>>,
) -> std::result::Result<(), tonic::transport::Error> {
    let watching = WatchingScheduler::new(scheduler).with_tasks_at_flight_port(secret.is_some());
    let service = SchedulerGrpcServer::new(watching)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(KEEPALIVE_IDLE))
        .with_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .with_keepalive_retries(Some(KEEPALIVE_RETRIES));
    ClusterSecret::secure_server(secret.as_ref(), Server::builder())?
        .layer(InterceptorLayer::new(remote_address))
        .add_service(service)
        .serve_with_incoming(incoming)
        .await
}

/// Ballista's handlers read the caller's address the way axum's server records
/// it (an executor that registers without a host is known by it).
fn remote_address(
    mut request: tonic::Request<()>,
) -> std::result::Result<tonic::Request<()>, tonic::Status> {
    if let Some(address) = request.remote_addr() {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(address));
    }
    Ok(request)
}

pub(crate) fn ballista_error(e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
