//! A cluster with a secret (README, "A cluster's own channels"): its members
//! query and train as before, and a caller without the secret, or with
//! another, gets no call into the scheduler, an executor's Flight service or
//! an executor's task service.

use std::sync::Arc;

use arrow_flight::Empty;
use arrow_flight::flight_service_client::FlightServiceClient;
use ballista_core::serde::protobuf::executor_grpc_client::ExecutorGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{CancelTasksParams, GetJobStatusParams};
use ember_engine::EmberContext;
use ember_engine::cluster::{ClusterSecret, InProcessCluster, cluster_endpoint, reached_handler};
use ember_tests::{ml_client, to_text, tpch_data, tpch_query};
use tonic::transport::Channel;

const TOKEN: &str = "test-cluster-secret-0123456789abcdef";
const OTHER_TOKEN: &str = "some-other-secret-0123456789abcdef";

/// A channel to `address` as `who` calls: in plain text, or as a holder of a secret.
fn channel(address: &str, who: Option<&ClusterSecret>) -> Channel {
    cluster_endpoint(address, who).unwrap().connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_holders_of_the_secret_reach_the_cluster() {
    let secret = Arc::new(ClusterSecret::from_token(TOKEN).unwrap());
    let other = ClusterSecret::from_token(OTHER_TOKEN).unwrap();
    let cluster = InProcessCluster::start_with_secret(2, 2, secret.clone())
        .await
        .unwrap();

    // Members: a query with shuffles equals the embedded answer, and a model
    // trains over rows kept on the executors.
    let ember = cluster.context().await.unwrap();
    ember.register_data_dir(tpch_data()).await.unwrap();
    let embedded = EmberContext::embedded().unwrap();
    embedded.register_data_dir(tpch_data()).await.unwrap();
    for query in [3, 13] {
        let sql = tpch_query(query);
        assert_eq!(
            to_text(&ember.sql_one(&sql).await.unwrap()),
            to_text(&embedded.sql_one(&sql).await.unwrap()),
            "q{query}"
        );
    }
    let store = tempfile::tempdir().unwrap();
    let trainer = ml_client(&cluster, &store).await;
    trainer
        .sql("create model km options (model_type = 'kmeans', num_clusters = 4, seed = 3) as select a, b, c from blobs")
        .await
        .unwrap();
    let predicted = trainer
        .sql_one("select count(distinct predict('km', a, b, c)) from blobs")
        .await
        .unwrap();
    assert_eq!(to_text(&predicted).rows, vec![vec!["4".to_string()]]);

    // Clients without the secret, or with another, are refused at connect
    // with a line that says why.
    for (who, hint) in [(None, "EMBER_CLUSTER_TOKEN"), (Some(other), "another")] {
        let has_one = who.is_some();
        let error = EmberContext::remote_with_secret(&cluster.url(), who.map(Arc::new))
            .await
            .err()
            .unwrap_or_else(|| panic!("a client (secret: {has_one}) got in"))
            .to_string();
        assert!(
            error.contains("refused this client") && error.contains(hint),
            "{error}"
        );
        assert_eq!(error.lines().count(), 1, "{error}");
    }

    // Raw calls: only a member's get in, to the scheduler, to each executor's
    // Flight service and to the task service behind it.
    let other = ClusterSecret::from_token(OTHER_TOKEN).unwrap();
    let scheduler = format!("127.0.0.1:{}", cluster.scheduler().address().port());
    for (who, name) in [
        (None, "plain"),
        (Some(&other), "other"),
        (Some(&*secret), "member"),
    ] {
        let member = name == "member";
        let status = SchedulerGrpcClient::new(channel(&scheduler, who))
            .get_job_status(GetJobStatusParams {
                job_id: "none".into(),
            })
            .await;
        assert_eq!(reached_handler(&status), member, "{name} caller, scheduler");
        for address in cluster.executor_addresses() {
            let actions = FlightServiceClient::new(channel(address, who))
                .list_actions(Empty {})
                .await;
            assert_eq!(
                reached_handler(&actions),
                member,
                "{name} caller, Flight at {address}"
            );
            let cancelled = ExecutorGrpcClient::new(channel(address, who))
                .cancel_tasks(CancelTasksParams { task_infos: vec![] })
                .await;
            assert_eq!(
                reached_handler(&cancelled),
                member,
                "{name} caller, tasks at {address}"
            );
        }
    }
}

#[test]
fn a_short_or_empty_secret_is_refused() {
    let error = ClusterSecret::from_token("  short  ")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("too short") && error.contains("16"),
        "{error}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = ClusterSecret::from_file(file.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );
}
