//! Cancel and pause take effect at once: within the process that took the
//! command, no task starts after UpdateJobStatus returns; in another
//! process, the status change reaches running chunks through the log's
//! notification well before their status checks would; and no retry starts
//! once the job has left Active. Pollers are slowed to a second so that
//! only the immediate paths can pass.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

/// How late a call may reach the endpoint after it was started: the time
/// from the worker's decision to the endpoint's accept, on loopback.
const IN_FLIGHT_SLACK: chrono::TimeDelta = chrono::TimeDelta::milliseconds(25);

fn slow_endpoint_settings(endpoint: &TestEndpoint) -> Settings {
    Settings {
        invoke_allowlist: endpoint.url.clone(),
        chunk_size: 50,
        task_concurrency: 4,
        poll_interval_ms: 1000,
        task_max_attempts: 1,
        ..Settings::default()
    }
}

async fn cancel(
    client: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> chrono::DateTime<chrono::Utc> {
    client
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.into(),
            requested_job_status: S::Cancelled as i32,
            status_update_reason: "stop now".into(),
        })
        .await
        .unwrap();
    chrono::Utc::now()
}

/// Calls the endpoint received after `at` (plus the in-flight slack).
fn calls_after(endpoint: &TestEndpoint, at: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    endpoint
        .calls()
        .into_iter()
        .filter(|call| call.started > at + IN_FLIGHT_SLACK)
        .map(|call| call.key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_starts_after_a_cancel_returns() {
    // Given a job of 200 tasks of 100 ms, four at a time, in chunks of 50,
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(100),
        ..Reply::result(event, "Succeeded", "slowly")
    })
    .await;
    let mut server = TestServer::start_with(slow_endpoint_settings(&endpoint)).await;
    let lines: Vec<String> = (0..200).map(|i| format!("data,k{i}")).collect();
    write_manifest(&server, &lines);
    let job_id = server
        .create(invoke_job(
            "cancel-now",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    wait_until(|| endpoint.calls().len() >= 8).await;

    // when it is cancelled,
    let returned = cancel(&mut server.client, &job_id).await;

    // then no task starts after the call returned, and the job drains.
    wait_for(&mut server.client, &job_id, S::Cancelled).await;
    let late = calls_after(&endpoint, returned);
    assert!(
        late.is_empty(),
        "tasks started after the cancel returned: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_starts_after_a_cancel_returns() {
    // Given an endpoint that always fails transiently after 100 ms, and
    // tasks retried up to ten times,
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(100),
        ..Reply::result(event, "TemporaryFailure", "busy")
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        task_max_attempts: 10,
        ..slow_endpoint_settings(&endpoint)
    })
    .await;
    let lines: Vec<String> = (0..4).map(|i| format!("data,k{i}")).collect();
    write_manifest(&server, &lines);
    let job_id = server
        .create(invoke_job(
            "no-retry",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    // Every task has been retried at least once.
    wait_until(|| (0..4).all(|i| endpoint.calls_for(&format!("k{i}")) >= 2)).await;

    let returned = cancel(&mut server.client, &job_id).await;
    wait_for(&mut server.client, &job_id, S::Cancelled).await;
    let late = calls_after(&endpoint, returned);
    assert!(
        late.is_empty(),
        "retries started after the cancel returned: {late:?}"
    );
    // Each task's result is its last attempt's transient failure.
    let results = server.results(&job_id).await;
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|(_, _, code, _)| code.as_deref() == Some("TemporaryFailure"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_process_stops_tasks_through_the_log() {
    // Given a job running in one process (its status checks a second apart),
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(100),
        ..Reply::result(event, "Succeeded", "slowly")
    })
    .await;
    let mut engine = TestServer::start_with(slow_endpoint_settings(&endpoint)).await;
    let lines: Vec<String> = (0..200).map(|i| format!("data,k{i}")).collect();
    write_manifest(&engine, &lines);
    let job_id = engine
        .create(invoke_job(
            "cancel-elsewhere",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    wait_until(|| endpoint.calls().len() >= 8).await;

    // when an API-only process of the same database cancels it,
    let (address, stop, handle) = spawn_server(
        &engine.db.url,
        engine.objects.path(),
        &Settings {
            run_engine: false,
            ..Settings::default()
        },
    )
    .await;
    let mut api = connect(address).await;
    let returned = cancel(&mut api, &job_id).await;

    // then the engine's process stops starting tasks as soon as the status
    // change reaches it through the log, long before its next check.
    wait_for(&mut api, &job_id, S::Cancelled).await;
    let notified = chrono::TimeDelta::milliseconds(300);
    let late: Vec<String> = endpoint
        .calls()
        .into_iter()
        .filter(|call| call.started > returned + notified)
        .map(|call| call.key)
        .collect();
    assert!(
        late.is_empty(),
        "tasks started in the other process after the cancel: {late:?}"
    );
    let _ = stop.send(());
    let _ = handle.await;
}
