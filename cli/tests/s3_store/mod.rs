//! Parquet tables and the model store on an S3-compatible server (moto),
//! embedded and on `ember cluster up`.

use super::common::s3::s3_server;
use super::common::*;
use super::data;
use std::process::Stdio;

#[test]
fn parquet_on_an_s3_compatible_store_embedded_and_on_a_cluster() {
    let Some(s3) = s3_server() else { return };
    s3.create_bucket("ember");
    let with_s3 = |args: &[&str]| {
        let mut command = ember();
        command.args(args).envs(s3.env());
        command.output().unwrap()
    };
    let nation = data().join("nation/part-1.parquet");
    let copy = with_s3(&[
        "sql",
        "-c",
        &format!(
            "copy (select * from '{}') to 's3://ember/nation/part-1.parquet' stored as parquet",
            nation.display()
        ),
    ]);
    assert!(copy.status.success(), "{}", stderr(&copy));
    let query = "create external table n stored as parquet location 's3://ember/nation/'; \
                 select count(*) as n, sum(n_regionkey) as r from n";
    let embedded = with_s3(&["sql", "-c", query, "--format", "csv"]);
    assert_eq!(stdout(&embedded), "n,r\n25,50\n", "{}", stderr(&embedded));

    // Executors started by `cluster up` inherit its S3 configuration.
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterUp::start(work.path(), &s3.env());
    let distributed = with_s3(&[
        "sql",
        "--master",
        &cluster.url,
        "-c",
        query,
        "--format",
        "csv",
    ]);
    assert!(cluster.stop().success());
    assert_eq!(
        stdout(&distributed),
        "n,r\n25,50\n",
        "{}",
        stderr(&distributed)
    );

    // Models kept on the S3 store: trained, listed, applied.
    let store = ["--model-store", "s3://ember/models"];
    let train = with_s3(&[
        "sql",
        store[0],
        store[1],
        "-c",
        "create external table n stored as parquet location 's3://ember/nation/'; \
         create model nk options (model_type = 'linear_regression', label = 'n_regionkey') as select n_nationkey, n_regionkey from n; \
         show models",
        "--format",
        "csv",
    ]);
    assert!(train.status.success(), "{}", stderr(&train));
    assert!(
        stdout(&train).contains("nk,1,linear_regression"),
        "{}",
        stdout(&train)
    );

    let missing = with_s3(&["sql", "-c", "select * from 's3://no-such-bucket/x.parquet'"]);
    assert_clear_error(&missing, "no-such-bucket");
}

/// A model's whole life on an S3 store: a second version by CREATE OR REPLACE,
/// predictions from the newest, DROP; and two processes creating one model at
/// once write one version between them (S3's conditional put).
#[test]
fn model_versions_on_an_s3_store() {
    let Some(s3) = s3_server() else { return };
    s3.create_bucket("models");
    let nation = data().join("nation");
    let sql = |statements: &str| {
        let mut command = ember();
        command
            .args(["sql", "--model-store", "s3://models/m", "--data-dir"])
            .arg(nation.parent().unwrap())
            .args(["--format", "csv", "-c", statements])
            .envs(s3.env());
        command
    };
    let create = |replace: &str, l2: &str| {
        format!(
            "create {replace} model nk options (model_type = 'linear_regression', label = 'n_regionkey', l2 = {l2}) \
             as select n_nationkey, n_regionkey from nation"
        )
    };
    let first = sql(&create("", "0")).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let second = sql(&format!(
        "{}; show models; select var_pop(predict('nk', n_nationkey)) < 0.001 as shrunk, \
         var_pop(predict('nk@1', n_nationkey)) > 0.05 as fitted from nation",
        create("or replace", "1000")
    ))
    .output()
    .unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    let text = stdout(&second);
    assert!(text.contains("nk,2,linear_regression"), "{text}");
    // With l2 = 1000 (version 2, the newest) the slope is shrunk to almost
    // nothing; version 1 fits it (1.84 / 52).
    assert!(text.ends_with("shrunk,fitted\ntrue,true\n"), "{text}");
    let dropped = sql("drop model nk; show models").output().unwrap();
    assert!(dropped.status.success(), "{}", stderr(&dropped));
    assert_eq!(
        stdout(&dropped),
        "model_name,version,model_type,label,features,training_rows,status\n",
        "no models are left"
    );

    for attempt in 0..5 {
        let name = format!("race{attempt}");
        let statement = create("", "0").replace("model nk", &format!("model {name}"));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                sql(&statement)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outcomes: Vec<_> = racers
            .into_iter()
            .map(|r| r.wait_with_output().unwrap())
            .collect();
        let won = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "attempt {attempt}: {won} of 2 creates succeeded");
        let lost = outcomes.iter().find(|o| !o.status.success()).unwrap();
        assert_clear_error(lost, &format!("model '{name}' already exists"));
        let listed = sql("show models").output().unwrap();
        assert!(
            stdout(&listed).contains(&format!("{name},1,")),
            "{}",
            stdout(&listed)
        );
    }
}
