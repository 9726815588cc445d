//! An executor's one port when the cluster has a secret: Ballista's shuffle
//! Flight service and, forwarded to loopback, Ballista's task service, both
//! behind TLS that only members of the cluster get through.
//!
//! ```text
//!   scheduler ──TLS──> HOST:PORT ─┬─ /arrow.flight.protocol.FlightService/*  (shuffle, results)
//!   executors ──TLS──┘            └─ /ballista.protobuf.ExecutorGrpc/* ──> 127.0.0.1:TASK_PORT
//! ```
//!
//! Ballista 55 builds the task service's server itself, with no hook for TLS
//! or interceptors, so it is bound to loopback and reached through here; the
//! scheduler is told to push tasks to this port (job_watch.rs). On the
//! executor's own machine the loopback task port stays open to local users.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::error::BallistaError;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::flight_service::BallistaFlightService;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

use super::secret::ClusterSecret;
use crate::session::MAX_MESSAGE_BYTES;

/// Serves the member port on `listener` until the task is dropped: Ballista's
/// Flight service over `work_dir`, and task calls forwarded to `task_port` on
/// loopback. Started before the executor registers, since the scheduler dials
/// the port it is told at once (Ballista starts its own Flight server later).
pub(super) fn serve_member_port(
    listener: tokio::net::TcpListener,
    work_dir: String,
    task_port: u16,
    secret: Arc<ClusterSecret>,
) -> JoinHandle<Result<(), BallistaError>> {
    tokio::spawn(async move {
        let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let tasks = TaskForward::new(task_port)?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        create_grpc_server(&GrpcServerConfig::default())
            .tls_config(secret.server_tls())?
            .add_service(flight)
            .add_service(tasks)
            .serve_with_incoming(incoming)
            .await
            .map_err(BallistaError::TonicError)
    })
}

/// What Ballista's executor starts in place of its Flight server when the
/// member port serves Flight: a task that lives until the executor stops.
pub(super) fn served_by_member_port() -> Arc<ArrowFlightServerProvider> {
    Arc::new(|_work_dir, _address, mut shutdown, _config| {
        tokio::spawn(async move {
            shutdown.recv().await;
            Ok(())
        })
    })
}

/// Ballista's task service on loopback, as a route of the member port.
#[derive(Clone)]
struct TaskForward {
    channel: Channel,
}

impl TaskForward {
    fn new(task_port: u16) -> Result<Self, BallistaError> {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{task_port}"))
            .map_err(BallistaError::TonicError)?
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self { channel })
    }
}

impl NamedService for TaskForward {
    const NAME: &'static str = "ballista.protobuf.ExecutorGrpc";
}

impl Service<http::Request<Body>> for TaskForward {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut channel = self.channel.clone();
        Box::pin(async move {
            let answered = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            Ok(answered.await.unwrap_or_else(|e| {
                tonic::Status::unavailable(format!("this executor's task service: {e}")).into_http()
            }))
        })
    }
}
