//! WatchJobs: catch-up from the log, the caught_up marker, live events,
//! heartbeats, gap-safe positions under concurrent writers, and delivery
//! across server processes.

mod common;

use std::time::Duration;

use batchops::domain::{Command, JobId};
use batchops::proto as pb;
use batchops::store::{Store, StoreError, jobs};
use common::*;
use pb::watch_jobs_response::Message;
use tonic::Streaming;

async fn watch(
    client: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    after: Option<i64>,
) -> Streaming<pb::WatchJobsResponse> {
    client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: ACCOUNT.into(),
            job_ids: vec![],
            after_position: after,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::WatchJobsResponse>) -> pb::WatchJobsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .expect("the stream is open")
}

/// Messages up to (not including) the first of another kind than events.
async fn events_until_caught_up(
    stream: &mut Streaming<pb::WatchJobsResponse>,
) -> (Vec<pb::JobEvent>, i64) {
    let mut events = Vec::new();
    loop {
        let message = next(stream).await;
        match message.message {
            Some(Message::Event(event)) => {
                assert_eq!(event.position, message.position);
                events.push(event);
            }
            Some(Message::CaughtUp(_)) => return (events, message.position),
            other => panic!("unexpected {other:?} before caught_up"),
        }
    }
}

#[tokio::test]
async fn a_watch_catches_up_from_the_log_then_streams_live_events_and_heartbeats() {
    let mut server = TestServer::idle().await;
    let first = server.create(checksum_job("w1", None)).await;
    let second = server.create(checksum_job("w2", None)).await;
    let mut other_account = checksum_job("w3", None);
    other_account.account_id = "444455556666".into();
    server.create(other_account).await;

    let mut stream = watch(&mut server.client, Some(0)).await;
    let (events, caught_up_at) = events_until_caught_up(&mut stream).await;
    let jobs: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    assert_eq!(
        jobs,
        vec![first.as_str(), second.as_str()],
        "only this account's jobs"
    );
    assert!(events.iter().all(|e| e.event_type == "JobCreated"));
    assert_eq!(caught_up_at, events[1].position);

    // Live: a cancellation arrives as two status changes, in order.
    server
        .update_status(&first, pb::JobStatus::Cancelled, "live")
        .await
        .unwrap();
    let mut live = Vec::new();
    while live.len() < 2 {
        if let Some(Message::Event(event)) = next(&mut stream).await.message {
            live.push(event);
        }
    }
    let statuses: Vec<i32> = live
        .iter()
        .map(|e| match &e.event {
            Some(pb::job_event::Event::StatusChanged(change)) => change.status,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            pb::JobStatus::Cancelling as i32,
            pb::JobStatus::Cancelled as i32
        ]
    );
    let Some(pb::job_event::Event::StatusChanged(change)) = &live[0].event else {
        unreachable!()
    };
    assert_eq!(change.previous_status, pb::JobStatus::New as i32);
    assert!(live[0].position > caught_up_at && live[1].position > live[0].position);

    // Idle: heartbeats carry the current position.
    let heartbeat = next(&mut stream).await;
    assert!(
        matches!(heartbeat.message, Some(Message::Heartbeat(_))),
        "{heartbeat:?}"
    );
    assert_eq!(heartbeat.position, live[1].position);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_without_a_position_starts_from_now() {
    let mut server = TestServer::idle().await;
    let old = server.create(checksum_job("old", None)).await;
    let mut stream = watch(&mut server.client, None).await;
    let (events, _) = events_until_caught_up(&mut stream).await;
    assert!(events.is_empty());
    server
        .update_status(&old, pb::JobStatus::Cancelled, "")
        .await
        .unwrap();
    loop {
        if let Some(Message::Event(event)) = next(&mut stream).await.message {
            assert_eq!(event.job_id, old);
            assert_eq!(event.event_type, "CancellationRequested");
            break;
        }
    }
    let error = server
        .client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: ACCOUNT.into(),
            job_ids: vec!["x".into()],
            after_position: None,
        })
        .await
        .unwrap_err();
    assert!(
        error.message().starts_with("job_ids[0]"),
        "{}",
        error.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn watchers_resuming_anywhere_see_every_later_event_exactly_once_in_order_under_concurrent_writers()
 {
    let mut server = TestServer::idle().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(JobId(
            uuid::Uuid::parse_str(&server.create(checksum_job(&format!("c{i}"), None)).await)
                .unwrap(),
        ));
    }
    let store = Store::connect(&server.db.url, 16).await.unwrap();
    let start = jobs::last_position(&store.client().await.unwrap())
        .await
        .unwrap();

    // Watchers resume from spread-out positions, including the very start.
    let mut watchers = Vec::new();
    // How far each watcher has read, for waiting until all reached the end.
    let mut reached = Vec::new();
    for (i, after) in [0, 1, start / 2, start, start].into_iter().enumerate() {
        let mut client = connect(server.address).await;
        let mut stream = watch(&mut client, Some(after)).await;
        let read_to = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(after));
        reached.push(read_to.clone());
        watchers.push((
            i,
            after,
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut last_position = after;
                loop {
                    let message =
                        match tokio::time::timeout(Duration::from_secs(20), stream.message()).await
                        {
                            Ok(Ok(Some(message))) => message,
                            _ => return seen,
                        };
                    assert!(message.position >= last_position, "positions never go back");
                    last_position = message.position;
                    read_to.store(last_position, std::sync::atomic::Ordering::SeqCst);
                    if let Some(Message::Event(event)) = message.message {
                        seen.push(event.position);
                        if event.event_type == "TagsReplaced" && event.job_id == "stop" {
                            return seen;
                        }
                    }
                    if seen.len() >= 6 * 40 + 6
                        && message.position > 0
                        && seen.last() == Some(&message.position)
                    {
                        // Keep reading until the writers are done (checked below).
                    }
                }
            }),
        ));
    }

    // Several connections change several jobs at once.
    let mut writers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        let ids = ids.clone();
        // Each writer changes "its" job; all six jobs change at once.
        writers.push(tokio::spawn(async move {
            let mut client = store.client().await.unwrap();
            for n in 0..40 {
                let id = ids[(w + n) % ids.len()];
                // Status changes too: halfway, each writer cancels one job.
                let (id, command) = if n == 20 {
                    (
                        ids[w],
                        Command::Cancel {
                            reason: Some(format!("writer {w}")),
                        },
                    )
                } else {
                    (
                        id,
                        Command::ChangePriority {
                            priority: (w * 1000 + n) as i32,
                        },
                    )
                };
                match jobs::execute(&mut client, id, None, &command, chrono::Utc::now()).await {
                    // A cancelled job's priority no longer changes.
                    Ok(_) | Err(StoreError::Domain(_)) => {}
                    Err(other) => panic!("{other}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let client = store.client().await.unwrap();
    let end = jobs::last_position(&client).await.unwrap();
    let all: Vec<i64> = client
        .query("SELECT position FROM job_events ORDER BY position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Six creations, six cancellations (two events each) and the priority
    // changes that reached a job before its cancellation.
    assert!(all.len() > 6 + 12, "{} events", all.len());
    // Once every watcher has read to the end, close them.
    wait_until(|| {
        reached
            .iter()
            .all(|read_to| read_to.load(std::sync::atomic::Ordering::SeqCst) >= end)
    })
    .await;
    server.stop().await;
    for (i, after, watcher) in watchers {
        let seen = watcher.await.unwrap();
        let expected: Vec<i64> = all
            .iter()
            .copied()
            .filter(|p| *p > after && *p <= end)
            .collect();
        assert_eq!(seen, expected, "watcher {i} resuming after {after}");
    }
}

#[tokio::test]
async fn a_change_through_one_process_reaches_a_watcher_on_another_within_a_second() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &["--no-engine"],
        &[],
    );
    let b = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &["--no-engine"],
        &[],
    );
    let mut client_a = connect(a.address).await;
    let mut client_b = connect(b.address).await;
    let job_id = client_a
        .create_job(checksum_job("x", None))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut stream = watch(&mut client_b, None).await;
    let (_, _) = events_until_caught_up(&mut stream).await;
    for round in 0..3 {
        let priority = 20 + round;
        client_a
            .update_job_priority(pb::UpdateJobPriorityRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
                priority,
            })
            .await
            .unwrap();
        // Heartbeats are 5 s apart here: only the NOTIFY can deliver this in time.
        let delivered = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if let Some(Message::Event(event)) = next(&mut stream).await.message {
                    return event;
                }
            }
        })
        .await
        .expect("delivered within a second");
        assert!(
            matches!(delivered.event, Some(pb::job_event::Event::PriorityChanged(p)) if p.priority == priority)
        );
    }
    // A status change, too.
    client_a
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            requested_job_status: pb::JobStatus::Cancelled as i32,
            status_update_reason: "from a".into(),
        })
        .await
        .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Some(Message::Event(event)) = next(&mut stream).await.message {
                return event;
            }
        }
    })
    .await
    .expect("delivered within a second");
    let Some(pb::job_event::Event::StatusChanged(change)) = delivered.event else {
        panic!("{delivered:?}");
    };
    assert_eq!(
        (change.status, change.status_update_reason.as_str()),
        (pb::JobStatus::Cancelling as i32, "from a")
    );
}

#[tokio::test]
async fn a_slow_watcher_falls_behind_without_losing_or_repeating_events() {
    let mut server = TestServer::idle().await;
    let job =
        JobId(uuid::Uuid::parse_str(&server.create(checksum_job("slow", None)).await).unwrap());
    let mut stream = watch(&mut server.client, Some(0)).await;
    let (events, _) = events_until_caught_up(&mut stream).await;
    assert_eq!(events.len(), 1);

    // 1,500 events while the watcher reads nothing: more than its stream
    // buffer and more than the notification channel holds.
    let store = Store::connect(&server.db.url, 2).await.unwrap();
    let mut client = store.client().await.unwrap();
    for priority in 1..=1500 {
        change_priority(&mut client, job, priority).await;
    }
    let mut priorities = Vec::new();
    while priorities.len() < 1500 {
        if let Some(Message::Event(event)) = next(&mut stream).await.message
            && let Some(pb::job_event::Event::PriorityChanged(change)) = event.event
        {
            priorities.push(change.priority);
        }
    }
    assert_eq!(priorities, (1..=1500).collect::<Vec<i32>>());
    server.stop().await;
}

#[tokio::test]
async fn progress_updates_arrive_throttled_with_growing_counts() {
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(20),
        ..Reply::result(event, "Succeeded", "ok")
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        chunk_size: 2,
        task_concurrency: 2,
        ..Settings::default()
    })
    .await;
    let lines: Vec<String> = (0..120).map(|i| format!("data,k{i}")).collect();
    write_manifest(&server, &lines);
    let mut stream = watch(&mut server.client, None).await;
    events_until_caught_up(&mut stream).await;
    let started = std::time::Instant::now();
    let job_id = server
        .create(invoke_job(
            "progress",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion10,
        ))
        .await;
    let mut progress = Vec::new();
    loop {
        match next(&mut stream).await.message {
            Some(Message::Progress(update)) => {
                assert_eq!(update.job_id, job_id);
                progress.push(update.progress_summary.unwrap().number_of_tasks_succeeded);
            }
            Some(Message::Event(event)) if event.event_type == "JobCompleted" => break,
            _ => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(!progress.is_empty(), "no progress update in {seconds:.1} s");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // About one per second: never more than one per started second, plus one.
    assert!(
        (progress.len() as f64) <= seconds.ceil() + 1.0,
        "{} updates in {seconds:.1} s",
        progress.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn another_accounts_busy_log_does_not_hold_back_an_idle_watchers_heartbeats() {
    let mut server = TestServer::idle().await;
    // The watcher's account has nothing; another account's job changes
    // every 20 ms, each change a notice this stream must look at and skip.
    let mut stream = server
        .client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: "999999999999".into(),
            job_ids: vec![],
            after_position: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut stream).await.message,
        Some(Message::CaughtUp(_))
    ));
    let job =
        JobId(uuid::Uuid::parse_str(&server.create(checksum_job("busy", None)).await).unwrap());
    let store = Store::connect(&server.db.url, 2).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut client = store.client().await.unwrap();
        for priority in 1..=60 {
            change_priority(&mut client, job, priority).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // Heartbeats every 200 ms: at least three in the 1.2 s of writes, and
    // nothing of the other account's.
    let started = std::time::Instant::now();
    let mut heartbeats = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        match next(&mut stream).await.message {
            Some(Message::Heartbeat(_)) => heartbeats += 1,
            other => panic!("another account's {other:?}"),
        }
    }
    writer.await.unwrap();
    assert!(heartbeats >= 3, "{heartbeats} heartbeats in 1.2 s");
    server.stop().await;
}

/// A server that stops ends its watch streams, whether a stream is idle or
/// has just been sent a live event, and then finishes shutting down.
#[tokio::test]
async fn stopping_the_server_ends_every_watch_stream() {
    let mut server = TestServer::idle().await;
    let mut idle = watch(&mut server.client, None).await;
    let mut busy = watch(&mut server.client, None).await;
    for stream in [&mut idle, &mut busy] {
        let (_, _) = events_until_caught_up(stream).await;
    }
    // The busy stream's last poll gave a message when the server stops.
    server.create(checksum_job("stop-1", None)).await;
    assert!(matches!(
        next(&mut busy).await.message,
        Some(Message::Event(_))
    ));
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops within 10 s with watch streams open");
    for stream in [&mut idle, &mut busy] {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the stream ended with the server");
    }
}
