//! A whole cluster inside this process: one scheduler and N executors talking
//! gRPC/Flight over loopback, wired exactly as the `ember scheduler` and `ember
//! executor` processes are. For tests and for trying distribution without
//! starting processes.
//!
//! The cluster runs on a tokio runtime of its own, as separate processes would:
//! on the caller's, an embedded query that keeps its workers busy for longer
//! than the executor timeout (the differential fuzzer's 5-way many-to-many
//! join, 25 s on 2 cores) held back the executors' heartbeats, the scheduler
//! dropped them, and every later query of the run waited for executors that
//! were gone.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::secret::ClusterSecret;
use super::{
    ExecutorOptions, SchedulerHandle, SchedulerOptions, ShareStore, run_executor, start_scheduler,
};
use crate::context::EmberContext;

/// How long executors get to register before starting the cluster fails.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A scheduler and executors running as tasks of this process.
///
/// Dropping it stops the scheduler's server and the executors' main tasks; like
/// any Ballista executor embedded in a process, some of their background tasks
/// end only with the process.
pub struct InProcessCluster {
    /// The cluster's own threads; shut down when the cluster is dropped.
    _runtime: OwnRuntime,
    scheduler: SchedulerHandle,
    executors: Vec<JoinHandle<Result<()>>>,
    executor_addresses: Vec<String>,
    shares: Vec<Arc<ShareStore>>,
    secret: Option<Arc<ClusterSecret>>,
}

impl InProcessCluster {
    /// Starts a scheduler on a free loopback port and `executors` executors with
    /// `slots` task slots each; returns once every executor has registered.
    pub async fn start(executors: usize, slots: usize) -> Result<Self> {
        Self::start_labelled(&vec![None; executors], slots).await
    }

    /// Starts one executor per entry of `gpus`, each telling the scheduler it has a
    /// GPU as the entry says (`None`: probe; see
    /// [`ExecutorOptions::advertise_gpu`]), so placement can be tested anywhere.
    pub async fn start_labelled(gpus: &[Option<bool>], slots: usize) -> Result<Self> {
        Self::start_with(gpus, slots, None, None).await
    }

    /// Starts `executors` executors whose kept training rows may take at most
    /// `training_memory` bytes each.
    pub async fn start_with_training_memory(
        executors: usize,
        slots: usize,
        training_memory: usize,
    ) -> Result<Self> {
        Self::start_with(&vec![None; executors], slots, Some(training_memory), None).await
    }

    /// Starts `executors` executors that, with the scheduler and
    /// [`Self::context`]'s clients, talk only to members holding `secret`.
    pub async fn start_with_secret(
        executors: usize,
        slots: usize,
        secret: Arc<ClusterSecret>,
    ) -> Result<Self> {
        Self::start_with(&vec![None; executors], slots, None, Some(secret)).await
    }

    async fn start_with(
        gpus: &[Option<bool>],
        slots: usize,
        training_memory: Option<usize>,
        secret: Option<Arc<ClusterSecret>>,
    ) -> Result<Self> {
        let executors = gpus.len();
        if executors == 0 {
            return Err(DataFusionError::Configuration(
                "a cluster needs at least one executor".into(),
            ));
        }
        let runtime = OwnRuntime::new()?;
        let scheduler_options = SchedulerOptions {
            port: 0,
            secret: secret.clone(),
            ..SchedulerOptions::default()
        };
        let scheduler = runtime
            .handle()
            .spawn(async move { start_scheduler(&scheduler_options).await })
            .await
            .map_err(|e| {
                DataFusionError::Execution(format!("the scheduler did not start: {e}"))
            })??;
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let mut handles = Vec::with_capacity(executors);
        for &advertise_gpu in gpus {
            let options = ExecutorOptions {
                scheduler_host: "127.0.0.1".into(),
                scheduler_port: scheduler.address().port(),
                slots,
                advertise_gpu,
                training_memory,
                secret: secret.clone(),
                ..ExecutorOptions::default()
            };
            let ready_tx = ready_tx.clone();
            handles.push(runtime.handle().spawn(run_executor(options, move |ready| {
                let _ = ready_tx.send(ready);
            })));
        }
        drop(ready_tx);
        let mut executor_addresses = Vec::with_capacity(executors);
        let mut shares = Vec::with_capacity(executors);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while executor_addresses.len() < executors {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(ready)) => {
                    executor_addresses.push(ready.address);
                    shares.push(ready.shares);
                }
                Ok(None) | Err(_) => {
                    // Why one stopped, when one did.
                    let mut why = String::new();
                    for handle in handles.iter_mut() {
                        if handle.is_finished()
                            && let Ok(Err(e)) = handle.await
                        {
                            why = format!(": {e}");
                            break;
                        }
                    }
                    for handle in &handles {
                        handle.abort();
                    }
                    return Err(DataFusionError::Execution(format!(
                        "only {} of {executors} executors registered with the scheduler{why}",
                        executor_addresses.len()
                    )));
                }
            }
        }
        Ok(Self {
            _runtime: runtime,
            scheduler,
            executors: handles,
            executor_addresses,
            shares,
            secret,
        })
    }

    /// The URL to pass as `--master`.
    pub fn url(&self) -> String {
        self.scheduler.url()
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.scheduler
    }

    /// The Flight addresses of the executors, in the order they registered.
    pub fn executor_addresses(&self) -> &[String] {
        &self.executor_addresses
    }

    /// Bytes of training rows the executors keep now, together.
    pub fn training_bytes_held(&self) -> usize {
        self.shares.iter().map(|s| s.used()).sum()
    }

    /// Trainings whose rows some executor keeps now.
    pub fn trainings_held(&self) -> Vec<String> {
        let mut all: Vec<String> = self.shares.iter().flat_map(|s| s.trainings()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// A client context on this cluster (a member, when it has a secret).
    pub async fn context(&self) -> Result<EmberContext> {
        EmberContext::remote_with_secret(&self.url(), self.secret.clone()).await
    }
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        for handle in &self.executors {
            handle.abort();
        }
        self.scheduler.stop();
    }
}

/// A runtime that may be dropped inside another (as a test's cluster is, and
/// as one that failed to start is): it shuts down without waiting for its
/// tasks, where dropping a runtime there would panic.
struct OwnRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OwnRuntime {
    fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("ember-in-process-cluster")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
