//! An executor's share service: the Flight endpoint where the driver runs
//! rounds over the shares this executor keeps ([`ShareStore`]).
//!
//! Only `do_action` is served (see wire.rs for the actions); the executor's
//! shuffle data stays on Ballista's own Flight service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::hashing::row_hashes;

use crate::cluster::fault::Fault;
use crate::cluster::secret::ClusterSecret;
use ember_ml_ops::kernels::feature_rows;
use ember_ml_ops::models::TrainRoundFunc;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use tonic::{Request, Response, Status, Streaming};

use super::store::{Share, ShareStore};
use super::tree_service::tree_call;
use super::tree_wire::TREE;
use super::wire::{
    self, PartitionStats, RELEASE, ROUND, ReleaseRequest, RoundRequest, SAMPLE, SampleRequest,
    SampledRow, WorkDone,
};
use crate::session::MAX_MESSAGE_BYTES;

/// How often the executor drops trainings whose lease ran out.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// Serves `store` on `listener` until the task is dropped, and frees expired
/// leases meanwhile; to members only when the cluster has a secret.
pub async fn serve_shares(
    listener: tokio::net::TcpListener,
    store: Arc<ShareStore>,
    secret: Option<Arc<ClusterSecret>>,
) -> std::result::Result<(), tonic::transport::Error> {
    let expiry = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_CHECK);
            loop {
                tick.tick().await;
                if store.expire_leases() > 0 {
                    ember_ml_ops::kernels::cuda::release_unused();
                }
            }
        })
    };
    let service = FlightServiceServer::new(ShareService { store })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served =
        ClusterSecret::secure_server(secret.as_ref(), tonic::transport::Server::builder())?
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    expiry.abort();
    served
}

/// Binds the share service's listener on `address`.
pub async fn bind_shares(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        DataFusionError::Execution(format!(
            "cannot listen for training rounds on {address}: {e}"
        ))
    })
}

struct ShareService {
    store: Arc<ShareStore>,
}

/// A failed action as the driver sees it: the message, whole; rows this
/// executor does not hold as `NOT_FOUND`, which the driver takes as a
/// reason to pack them again.
fn status(error: DataFusionError) -> Status {
    match Fault::of(&error) {
        Some(Fault::RowsLost(message)) => Status::not_found(message.clone()),
        None => Status::internal(error.strip_backtrace()),
    }
}

/// `function`'s arguments (the label first when it reads one, then the
/// features) from a kept batch.
fn arguments(batch: &RecordBatch, function: &TrainRoundFunc) -> Result<Vec<ArrayRef>> {
    function
        .label()
        .into_iter()
        .chain(function.features().iter().map(String::as_str))
        .map(|name| column(batch, name))
        .collect()
}

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| {
        DataFusionError::Execution(format!("the kept training rows have no column '{name}'"))
    })
}

/// Runs `work` on each share on the blocking pool, all at once, in partition order.
async fn each_share<T: Send + 'static>(
    shares: Vec<(u32, Arc<Share>)>,
    work: impl Fn(u32, &Share) -> Result<T> + Send + Sync + 'static,
) -> Result<Vec<T>> {
    let work = Arc::new(work);
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|(partition, share)| {
            let work = work.clone();
            tokio::task::spawn_blocking(move || work(partition, &share))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(
            task.await
                .map_err(|e| DataFusionError::External(e.into()))??,
        );
    }
    Ok(out)
}

impl ShareService {
    async fn round(&self, request: RoundRequest) -> Result<Bytes> {
        let started = Instant::now();
        let shares = self.store.shares(&request.training, &request.partitions)?;
        let function = Arc::new(request.function);
        let counted = function.clone();
        let parts = each_share(shares, move |partition, share| {
            let arguments = share
                .batches
                .iter()
                .map(|b| arguments(b, &function))
                .collect::<Result<Vec<_>>>()?;
            let stats = function.stats_over(arguments.iter().map(Vec::as_slice))?;
            Ok(PartitionStats { partition, stats })
        })
        .await?;
        let work = WorkDone {
            seconds: started.elapsed().as_secs_f64(),
            cpu_rows: counted.tally().cpu_rows(),
            gpu_rows: counted.tally().gpu_rows(),
        };
        Ok(wire::with_work(work, wire::encode_stats(&parts)))
    }

    async fn sample(&self, request: SampleRequest) -> Result<Bytes> {
        let started = Instant::now();
        let shares = self.store.shares(&request.training, &request.partitions)?;
        let scanned = shares
            .iter()
            .flat_map(|(_, share)| share.batches.iter())
            .map(|b| b.num_rows() as u64)
            .sum();
        let SampleRequest {
            seed, columns, n, ..
        } = request;
        let per_share = each_share(shares, move |_, share| {
            let mut rows = Vec::new();
            for batch in &share.batches {
                let arrays = columns
                    .iter()
                    .map(|c| column(batch, c))
                    .collect::<Result<Vec<_>>>()?;
                let hashes = row_hashes(seed, &arrays)?;
                let mut order: Vec<usize> = (0..hashes.len()).collect();
                order.sort_by(|a, b| hashes[*a].total_cmp(&hashes[*b]));
                order.truncate(n);
                // Only the chosen rows are flattened.
                let chosen = UInt32Array::from_iter_values(order.iter().map(|&r| r as u32));
                let picked = arrays
                    .iter()
                    .map(|a| take(a.as_ref(), &chosen, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let values = feature_rows(&picked, &columns)?;
                rows.extend(order.into_iter().zip(values).map(|(r, values)| SampledRow {
                    hash: hashes[r],
                    values,
                }));
            }
            Ok(rows)
        })
        .await?;
        let mut rows: Vec<SampledRow> = per_share.into_iter().flatten().collect();
        rows.sort_by(|a, b| a.hash.total_cmp(&b.hash));
        rows.truncate(n);
        let work = WorkDone {
            seconds: started.elapsed().as_secs_f64(),
            cpu_rows: scanned,
            gpu_rows: 0,
        };
        Ok(wire::with_work(work, wire::encode_rows(&rows)))
    }

    fn release(&self, request: ReleaseRequest) -> Bytes {
        let freed = self.store.release(&request.training);
        // The shares' GPU copies, if any, go with them.
        ember_ml_ops::kernels::cuda::release_unused();
        Bytes::from((freed as u64).to_le_bytes().to_vec())
    }

    async fn act(&self, action: Action) -> Result<Bytes> {
        match action.r#type.as_str() {
            ROUND => self.round(wire::from_json(&action.body)?).await,
            SAMPLE => self.sample(wire::from_json(&action.body)?).await,
            RELEASE => Ok(self.release(wire::from_json(&action.body)?)),
            TREE => tree_call(&self.store, wire::from_json(&action.body)?).await,
            other => Err(DataFusionError::Execution(format!(
                "unknown training action '{other}'"
            ))),
        }
    }
}

fn unsupported<T>() -> std::result::Result<T, Status> {
    Err(Status::unimplemented(
        "this is ember's training service: only training actions are served here",
    ))
}

#[tonic::async_trait]
impl FlightService for ShareService {
    type HandshakeStream = BoxStream<'static, std::result::Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, std::result::Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, std::result::Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, std::result::Result<ActionType, Status>>;

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        let body = self.act(request.into_inner()).await.map_err(status)?;
        let result = arrow_flight::Result { body };
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        let actions = [ROUND, SAMPLE, RELEASE, TREE].map(|name| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: String::new(),
            })
        });
        Ok(Response::new(stream::iter(actions).boxed()))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        unsupported()
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        unsupported()
    }

    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        unsupported()
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        unsupported()
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        unsupported()
    }

    async fn do_get(
        &self,
        _: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        unsupported()
    }

    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        unsupported()
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        unsupported()
    }
}
