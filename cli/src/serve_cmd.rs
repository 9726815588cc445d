//! `ember serve`: the Flight SQL server in the foreground until Ctrl-C or SIGTERM.

use datafusion::common::{DataFusionError, Result};
use ember_server::{ServeOptions, TlsFiles, serve};

use crate::args::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<()> {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
    let options = ServeOptions {
        master: args.master,
        bind: args.bind,
        port: args.port,
        data_dir: args.data_dir,
        model_store: args.model_store,
        auth_token_file: args.auth_token_file,
        tls,
        insecure: args.insecure,
        max_connections: args.max_connections,
        cluster_token_file: args.secret.cluster_token_file,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        log::info!("stopping: no new calls; open results are cut off");
    };
    // Scripts and tests wait for this line (and read the port from it).
    let ready = |address| println!("ember serve: listening on {scheme}://{address}");
    serve(options, ready, shutdown)
        .await
        .map_err(|e| DataFusionError::Execution(e.to_string()))
}
