//! `ember cluster up`: one scheduler and N executors as real OS processes (this
//! same binary, started as `ember scheduler` and `ember executor`), over loopback,
//! in the foreground until Ctrl-C.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use ember_engine::cluster::{advertised_host, parse_bind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::args::ClusterUpArgs;

/// How long a process gets to announce itself before `cluster up` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long processes get to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A process of the cluster.
struct Member {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

/// Runs `ember cluster up`.
pub async fn up(args: ClusterUpArgs) -> Result<()> {
    if args.executors == 0 || args.executors > 256 {
        return Err(config_error(format!(
            "--executors must be 1 to 256, not {}",
            args.executors
        )));
    }
    let ip = parse_bind(&args.bind)?;
    // A bad secret fails here, once, rather than in every process it starts;
    // they read it from the same file, or inherit EMBER_CLUSTER_TOKEN.
    let secret = args.secret.resolve()?;
    let token_file = match &args.secret.cluster_token_file {
        Some(file) => Some(std::path::absolute(file)?),
        None => None,
    };
    let (root, _temp) = match &args.work_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("ember-cluster-")
                .tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| {
        DataFusionError::Execution(format!("cannot create {}: {e}", logs.display()))
    })?;
    let exe = std::env::current_exe()?;

    let mut members: Vec<Member> = Vec::new();
    let mut executor_dirs: Vec<PathBuf> = Vec::new();
    let result = async {
        let secret_args: Vec<String> = match &token_file {
            Some(file) => vec!["--cluster-token-file".into(), file.display().to_string()],
            None => Vec::new(),
        };
        let mut scheduler_args = vec![
            "scheduler".into(),
            "--bind".into(),
            args.bind.clone(),
            "--port".into(),
            args.port.to_string(),
        ];
        scheduler_args.extend(secret_args.iter().cloned());
        let (member, line) = spawn(
            &exe,
            "scheduler",
            &scheduler_args,
            &logs,
            ember_scheduler::LISTENING,
        )
        .await?;
        members.push(member);
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("df://"))
            .ok_or_else(|| {
                DataFusionError::Execution(format!("scheduler announced no URL: {line}"))
            })?
            .to_string();
        let scheduler_port = url.rsplit(':').next().unwrap_or_default().to_string();
        let scheduler = format!("{}:{scheduler_port}", advertised_host(ip));

        let mut devices = Vec::new();
        for i in 1..=args.executors {
            let dir = root.join(format!("executor-{i}"));
            executor_dirs.push(dir.clone());
            let mut executor_args = vec![
                "executor".into(),
                "--scheduler".into(),
                scheduler.clone(),
                "--bind".into(),
                args.bind.clone(),
                "--port".into(),
                "0".into(),
                "--slots".into(),
                args.slots.to_string(),
                "--work-dir".into(),
                dir.display().to_string(),
            ];
            if let Some(bytes) = args.training_memory {
                executor_args.extend(["--training-memory".into(), bytes.to_string()]);
            }
            executor_args.extend(secret_args.iter().cloned());
            let (member, line) = spawn(
                &exe,
                &format!("executor-{i}"),
                &executor_args,
                &logs,
                ember_executor::READY,
            )
            .await?;
            log::info!("{line}");
            // The ready line ends "(scheduler ...; GPU: ...)" or "(...; no GPU (why))".
            let device = line
                .split_once("; ")
                .map(|(_, rest)| rest.strip_suffix(')').unwrap_or(rest).to_string())
                .unwrap_or_default();
            devices.push(device);
            members.push(member);
        }
        println!("ember cluster is up: {url}");
        if secret.is_some() {
            println!("  every channel is TLS between holders of the cluster secret");
        }
        println!(
            "  scheduler (pid {}) and {} executors:",
            pid(&members[0]),
            args.executors
        );
        for (member, device) in members[1..].iter().zip(&devices) {
            println!("    {} (pid {}): {device}", member.name, pid(member));
        }
        println!("  logs: {}", logs.display());
        println!("Submit with: ember sql --master {url} ...   Ctrl-C stops the cluster.");
        watch(&mut members).await
    }
    .await;

    stop_all(&mut members).await;
    for dir in &executor_dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    if result.is_ok() {
        eprintln!("ember cluster stopped");
    }
    result
}

fn config_error(message: String) -> DataFusionError {
    DataFusionError::Configuration(message)
}

fn pid(member: &Member) -> String {
    member
        .child
        .id()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "?".into())
}

/// Starts `ember <args>` with stderr going to `logs/<name>.log`, and waits for
/// the line starting with `announce` on its stdout.
async fn spawn(
    exe: &Path,
    name: &str,
    args: &[String],
    logs: &Path,
    announce: &str,
) -> Result<(Member, String)> {
    let log = logs.join(format!("{name}.log"));
    // Appending, so that the stdout lines copied in below are not written over.
    let stderr = File::create(&log)
        .and_then(|_| std::fs::OpenOptions::new().append(true).open(&log))
        .map_err(|e| DataFusionError::Execution(format!("cannot create {}: {e}", log.display())))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .kill_on_drop(true);
    // If `cluster up` dies without stopping its processes, the kernel stops them.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| DataFusionError::Execution(format!("cannot start {name}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DataFusionError::Execution(format!("{name} has no stdout")))?;

    // Read stdout for the whole life of the process (so it never blocks on a full
    // pipe), copying it into the log and handing over the announcement.
    let (announced_tx, announced_rx) = oneshot::channel();
    let announce = announce.to_string();
    let log_copy = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut announced_tx = Some(announced_tx);
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&log_copy)
            .await
            .ok();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with(&announce)
                && let Some(tx) = announced_tx.take()
            {
                let _ = tx.send(line.clone());
            }
            if let Some(file) = file.as_mut() {
                let _ = file.write_all(format!("{line}\n").as_bytes()).await;
            }
        }
    });

    let mut member = Member {
        name: name.to_string(),
        child,
        log,
        exited: None,
    };
    match tokio::time::timeout(START_TIMEOUT, announced_rx).await {
        Ok(Ok(line)) => Ok((member, line)),
        Ok(Err(_)) => {
            // stdout closed without the announcement: the process failed to start.
            let status = tokio::time::timeout(Duration::from_secs(5), member.child.wait()).await;
            member.exited = status.ok().and_then(|s| s.ok());
            Err(DataFusionError::Execution(format!(
                "{name} failed to start: {}",
                last_error_line(&member.log)
            )))
        }
        Err(_) => {
            let _ = member.child.start_kill();
            Err(DataFusionError::Execution(format!(
                "{name} did not start within {}s; see {}",
                START_TIMEOUT.as_secs(),
                member.log.display()
            )))
        }
    }
}

/// The last line of a process's log that reads like an error, for messages.
fn last_error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.contains("Error") || l.contains("error"))
        .or(lines.last())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| format!("no output; see {}", log.display()))
}

/// Waits for Ctrl-C or SIGTERM, reporting processes that exit on their own. The
/// cluster keeps running without a lost executor; without its scheduler it stops.
async fn watch(members: &mut [Member]) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Both listeners live for the whole loop: one made anew each turn (as
    // `ctrl_c()` is) misses a signal that comes between two turns, and the
    // cluster then runs on after Ctrl-C.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (index, member) in members.iter_mut().enumerate() {
            if member.exited.is_some() {
                continue;
            }
            if let Ok(Some(status)) = member.child.try_wait() {
                member.exited = Some(status);
                eprintln!(
                    "{} exited ({status}); see {}",
                    member.name,
                    member.log.display()
                );
                if index == 0 {
                    return Err(DataFusionError::Execution(format!(
                        "the scheduler exited ({status}): {}",
                        last_error_line(&member.log)
                    )));
                }
            }
        }
    }
}

/// SIGTERM to every live process (executors first), then SIGKILL to any still
/// running [`STOP_TIMEOUT`] after the signal: one deadline for all of them, so
/// stopping never takes longer than that, however many processes hang.
async fn stop_all(members: &mut [Member]) {
    for member in members.iter_mut().rev() {
        if member.exited.is_none()
            && let Some(pid) = member.child.id()
        {
            // SAFETY: kill(2) on a pid of our own child; it has no memory effects.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for member in members.iter_mut().rev() {
        if member.exited.is_some() {
            continue;
        }
        match tokio::time::timeout_at(deadline, member.child.wait()).await {
            Ok(status) => member.exited = status.ok(),
            Err(_) => {
                let _ = member.child.kill().await;
            }
        }
    }
}
