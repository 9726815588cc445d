//! Faults on real processes (RELIABILITY.md): an executor killed with SIGKILL in
//! the middle of a TPC-H query and of a CREATE MODEL costs time, not answers; a
//! killed scheduler gives its clients a clear error at once, mid-query and
//! mid-training. Lost executors during `predict` and EVALUATE cost time too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Longest a query may take with a lost executor: the scheduler's 15 s
/// heartbeat timeout, then the lost stages again, on a slow debug build.
const RECOVERY_BOUND: Duration = Duration::from_secs(150);

/// Waits until one of `executors` writes new shuffle output (files earlier
/// statements left do not count) while `client` runs, and gives its index;
/// `None` when the statement ended first (it must have succeeded).
fn await_new_shuffle(client: &mut Client, executors: &[(PathBuf, i32)]) -> Option<usize> {
    let before: Vec<Vec<String>> = executors.iter().map(|(dir, _)| files_under(dir)).collect();
    loop {
        if !client.running() {
            return None;
        }
        let writes_new = |i: usize| {
            files_under(&executors[i].0)
                .iter()
                .any(|f| !before[i].contains(f))
        };
        if let Some(i) = (0..executors.len()).find(|&i| writes_new(i)) {
            return Some(i);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `args` on the cluster and SIGKILLs the first executor that writes new
/// shuffle output while it runs; `None` when the query ended before any
/// executor could be caught (the caller tries again).
fn run_killing_an_executor(
    cluster: &ClusterUp,
    work: &Path,
    alive_executors: &mut Vec<(PathBuf, i32)>,
    args: &[&str],
) -> Option<Output> {
    let mut client = Client::start(cluster, args);
    let Some(i) = await_new_shuffle(&mut client, alive_executors) else {
        let output = client.finish(RECOVERY_BOUND);
        eprintln!("query ended before an executor was caught; trying again");
        assert!(output.status.success(), "{}", stderr(&output));
        return None;
    };
    let victim = alive_executors.remove(i);
    // SAFETY: kill(2) on a process this test started; no memory effects.
    unsafe {
        libc::kill(victim.1, libc::SIGKILL);
    }
    eprintln!(
        "killed {} (pid {}) mid-query under {}",
        victim.0.display(),
        victim.1,
        work.display()
    );
    Some(client.finish(RECOVERY_BOUND))
}

fn executors(cluster: &ClusterUp, work: &Path) -> Vec<(PathBuf, i32)> {
    cluster.pids[1..]
        .iter()
        .enumerate()
        .map(|(i, &pid)| (work.join(format!("executor-{}", i + 1)), pid))
        .collect()
}

fn datagen(args: &[&str]) {
    let output = run(&[&["datagen"], args].concat());
    assert!(output.status.success(), "{}", stderr(&output));
}

/// `ember datagen classification` into `out`.
fn classification(out: &Path, rows: usize, features: usize, parts: usize) {
    let (rows, features, parts) = (rows.to_string(), features.to_string(), parts.to_string());
    datagen(&[
        "classification",
        "--rows",
        &rows,
        "--features",
        &features,
        "--parts",
        &parts,
        "--out",
        out.to_str().unwrap(),
    ]);
}

#[test]
fn a_killed_executor_costs_time_not_answers() {
    let work = tempfile::tempdir().unwrap();
    let tpch = work.path().join("tpch");
    let tpch = tpch.to_str().unwrap();
    datagen(&["tpch", "--scale", "0.1", "--parts", "3", "--out", tpch]);
    let ml = work.path().join("ml");
    classification(&ml.join("higgs"), 200000, 6, 6);
    let ml = ml.to_str().unwrap();
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tpch/queries");
    let q18 = queries.join("q18.sql");
    let q3 = queries.join("q3.sql");
    let (q18, q3) = (q18.to_str().unwrap(), q3.to_str().unwrap());

    let cluster_dir = work.path().join("cluster");
    let cluster = ClusterUp::start_n(&cluster_dir, 3, &[]);
    let mut alive = executors(&cluster, &cluster_dir);

    // TPC-H q18 with an executor killed mid-query: the answer embedded gives.
    let query = ["--data-dir", tpch, "-f", q18, "--format", "csv"];
    let embedded = run(&[&["sql"], &query[..]].concat());
    assert!(embedded.status.success(), "{}", stderr(&embedded));
    let started = Instant::now();
    let faulted = (0..3)
        .find_map(|_| run_killing_an_executor(&cluster, &cluster_dir, &mut alive, &query))
        .expect("no executor could be caught mid-query in 3 tries");
    assert!(faulted.status.success(), "{}", stderr(&faulted));
    assert_eq!(stdout(&faulted), stdout(&embedded));
    eprintln!("q18 with a lost executor: {:?}", started.elapsed());

    // The cluster serves the next query.
    let next = ["--data-dir", tpch, "-f", q3, "--format", "csv"];
    let (on_cluster, alone) = (cluster.sql(&next), run(&[&["sql"], &next[..]].concat()));
    assert!(on_cluster.status.success(), "{}", stderr(&on_cluster));
    assert_eq!(stdout(&on_cluster), stdout(&alone));

    // CREATE MODEL with another executor killed mid-training: the model trained
    // with no fault (embedded), to the 1e-9 that merge order allows.
    let features = (0..6)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let create = format!(
        "create model clf options (model_type = 'logistic_regression', label = 'label') as select label, {features} from higgs"
    );
    let (faulted_store, embedded_store) = (work.path().join("m1"), work.path().join("m2"));
    let alone = run(&[
        "sql",
        "--data-dir",
        ml,
        "--model-store",
        embedded_store.to_str().unwrap(),
        "-c",
        &create,
    ]);
    assert!(alone.status.success(), "{}", stderr(&alone));
    let args = [
        "--data-dir",
        ml,
        "--model-store",
        faulted_store.to_str().unwrap(),
        "-c",
        &create,
    ];
    let trained = run_killing_an_executor(&cluster, &cluster_dir, &mut alive, &args)
        .expect("training ended before an executor was caught");
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert_same_model(
        &clf_coefficients(&faulted_store, None),
        &clf_coefficients(&embedded_store, None),
    );

    // The scheduler killed mid-query: a clear error at once, not a hang.
    let client = (0..3)
        .find_map(|_| {
            let mut client = Client::start(&cluster, &query);
            match await_new_shuffle(&mut client, &alive) {
                Some(_) => Some(client),
                None => {
                    let output = client.finish(RECOVERY_BOUND);
                    assert!(output.status.success(), "{}", stderr(&output));
                    None
                }
            }
        })
        .expect("q18 ended before the scheduler could be killed, 3 times");
    // SAFETY: kill(2) on a process this test started; no memory effects.
    unsafe {
        libc::kill(cluster.pids[0], libc::SIGKILL);
    }
    let killed = Instant::now();
    let output = client.finish(Duration::from_secs(30));
    eprintln!(
        "error {:?} after the scheduler was killed",
        killed.elapsed()
    );
    assert_clear_error(&output, "lost the connection to the scheduler at df://");
    let _ = cluster.stop();
}

/// `ember sql` killed at several points of a CREATE OR REPLACE MODEL leaves the
/// previous version as it was and no other file; the next CREATE succeeds.
#[test]
fn a_killed_create_or_replace_keeps_the_previous_version() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    classification(&data.join("higgs"), 300000, 8, 2);
    let store = work.path().join("models");
    let sql = |query: &str| -> std::process::Command {
        let mut command = ember();
        command.args([
            "sql",
            "--data-dir",
            data.to_str().unwrap(),
            "--model-store",
            store.to_str().unwrap(),
            "-c",
            query,
        ]);
        command
    };
    let create = |rows: &str| {
        format!(
            "create or replace model clf options (model_type = 'logistic_regression', label = 'label') as select * from higgs {rows}"
        )
    };
    let first = sql(&create("limit 1000")).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let v1 = std::fs::read(store.join("clf/v1/model.json")).unwrap();
    assert_eq!(files_under(&store), ["clf/v1/model.json"]);

    // Whole versions only: a CREATE killed in time leaves nothing, one that
    // finished first (or as it was killed) leaves one more complete version.
    let mut expected = vec!["clf/v1/model.json".to_string()];
    for delay_ms in [50, 200, 500, 900, 1400] {
        let mut child = sql(&create(""))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        if finished {
            eprintln!("CREATE finished within {delay_ms} ms; not killed");
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let next = format!("clf/v{}/model.json", expected.len() + 1);
        // A killed training may leave its state to go on from (whole: one
        // atomic put); it is not a model, and the next CREATE removes it.
        let (states, files): (Vec<String>, Vec<String>) = files_under(&store)
            .into_iter()
            .partition(|f| f.starts_with("clf/training/"));
        // The store's temporary files (`KEY.json#N`) are not checkpoints yet.
        for state in states.iter().filter(|s| s.ends_with(".json")) {
            let bytes = std::fs::read(store.join(state)).unwrap();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "{state} is not whole"
            );
        }
        if files.contains(&next) {
            expected.push(next);
        }
        assert_eq!(files, expected, "after {delay_ms} ms");
        assert_eq!(std::fs::read(store.join("clf/v1/model.json")).unwrap(), v1);
        let describe = sql("describe model clf").output().unwrap();
        assert!(describe.status.success(), "{}", stderr(&describe));
        if finished {
            // Training is faster than the remaining delays: none would kill it.
            break;
        }
    }

    let last = sql(&create("")).output().unwrap();
    assert!(last.status.success(), "{}", stderr(&last));
    expected.push(format!("clf/v{}/model.json", expected.len() + 1));
    assert_eq!(files_under(&store), expected);
    assert_eq!(std::fs::read(store.join("clf/v1/model.json")).unwrap(), v1);
}

/// `predict` in a grouped SELECT and EVALUATE, each with an executor killed
/// mid-query: the answers embedded gives (metrics to the 1e-9 merge order allows).
#[test]
fn a_killed_executor_during_predict_and_evaluate_costs_time_not_answers() {
    let work = tempfile::tempdir().unwrap();
    let ml = work.path().join("ml");
    classification(&ml.join("higgs"), 400000, 6, 6);
    let ml = ml.to_str().unwrap();
    let store = work.path().join("models");
    let store = store.to_str().unwrap();
    let features = "f0, f1, f2, f3, f4, f5";
    let create = format!(
        "create model clf options (model_type = 'logistic_regression', label = 'label') \
         as select label, {features} from higgs"
    );
    let trained = run(&[
        "sql",
        "--data-dir",
        ml,
        "--model-store",
        store,
        "-c",
        &create,
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));

    let cluster_dir = work.path().join("cluster");
    let cluster = ClusterUp::start_n(&cluster_dir, 3, &[]);
    let mut alive = executors(&cluster, &cluster_dir);
    // Counts and extremes are exact whatever the merge order.
    let predict = format!(
        "select predict('clf', {features}) as p, count(*) as n, min(f0) as lo, max(f1) as hi \
         from higgs group by 1 order by 1"
    );
    let evaluate = format!("evaluate model clf on (select label, {features} from higgs)");
    for (what, sql) in [
        ("predict", predict.as_str()),
        ("EVALUATE", evaluate.as_str()),
    ] {
        let query = [
            "--data-dir",
            ml,
            "--model-store",
            store,
            "-c",
            sql,
            "--format",
            "csv",
        ];
        let embedded = run(&[&["sql"], &query[..]].concat());
        assert!(embedded.status.success(), "{}", stderr(&embedded));
        let started = Instant::now();
        let faulted = (0..3)
            .find_map(|_| run_killing_an_executor(&cluster, &cluster_dir, &mut alive, &query))
            .unwrap_or_else(|| panic!("no executor could be caught mid-{what} in 3 tries"));
        assert!(faulted.status.success(), "{what}: {}", stderr(&faulted));
        assert_same_csv(&stdout(&faulted), &stdout(&embedded));
        eprintln!("{what} with a lost executor: {:?}", started.elapsed());
    }
    let _ = cluster.stop();
}

/// Two CSV results with the same cells, numbers to a relative 1e-9.
fn assert_same_csv(actual: &str, expected: &str) {
    let cells = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|line| line.split(',').map(str::to_string).collect())
            .collect()
    };
    let (a, e) = (cells(actual), cells(expected));
    assert!(e.len() > 1, "no rows:\n{expected}");
    assert_eq!(a.len(), e.len(), "{actual}\nvs\n{expected}");
    for (row_a, row_e) in a.iter().zip(&e) {
        assert_eq!(row_a.len(), row_e.len(), "{actual}\nvs\n{expected}");
        for (x, y) in row_a.iter().zip(row_e) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{actual}\nvs\n{expected}"
                ),
                _ => assert_eq!(x, y, "{actual}\nvs\n{expected}"),
            }
        }
    }
}

/// An executor killed while CREATE MODEL runs its rounds over rows the
/// executors keep (after the keep job): the rows are packed again on the
/// executors left and training goes on to the model a fault-free run gives.
/// The client killed there: the same statement again goes on from the last
/// completed iteration to the same model. Then the scheduler killed there: a
/// clear error within 30 s and no model.
#[test]
fn an_executor_killed_between_rounds_costs_time_not_the_model() {
    let work = tempfile::tempdir().unwrap();
    let ml = work.path().join("ml");
    classification(&ml.join("higgs"), 200000, 6, 6);
    let ml = ml.to_str().unwrap();
    let cluster_dir = work.path().join("cluster");
    let cluster = ClusterUp::start_n(&cluster_dir, 3, &[]);
    let mut alive = executors(&cluster, &cluster_dir);
    let features = (0..6)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Newton's method: ~6 rounds, and it lands on the same optimum whatever
    // the order of partial sums.
    let create = format!(
        "create or replace model clf options (model_type = 'logistic_regression', label = 'label') \
         as select label, {features} from higgs"
    );
    let store = |name: &str| work.path().join(name);
    let args = |store: &Path| {
        vec![
            "--data-dir".to_string(),
            ml.to_string(),
            "--model-store".to_string(),
            store.to_str().unwrap().to_string(),
            "-c".to_string(),
            create.clone(),
        ]
    };
    let fault_free = store("fault-free");
    let started = Instant::now();
    let clean = cluster.sql(
        &args(&fault_free)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(clean.status.success(), "{}", stderr(&clean));
    eprintln!(
        "fault-free training: {:?}; {}",
        started.elapsed(),
        stderr(&clean).trim()
    );

    let faulted_store = store("faulted");
    let faulted_args = args(&faulted_store);
    let faulted_args: Vec<&str> = faulted_args.iter().map(String::as_str).collect();
    // A loaded machine can reach the last round before the kill lands: the
    // training then ends without packing its rows again, which proves nothing,
    // and one more executor is killed in another training (3 executors allow 2).
    let mut repacked = false;
    for _ in 0..2 {
        let packings = kept_trainings(&cluster_dir).len();
        let (client, holder) = in_training_rounds(
            &cluster,
            &cluster_dir,
            &alive,
            &faulted_args,
            &faulted_store.join("clf").join("training"),
        )
        .expect("training ended before an executor could be killed, 3 times");
        let victim = alive.remove(holder);
        // SAFETY: kill(2) on a process this test started; no memory effects.
        unsafe {
            libc::kill(victim.1, libc::SIGKILL);
        }
        eprintln!("killed {} between rounds", victim.0.display());
        let trained = client.finish(RECOVERY_BOUND);
        assert!(trained.status.success(), "{}", stderr(&trained));
        assert_same_model(
            &clf_coefficients(&faulted_store, None),
            &clf_coefficients(&fault_free, None),
        );
        // The rows were packed twice: once, and again after the kill.
        if kept_trainings(&cluster_dir).len() >= packings + 2 {
            repacked = true;
            break;
        }
        eprintln!("the kill came after the last round; trying again");
    }
    assert!(
        repacked,
        "the rows were never packed again after a holder was killed: {:?}",
        kept_trainings(&cluster_dir)
    );

    // The client killed mid-training: the same CREATE MODEL again goes on from
    // the last completed iteration, to the model an uninterrupted run gives.
    let resumed_store = store("resumed");
    let resumed_args = args(&resumed_store);
    let resumed_args: Vec<&str> = resumed_args.iter().map(String::as_str).collect();
    let checkpoints = resumed_store.join("clf").join("training");
    let mut interrupted = false;
    for _ in 0..3 {
        let mut client = Client::start(&cluster, &resumed_args);
        while client.running() && !checkpoint_written(&checkpoints) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if client.running() {
            // SAFETY: kill(2) on a process this test started; no memory effects.
            unsafe {
                libc::kill(client.child.id() as i32, libc::SIGKILL);
            }
            let _ = client.finish(Duration::from_secs(10));
            interrupted = true;
            break;
        }
        let output = client.finish(RECOVERY_BOUND);
        assert!(output.status.success(), "{}", stderr(&output));
        eprintln!("training ended before its client could be killed; trying again");
        std::fs::remove_dir_all(&resumed_store).unwrap();
    }
    assert!(
        interrupted,
        "training ended before its client could be killed, 3 times"
    );
    let resumed = cluster.sql(&resumed_args);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let said = format!("{}{}", stdout(&resumed), stderr(&resumed));
    eprintln!("{}", said.trim());
    assert!(said.contains("went on from iteration"), "{said}");
    assert_same_model(
        &clf_coefficients(&resumed_store, None),
        &clf_coefficients(&fault_free, None),
    );
    assert!(
        files_under(&checkpoints).is_empty(),
        "the checkpoint goes once the model is saved"
    );

    // The scheduler killed between rounds: a clear error soon, and no model.
    let lost_store = store("scheduler-lost");
    let lost_args = args(&lost_store);
    let lost_args: Vec<&str> = lost_args.iter().map(String::as_str).collect();
    let (client, _) = in_training_rounds(
        &cluster,
        &cluster_dir,
        &alive,
        &lost_args,
        &lost_store.join("clf").join("training"),
    )
    .expect("training ended before the scheduler could be killed, 3 times");
    // SAFETY: kill(2) on a process this test started; no memory effects.
    unsafe {
        libc::kill(cluster.pids[0], libc::SIGKILL);
    }
    let killed = Instant::now();
    let output = client.finish(Duration::from_secs(30));
    eprintln!(
        "error {:?} after the scheduler was killed mid-training",
        killed.elapsed()
    );
    assert_clear_error(&output, "lost the connection to the scheduler at df://");
    assert!(
        !files_under(&lost_store)
            .iter()
            .any(|f| f.ends_with("model.json")),
        "no model may be written: {:?}",
        files_under(&lost_store)
    );
    let _ = cluster.stop();
}

/// Starts `ember sql args` on `cluster` and waits until it is past its keep
/// job and its first round (a checkpoint under `checkpoints`, written after
/// every iteration): the running client and the index in `alive` of an
/// executor holding rows. `None` when training ended first 3 times.
/// Each live executor's log file, in `alive`'s order.
fn executor_logs(cluster_dir: &Path, alive: &[(PathBuf, i32)]) -> Vec<PathBuf> {
    alive
        .iter()
        .map(|(dir, _)| {
            let name = dir.file_name().unwrap().to_str().unwrap();
            cluster_dir.join("logs").join(format!("{name}.log"))
        })
        .collect()
}

/// How many times `needle` is in the log so far (none while it is missing).
fn lines_with(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

fn in_training_rounds(
    cluster: &ClusterUp,
    cluster_dir: &Path,
    alive: &[(PathBuf, i32)],
    args: &[&str],
    checkpoints: &Path,
) -> Option<(Client, usize)> {
    // Each keep task logs the partition it kept: the first executor to log one
    // holds rows the rounds need.
    let logs = executor_logs(cluster_dir, alive);
    let kept_lines = |log: &PathBuf| lines_with(log, "kept partition");
    for _ in 0..3 {
        let mut client = Client::start(cluster, args);
        let before: Vec<usize> = logs.iter().map(kept_lines).collect();
        let mut holder = None;
        // A fixed wait here once let a loaded machine reach the last round
        // before the kill: the first checkpoint marks the rounds' start.
        while client.running() && (holder.is_none() || !checkpoint_written(checkpoints)) {
            if holder.is_none() {
                holder = (0..logs.len()).find(|&i| kept_lines(&logs[i]) > before[i]);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if client.running() {
            return Some((client, holder.expect("a keep task logged")));
        }
        let output = client.finish(RECOVERY_BOUND);
        assert!(output.status.success(), "{}", stderr(&output));
        eprintln!("training ended before it could be interrupted; trying again");
    }
    None
}

/// Whether a whole checkpoint (not the store's temporary file for one) is
/// under `dir`.
fn checkpoint_written(dir: &Path) -> bool {
    files_under(dir).iter().any(|f| f.ends_with(".json"))
}

/// The trainings whose rows the executors of the cluster in `dir` logged keeping.
fn kept_trainings(dir: &Path) -> std::collections::BTreeSet<String> {
    let logs = std::fs::read_dir(dir.join("logs")).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for log in logs.flatten() {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains(": kept partition")) {
            if let Some(id) = line
                .split("training ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
            {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

/// An executor killed while trees grow on the rows the executors keep and
/// bin: the rows are packed and binned again on the executors left, what
/// they had been through replayed, and the model is the fault-free run's,
/// bit for bit (its XGBoost export is the same file).
#[test]
fn an_executor_killed_while_trees_grow_costs_time_not_the_model() {
    let work = tempfile::tempdir().unwrap();
    let ml = work.path().join("ml");
    classification(&ml.join("higgs"), 200000, 6, 6);
    let ml = ml.to_str().unwrap();
    let cluster_dir = work.path().join("cluster");
    let cluster = ClusterUp::start_n(&cluster_dir, 3, &[]);
    let mut alive = executors(&cluster, &cluster_dir);
    let create = "create or replace model trees options (model_type = \
                  'boosted_tree_classifier', label = 'label', num_trees = 60, subsample = 0.8) \
                  as select * from higgs";
    let args = |store: &Path| {
        vec![
            "--data-dir".to_string(),
            ml.to_string(),
            "--model-store".to_string(),
            store.to_str().unwrap().to_string(),
            "-c".to_string(),
            create.to_string(),
        ]
    };
    let exported = |store: &Path| {
        let file = store.join("trees.json");
        let out = run(&[
            "sql",
            "--model-store",
            store.to_str().unwrap(),
            "-c",
            &format!("export model trees to '{}'", file.display()),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(file).unwrap()
    };
    let fault_free = work.path().join("fault-free");
    let started = Instant::now();
    let clean = cluster.sql(
        &args(&fault_free)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(clean.status.success(), "{}", stderr(&clean));
    eprintln!("fault-free trees: {:?}", started.elapsed());
    let logs = executor_logs(&cluster_dir, &alive);
    let binned = |log: &PathBuf| lines_with(log, "binned for trees");
    let mut recovered = false;
    for attempt in 0..3 {
        let store = work.path().join(format!("faulted-{attempt}"));
        let packings = kept_trainings(&cluster_dir).len();
        let before: Vec<usize> = logs.iter().map(binned).collect();
        let faulted_args = args(&store);
        let faulted_args: Vec<&str> = faulted_args.iter().map(String::as_str).collect();
        let mut client = Client::start(&cluster, &faulted_args);
        // The first executor to bin its rows holds some: kill it a little
        // into the trees.
        let mut holder = None;
        while client.running() && holder.is_none() {
            holder = (0..logs.len()).find(|&i| binned(&logs[i]) > before[i]);
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(300));
        if !client.running() || holder.is_none() {
            let output = client.finish(RECOVERY_BOUND);
            assert!(output.status.success(), "{}", stderr(&output));
            eprintln!("the trees grew before an executor could be killed; trying again");
            continue;
        }
        let victim = alive.remove(holder.unwrap());
        // SAFETY: kill(2) on a process this test started; no memory effects.
        unsafe {
            libc::kill(victim.1, libc::SIGKILL);
        }
        eprintln!("killed {} while trees grew", victim.0.display());
        let trained = client.finish(RECOVERY_BOUND);
        assert!(trained.status.success(), "{}", stderr(&trained));
        assert!(
            exported(&store) == exported(&fault_free),
            "the trees differ from the fault-free run's"
        );
        // The rows were packed twice: once, and again after the kill.
        if kept_trainings(&cluster_dir).len() >= packings + 2 {
            recovered = true;
            break;
        }
        eprintln!("the kill came after the last tree; trying again");
        break;
    }
    assert!(
        recovered,
        "the rows were never kept again after a holder was killed"
    );
    let _ = cluster.stop();
}
