//! The Prometheus endpoint of a real server process, scraped after a job
//! ran: jobs by status, tasks by outcome, task and RPC latency histograms,
//! RPC codes, open watch streams and pool use.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use futures::StreamExt;

/// GETs `path` from `address` and returns the status code and body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_after_a_job_ran() {
    // Given a server with a metrics endpoint and a job of 10 tasks, 2 of
    // which name missing objects,
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let mut manifest = String::new();
    for i in 0..10 {
        if i < 8 {
            put_object(objects.path(), "data", &format!("k{i}"), b"content");
        }
        manifest.push_str(&format!("data,k{i}\n"));
    }
    put_object(objects.path(), "data", "manifest.csv", manifest.as_bytes());
    let server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-pool-size",
            "6",
        ],
        &[],
    );
    let metrics = server.metrics_address.expect("metrics address logged");
    let mut client = connect(server.address).await;

    // and a dashboard watching the account,
    let mut watch = client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: ACCOUNT.into(),
            job_ids: vec![],
            after_position: None,
        })
        .await
        .unwrap()
        .into_inner();

    // when the job runs to its end and a describe of an unknown job fails,
    let job_id = client
        .create_job(checksum_job("metrics-1", Some(false)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut client, &job_id, pb::JobStatus::Complete).await;
    let unknown = client
        .describe_job(pb::DescribeJobRequest {
            account_id: ACCOUNT.into(),
            job_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // then the scrape shows all of it.
    let (status, text) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    assert_eq!(value(r#"batchops_jobs{status="Complete"}"#), 1.0);
    assert_eq!(value(r#"batchops_jobs{status="Active"}"#), 0.0);
    assert_eq!(
        value(r#"batchops_tasks_total{operation="compute_object_checksum",outcome="succeeded"}"#),
        8.0
    );
    assert_eq!(
        value(r#"batchops_tasks_total{operation="compute_object_checksum",outcome="failed"}"#),
        2.0
    );
    assert_eq!(
        value(r#"batchops_task_duration_seconds_count{operation="compute_object_checksum"}"#),
        10.0
    );
    assert_eq!(
        value(
            r#"batchops_rpc_requests_total{method="batchops.v1.JobService/CreateJob",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"batchops_rpc_requests_total{method="batchops.v1.JobService/DescribeJob",code="NOT_FOUND"}"#
        ),
        1.0
    );
    assert!(
        value(
            r#"batchops_rpc_duration_seconds_count{method="batchops.v1.JobService/DescribeJob"}"#
        ) >= 2.0
    );
    assert_eq!(value("batchops_watch_streams"), 1.0);
    assert_eq!(value(r#"batchops_db_pool_connections{state="max"}"#), 6.0);
    // The scrape itself holds a connection while it counts jobs, and the
    // pool never exceeds its maximum.
    let in_use = value(r#"batchops_db_pool_connections{state="in_use"}"#);
    let idle = value(r#"batchops_db_pool_connections{state="idle"}"#);
    assert!(
        in_use + idle >= 1.0 && in_use + idle <= 6.0,
        "in use {in_use}, idle {idle}"
    );

    // The watcher saw the job; once it hangs up, the gauge falls back.
    assert!(watch.next().await.is_some());
    drop(watch);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(metrics, "/metrics").await;
        if sample(&text, "batchops_watch_streams") == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch stream never counted as closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _) = get(metrics, "/other").await;
    assert_eq!(status, 404);

    // The JSON logs name the job in their fields: the engine's events at
    // the top level, RPC handlers in their span.
    let logs = server.logs.lock().unwrap().clone();
    let about_job = |entry: &&serde_json::Value| {
        entry["fields"]["job_id"] == job_id.as_str() || entry["span"]["job_id"] == job_id.as_str()
    };
    let messages: Vec<&str> = logs
        .iter()
        .filter(about_job)
        .filter_map(|entry| entry["fields"]["message"].as_str())
        .collect();
    for expected in ["preparing job", "preparation finished", "job completed"] {
        assert!(
            messages.contains(&expected),
            "{expected:?} not logged with the job id: {messages:?}"
        );
    }
}
