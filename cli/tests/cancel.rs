//! A cluster job stops when its client goes away (RELIABILITY.md, "Cancellation"):
//! killed, or Ctrl-C at the `ember sql` prompt. Its running tasks stop, its
//! shuffle files are removed, and the next query runs at once instead of
//! waiting behind it.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A job stops this soon after its client went (measured 1.6–2.2 s on a debug
/// build on two cores, with the 0.5 s load window included).
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Hours of work on any build (a join of lineitem with itself on a condition no
/// pair meets), in small batches so that a task notices its cancel quickly,
/// spread over more tasks than the cluster has slots.
const LONG_QUERY: &str = "set datafusion.execution.target_partitions = 8; \
     set datafusion.execution.batch_size = 128; \
     select count(*) from lineitem a, lineitem b where a.l_orderkey + b.l_partkey < 0;";

const SHORT_QUERY: &str = "select count(*) as n from lineitem;";

/// CPU seconds used by process `pid` so far (user + system).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after the name.
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Cores the executors keep busy over the next `window`.
fn executor_load(pids: &[i32], window: Duration) -> f64 {
    let before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    std::thread::sleep(window);
    let after: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    (after - before) / window.as_secs_f64()
}

/// Waits until `condition` holds, up to `bound`; how long it took.
fn within(bound: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Waits until the executors work on the long query (busy and writing shuffle
/// output) while `running` says its client still waits.
fn await_busy(executors: &[i32], work: &Path, mut running: impl FnMut() -> bool) {
    let before = files_under(work);
    within(Duration::from_secs(120), "the long query started", || {
        assert!(running(), "the long query ended");
        files_under(work).iter().any(|f| !before.contains(f))
            && executor_load(executors, Duration::from_millis(500)) > 1.0
    });
}

fn tpch(work: &Path) -> String {
    let tpch = work.join("tpch");
    let tpch = tpch.to_str().unwrap().to_string();
    let output = run(&[
        "datagen", "tpch", "--scale", "0.01", "--parts", "2", "--out", &tpch,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    tpch
}

/// The job's tasks stop, its shuffle files go, and the cluster answers the next
/// query as if the job had never run.
fn assert_job_gone(
    cluster: &ClusterUp,
    work: &Path,
    files_before: &[String],
    tpch: &str,
    expected: &str,
) {
    let executors = &cluster.pids[1..];
    let stopped = within(STOP_BOUND, "the executors stopped the job's tasks", || {
        executor_load(executors, Duration::from_millis(500)) < 0.2
    });
    eprintln!("tasks stopped {stopped:?} after the client went");
    let cleaned = within(STOP_BOUND, "the job's shuffle files were removed", || {
        files_under(work).iter().all(|f| files_before.contains(f))
    });
    eprintln!("shuffle files gone {cleaned:?} later");
    let started = Instant::now();
    let next = cluster.sql(&["--data-dir", tpch, "--format", "csv", "-c", SHORT_QUERY]);
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(stdout(&next), expected);
    eprintln!("the next query took {:?}", started.elapsed());
}

#[test]
fn a_client_that_goes_away_has_its_job_cancelled() {
    let work = tempfile::tempdir().unwrap();
    let tpch = tpch(work.path());
    let expected = run(&[
        "sql",
        "--data-dir",
        &tpch,
        "--format",
        "csv",
        "-c",
        SHORT_QUERY,
    ]);
    assert!(expected.status.success(), "{}", stderr(&expected));
    let expected = stdout(&expected);
    let cluster_dir = work.path().join("cluster");
    let cluster = ClusterUp::start(&cluster_dir, &[]);
    let executors = cluster.pids[1..].to_vec();

    // The client killed.
    let files_before = files_under(&cluster_dir);
    let mut client = Client::start(&cluster, &["--data-dir", &tpch, "-c", LONG_QUERY]);
    await_busy(&executors, &cluster_dir, || client.running());
    client.child.kill().unwrap();
    let _ = client.child.wait();
    assert_job_gone(&cluster, &cluster_dir, &files_before, &tpch, &expected);

    // Ctrl-C at the prompt: the job stops and the prompt takes the next statement.
    let files_before = files_under(&cluster_dir);
    let mut prompt = spawn_piped(&[
        "sql",
        "--master",
        &cluster.url,
        "--data-dir",
        &tpch,
        "--format",
        "csv",
    ]);
    let mut stdin = prompt.stdin.take().unwrap();
    stdin.write_all(LONG_QUERY.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    await_busy(&executors, &cluster_dir, || {
        matches!(prompt.try_wait(), Ok(None))
    });
    // SAFETY: kill(2) on a process this test started; no memory effects.
    unsafe {
        libc::kill(prompt.id() as i32, libc::SIGINT);
    }
    assert_job_gone(&cluster, &cluster_dir, &files_before, &tpch, &expected);
    stdin.write_all(SHORT_QUERY.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    let output = prompt.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("cancelled"), "{}", stderr(&output));
    assert!(stdout(&output).ends_with(&expected), "{}", stdout(&output));
    let _ = cluster.stop();
}
