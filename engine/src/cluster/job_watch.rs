//! A job whose client goes away is cancelled.
//!
//! Ballista's client submits a query with `ExecuteQueryPush` and keeps the
//! response stream of job statuses open until the job ends. Ballista's scheduler
//! does nothing when that stream is dropped: a killed `ember sql`, a Ctrl-C or a
//! lost connection left the job running on the executors, and the next queries
//! waited behind it. [`WatchingScheduler`] serves Ballista's scheduler API
//! unchanged except that the status stream carries a guard: dropped before the job
//! ended, it cancels the job.
//!
//! Cancelling is repeated until the job's status is final, because Ballista ignores
//! a cancel that arrives while the job is still being planned (it has no execution
//! graph yet) and would then run it. Once cancelled, the job's shuffle files are
//! removed again a little later, for tasks that an executor had accepted but not
//! yet started when the cancel came and that wrote their output afterwards.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{
    CancelJobParams, CancelJobResult, CleanJobDataParams, CleanJobDataResult,
    CreateUpdateSessionParams, CreateUpdateSessionResult, ExecuteQueryParams, ExecuteQueryResult,
    ExecutorRegistration, ExecutorStoppedParams, ExecutorStoppedResult, GetJobMetricsParams,
    GetJobMetricsResult, GetJobStatusParams, GetJobStatusResult, HeartBeatParams, HeartBeatResult,
    PollWorkParams, PollWorkResult, RegisterExecutorParams, RegisterExecutorResult,
    RemoveSessionParams, RemoveSessionResult, UpdateTaskStatusParams, UpdateTaskStatusResult,
    job_status,
};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::{FutureExt, Stream, StreamExt};
use tonic::{Request, Response, Status};

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;
type StatusStream = Pin<Box<dyn Stream<Item = Result<GetJobStatusResult, Status>> + Send>>;

/// How long after a cancel the job's shuffle files are removed a second time.
const SECOND_CLEAN_UP: Duration = Duration::from_secs(3);
/// How long a job the scheduler does not know yet is asked to stop.
const UNKNOWN_PATIENCE: Duration = Duration::from_secs(2);
/// How long to keep asking a job that is still being planned to stop.
const CANCEL_PATIENCE: Duration = Duration::from_secs(600);

/// Ballista's scheduler service, with jobs tied to their client's connection.
#[derive(Clone)]
pub struct WatchingScheduler {
    inner: Arc<Scheduler>,
    tasks_at_flight_port: bool,
}

impl WatchingScheduler {
    pub fn new(inner: Scheduler) -> Self {
        Self {
            inner: Arc::new(inner),
            tasks_at_flight_port: false,
        }
    }

    /// Pushes tasks to each executor's Flight port instead of the task port it
    /// registers: with a cluster secret, Ballista's task service listens on
    /// loopback only, reached through the executor's TLS port (executor.rs).
    pub fn with_tasks_at_flight_port(mut self, yes: bool) -> Self {
        self.tasks_at_flight_port = yes;
        self
    }

    fn route_tasks(&self, metadata: Option<&mut ExecutorRegistration>) {
        if self.tasks_at_flight_port
            && let Some(metadata) = metadata
        {
            metadata.grpc_port = metadata.port;
        }
    }
}

#[tonic::async_trait]
impl SchedulerGrpc for WatchingScheduler {
    type ExecuteQueryPushStream = WatchedJob;

    async fn execute_query_push(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<WatchedJob>, Status> {
        let response = SchedulerGrpc::execute_query_push(self.inner.as_ref(), request).await?;
        let scheduler = self.inner.clone();
        Ok(response.map(|statuses| WatchedJob::new(Box::pin(statuses), scheduler)))
    }

    async fn poll_work(
        &self,
        request: Request<PollWorkParams>,
    ) -> Result<Response<PollWorkResult>, Status> {
        SchedulerGrpc::poll_work(self.inner.as_ref(), request).await
    }

    async fn register_executor(
        &self,
        mut request: Request<RegisterExecutorParams>,
    ) -> Result<Response<RegisterExecutorResult>, Status> {
        self.route_tasks(request.get_mut().metadata.as_mut());
        SchedulerGrpc::register_executor(self.inner.as_ref(), request).await
    }

    async fn heart_beat_from_executor(
        &self,
        mut request: Request<HeartBeatParams>,
    ) -> Result<Response<HeartBeatResult>, Status> {
        self.route_tasks(request.get_mut().metadata.as_mut());
        SchedulerGrpc::heart_beat_from_executor(self.inner.as_ref(), request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Result<Response<UpdateTaskStatusResult>, Status> {
        SchedulerGrpc::update_task_status(self.inner.as_ref(), request).await
    }

    async fn create_update_session(
        &self,
        request: Request<CreateUpdateSessionParams>,
    ) -> Result<Response<CreateUpdateSessionResult>, Status> {
        SchedulerGrpc::create_update_session(self.inner.as_ref(), request).await
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionParams>,
    ) -> Result<Response<RemoveSessionResult>, Status> {
        SchedulerGrpc::remove_session(self.inner.as_ref(), request).await
    }

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<ExecuteQueryResult>, Status> {
        SchedulerGrpc::execute_query(self.inner.as_ref(), request).await
    }

    async fn get_job_status(
        &self,
        request: Request<GetJobStatusParams>,
    ) -> Result<Response<GetJobStatusResult>, Status> {
        SchedulerGrpc::get_job_status(self.inner.as_ref(), request).await
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsParams>,
    ) -> Result<Response<GetJobMetricsResult>, Status> {
        SchedulerGrpc::get_job_metrics(self.inner.as_ref(), request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Result<Response<ExecutorStoppedResult>, Status> {
        SchedulerGrpc::executor_stopped(self.inner.as_ref(), request).await
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobParams>,
    ) -> Result<Response<CancelJobResult>, Status> {
        SchedulerGrpc::cancel_job(self.inner.as_ref(), request).await
    }

    async fn clean_job_data(
        &self,
        request: Request<CleanJobDataParams>,
    ) -> Result<Response<CleanJobDataResult>, Status> {
        SchedulerGrpc::clean_job_data(self.inner.as_ref(), request).await
    }
}

/// A job's status stream that cancels the job when dropped before it ended.
pub struct WatchedJob {
    statuses: StatusStream,
    scheduler: Arc<Scheduler>,
    job_id: Option<String>,
    ended: bool,
}

impl WatchedJob {
    fn new(statuses: StatusStream, scheduler: Arc<Scheduler>) -> Self {
        Self {
            statuses,
            scheduler,
            job_id: None,
            ended: false,
        }
    }

    fn observe(&mut self, item: &Option<Result<GetJobStatusResult, Status>>) {
        match item {
            Some(Ok(result)) => {
                if let Some(status) = &result.status {
                    if !status.job_id.is_empty() {
                        self.job_id = Some(status.job_id.clone());
                    }
                    self.ended |= is_final(status.status.as_ref());
                }
            }
            // The scheduler closed the stream: the job is over either way.
            None => self.ended = true,
            Some(Err(_)) => {}
        }
    }
}

impl Stream for WatchedJob {
    type Item = Result<GetJobStatusResult, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.statuses.poll_next_unpin(cx));
        self.observe(&item);
        Poll::Ready(item)
    }
}

impl Drop for WatchedJob {
    fn drop(&mut self) {
        // The client may have gone before the first status was sent to it: the
        // job id is then still in the stream.
        while !self.ended && self.job_id.is_none() {
            match self.statuses.next().now_or_never() {
                Some(item) => self.observe(&item),
                None => break,
            }
        }
        if self.ended {
            return;
        }
        let Some(job_id) = self.job_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        log::info!("client of job {job_id} went away: cancelling it");
        runtime.spawn(cancel_until_final(self.scheduler.clone(), job_id));
    }
}

fn is_final(status: Option<&job_status::Status>) -> bool {
    matches!(
        status,
        Some(job_status::Status::Failed(_) | job_status::Status::Successful(_))
    )
}

/// Cancels `job_id` and repeats until its status is final, then removes its
/// shuffle files once more.
async fn cancel_until_final(scheduler: Arc<Scheduler>, job_id: String) {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        if let Err(e) = scheduler.cancel_job(job_id.clone().into()).await {
            log::warn!("cannot cancel job {job_id}: {e}");
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        let status = scheduler
            .state
            .task_manager
            .get_job_status(&job_id.clone().into())
            .await;
        match status {
            Ok(Some(status)) if !is_final(status.status.as_ref()) => {}
            // Not known yet (its queueing is still on the way) or already
            // removed by the cancel: ask again for a moment before believing
            // the second.
            Ok(None) if started.elapsed() < UNKNOWN_PATIENCE => {}
            _ => break,
        }
        if started.elapsed() > CANCEL_PATIENCE {
            log::warn!("job {job_id} did not stop within {CANCEL_PATIENCE:?} of its cancel");
            return;
        }
    }
    tokio::time::sleep(SECOND_CLEAN_UP).await;
    let request = Request::new(CleanJobDataParams {
        job_id: job_id.clone(),
        remove_stage_ids: Vec::new(),
    });
    if let Err(e) = SchedulerGrpc::clean_job_data(scheduler.as_ref(), request).await {
        log::warn!("cannot remove the shuffle files of cancelled job {job_id}: {e}");
    }
}
