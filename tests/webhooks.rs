//! Status webhooks end to end against real HTTP endpoints on loopback:
//! every status change POSTed as AWS's EventBridge event, at least once and
//! in order per job, through an endpoint that fails for a while and across
//! a SIGKILL of the server; one account's hanging endpoint does not hold up
//! another's.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

/// A checksum job of `account` over two objects, without confirmation,
/// whose status changes go to `endpoint` (when given).
fn notified_job(
    server_objects: &std::path::Path,
    account: &str,
    token: &str,
    endpoint: Option<&str>,
) -> pb::CreateJobRequest {
    let manifest = format!("{token}.csv");
    for key in ["a", "b"] {
        put_object(server_objects, "data", &format!("{token}/{key}"), b"x");
    }
    put_object(
        server_objects,
        "data",
        &manifest,
        format!("data,{token}/a\ndata,{token}/b\n").as_bytes(),
    );
    let mut request = checksum_job_of(account, token, &manifest);
    request.notification = endpoint.map(|url| pb::JobNotification {
        endpoint_url: url.into(),
    });
    request
}

/// Each job's events as received, in arrival order: (sequence, event).
fn received_by_job(endpoint: &TestEndpoint) -> BTreeMap<String, Vec<(u64, serde_json::Value)>> {
    let mut jobs: BTreeMap<String, Vec<(u64, serde_json::Value)>> = BTreeMap::new();
    for call in endpoint.calls() {
        let detail = &call.event["detail"];
        let job = detail["serviceEventDetails"]["jobId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let sequence = detail["batchops"]["sequence"].as_u64().unwrap_or_default();
        jobs.entry(job).or_default().push((sequence, call.event));
    }
    jobs
}

/// The sequences and statuses of a job's status changes, from its history:
/// what its endpoint must receive.
async fn expected_changes(
    client: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> Vec<(u64, String)> {
    history(client, job_id, 0)
        .await
        .into_iter()
        .filter_map(|event| {
            let status = match event.event? {
                pb::job_event::Event::JobCreated(_) => "New".to_owned(),
                pb::job_event::Event::StatusChanged(change) => batchops_status_name(change.status),
                _ => return None,
            };
            Some((event.sequence as u64, status))
        })
        .collect()
}

/// Waits until every job of `jobs` has had each of its status changes
/// delivered (repeats aside), then asserts they came in order.
async fn all_delivered(
    endpoint: &TestEndpoint,
    client: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    jobs: &[String],
) {
    let mut expected = BTreeMap::new();
    for job in jobs {
        expected.insert(job.clone(), expected_changes(client, job).await);
    }
    wait_until(|| {
        let received = received_by_job(endpoint);
        expected.iter().all(|(job, changes)| {
            received
                .get(job)
                .is_some_and(|events| deduplicated(events).len() == changes.len())
        })
    })
    .await;
    let received = received_by_job(endpoint);
    for (job, changes) in &expected {
        assert_eq!(&deduplicated(&received[job]), changes, "job {job}");
    }
}

/// `batchops_notification_lag_events` as the metrics endpoint shows it now.
async fn lag_events(metrics: std::net::SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("batchops_notification_lag_events "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(-1.0)
}

fn batchops_status_name(value: i32) -> String {
    let name = S::try_from(value).unwrap().as_str_name();
    name.trim_start_matches("JOB_STATUS_")
        .split('_')
        .map(|word| word[..1].to_owned() + &word[1..].to_ascii_lowercase())
        .collect()
}

/// What a job's receiver makes of its deliveries: each event once, by id,
/// in the order first received. Asserts that no event arrived before an
/// earlier one of the same job had (in order, repeats aside).
fn deduplicated(events: &[(u64, serde_json::Value)]) -> Vec<(u64, String)> {
    let mut seen = HashSet::new();
    let mut first = Vec::new();
    for (sequence, event) in events {
        let id = event["id"].as_str().unwrap().to_owned();
        assert_eq!(
            event["detail"]["eventID"], event["id"],
            "the CloudTrail record carries the event's id"
        );
        if seen.insert(id) {
            if let Some((last, _)) = first.last() {
                assert!(sequence > last, "event {sequence} arrived after {last}");
            }
            let status = event["detail"]["serviceEventDetails"]["status"]
                .as_str()
                .unwrap()
                .to_owned();
            first.push((*sequence, status));
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_change_is_posted_in_order_as_aws_eventbridge_events() {
    // Given an endpoint in the invoke allowlist,
    let endpoint = TestEndpoint::start(|_, _, _| Reply::raw(200, "")).await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.base.clone(),
        ..Settings::default()
    })
    .await;
    let objects = server.objects.path().to_owned();
    // when a job names it and runs to Complete (and another names none),
    let job_id = server
        .create(notified_job(
            &objects,
            ACCOUNT,
            "hooked",
            Some(&endpoint.url),
        ))
        .await;
    let quiet = server
        .create(notified_job(&objects, ACCOUNT, "quiet", None))
        .await;
    wait_for(&mut server.client, &job_id, S::Complete).await;
    wait_for(&mut server.client, &quiet, S::Complete).await;
    let expected = expected_changes(&mut server.client, &job_id).await;
    assert_eq!(
        expected.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        [
            "New",
            "Preparing",
            "Ready",
            "Active",
            "Completing",
            "Complete"
        ]
    );
    wait_until(|| {
        received_by_job(&endpoint)
            .get(&job_id)
            .is_some_and(|events| events.len() >= expected.len())
    })
    .await;

    // then each status change arrived once, in order, in AWS's shape,
    let received = received_by_job(&endpoint);
    assert_eq!(
        received.len(),
        1,
        "the job without an endpoint sent nothing"
    );
    let events = &received[&job_id];
    assert_eq!(deduplicated(events), expected);
    assert_eq!(events.len(), expected.len(), "no repeats without failures");
    let (_, created) = &events[0];
    assert_eq!(created["detail-type"], "AWS Service Event via CloudTrail");
    assert_eq!(created["source"], "aws.s3");
    assert_eq!(created["account"], ACCOUNT);
    assert_eq!(created["detail"]["eventName"], "JobCreated");
    let (_, complete) = events.last().unwrap();
    let details = &complete["detail"]["serviceEventDetails"];
    assert_eq!(complete["detail"]["eventName"], "JobStatusChanged");
    assert_eq!(details["jobId"], job_id);
    assert_eq!(
        details["jobArn"],
        format!("arn:aws:s3:us-east-1:{ACCOUNT}:job/{job_id}")
    );
    assert_eq!(details["failureCodes"], serde_json::json!([]));
    assert_eq!(
        complete["detail"]["batchops"]["previousStatus"],
        "Completing"
    );
    // with log positions that grow,
    let positions: Vec<i64> = events
        .iter()
        .map(|(_, e)| e["detail"]["batchops"]["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    // and DescribeJob names the endpoint.
    let described = describe(&mut server.client, &job_id).await;
    assert_eq!(described.notification.unwrap().endpoint_url, endpoint.url);
    assert!(
        describe(&mut server.client, &quiet)
            .await
            .notification
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_endpoint_outside_the_invoke_allowlist_is_refused_by_name() {
    let mut server = TestServer::idle().await;
    let objects = server.objects.path().to_owned();
    for endpoint in [
        "http://169.254.169.254/latest/meta-data/",
        "ftp://127.0.0.1/hook",
        "http://user:secret@127.0.0.1:9/hook",
    ] {
        let error = server
            .client
            .create_job(notified_job(&objects, ACCOUNT, "refused", Some(endpoint)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{endpoint}");
        assert!(
            error.message().starts_with("notification.endpoint_url:"),
            "{}",
            error.message()
        );
        assert!(!error.message().contains("secret"), "{}", error.message());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_with_backoff_and_nothing_is_lost_or_reordered() {
    // Given an endpoint that fails its first six calls with 503,
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let endpoint = TestEndpoint::start(move |_, _, _| {
        if counted.fetch_add(1, Ordering::SeqCst) < 6 {
            Reply::raw(503, "busy")
        } else {
            Reply::raw(204, "")
        }
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.base.clone(),
        extra: vec!["--notification-retry-base-ms=20".into()],
        ..Settings::default()
    })
    .await;
    let objects = server.objects.path().to_owned();
    // when two jobs name it,
    let mut jobs = Vec::new();
    for token in ["first", "second"] {
        jobs.push(
            server
                .create(notified_job(&objects, ACCOUNT, token, Some(&endpoint.url)))
                .await,
        );
    }
    for job in &jobs {
        wait_for(&mut server.client, job, S::Complete).await;
    }
    // then every status change of each arrives, each job's in order,
    all_delivered(&endpoint, &mut server.client, &jobs).await;
    // after the failed calls were tried again,
    assert!(calls.load(Ordering::SeqCst) > 6 + 6 * 2 - 1);
    // and the checkpoints say so.
    let store = batchops::store::Store::connect(&server.db.url, 1)
        .await
        .unwrap();
    let client = store.client().await.unwrap();
    for job in &jobs {
        let id = batchops::domain::JobId(uuid::Uuid::parse_str(job).unwrap());
        let state = batchops::store::notifications::state(&client, id)
            .await
            .unwrap()
            .unwrap();
        assert!(state.done, "{state:?}");
        assert_eq!(state.attempts, 0);
        assert_eq!(state.last_error, None);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_sigkill_of_the_server_without_loss_or_reordering() {
    // Given the server-wide default endpoint, which takes four calls, then
    // fails until the test lets it through again,
    let healthy = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let (gate, counted) = (healthy.clone(), calls.clone());
    let endpoint = TestEndpoint::start(move |_, _, _| {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        if call >= 4 && !gate.load(Ordering::SeqCst) {
            Reply::raw(500, "down")
        } else {
            Reply::raw(200, "")
        }
    })
    .await;
    healthy.store(false, Ordering::SeqCst);
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = objects.path().display().to_string();
    let flags = [
        "--notification-endpoint",
        endpoint.url.as_str(),
        "--notification-retry-base-ms",
        "50",
        "--notification-timeout-ms",
        "500",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let server = ServerProcess::start(&db, &store, &flags, &[]);
    let mut client = connect(server.address).await;
    // when three jobs (naming no endpoint) run to the end,
    let mut jobs = Vec::new();
    for token in ["k1", "k2", "k3"] {
        let request = notified_job(objects.path(), ACCOUNT, token, None);
        jobs.push(
            client
                .create_job(request)
                .await
                .unwrap()
                .into_inner()
                .job_id,
        );
    }
    for job in &jobs {
        wait_for(&mut client, job, S::Complete).await;
    }
    // while the endpoint fails, the lag shows what is owed,
    let owed = lag_events(server.metrics_address.unwrap()).await;
    assert!(owed > 0.0, "lag {owed}");
    wait_until(|| calls.load(Ordering::SeqCst) > 8).await;
    // and the server is killed,
    drop(server);
    // then a new server, once the endpoint is back, delivers the rest.
    healthy.store(true, Ordering::SeqCst);
    let server = ServerProcess::start(&db, &store, &flags, &[]);
    let mut client = connect(server.address).await;
    all_delivered(&endpoint, &mut client, &jobs).await;
    let metrics = server.metrics_address.unwrap();
    let mut settled = lag_events(metrics).await;
    for _ in 0..100 {
        if settled == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        settled = lag_events(metrics).await;
    }
    assert_eq!(settled, 0.0, "nothing is owed once all is delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_accounts_hanging_endpoint_does_not_hold_up_another_accounts_notifications() {
    // Given an endpoint that never answers in time, named by twelve jobs of
    // one account (more than a process's delivery slots),
    let hanging = TestEndpoint::start(|_, _, _| Reply {
        delay: Duration::from_secs(120),
        ..Reply::raw(200, "")
    })
    .await;
    let prompt = TestEndpoint::start(|_, _, _| Reply::raw(200, "")).await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: format!("{},{}", hanging.base, prompt.base),
        extra: vec!["--notification-timeout-ms=120000".into()],
        ..Settings::default()
    })
    .await;
    let objects = server.objects.path().to_owned();
    for i in 0..12 {
        let request = notified_job(
            &objects,
            "999988887777",
            &format!("slow{i}"),
            Some(&hanging.url),
        );
        server.client.create_job(request).await.unwrap();
    }
    wait_until(|| !hanging.calls().is_empty()).await;
    // when another account's job runs,
    let job_id = server
        .create(notified_job(&objects, ACCOUNT, "fast", Some(&prompt.url)))
        .await;
    wait_for(&mut server.client, &job_id, S::Complete).await;
    // then its whole history arrives while the first account's endpoint hangs.
    all_delivered(&prompt, &mut server.client, std::slice::from_ref(&job_id)).await;
    assert_eq!(
        hanging.calls().len(),
        1,
        "one delivery slot for the hanging account"
    );
    server.stop().await;
}
