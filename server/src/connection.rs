//! A client's TCP connection and the state that belongs to it.
//!
//! gRPC has no session, so ember's unit of client state is the connection: an
//! ADBC connection (or any Flight SQL client) holds one. Its SETs, its tables
//! made with CREATE EXTERNAL TABLE, its prepared statements and its pending
//! results live in [`Connection`], which tonic hands to every call made on the
//! connection (its `ConnectInfo`) and which is dropped, state and all, when the
//! connection closes.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use ember_engine::{EmberContext, QueryPlan};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tonic::Request;
use tonic::Status;
use tonic::transport::server::{Connected, TlsConnectInfo};

/// A statement's answer between GetFlightInfo and DoGet.
pub enum Pending {
    /// A query, planned: it runs when its ticket is read.
    Query(QueryPlan),
    /// A statement that ran when it was planned (DDL, SET, the model
    /// statements): its few rows, held until read.
    Rows(SchemaRef, Vec<RecordBatch>),
}

/// A prepared statement: its SQL, its plan when it is a query, and the
/// parameters bound last.
#[derive(Clone)]
pub struct Prepared {
    pub sql: String,
    pub query: Option<QueryPlan>,
    pub parameters: Option<Vec<ScalarValue>>,
}

/// One client connection.
pub struct Connection {
    id: u64,
    /// Within `--max-connections` when it was accepted; calls on a connection
    /// beyond the bound are refused.
    admitted: bool,
    /// The connections admitted and still open, this one among them.
    live: Arc<AtomicUsize>,
    session: OnceCell<EmberContext>,
    next_handle: AtomicU64,
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
}

impl Connection {
    pub fn admitted(&self) -> bool {
        self.admitted
    }

    /// The connection's session, opened by `open` at the first call.
    pub async fn session<F, Fut>(&self, open: F) -> Result<&EmberContext, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EmberContext, Status>>,
    {
        self.session.get_or_try_init(open).await
    }

    /// A handle no other statement of this connection has.
    pub fn new_handle(&self, kind: &str) -> Vec<u8> {
        let n = self.next_handle.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n}", self.id).into_bytes()
    }

    pub fn hold(&self, handle: Vec<u8>, pending: Pending) {
        lock(&self.pending).insert(handle, pending);
    }

    /// Takes the pending answer a ticket names: each is read once.
    pub fn take(&self, handle: &[u8]) -> Result<Pending, Status> {
        lock(&self.pending).remove(handle).ok_or_else(|| {
            Status::not_found(
                "no statement waits under this ticket on this connection (read once, or \
                 asked on another connection)",
            )
        })
    }

    pub fn prepare(&self, handle: Vec<u8>, prepared: Prepared) {
        lock(&self.prepared).insert(handle, prepared);
    }

    pub fn prepared(&self, handle: &[u8]) -> Result<Prepared, Status> {
        lock(&self.prepared)
            .get(handle)
            .cloned()
            .ok_or_else(unknown_prepared)
    }

    /// Binds `parameters` to a prepared statement.
    pub fn bind(&self, handle: &[u8], parameters: Vec<ScalarValue>) -> Result<(), Status> {
        let mut prepared = lock(&self.prepared);
        let statement = prepared.get_mut(handle).ok_or_else(unknown_prepared)?;
        statement.parameters = Some(parameters);
        Ok(())
    }

    pub fn close_prepared(&self, handle: &[u8]) {
        lock(&self.prepared).remove(handle);
    }

    /// The connection a call came on.
    pub fn of<T>(request: &Request<T>) -> Result<Arc<Connection>, Status> {
        let extensions = request.extensions();
        extensions
            .get::<Arc<Connection>>()
            .cloned()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<Arc<Connection>>>()
                    .map(|tls| tls.get_ref().clone())
            })
            .ok_or_else(|| Status::internal("a call without its connection"))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.admitted {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
        log::info!("connection {} closed", self.id);
    }
}

fn unknown_prepared() -> Status {
    Status::not_found("no prepared statement with this handle on this connection")
}

/// A poisoned lock means a call panicked mid-update of a map of handles;
/// the map itself is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TCP stream that carries its [`Connection`] to tonic.
pub struct ClientStream {
    stream: TcpStream,
    connection: Arc<Connection>,
}

impl Connected for ClientStream {
    type ConnectInfo = Arc<Connection>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.connection.clone()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections a listener accepts, each given its [`Connection`]; those
/// beyond `max_connections` open ones are accepted but marked, so their calls
/// get a clear error instead of a refused socket.
pub fn accept(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = io::Result<ClientStream>> {
    let live = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(AtomicU64::new(1));
    futures::stream::unfold(listener, move |listener| {
        let live = live.clone();
        let ids = ids.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        let admitted = live
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                (n < max_connections).then_some(n + 1)
                            })
                            .is_ok();
                        if admitted {
                            log::info!("connection {id} from {peer}");
                        } else {
                            log::warn!(
                                "connection {id} from {peer} refused: {max_connections} open"
                            );
                        }
                        let connection = Arc::new(Connection {
                            id,
                            admitted,
                            live: live.clone(),
                            session: OnceCell::new(),
                            next_handle: AtomicU64::new(1),
                            pending: Mutex::default(),
                            prepared: Mutex::default(),
                        });
                        return Some((Ok(ClientStream { stream, connection }), listener));
                    }
                    // Out of file descriptors and the like: the server goes on
                    // and tries again, rather than stopping for every client.
                    Err(e) => {
                        log::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    })
}
