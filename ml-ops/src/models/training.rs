//! The data an estimator trains on, and the one operation it needs: run a round.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::common::{Column, DataFusionError, Result, ScalarValue, exec_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, Expr, LogicalPlan, ScalarUDF, SortExpr};
use datafusion::prelude::{DataFrame, SessionContext, lit};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::checkpoint::Saved;
use super::round::{RoundSpec, TrainRoundFunc, stats_values};
use super::{Checkpoint, Feature, ResidentRows, RoundInfo, WorkKind, WorkReport};
use crate::hashing::RowHashFunc;
use crate::kernels::{DeviceChoice, feature_rows};

/// When work that only reads (a training round, packing training rows) runs
/// again after it failed. The engine that runs it decides: a cluster runs
/// again what the loss of an executor failed; one process has nothing to retry.
#[derive(Clone)]
pub struct Retry {
    attempts: usize,
    worth_it: Arc<dyn Fn(&DataFusionError) -> bool + Send + Sync>,
}

impl Retry {
    /// Never runs anything again.
    pub fn never() -> Self {
        Self::new(1, |_| false)
    }

    /// Runs work up to `attempts` times in all, again only after an error
    /// `worth_it` accepts.
    pub fn new(
        attempts: usize,
        worth_it: impl Fn(&DataFusionError) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            attempts: attempts.max(1),
            worth_it: Arc::new(worth_it),
        }
    }

    /// Whether work that failed with `error` on attempt `attempt` (from 1)
    /// runs again.
    pub fn again(&self, attempt: usize, error: &DataFusionError) -> bool {
        attempt < self.attempts && (self.worth_it)(error)
    }

    /// Runs `work` again while [`Self::again`] says so. `what` names the work
    /// in the log.
    pub async fn run<T, F, Fut>(&self, what: &str, mut work: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match work().await {
                Err(e) if self.again(attempt, &e) => {
                    log::warn!("running {what} again: {}", first_line(&e));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Collects the frame `make` builds, building and running it again while
    /// [`Self::again`] says so.
    pub async fn collect(
        &self,
        what: &str,
        make: impl Fn() -> Result<DataFrame>,
    ) -> Result<Vec<RecordBatch>> {
        let make = &make;
        self.run(what, move || async move { make()?.collect().await })
            .await
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::never()
    }
}

/// The first line of `error`'s message, for the log.
fn first_line(error: &DataFusionError) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// The session state training reads its rows with: each partition reads the
/// same rows every time. (DataFusion lets a scan partition that ran out of files
/// take another's, so which rows a partition holds depends on timing; round
/// statistics are summed per partition, so the model's last bits, and an
/// L-BFGS run's iteration count, would too.)
pub fn training_state(ctx: &SessionContext) -> SessionState {
    let mut state = ctx.state();
    state
        .config_mut()
        .options_mut()
        .execution
        .enable_file_stream_work_stealing = false;
    state
}

/// Told about each training iteration (the CLI draws a progress line from it).
pub trait Progress: Send + Sync {
    /// Iteration `iteration` of at most `max` of training a `model_type` ended with `loss`.
    fn iteration(&self, model_type: &str, iteration: usize, max: usize, loss: f64);
}

/// Progress that shows nothing.
#[derive(Debug, Default)]
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn iteration(&self, _: &str, _: usize, _: usize, _: f64) {}
}

/// A plan whose rows are the training examples: the label column (when
/// supervised) and one column per feature, numbers or fixed-size vectors.
pub struct TrainingData {
    ctx: SessionContext,
    plan: LogicalPlan,
    label: Option<String>,
    features: Vec<Feature>,
    device: DeviceChoice,
    resident: bool,
    batch_rows: Option<usize>,
    /// Where the rows are held between rounds, when not read by `plan` each time.
    kept: Option<Arc<dyn ResidentRows>>,
    /// Where the held-out rows are held, when kept like the training rows.
    kept_evaluation: Option<Arc<dyn ResidentRows>>,
    rows: AtomicU64,
    passes: AtomicUsize,
    /// Iterations recorded so far: a round belongs to the next one.
    iterations: AtomicUsize,
    /// Every round's work, per executor, in the order it ran.
    rounds: Mutex<Vec<RoundInfo>>,
    started: Instant,
    /// Where the state is kept after every iteration, if anywhere.
    checkpoint: Option<Checkpoint>,
    /// The held-out rows (the columns of `plan`), for model types that
    /// measure them while training.
    evaluation: Option<LogicalPlan>,
    /// Iterations and seconds of an interrupted run this one goes on from.
    resumed: Mutex<Option<(usize, f64)>>,
    /// When a round whose job failed runs again.
    retry: Retry,
    /// A classifier's classes (its labels are their indices); 0 otherwise.
    classes: usize,
}

impl TrainingData {
    /// Training data read by `plan` on `ctx` (embedded or a cluster).
    pub fn new(
        ctx: SessionContext,
        plan: LogicalPlan,
        label: Option<String>,
        features: Vec<Feature>,
    ) -> Self {
        Self {
            ctx,
            plan,
            label,
            features,
            device: DeviceChoice::Auto,
            resident: false,
            batch_rows: None,
            kept: None,
            kept_evaluation: None,
            rows: AtomicU64::new(0),
            passes: AtomicUsize::new(0),
            iterations: AtomicUsize::new(0),
            rounds: Mutex::new(Vec::new()),
            started: Instant::now(),
            checkpoint: None,
            evaluation: None,
            resumed: Mutex::new(None),
            retry: Retry::never(),
            classes: 0,
        }
    }

    /// Rounds whose job failed run again as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The label holds `classes` classes, as their indices 0, 1, ...
    pub fn with_classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self
    }

    /// Where the kernels run.
    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// A classifier's number of classes (2 for a binary one); 0 otherwise.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Rounds run their kernels on `device`; `resident` says the plan reads
    /// in-memory batches that every round sees again (see [`TrainRoundFunc`]).
    pub fn with_device(mut self, device: DeviceChoice, resident: bool) -> Self {
        self.device = device;
        self.resident = resident;
        self
    }

    /// Rounds read batches of up to `rows` rows: the planner would otherwise
    /// copy the large in-memory batches kept for a GPU into small new ones
    /// every round, and the GPU's copy of them would be lost.
    pub fn with_batch_rows(mut self, rows: Option<usize>) -> Self {
        self.batch_rows = rows;
        self
    }

    /// Rounds and samples run where `rows` are held (a cluster's executors)
    /// instead of over the plan.
    pub fn with_kept_rows(mut self, rows: Arc<dyn ResidentRows>) -> Self {
        self.kept = Some(rows);
        self
    }

    /// The training rows where they are kept, if they are.
    pub fn kept_rows(&self) -> Option<&Arc<dyn ResidentRows>> {
        self.kept.as_ref()
    }

    /// The held-out rows are kept where `rows` says (read by the
    /// evaluation plan once, there).
    pub fn with_kept_evaluation(mut self, rows: Arc<dyn ResidentRows>) -> Self {
        self.kept_evaluation = Some(rows);
        self
    }

    /// The held-out rows where they are kept, if they are.
    pub fn kept_evaluation(&self) -> Option<&Arc<dyn ResidentRows>> {
        self.kept_evaluation.as_ref()
    }

    /// The evaluation plan, when rows are held out.
    pub fn evaluation_plan(&self) -> Option<&LogicalPlan> {
        self.evaluation.as_ref()
    }

    /// The held-out rows, read by `plan` (the columns of the training rows).
    pub fn with_evaluation(mut self, plan: LogicalPlan) -> Self {
        self.evaluation = Some(plan);
        self
    }

    /// The held-out rows, read once; `None` when none are held out.
    pub async fn collect_evaluation(&self) -> Result<Option<Vec<RecordBatch>>> {
        let Some(plan) = &self.evaluation else {
            return Ok(None);
        };
        let batches = self
            .retry
            .collect("reading the held-out rows", || {
                Ok(DataFrame::new(training_state(&self.ctx), plan.clone()))
            })
            .await?;
        self.passes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(batches))
    }

    /// Keeps the training's state in `checkpoint` after every iteration, and
    /// goes on from what it holds.
    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The iterations an interrupted run had completed when this one went on
    /// from its checkpoint.
    pub fn resumed_from(&self) -> Option<usize> {
        self.resumed.lock().ok().and_then(|r| r.map(|(i, _)| i))
    }

    /// The estimator's state from the checkpoint, with the training's counters
    /// set as they were; `None` when there is none (or it cannot be read: the
    /// training starts afresh, and says why in the log).
    pub(crate) async fn resume<S: DeserializeOwned>(&self) -> Option<S> {
        let checkpoint = self.checkpoint.as_ref()?;
        let bytes = match checkpoint.load().await {
            Ok(bytes) => bytes?,
            Err(e) => {
                log::warn!("training starts afresh: {e}");
                return None;
            }
        };
        let saved: Saved<S> = match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                log::warn!("training starts afresh: its checkpoint cannot be read ({e})");
                return None;
            }
        };
        self.passes.store(saved.passes, Ordering::Relaxed);
        self.rows.store(saved.rows, Ordering::Relaxed);
        self.iterations.store(saved.iterations, Ordering::Relaxed);
        if let Ok(mut rounds) = self.rounds.lock() {
            *rounds = saved.rounds;
        }
        if let Ok(mut resumed) = self.resumed.lock() {
            *resumed = Some((saved.iterations, saved.elapsed_seconds));
        }
        log::info!("training goes on from iteration {}", saved.iterations);
        Some(saved.state)
    }

    /// Keeps `state`, the estimator's between two iterations, with the
    /// training's counters (written in the background). A checkpoint that
    /// cannot be written costs only the chance to resume (said in the log).
    pub(crate) async fn checkpoint<S: Serialize>(&self, state: S) {
        let Some(checkpoint) = &self.checkpoint else {
            return;
        };
        let saved = Saved {
            state,
            iterations: self.iterations.load(Ordering::Relaxed),
            passes: self.passes(),
            rows: self.rows(),
            elapsed_seconds: self.elapsed_seconds(),
            rounds: self.rounds(),
        };
        match serde_json::to_vec(&saved) {
            Ok(bytes) => checkpoint.save(bytes).await,
            Err(e) => log::warn!("training state not kept: {e}"),
        }
    }

    /// The label column's name, when supervised.
    pub fn label_name(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The feature columns' names.
    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    /// Every training row, read once (with the training's retry rule) and
    /// brought to this process: for training that keeps per-row state between
    /// rounds (trees).
    pub async fn collect(&self) -> Result<Vec<RecordBatch>> {
        let started = Instant::now();
        let batches = self
            .retry
            .collect("reading the training rows", || Ok(self.frame()))
            .await?;
        self.passes.fetch_add(1, Ordering::Relaxed);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let seconds = started.elapsed().as_secs_f64();
        self.note_work(vec![(
            WorkKind::Keep,
            vec![WorkReport {
                executor: "client".into(),
                rows: rows as u64,
                device: "cpu".into(),
                seconds,
                round_trip_seconds: seconds,
                bytes_kept: batches
                    .iter()
                    .map(|b| b.get_array_memory_size() as u64)
                    .sum(),
                ..WorkReport::default()
            }],
        )]);
        Ok(batches)
    }

    /// Features per row, vectors flattened.
    pub fn width(&self) -> usize {
        self.features.iter().map(|f| f.width).sum()
    }

    /// Rows of training data, as the last round counted them.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Records the row count a round saw.
    pub fn note_rows(&self, rows: f64) {
        self.rows.store(rows as u64, Ordering::Relaxed);
    }

    /// Passes over the data so far.
    pub fn passes(&self) -> usize {
        self.passes.load(Ordering::Relaxed)
    }

    /// Every round's work so far, per executor.
    pub fn rounds(&self) -> Vec<RoundInfo> {
        self.rounds.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Numbers and keeps `pieces` of work, which belong to the next iteration.
    fn note_work(&self, pieces: Vec<(WorkKind, Vec<WorkReport>)>) {
        let iteration = self.iterations.load(Ordering::Relaxed) + 1;
        let Ok(mut rounds) = self.rounds.lock() else {
            return;
        };
        for (kind, reports) in pieces {
            let round = rounds.last().map_or(0, |r| r.round) + 1;
            rounds.extend(reports.into_iter().map(|work| RoundInfo {
                round,
                iteration,
                kind,
                work,
            }));
        }
    }

    /// Notes the work of kept rows since the last call.
    pub fn note_kept_work(&self) {
        if let Some(kept) = &self.kept {
            self.note_work(kept.take_reports());
        }
    }

    /// Seconds since training started (an interrupted run's included).
    pub fn elapsed_seconds(&self) -> f64 {
        let before = self
            .resumed
            .lock()
            .ok()
            .and_then(|r| r.map(|(_, seconds)| seconds))
            .unwrap_or(0.0);
        before + self.started.elapsed().as_secs_f64()
    }

    fn frame(&self) -> DataFrame {
        let mut state = training_state(&self.ctx);
        if let Some(rows) = self.batch_rows {
            let execution = &mut state.config_mut().options_mut().execution;
            if let Ok(size) = ConfigNonZeroUsize::try_new(execution.batch_size.get().max(rows)) {
                execution.batch_size = size;
            }
        }
        DataFrame::new(state, self.plan.clone())
    }

    fn feature_exprs(&self) -> Vec<Expr> {
        self.features
            .iter()
            .map(|f| Expr::Column(Column::from_name(&f.name)))
            .collect()
    }

    /// The query reading every training row.
    pub fn rows_frame(&self) -> DataFrame {
        self.frame()
    }

    /// The aggregate query of one round computing `spec`, and the number of
    /// statistics it returns.
    pub fn round_frame(&self, spec: RoundSpec) -> Result<(DataFrame, usize)> {
        let function = self.round_function(spec);
        let expected = function.stats_len();
        Ok((self.function_frame(function)?, expected))
    }

    /// The aggregate query running `function` over every row.
    fn function_frame(&self, function: TrainRoundFunc) -> Result<DataFrame> {
        let mut args = Vec::new();
        if let Some(label) = function.label() {
            args.push(Expr::Column(Column::from_name(label)));
        }
        args.extend(self.feature_exprs());
        let round = AggregateUDF::from(function).call(args).alias("stats");
        self.frame().aggregate(vec![], vec![round])
    }

    /// The function computing `spec` over this data's label and features.
    fn round_function(&self, spec: RoundSpec) -> TrainRoundFunc {
        let names = self.features.iter().map(|f| f.name.clone()).collect();
        let label = match spec {
            RoundSpec::KMeans { .. } => None,
            _ => self.label.clone(),
        };
        // Kept rows are read again every round, whatever `resident` says.
        let resident = self.resident || self.kept.is_some();
        TrainRoundFunc::new(spec, names, label, self.width()).with_device(self.device, resident)
    }

    /// Runs one round: a distributed aggregate of `spec`'s statistics over every
    /// row. A round whose job failed runs again as the training's [`Retry`]
    /// says: it only reads, so the model is the same as without the fault.
    pub async fn round(&self, spec: RoundSpec) -> Result<Vec<f64>> {
        if let Some(kept) = &self.kept {
            let function = self.round_function(spec);
            let stats = kept.round(&function).await;
            self.note_kept_work();
            let stats = stats?;
            self.passes.fetch_add(1, Ordering::Relaxed);
            if stats.len() != function.stats_len() {
                return exec_err!(
                    "a training round returned {} statistics, expected {}",
                    stats.len(),
                    function.stats_len()
                );
            }
            return Ok(stats);
        }
        let function = self.round_function(spec);
        let expected = function.stats_len();
        let started = Instant::now();
        let batches = self
            .retry
            .collect("the training round", || {
                // Its copies share its tally (a run again after a lost executor
                // counts twice: that happens only on a cluster without kept rows).
                self.function_frame(function.clone())
            })
            .await?;
        self.passes.fetch_add(1, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let tally = function.tally();
        self.note_work(vec![(
            WorkKind::Round,
            vec![WorkReport {
                executor: "embedded".into(),
                partitions: tally.partitions() as usize,
                rows: tally.rows(),
                device: tally.device().into(),
                seconds,
                round_trip_seconds: seconds,
                ..WorkReport::default()
            }],
        )]);
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return exec_err!("a training round returned no rows");
        };
        let stats = stats_values(&ScalarValue::try_from_array(batch.column(0), 0)?)?;
        if stats.len() != expected {
            return exec_err!(
                "a training round returned {} statistics, expected {expected}",
                stats.len()
            );
        }
        Ok(stats)
    }

    /// The feature vectors of up to `n` rows chosen by a seeded hash of each row:
    /// the same rows on any partitioning.
    pub async fn sample_rows(&self, seed: u64, n: usize) -> Result<Vec<Vec<f64>>> {
        let names: Vec<String> = self.features.iter().map(|f| f.name.clone()).collect();
        if let Some(kept) = &self.kept {
            let rows = kept.sample_rows(seed, &names, n).await;
            self.note_kept_work();
            let rows = rows?;
            self.passes.fetch_add(1, Ordering::Relaxed);
            return Ok(rows);
        }
        let mut hash_args = vec![lit(seed as i64)];
        hash_args.extend(self.feature_exprs());
        let hash = ScalarUDF::from(RowHashFunc::new())
            .call(hash_args)
            .alias("__ember_hash");
        let mut select = vec![hash];
        select.extend(self.feature_exprs());
        let order = SortExpr::new(Expr::Column(Column::from_name("__ember_hash")), true, false);
        let batches = self
            .frame()
            .select(select)?
            .sort(vec![order])?
            .limit(0, Some(n))?
            .collect()
            .await?;
        self.passes.fetch_add(1, Ordering::Relaxed);
        let mut rows = Vec::new();
        for batch in batches {
            rows.extend(feature_rows(&batch.columns()[1..], &names)?);
        }
        Ok(rows)
    }
}

/// Appends an iteration to `info` and tells `progress`.
pub(crate) fn record(
    data: &TrainingData,
    progress: &dyn Progress,
    model_type: &str,
    max: usize,
    info: &mut Vec<super::Iteration>,
    loss: f64,
) {
    record_with_eval(data, progress, model_type, max, info, loss, None);
}

/// [`record`], with the loss on the held-out rows when training measures it.
pub(crate) fn record_with_eval(
    data: &TrainingData,
    progress: &dyn Progress,
    model_type: &str,
    max: usize,
    info: &mut Vec<super::Iteration>,
    loss: f64,
    eval_loss: Option<f64>,
) {
    let iteration = info.len() + 1;
    data.iterations.store(iteration, Ordering::Relaxed);
    info.push(super::Iteration {
        iteration,
        loss,
        elapsed_seconds: data.elapsed_seconds(),
        eval_loss,
    });
    progress.iteration(model_type, iteration, max, loss);
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{ParquetReadOptions, SessionConfig};
    use futures::StreamExt;

    use super::*;

    /// Rows each partition of `table`'s scan yields when partition 1 is read to
    /// its end before partition 0 starts.
    async fn rows_when_partition_1_runs_first(state: SessionState) -> Result<Vec<usize>> {
        let ctx = SessionContext::new_with_state(state);
        let plan = ctx.table("t").await?.create_physical_plan().await?;
        assert_eq!(plan.properties().output_partitioning().partition_count(), 2);
        let task = ctx.task_ctx();
        let mut streams = [plan.execute(0, task.clone())?, plan.execute(1, task)?];
        let mut rows = vec![0, 0];
        for partition in [1, 0] {
            while let Some(batch) = streams[partition].next().await {
                rows[partition] += batch?.num_rows();
            }
        }
        Ok(rows)
    }

    #[tokio::test]
    async fn a_training_scan_partition_reads_only_its_own_files() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        for (file, rows) in [(0, 10), (1, 10), (2, 10), (3, 10)] {
            ctx.sql(&format!("select * from unnest(range({rows})) as t(x)"))
                .await?
                .write_parquet(
                    dir.path()
                        .join(format!("part-{file}.parquet"))
                        .to_str()
                        .unwrap(),
                    Default::default(),
                    None,
                )
                .await?;
        }
        ctx.register_parquet(
            "t",
            dir.path().to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await?;
        // Each partition owns two files. A plain query lets partition 1 take
        // partition 0's files when it runs first: timing decides the split.
        let plain = rows_when_partition_1_runs_first(ctx.state()).await?;
        assert_ne!(
            plain,
            vec![20, 20],
            "work stealing is what this test guards against"
        );
        let training = rows_when_partition_1_runs_first(training_state(&ctx)).await?;
        assert_eq!(training, vec![20, 20]);
        Ok(())
    }
}
