//! The `ember executor` process: a Ballista executor wired with ember's functions,
//! settings, codecs and object stores, running until Ctrl-C or SIGTERM.
//!
//! ```text
//!   ember executor --scheduler 127.0.0.1:50050 --port 0 --slots 2
//!     └─ ember_engine::cluster::run_executor ─ ballista-executor (Flight)
//! ```

use std::io::Write;

use datafusion::common::Result;
use ember_engine::cluster::{ExecutorOptions, run_executor};

/// The line the executor prints on stdout once registered with its scheduler;
/// `ember cluster up` waits for it.
pub const READY: &str = "ember executor ready on";

/// Runs the executor; it stops itself on Ctrl-C or SIGTERM (Ballista handles both,
/// telling the scheduler it is leaving).
pub async fn run(options: ExecutorOptions) -> Result<()> {
    let scheduler = format!("{}:{}", options.scheduler_host, options.scheduler_port);
    run_executor(options, move |ready| {
        let address = ready.address;
        // Whether this executor's ML kernels can use a GPU, for `ember cluster up`
        // to show (probing also compiles the kernels once, before any task).
        let device = ember_ml_ops::kernels::cuda::describe();
        println!("{READY} {address} (scheduler {scheduler}; {device})");
        let _ = std::io::stdout().flush();
    })
    .await
}
