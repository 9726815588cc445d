//! `ember serve`: ember as an Arrow Flight SQL server, so ADBC, the Flight SQL
//! JDBC driver and other standard clients run its SQL and ML statements,
//! embedded or on a cluster, with bearer tokens and TLS.

mod auth;
mod connection;
mod guard;
mod ingest;
mod service;
mod tables;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::common::DataFusionError;
use ember_engine::cluster::ClusterSecret;
use tonic::Status;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use auth::Tokens;

use crate::guard::Guarded;
use crate::service::EmberFlightSql;
use crate::tables::SharedTables;

/// The Flight SQL port most clients and tools expect.
pub const DEFAULT_PORT: u16 = 32010;

/// How `ember serve` is started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The cluster to run statements on (`df://HOST:PORT`); embedded when `None`.
    pub master: Option<String>,
    pub bind: IpAddr,
    pub port: u16,
    /// Tables every connection sees, and where bulk ingest writes.
    pub data_dir: Option<PathBuf>,
    pub model_store: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    /// Serving on a non-loopback address without TLS and tokens is refused
    /// unless this is set.
    pub insecure: bool,
    pub max_connections: usize,
    /// The cluster secret's file for `master` (default: `EMBER_CLUSTER_TOKEN`).
    pub cluster_token_file: Option<PathBuf>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An error that stops the server from starting, in one line.
#[derive(Debug)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// Serves until `shutdown` completes. `ready` is told the address bound (the
/// port chosen when `port` is 0) once clients can connect.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    refuse_open_door(&options)?;
    if options.max_connections == 0 {
        return Err(ServeError("--max-connections must be at least 1".into()));
    }
    let tokens = match &options.auth_token_file {
        Some(path) => Some(Arc::new(Tokens::open(path).map_err(ServeError)?)),
        None => None,
    };
    let shared = SharedTables::load(options.data_dir.as_deref())
        .await
        .map_err(|e| ServeError(ember_engine::errors::one_line(&e)))?;
    let one_line = |e: DataFusionError| ServeError(ember_engine::errors::one_line(&e));
    let cluster_secret = match &options.master {
        Some(_) => {
            ClusterSecret::resolve(options.cluster_token_file.as_deref()).map_err(one_line)?
        }
        None => None,
    };
    if let Some(master) = &options.master {
        // A wrong --master (or secret) fails now, not at the first client's first call.
        ember_engine::EmberContext::remote_with_secret(master, cluster_secret.clone())
            .await
            .map_err(one_line)?;
    }
    let mut server = Server::builder();
    if let Some(tls) = &options.tls {
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity(tls)?))
            .map_err(|e| ServeError(format!("TLS: {e}")))?;
    }
    let service = EmberFlightSql {
        master: options.master.clone(),
        cluster_secret,
        model_store: options.model_store.clone(),
        shared: Arc::new(shared),
        tokens: tokens.clone(),
    };
    let guarded = Guarded {
        inner: service,
        tokens: tokens.clone(),
        max_connections: options.max_connections,
    };
    let address = SocketAddr::new(options.bind, options.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| ServeError(format!("cannot listen on {address}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError(format!("cannot listen on {address}: {e}")))?;
    if let Some(tokens) = tokens {
        reload_on_sighup(tokens);
    }
    ready(bound);
    let incoming = connection::accept(listener, options.max_connections);
    let flight = FlightServiceServer::new(guarded)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    server
        .add_service(flight)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServeError(format!("the server stopped: {e}")))
}

/// A server others can reach must check who calls and keep its traffic
/// private, unless the user says otherwise.
fn refuse_open_door(options: &ServeOptions) -> Result<(), ServeError> {
    let guarded = options.tls.is_some() && options.auth_token_file.is_some();
    if options.bind.is_loopback() || guarded || options.insecure {
        return Ok(());
    }
    Err(ServeError(format!(
        "refusing to serve on {} without TLS and tokens: anyone who reaches it could run any \
         statement and read any file ember can; give --tls-cert, --tls-key and \
         --auth-token-file, bind 127.0.0.1, or pass --insecure",
        options.bind
    )))
}

fn identity(tls: &TlsFiles) -> Result<Identity, ServeError> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path)
            .map_err(|e| ServeError(format!("cannot read TLS {what} {}: {e}", path.display())))
    };
    Ok(Identity::from_pem(
        read(&tls.cert, "certificate")?,
        read(&tls.key, "key")?,
    ))
}

/// SIGHUP reads the token file again at the next call.
fn reload_on_sighup(tokens: Arc<Tokens>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    log::info!("SIGHUP: reading the token file again");
                    tokens.expire();
                }
            });
        }
        Err(e) => {
            log::warn!("cannot watch SIGHUP ({e}); the token file is still re-read on change")
        }
    }
}

/// A DataFusion error as the gRPC status a client should see, in one line.
pub(crate) fn status(e: DataFusionError) -> Status {
    let message = ember_engine::errors::one_line(&e);
    match e.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(message),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}
