//! An executor: ballista-executor with ember's functions, settings, codecs and
//! object stores.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::health::ExecutorHealth;
use datafusion::common::{DataFusionError, Result};

use super::member_port::{serve_member_port, served_by_member_port};
use super::placement::GPU_EXECUTOR_PREFIX;
use super::scheduler::ballista_error;
use super::secret::ClusterSecret;
use super::shares::{ShareStore, bind_shares, default_training_memory, serve_shares};
use super::task_stop::StoppingEngine;
use super::{advertised_host, free_port, parse_bind};
use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use crate::session::{MAX_MESSAGE_BYTES, cluster_config, ember_runtime_env, ember_session_state};

/// How an executor finds its scheduler and serves its shuffle data.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Address to bind the Flight (shuffle) service (loopback unless told otherwise).
    pub bind: String,
    /// Port of the Flight service; 0 picks a free one.
    pub port: u16,
    /// Port of the gRPC service the scheduler pushes tasks to; 0 picks a free one.
    pub grpc_port: u16,
    /// Host name other executors and clients use to fetch shuffle data from here.
    pub external_host: Option<String>,
    /// Tasks run at once; 0 means one per CPU core.
    pub slots: usize,
    /// Where shuffle and spill files go. `None`: a temporary directory that is
    /// removed when the executor stops.
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
    /// Whether to tell the scheduler this executor has a GPU, so that GPU work
    /// is placed here. `None`: probe for one (the usual case); `Some(false)`
    /// keeps GPU work off this executor.
    pub advertise_gpu: Option<bool>,
    /// Port of the training service, where drivers run rounds over the rows
    /// kept here; 0 picks a free one.
    pub training_port: u16,
    /// Bytes the training rows kept here may take together. `None`: half of
    /// the machine's memory.
    pub training_memory: Option<usize>,
    /// The cluster secret: when set, every call in or out is TLS between
    /// members, and the task port listens on loopback only behind the Flight
    /// port (see member_port.rs).
    pub secret: Option<Arc<ClusterSecret>>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: 50050,
            bind: "127.0.0.1".into(),
            port: 0,
            grpc_port: 0,
            external_host: None,
            slots: 0,
            work_dir: None,
            heartbeat_seconds: 3,
            advertise_gpu: None,
            training_port: 0,
            training_memory: None,
            secret: None,
        }
    }
}

/// An executor that has registered with its scheduler.
#[derive(Debug, Clone)]
pub struct ReadyExecutor {
    /// Where it serves shuffle data (`host:port`).
    pub address: String,
    /// The training rows it keeps.
    pub shares: Arc<ShareStore>,
}

/// Runs an executor until the process gets Ctrl-C or SIGTERM, or the scheduler
/// asks it to stop. `on_ready` is called once the executor has registered with
/// the scheduler.
pub async fn run_executor(
    options: ExecutorOptions,
    on_ready: impl FnOnce(ReadyExecutor) + Send + 'static,
) -> Result<()> {
    let ip = parse_bind(&options.bind)?;
    // Training rows kept here are served to drivers on a port of their own,
    // bound first, so that `free_port` below cannot hand the Flight or gRPC
    // service the port this listener would then take.
    let training_listener =
        bind_shares(std::net::SocketAddr::new(ip, options.training_port)).await?;
    let training_port = training_listener.local_addr()?.port();
    let port = if options.port == 0 {
        free_port(ip)?
    } else {
        options.port
    };
    // With a cluster secret, Ballista's task service listens on loopback only
    // and is reached through the Flight port (member_port.rs).
    let task_ip = match options.secret {
        Some(_) => std::net::IpAddr::from([127, 0, 0, 1]),
        None => ip,
    };
    let grpc_port = if options.grpc_port == 0 {
        free_port(task_ip)?
    } else {
        options.grpc_port
    };
    let host = options
        .external_host
        .clone()
        .unwrap_or_else(|| advertised_host(ip));
    let shares = Arc::new(ShareStore::new(
        format!("{host}:{training_port}"),
        options
            .training_memory
            .unwrap_or_else(default_training_memory),
    ));
    let training_service = tokio::spawn(serve_shares(
        training_listener,
        shares.clone(),
        options.secret.clone(),
    ));

    // Keep an owned temporary directory alive for the executor's whole life, so
    // its shuffle files are removed when it stops.
    let (work_dir, temp_dir) = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                DataFusionError::Execution(format!("cannot create work dir {}: {e}", dir.display()))
            })?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("ember-executor-")
                .tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let work_dir_text = work_dir
        .to_str()
        .ok_or_else(|| {
            DataFusionError::Configuration(format!("work dir is not UTF-8: {}", work_dir.display()))
        })?
        .to_string();

    let registry = BallistaFunctionRegistry::from(&ember_session_state(cluster_config())?);
    let health = ExecutorHealth::new();
    let spill_dir = work_dir.clone();

    // The scheduler learns of the GPU from the id (see placement.rs).
    let has_gpu = options
        .advertise_gpu
        .unwrap_or_else(|| ember_ml_ops::kernels::cuda::gpu().is_ok());
    let default_id = ExecutorProcessConfig::default().executor_id;
    let executor_id = if has_gpu {
        format!("{GPU_EXECUTOR_PREFIX}{default_id}")
    } else {
        default_id
    };

    let secret = options.secret.clone();
    let config = ExecutorProcessConfig {
        executor_id,
        bind_host: task_ip.to_string(),
        external_host: Some(host.clone()),
        port,
        grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 10,
        vcores: options.slots,
        work_dir: Some(work_dir_text.clone()),
        print_thread_info: false,
        executor_heartbeat_interval_seconds: options.heartbeat_seconds,
        job_data_clean_up_interval_seconds: 300,
        job_data_ttl_seconds: 3600,
        grpc_max_decoding_message_size: MAX_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: MAX_MESSAGE_BYTES as u32,
        override_function_registry: Some(Arc::new(registry)),
        // Every task can reach this executor's training shares.
        override_config_producer: Some(Arc::new({
            let shares = shares.clone();
            let secret = secret.clone();
            move || {
                let config = cluster_config().with_extension(shares.clone());
                ClusterSecret::secure_config(secret.as_ref(), config)
            }
        })),
        override_runtime_producer: Some(Arc::new(move |_config| {
            ember_runtime_env(Some(&spill_dir))
        })),
        override_logical_codec: Some(Arc::new(EmberLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(EmberPhysicalCodec::default())),
        health: health.clone(),
        // Ballista's engine, with tasks that stop when cancelled.
        override_execution_engine: Some(Arc::new(StoppingEngine::new(
            ExecutorProcessConfig::default().client_ttl,
        ))),
        override_arrow_flight_service: secret.as_ref().map(|_| served_by_member_port()),
        override_create_grpc_client_endpoint: secret.as_ref().map(|s| s.endpoint_override()),
        ..ExecutorProcessConfig::default()
    };

    let member_port = match &secret {
        Some(secret) => {
            let address = std::net::SocketAddr::new(ip, port);
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                DataFusionError::Execution(format!("cannot listen on {address}: {e}"))
            })?;
            Some(serve_member_port(
                listener,
                work_dir_text.clone(),
                grpc_port,
                secret.clone(),
            ))
        }
        None => None,
    };

    let ready = ReadyExecutor {
        address: format!("{host}:{port}"),
        shares: shares.clone(),
    };
    let watcher = tokio::spawn(async move {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        on_ready(ready);
    });
    let result = start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_error);
    watcher.abort();
    training_service.abort();
    if let Some(member_port) = member_port {
        member_port.abort();
    }
    drop(temp_dir);
    result
}
