//! The `ember` command. Parses arguments, builds the runtime, calls the library,
//! and turns any error into one line on stderr and a non-zero exit code.

mod args;
mod cluster_cmd;
mod datagen_cmd;
mod output;
mod progress;
mod repl;
mod serve_cmd;
mod sql_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use datafusion::common::{DataFusionError, Result};
use ember_engine::cluster::{ExecutorOptions, SchedulerOptions};
use ember_engine::errors::{is_broken_pipe, one_line};

use args::{Cli, ClusterCommand, Command, DatagenCommand};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 * 1024 * 1024)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sub_matches = matches.subcommand().map(|(_, m)| m.clone());
    match runtime.block_on(run(cli.command, sub_matches)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): it has all it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Servers log at `info`; commands a person runs stay quiet except for their
/// results and errors. `RUST_LOG` overrides both. Times to the millisecond:
/// a cluster's stages and tasks come and go within one second.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Scheduler(_) | Command::Executor(_) | Command::Cluster(_) | Command::Serve(_) => {
            "info"
        }
        _ => "off",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis()
        .init();
}

async fn run(command: Command, matches: Option<clap::ArgMatches>) -> Result<()> {
    match command {
        Command::Sql(args) => {
            let sources = match &matches {
                Some(matches) => sql_cmd::ordered_sources(&args, matches),
                None => Vec::new(),
            };
            sql_cmd::run(args, sources).await
        }
        Command::Cluster(args) => match args.command {
            ClusterCommand::Up(args) => cluster_cmd::up(args).await,
        },
        Command::Scheduler(args) => {
            ember_scheduler::run(SchedulerOptions {
                bind: args.bind,
                port: args.port,
                external_host: args.external_host,
                secret: args.secret.resolve()?,
                ..SchedulerOptions::default()
            })
            .await
        }
        Command::Executor(args) => {
            let (host, port) = args.scheduler.rsplit_once(':').ok_or_else(|| {
                DataFusionError::Configuration(format!(
                    "--scheduler must be HOST:PORT, not '{}'",
                    args.scheduler
                ))
            })?;
            let port = port.parse::<u16>().map_err(|_| {
                DataFusionError::Configuration(format!(
                    "bad port in --scheduler '{}'",
                    args.scheduler
                ))
            })?;
            ember_executor::run(ExecutorOptions {
                scheduler_host: host.to_string(),
                scheduler_port: port,
                bind: args.bind,
                port: args.port,
                grpc_port: args.grpc_port,
                external_host: args.external_host,
                slots: args.slots,
                work_dir: args.work_dir,
                training_port: args.training_port,
                training_memory: args.training_memory,
                secret: args.secret.resolve()?,
                ..ExecutorOptions::default()
            })
            .await
        }
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Datagen(args) => match args.command {
            DatagenCommand::Tpch(args) => {
                tokio::task::spawn_blocking(move || datagen_cmd::tpch(args))
                    .await
                    .map_err(|e| {
                        DataFusionError::Execution(format!("data generation failed: {e}"))
                    })?
            }
            DatagenCommand::Classification(args) => {
                tokio::task::spawn_blocking(move || datagen_cmd::classification(args))
                    .await
                    .map_err(|e| {
                        DataFusionError::Execution(format!("data generation failed: {e}"))
                    })?
            }
        },
    }
}
