//! Helpers shared by the `ember` binary's tests: running it, reading its output,
//! and `ember cluster up` as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod s3;

pub fn ember() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ember"));
    command.env_remove("RUST_LOG");
    command
}

/// `ember` with `args`, its stdin, stdout and stderr piped: a prompt a test types into.
pub fn spawn_piped(args: &[&str]) -> Child {
    ember()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ember")
}

pub fn run(args: &[&str]) -> Output {
    ember().args(args).output().expect("run ember")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failing command: non-zero exit, exactly one line on stderr that starts with
/// `error:` and contains `expected`, no panic.
pub fn assert_clear_error(output: &Output, expected: &str) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "should fail; stdout: {}",
        stdout(output)
    );
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(expected), "'{expected}' not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

pub struct ClusterUp {
    pub child: Child,
    pub url: String,
    /// The scheduler's, then each executor's, in order.
    pub pids: Vec<i32>,
}

impl ClusterUp {
    /// `ember cluster up` with two executors of two slots.
    pub fn start(work_dir: &Path, env: &[(&'static str, String)]) -> Self {
        Self::start_n(work_dir, 2, env)
    }

    /// `ember cluster up` with `executors` executors of two slots.
    pub fn start_n(work_dir: &Path, executors: usize, env: &[(&'static str, String)]) -> Self {
        Self::start_with(work_dir, executors, &[], env)
    }

    /// `ember cluster up` with `executors` executors of two slots and `extra` arguments.
    pub fn start_with(
        work_dir: &Path,
        executors: usize,
        extra: &[&str],
        env: &[(&'static str, String)],
    ) -> Self {
        let executors = executors.to_string();
        let mut child = ember()
            .args([
                "cluster",
                "up",
                "--executors",
                &executors,
                "--port",
                "0",
                "--slots",
                "2",
                "--work-dir",
            ])
            .arg(work_dir)
            .args(extra)
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cluster");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let mut pids = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ember cluster is up: ") {
                url = Some(rest.trim().to_string());
            }
            if let Some(pid) = line
                .split("(pid ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
            {
                pids.push(pid.parse().unwrap());
            }
            if line.starts_with("Submit with") {
                break;
            }
        }
        // Keep draining stdout so the cluster never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("cluster up printed no URL");
        Self { child, url, pids }
    }

    pub fn sql(&self, args: &[&str]) -> Output {
        let mut all = vec!["sql", "--master", self.url.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Ctrl-C, as a user stops it; waits up to 30 s for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child; no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // A process of the cluster that outlived it (its scheduler was
                // killed under it) would go on calling that scheduler's port,
                // which a later test's cluster may be given: it goes too.
                for &pid in &self.pids {
                    if alive(pid) {
                        // SAFETY: kill(2) on a process this test started; no
                        // memory effects.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cluster up did not stop within 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A test that fails before [`ClusterUp::stop`] must not leave the cluster
/// running: its processes are killed.
impl Drop for ClusterUp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            for &pid in &self.pids {
                // SAFETY: kill(2) on processes this test started and that are
                // still running (their parent has not exited); no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The local addresses `pid` listens on over TCP, as `IP:PORT` (from /proc).
pub fn listening_addresses(pid: i32) -> Vec<String> {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_string();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut addresses = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if fields.len() > 9 && fields[3] == "0A" && sockets.iter().any(|s| s == fields[9]) {
                addresses.push(decode_proc_address(fields[1]));
            }
        }
    }
    addresses
}

/// `0100007F:1F90` → `127.0.0.1:8080` (IPv4, little-endian words); IPv6 as hex.
fn decode_proc_address(text: &str) -> String {
    let (ip, port) = text.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    if ip.len() == 8 {
        let n = u32::from_str_radix(ip, 16).unwrap();
        let [a, b, c, d] = n.to_le_bytes();
        format!("{a}.{b}.{c}.{d}:{port}")
    } else {
        format!("[{ip}]:{port}")
    }
}

/// The coefficients of model `clf` in `store`, read with DESCRIBE MODEL (through
/// the cluster at `master` when given).
pub fn clf_coefficients(store: &Path, master: Option<&str>) -> Vec<f64> {
    let mut args = vec![
        "sql",
        "--model-store",
        store.to_str().unwrap(),
        "-c",
        "describe model clf",
        "--format",
        "json",
    ];
    if let Some(url) = master {
        args.extend(["--master", url]);
    }
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("\"coefficients\""))
        .unwrap();
    let inside = line.split('[').nth(1).unwrap().split(']').next().unwrap();
    inside
        .split(',')
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

/// Asserts that two models' parameters agree within 1e-9 (relative; partial sums
/// merge in another order on a cluster).
pub fn assert_same_model(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= 1e-9 * e.abs().max(1.0),
            "{actual:?} vs {expected:?}"
        );
    }
}

/// `ember sql` against `cluster`, still running, with its output collected.
pub struct Client {
    pub child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Client {
    pub fn start(cluster: &ClusterUp, args: &[&str]) -> Self {
        let mut child = ember()
            .args(["sql", "--master", &cluster.url])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ember sql");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        Self {
            child,
            stdout: std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                buf
            }),
            stderr: std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                buf
            }),
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn finish(mut self, bound: Duration) -> Output {
        let deadline = Instant::now() + bound;
        while self.running() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ember sql did not finish within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Output {
            status: self.child.wait().unwrap(),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}
