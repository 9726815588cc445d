//! The `ember scheduler` process: a Ballista scheduler wired with ember's session,
//! running until Ctrl-C or SIGTERM.
//!
//! ```text
//!   ember scheduler --bind 127.0.0.1 --port 50050
//!     └─ ember_engine::cluster::start_scheduler ─ ballista-scheduler (gRPC)
//! ```

use datafusion::common::Result;
use ember_engine::cluster::{SchedulerOptions, start_scheduler};

/// The line the scheduler prints on stdout once it accepts connections; `ember
/// cluster up` waits for it.
pub const LISTENING: &str = "ember scheduler listening on";

/// Starts the scheduler and serves until the process is asked to stop.
pub async fn run(options: SchedulerOptions) -> Result<()> {
    let mut scheduler = start_scheduler(&options).await?;
    println!("{LISTENING} {}", scheduler.url());
    log::info!("scheduler listening on {}", scheduler.address());
    tokio::select! {
        result = scheduler.wait() => result,
        _ = shutdown_signal() => {
            log::info!("scheduler stopping");
            scheduler.stop();
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
