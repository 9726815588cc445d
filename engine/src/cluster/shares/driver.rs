//! The driver's side of kept training rows: one keep job packs the rows on the
//! executors that read them, then every round is one Flight call per executor.
//!
//! A round whose executor is gone (or that no longer holds its share) packs the
//! rows again on the executors there are and runs again: rounds only read, and
//! partial statistics are summed in partition order whatever executor computed
//! them, so the model is the one a fault-free run gives.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{UInt32Type, UInt64Type};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use ember_ml_ops::kernels::DeviceChoice;
use ember_ml_ops::models::trees::{Cuts, RowHolder, TreeBinning};
use ember_ml_ops::models::{
    KeepRows, ResidentRows, TrainRoundFunc, WorkKind, WorkReport, device_name, training_state,
};
use futures::future::join_all;
use tonic::transport::Channel;

use super::keep::{KeepRowsNode, KeepSpec};
use super::tree_recovery::RecoveringRows;
use super::wire::{self, RELEASE, ROUND, ReleaseRequest, RoundRequest, SAMPLE, SampleRequest};
use crate::cluster::fault::{Fault, RUN_ATTEMPTS, cluster_retry};
use crate::cluster::secret::{ClusterSecret, cluster_endpoint};
use crate::config::EmberConfig;
use crate::session::MAX_MESSAGE_BYTES;

/// How long the driver waits to connect to an executor's share service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps training rows on a cluster's executors.
#[derive(Debug, Default)]
pub struct ClusterKeeper;

#[async_trait]
impl KeepRows for ClusterKeeper {
    async fn keep(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        device: DeviceChoice,
    ) -> Result<Arc<dyn ResidentRows>> {
        let lease_seconds = ctx
            .state()
            .config()
            .options()
            .extensions
            .get::<EmberConfig>()
            .map(|c| c.ml.lease_seconds)
            .unwrap_or(60);
        let kept = KeptRows {
            ctx: ctx.clone(),
            plan,
            device,
            lease_seconds,
            placement: Mutex::new(None),
            journal: Mutex::new(Vec::new()),
        };
        kept.pack().await?;
        Ok(Arc::new(kept))
    }
}

/// One executor's share service and the partitions it holds.
#[derive(Debug, Clone)]
pub(super) struct Holder {
    pub endpoint: String,
    pub partitions: Vec<u32>,
    client: FlightServiceClient<Channel>,
}

/// Where a training's rows are.
#[derive(Debug)]
pub(super) struct Placement {
    pub training: String,
    pub holders: Vec<Holder>,
    pub bytes: u64,
    /// Rows kept, on every executor together.
    pub rows: u64,
}

/// Rows kept on the executors for one training; freed when dropped.
pub(super) struct KeptRows {
    ctx: SessionContext,
    plan: LogicalPlan,
    device: DeviceChoice,
    lease_seconds: u64,
    placement: Mutex<Option<Arc<Placement>>>,
    /// Work done since the estimator last asked (see `take_reports`).
    journal: Mutex<Vec<(WorkKind, Vec<WorkReport>)>>,
}

/// A training id no other training of any driver shares.
fn training_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl KeptRows {
    pub(super) fn placement(&self) -> Result<Arc<Placement>> {
        self.placement
            .lock()
            .map_err(|_| DataFusionError::Internal("training placement lock poisoned".into()))?
            .clone()
            .ok_or_else(|| DataFusionError::Internal("training rows were never kept".into()))
    }

    /// Runs the keep job (again, after a fault) and connects to the executors
    /// that hold the rows.
    pub(super) async fn pack(&self) -> Result<()> {
        let old = self.placement.lock().ok().and_then(|mut p| p.take());
        if let Some(old) = old {
            release(&old).await;
        }
        let spec = KeepSpec {
            training: training_id(),
            lease_seconds: self.lease_seconds,
            device: self.device,
        };
        let plan = KeepRowsNode::new(self.plan.clone(), spec.clone())?.into_plan();
        let started = Instant::now();
        let batches = cluster_retry()
            .collect("the keep job", || {
                Ok(DataFrame::new(keep_state(&self.ctx), plan.clone()))
            })
            .await?;
        self.note(WorkKind::Keep, keep_reports(&batches, started.elapsed()));
        let secret = ClusterSecret::of(self.ctx.state().config());
        let placement = connect(spec.training, &batches, secret.as_deref()).await?;
        log::info!(
            "training {}: {} bytes kept on {} executors",
            placement.training,
            placement.bytes,
            placement.holders.len()
        );
        *self
            .placement
            .lock()
            .map_err(|_| DataFusionError::Internal("training placement lock poisoned".into()))? =
            Some(Arc::new(placement));
        Ok(())
    }

    /// Keeps a report of work done.
    fn note(&self, kind: WorkKind, reports: Vec<WorkReport>) {
        if let Ok(mut journal) = self.journal.lock() {
            journal.push((kind, reports));
        }
    }

    /// Sends `action` with `body` to every holder; each answer in holder order,
    /// past the executor's report of its work (kept in the journal as `kind`).
    async fn ask_all(
        &self,
        action: &str,
        kind: WorkKind,
        body: impl Fn(&Placement, &Holder) -> Result<Bytes>,
    ) -> Result<Vec<Bytes>> {
        let mut attempt = 1;
        loop {
            let placement = self.placement()?;
            let calls = placement
                .holders
                .iter()
                .map(|holder| {
                    let body = body(&placement, holder);
                    let holder = holder.clone();
                    async move { ask_reporting(holder, action, body?).await }
                })
                .collect::<Vec<_>>();
            let answers: Result<Vec<(Bytes, WorkReport)>> =
                join_all(calls).await.into_iter().collect();
            let answers = answers.map(|answers| {
                let (answers, reports) = answers.into_iter().unzip();
                self.note(kind, reports);
                answers
            });
            match answers {
                Err(e)
                    if attempt < RUN_ATTEMPTS
                        && matches!(Fault::of(&e), Some(Fault::RowsLost(_))) =>
                {
                    log::warn!("training rows lost ({e}); keeping them again");
                    attempt += 1;
                    self.pack().await?;
                }
                answers => return answers,
            }
        }
    }
}

/// The keep job's session: the training's, with two partitions (shares) for
/// each one the session plans with. A round runs each share on a thread of its
/// own, and the scan's byte ranges cut the rows unevenly (754 816 against
/// 1 245 184 rows on 2 executors): an executor with the larger part spends the
/// cores another has finished with only when it holds more than one share.
/// Logistic regression's rounds on 2M × 28 took 0.27–0.32 s with one share per
/// executor, 0.23–0.27 s with two.
fn keep_state(ctx: &SessionContext) -> datafusion::execution::SessionState {
    let mut state = training_state(ctx);
    let execution = &mut state.config_mut().options_mut().execution;
    execution.target_partitions = execution.target_partitions.saturating_mul(2);
    state
}

/// How a failed call to an executor's share service reads.
const UNREACHABLE: &str = "cannot reach the executor holding training rows";

/// One action on one executor.
pub(super) async fn ask(mut holder: Holder, action: &str, body: Bytes) -> Result<Bytes> {
    let request = Action {
        r#type: action.to_string(),
        body,
    };
    let answer = holder
        .client
        .do_action(request)
        .await
        .map_err(|status| match status.code() {
            // The round itself failed (bad data, a kernel error): running it
            // again would fail the same way.
            tonic::Code::Internal => DataFusionError::Execution(status.message().to_string()),
            tonic::Code::NotFound => Fault::RowsLost(status.message().to_string()).into(),
            _ => unreachable_at(&holder.endpoint, status.message()),
        })?;
    let mut stream = answer.into_inner();
    match stream.message().await {
        Ok(Some(result)) => Ok(result.body),
        Ok(None) => Err(unreachable_at(&holder.endpoint, "no answer")),
        Err(status) => Err(unreachable_at(&holder.endpoint, status.message())),
    }
}

/// The executor at `endpoint` did not answer: its rows are as good as lost.
fn unreachable_at(endpoint: &str, why: impl std::fmt::Display) -> DataFusionError {
    Fault::RowsLost(format!("{UNREACHABLE} at {endpoint}: {why}")).into()
}

/// `action` on `holder`, and what the executor did for it: the answer past
/// the executor's report.
async fn ask_reporting(holder: Holder, action: &str, body: Bytes) -> Result<(Bytes, WorkReport)> {
    let started = Instant::now();
    let sent = body.len() as u64;
    let endpoint = holder.endpoint.clone();
    let partitions = holder.partitions.len();
    let answer = ask(holder, action, body).await?;
    let round_trip_seconds = started.elapsed().as_secs_f64();
    let (work, rest) = wire::split_work(&answer)?;
    let report = WorkReport {
        executor: endpoint,
        partitions,
        rows: work.cpu_rows + work.gpu_rows,
        device: device_name(work.cpu_rows, work.gpu_rows).into(),
        seconds: work.seconds,
        round_trip_seconds,
        bytes_sent: sent,
        bytes_received: answer.len() as u64,
        bytes_kept: 0,
    };
    Ok((answer.slice_ref(rest), report))
}

/// What each executor did in a keep job that took `elapsed`, from its result rows.
fn keep_reports(batches: &[RecordBatch], elapsed: Duration) -> Vec<WorkReport> {
    let mut by_endpoint: BTreeMap<String, WorkReport> = BTreeMap::new();
    for batch in batches {
        let endpoint = batch.column(1).as_string::<i32>();
        let rows = batch.column(2).as_primitive::<UInt64Type>();
        let bytes = batch.column(3).as_primitive::<UInt64Type>();
        let device = batch.column(4).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let report = by_endpoint
                .entry(endpoint.value(row).to_string())
                .or_insert_with(|| WorkReport {
                    executor: endpoint.value(row).to_string(),
                    device: device.value(row).to_string(),
                    seconds: elapsed.as_secs_f64(),
                    round_trip_seconds: elapsed.as_secs_f64(),
                    ..WorkReport::default()
                });
            report.partitions += 1;
            report.rows += rows.value(row);
            report.bytes_kept += bytes.value(row);
        }
    }
    by_endpoint.into_values().collect()
}

/// The placement the keep job's rows describe, with a client per executor.
async fn connect(
    training: String,
    batches: &[RecordBatch],
    secret: Option<&ClusterSecret>,
) -> Result<Placement> {
    let mut by_endpoint: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut bytes = 0;
    let mut rows = 0;
    let mut partitions = Vec::new();
    for batch in batches {
        let partition = batch.column(0).as_primitive::<UInt32Type>();
        let endpoint = batch.column(1).as_string::<i32>();
        let kept = batch.column(2).as_primitive::<UInt64Type>();
        let size = batch.column(3).as_primitive::<UInt64Type>();
        for row in 0..batch.num_rows() {
            rows += kept.value(row);
            by_endpoint
                .entry(endpoint.value(row).to_string())
                .or_default()
                .push(partition.value(row));
            partitions.push(partition.value(row));
            bytes += size.value(row);
        }
    }
    partitions.sort_unstable();
    if partitions.iter().enumerate().any(|(i, p)| *p as usize != i) {
        return exec_err!(
            "the training rows were kept as partitions {partitions:?}: each partition must be kept once"
        );
    }
    let mut holders = Vec::with_capacity(by_endpoint.len());
    for (endpoint, partitions) in by_endpoint {
        let channel = cluster_endpoint(&endpoint, secret)
            .map_err(|e| DataFusionError::Execution(format!("bad share endpoint {endpoint}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| unreachable_at(&endpoint, e))?;
        let client = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        holders.push(Holder {
            endpoint,
            partitions,
            client,
        });
    }
    Ok(Placement {
        training,
        holders,
        bytes,
        rows,
    })
}

/// Frees a training's rows on every executor that holds them (an executor that
/// cannot be reached frees them when the lease runs out).
async fn release(placement: &Placement) {
    let body = match wire::to_json(&ReleaseRequest {
        training: placement.training.clone(),
    }) {
        Ok(body) => body,
        Err(_) => return,
    };
    let calls = placement
        .holders
        .iter()
        .map(|holder| ask(holder.clone(), RELEASE, body.clone()));
    for result in join_all(calls).await {
        if let Err(e) = result {
            log::info!(
                "training {}: not released at once ({e})",
                placement.training
            );
        }
    }
}

#[async_trait]
impl ResidentRows for KeptRows {
    async fn round(&self, function: &TrainRoundFunc) -> Result<Vec<f64>> {
        let answers = self
            .ask_all(ROUND, WorkKind::Round, |placement, holder| {
                wire::to_json(&RoundRequest {
                    training: placement.training.clone(),
                    partitions: holder.partitions.clone(),
                    function: function.clone(),
                })
            })
            .await?;
        let mut parts = Vec::new();
        for answer in answers {
            parts.extend(wire::decode_stats(&answer)?);
        }
        // Summed in partition order: the same numbers wherever each partition ran.
        parts.sort_by_key(|p| p.partition);
        let mut total = vec![0.0; function.stats_len()];
        for part in parts {
            if part.stats.len() != total.len() {
                return exec_err!(
                    "partition {} returned {} statistics, expected {}",
                    part.partition,
                    part.stats.len(),
                    total.len()
                );
            }
            for (t, v) in total.iter_mut().zip(part.stats) {
                *t += v;
            }
        }
        Ok(total)
    }

    async fn tree_rows(
        self: Arc<Self>,
        binning: &TreeBinning,
    ) -> Result<(Vec<Cuts>, Arc<dyn RowHolder>)> {
        let started = Instant::now();
        let placement = self.placement()?;
        let (cuts, rows) = super::tree_rows::bin_kept_rows(&placement, binning).await?;
        log::info!(
            "training {}: rows binned for trees on {} executors in {:.2} s",
            placement.training,
            placement.holders.len(),
            started.elapsed().as_secs_f64()
        );
        let binning = TreeBinning {
            cuts: Some(cuts.clone()),
            ..binning.clone()
        };
        let rows = RecoveringRows::new(self, binning, rows);
        Ok((cuts, Arc::new(rows)))
    }

    async fn sample_rows(&self, seed: u64, columns: &[String], n: usize) -> Result<Vec<Vec<f64>>> {
        let answers = self
            .ask_all(SAMPLE, WorkKind::Sample, |placement, holder| {
                wire::to_json(&SampleRequest {
                    training: placement.training.clone(),
                    partitions: holder.partitions.clone(),
                    seed,
                    columns: columns.to_vec(),
                    n,
                })
            })
            .await?;
        let mut rows = Vec::new();
        for answer in answers {
            rows.extend(wire::decode_rows(&answer)?);
        }
        rows.sort_by(|a, b| a.hash.total_cmp(&b.hash));
        rows.truncate(n);
        Ok(rows.into_iter().map(|r| r.values).collect())
    }

    fn bytes(&self) -> u64 {
        self.placement().map(|p| p.bytes).unwrap_or(0)
    }

    fn take_reports(&self) -> Vec<(WorkKind, Vec<WorkReport>)> {
        self.journal
            .lock()
            .map(|mut j| std::mem::take(&mut *j))
            .unwrap_or_default()
    }
}

impl Drop for KeptRows {
    fn drop(&mut self) {
        let placement = self.placement.lock().ok().and_then(|mut p| p.take());
        if let (Some(placement), Ok(runtime)) = (placement, tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { release(&placement).await });
        }
    }
}
