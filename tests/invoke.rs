//! The invoke operation against a local HTTP endpoint whose replies the test
//! controls: result codes, retries of transient failures, timeouts, garbage,
//! the allowlist, and draining on cancel.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;
use tonic::Code;

fn behave(event: &serde_json::Value, key: &str, previous: usize) -> Reply {
    let kind = key.split('/').next().unwrap();
    match kind {
        "ok" => Reply::result(event, "Succeeded", &format!("done {key}")),
        "perm" => Reply::result(event, "PermanentFailure", "cannot do it"),
        "tempthenok" if previous == 0 => Reply::result(event, "TemporaryFailure", "busy"),
        "tempthenok" => Reply::result(event, "Succeeded", "second time lucky"),
        "temp" => Reply::result(event, "TemporaryFailure", "still busy"),
        "http500" => Reply::raw(500, "upstream exploded"),
        "http429" if previous < 1 => Reply::raw(429, "slow down"),
        "http429" => Reply::result(event, "Succeeded", "after throttling"),
        "http404" => Reply::raw(404, "no such function"),
        "garbage" => Reply::raw(200, "<html>not json</html>"),
        "missing" => Reply::raw(200, r#"{"invocationSchemaVersion":"2.0","results":[]}"#),
        "hostile" => Reply::result(
            event,
            "Succeeded",
            &format!("nul\u{0}{}", "x".repeat(10_000)),
        ),
        _ => Reply::raw(400, "unexpected key"),
    }
}

#[tokio::test]
async fn invoke_maps_replies_to_results_and_retries_only_transient_failures() {
    let endpoint = TestEndpoint::start(behave).await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        task_max_attempts: 3,
        ..Settings::default()
    })
    .await;
    let keys = [
        "ok/a b+c.txt",
        "perm/x",
        "tempthenok/y",
        "temp/z",
        "http500/w",
        "http429/s",
        "http404/t",
        "garbage/v",
        "missing/u",
        "hostile/r",
    ];
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("data,{}", k.replace(' ', "%20").replace('+', "%2B")))
        .collect();
    write_manifest(&server, &lines);
    let mut request = invoke_job(
        "inv",
        &endpoint.url,
        pb::InvocationSchemaVersion::InvocationSchemaVersion20,
    );
    if let Some(pb::operation::Operation::Invoke(invoke)) =
        request.operation.as_mut().unwrap().operation.as_mut()
    {
        invoke.user_arguments.insert("mode".into(), "test".into());
    }
    let job_id = server
        .client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (4, 6)
    );

    let rows = server.results(&job_id).await;
    let expect = |i: usize, succeeded: bool, http: i32, code: Option<&str>| {
        assert_eq!(
            (rows[i].0, rows[i].1, rows[i].2.as_deref()),
            (succeeded, http, code),
            "{}: {:?}",
            keys[i],
            rows[i]
        );
    };
    expect(0, true, 200, None);
    assert_eq!(rows[0].3.as_deref(), Some("done ok/a b+c.txt"));
    expect(1, false, 200, Some("PermanentFailure"));
    assert_eq!(rows[1].3.as_deref(), Some("cannot do it"));
    expect(2, true, 200, None);
    expect(3, false, 200, Some("TemporaryFailure"));
    expect(4, false, 500, Some("InvokeHttpError"));
    assert!(rows[4].3.as_deref().unwrap().contains("upstream exploded"));
    expect(5, true, 200, None);
    expect(6, false, 404, Some("InvokeHttpError"));
    expect(7, false, 200, Some("InvalidResponse"));
    expect(8, false, 200, Some("PermanentFailure"));
    // A reply with a NUL character and 10 kB of text is stored, cut and cleaned.
    expect(9, true, 200, None);
    let hostile = rows[9].3.as_deref().unwrap();
    assert!(
        hostile.starts_with("nul\u{fffd}x") && hostile.len() <= 4096,
        "{}",
        hostile.len()
    );

    // Transient failures were retried up to the limit; the rest were not.
    let attempts: Vec<usize> = keys.iter().map(|k| endpoint.calls_for(k)).collect();
    assert_eq!(attempts, vec![1, 1, 2, 3, 3, 2, 1, 1, 1, 1]);

    // The event is AWS's schema 2.0, with the key URL-encoded.
    let call = endpoint
        .calls()
        .into_iter()
        .find(|c| c.key == "ok/a b+c.txt")
        .unwrap();
    let event = &call.event;
    assert_eq!(event["invocationSchemaVersion"], "2.0");
    assert_eq!(event["job"]["id"], job_id.as_str());
    assert_eq!(event["job"]["userArguments"]["mode"], "test");
    assert_eq!(event["tasks"][0]["s3Bucket"], "data");
    assert_eq!(event["tasks"][0]["s3Key"], "ok/a%20b%2Bc.txt");
    assert!(event["tasks"][0]["s3VersionId"].is_null());
    assert!(
        event["invocationId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    server.stop().await;
}

#[tokio::test]
async fn schema_1_0_names_the_bucket_by_arn_and_a_slow_endpoint_times_out() {
    let endpoint = TestEndpoint::start(|event, key, _| {
        if key.starts_with("slow") {
            Reply {
                delay: Duration::from_secs(3),
                ..Reply::result(event, "Succeeded", "too late")
            }
        } else {
            Reply::result(event, "Succeeded", "fine")
        }
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        task_max_attempts: 2,
        ..Settings::default()
    })
    .await;
    write_manifest(&server, &["data,fast".into(), "data,slow".into()]);
    let mut request = invoke_job(
        "v1",
        &endpoint.url,
        pb::InvocationSchemaVersion::Unspecified,
    );
    if let Some(pb::operation::Operation::Invoke(invoke)) =
        request.operation.as_mut().unwrap().operation.as_mut()
    {
        invoke.timeout_seconds = 1;
    }
    let job_id = server
        .client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut server.client, &job_id, S::Complete).await;
    let rows = server.results(&job_id).await;
    assert!(rows[0].0);
    assert_eq!(
        (rows[1].0, rows[1].2.as_deref()),
        (false, Some("RequestTimeout"))
    );
    assert_eq!(endpoint.calls_for("slow"), 2);
    let event = &endpoint
        .calls()
        .into_iter()
        .find(|c| c.key == "fast")
        .unwrap()
        .event;
    assert_eq!(event["invocationSchemaVersion"], "1.0");
    assert_eq!(event["tasks"][0]["s3BucketArn"], "arn:aws:s3:::data");
    assert!(event["job"].get("userArguments").is_none());
    server.stop().await;
}

#[tokio::test]
async fn endpoints_outside_the_allowlist_are_refused() {
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: "http://127.0.0.1:1/allowed".into(),
        ..Settings::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:2/allowed",
        "http://127.0.0.1:1/allowedx",
        "file:///etc/passwd",
        "not a url",
    ] {
        let error = server
            .client
            .create_job(invoke_job(
                "deny",
                url,
                pb::InvocationSchemaVersion::InvocationSchemaVersion10,
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{url}");
        assert!(
            error.message().starts_with("operation.invoke.endpoint_url"),
            "{}",
            error.message()
        );
    }
    let mut with_arguments = invoke_job(
        "args",
        "http://127.0.0.1:1/allowed",
        pb::InvocationSchemaVersion::InvocationSchemaVersion10,
    );
    if let Some(pb::operation::Operation::Invoke(invoke)) = with_arguments
        .operation
        .as_mut()
        .unwrap()
        .operation
        .as_mut()
    {
        invoke.user_arguments.insert("k".into(), "v".into());
    }
    let error = server.client.create_job(with_arguments).await.unwrap_err();
    assert!(
        error
            .message()
            .starts_with("operation.invoke.user_arguments"),
        "{}",
        error.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn no_task_starts_after_cancellation_and_in_flight_calls_are_recorded() {
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(300),
        ..Reply::result(event, "Succeeded", "slowly")
    })
    .await;
    // Chunks of 10 tasks, 2 at a time, never handed back early: a claimed
    // chunk holds seconds of work that must not start once the job is
    // cancelled.
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        chunk_size: 10,
        task_concurrency: 2,
        extra: vec!["--chunk-slice-ms=600000".into()],
        ..Settings::default()
    })
    .await;
    let lines: Vec<String> = (0..40).map(|i| format!("data,k{i}")).collect();
    write_manifest(&server, &lines);
    let job_id = server
        .client
        .create_job(invoke_job(
            "drain",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion10,
        ))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut server.client, &job_id, S::Active).await;
    wait_until(|| endpoint.calls().len() >= 3).await;
    let response = server
        .client
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            requested_job_status: S::Cancelled as i32,
            status_update_reason: "enough".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status, S::Cancelling as i32);
    let job = wait_for(&mut server.client, &job_id, S::Cancelled).await;

    let client = server.db.client().await;
    let id = uuid::Uuid::parse_str(&job_id).unwrap();
    let cancelled_at: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT recorded_at FROM job_events WHERE job_id = $1 AND event_type = 'CancellationRequested'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let calls = endpoint.calls();
    // Workers notice the cancellation within their status check (≤ 100 ms):
    // nothing starts after that, although claimed chunks held more work.
    let late: Vec<_> = calls
        .iter()
        .filter(|c| c.started > cancelled_at + chrono::TimeDelta::milliseconds(500))
        .map(|c| c.key.clone())
        .collect();
    assert!(late.is_empty(), "calls started after the cancel: {late:?}");
    let progress = job.progress_summary.unwrap();
    let recorded = progress.number_of_tasks_succeeded + progress.number_of_tasks_failed;
    assert_eq!(
        recorded as usize,
        calls.len(),
        "every call that started was recorded"
    );
    assert!(recorded < 20, "{recorded} tasks ran");
    server.stop().await;
}

#[tokio::test]
async fn a_chunk_of_slow_tasks_is_recorded_a_slice_at_a_time_with_one_result_per_task() {
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(40),
        ..Reply::result(event, "Succeeded", "slowly")
    })
    .await;
    // One chunk of 30 tasks of 40 ms, one at a time: 1.2 s of work, which a
    // worker hands back every 200 ms after recording what ran.
    let mut server = sliced_server(&endpoint, 30, 1).await;
    let job_id = run_keys(&mut server, &endpoint, "sliced", 30).await;

    assert_each_key_called_once(&endpoint, 30);
    let (results, tasks, commits) = recorded(&server, &job_id, 30).await;
    assert_eq!((results, tasks), (30, 30), "one result per task");
    assert!(
        (3..30).contains(&commits),
        "the chunk was recorded in slices, not at its end or task by task: {commits} commits"
    );
    server.stop().await;
}

#[tokio::test]
async fn quick_work_is_claimed_many_chunks_at_a_time_and_slow_work_handed_back_without_a_task_lost_or_repeated()
 {
    // 100 chunks of 4 tasks: the first 300 tasks answer at once, the last
    // 100 after 30 ms. Quick claims grow to many chunks; a large claim that
    // meets the slow tasks is cut by its 200 ms slice, shrinking one chunk
    // and handing the rest back.
    let endpoint = TestEndpoint::start(|event, key, _| {
        let number: usize = key.trim_start_matches('k').parse().unwrap();
        Reply {
            delay: Duration::from_millis(if number < 300 { 0 } else { 30 }),
            ..Reply::result(event, "Succeeded", "done")
        }
    })
    .await;
    let mut server = sliced_server(&endpoint, 4, 4).await;
    let job_id = run_keys(&mut server, &endpoint, "claims", 400).await;

    assert_each_key_called_once(&endpoint, 400);
    let (results, tasks, quick_commits) = recorded(&server, &job_id, 300).await;
    assert_eq!((results, tasks), (400, 400), "one result per task");
    assert!(
        quick_commits < 40,
        "75 chunks of quick tasks were recorded in {quick_commits} commits, not one or more per chunk"
    );
    let left: i64 = server
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM task_chunks WHERE job_id = $1",
            &[&uuid::Uuid::parse_str(&job_id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no chunk is left behind");
    server.stop().await;
}

/// A server calling `endpoint` in chunks of `chunk_size`, `concurrency`
/// tasks at once, handing a claim back every 200 ms.
async fn sliced_server(endpoint: &TestEndpoint, chunk_size: u32, concurrency: usize) -> TestServer {
    TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        chunk_size,
        task_concurrency: concurrency,
        extra: vec!["--chunk-slice-ms=200".into()],
        ..Settings::default()
    })
    .await
}

/// Runs an Invoke job over keys `k0`..`k{count-1}` to Complete, every task
/// succeeded; gives its id.
async fn run_keys(
    server: &mut TestServer,
    endpoint: &TestEndpoint,
    name: &str,
    count: usize,
) -> String {
    let lines: Vec<String> = (0..count).map(|i| format!("data,k{i}")).collect();
    write_manifest(server, &lines);
    let job_id = server
        .client
        .create_job(invoke_job(
            name,
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    assert_eq!(
        job.progress_summary.unwrap().number_of_tasks_succeeded,
        count as u64
    );
    job_id
}

/// Every one of `count` keys was called, each once.
fn assert_each_key_called_once(endpoint: &TestEndpoint, count: usize) {
    let calls = endpoint.calls();
    let mut called: Vec<&str> = calls.iter().map(|c| c.key.as_str()).collect();
    called.sort();
    called.dedup();
    assert_eq!(
        (called.len(), calls.len()),
        (count, count),
        "every task ran, and ran once"
    );
}

/// The job's result rows, distinct tasks among them, and the commits that
/// recorded the tasks numbered below `below` (results of one commit share
/// their time).
async fn recorded(server: &TestServer, job_id: &str, below: i64) -> (i64, i64, i64) {
    let row = server
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT task_number), \
                    count(DISTINCT recorded_at) FILTER (WHERE task_number < $2) \
             FROM task_results WHERE job_id = $1",
            &[&uuid::Uuid::parse_str(job_id).unwrap(), &below],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}
