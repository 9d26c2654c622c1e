//! The execution engine end to end: preemption, draining, the task-failure
//! threshold.

mod common;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

/// (recorded_at, event_type) of a job's events, from the log.
async fn event_times(
    server: &TestServer,
    job_id: &str,
) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
    let client = server.db.client().await;
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    client
        .query(
            "SELECT recorded_at, event_type FROM job_events WHERE job_id = $1 ORDER BY sequence",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn results_between(
    server: &TestServer,
    job_id: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> i64 {
    let client = server.db.client().await;
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    client
        .query_one(
            "SELECT count(*) FROM task_results WHERE job_id = $1 AND recorded_at > $2 AND recorded_at < $3",
            &[&id, &from, &to],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_higher_priority_job_pauses_a_running_one_which_resumes_and_completes_afterwards() {
    // Given one active slot and a low-priority job whose in-flight chunks are
    // held (their results cannot be recorded while task_results is locked)
    let mut server = TestServer::start_with(Settings {
        max_active_jobs: 1,
        chunk_size: 2,
        task_concurrency: 2,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &vec!["data,a".to_string(); 40]);
    let lock = TableLock::take(&server.db, "task_results").await;
    let mut low = checksum_job("low", Some(false));
    low.priority = 1;
    let low = server.create(low).await;
    wait_for(&mut server.client, &low, S::Active).await;

    // When a higher-priority job becomes Ready
    let mut high = checksum_job("high", Some(false));
    high.priority = 10;
    let high = server.create(high).await;

    // Then the running job stops starting tasks and drains
    wait_for(&mut server.client, &low, S::Pausing).await;
    assert_eq!(
        describe(&mut server.client, &high).await.status,
        S::Ready as i32,
        "the slot is still held while draining"
    );
    lock.release().await;

    // And both complete, the preempted one after the other
    wait_for(&mut server.client, &high, S::Complete).await;
    let job = wait_for(&mut server.client, &low, S::Complete).await;
    assert_eq!(job.progress_summary.unwrap().number_of_tasks_succeeded, 40);
    assert_eq!(
        status_path(&mut server.client, &low).await,
        vec![
            S::New,
            S::Preparing,
            S::Ready,
            S::Active,
            S::Pausing,
            S::Paused,
            S::Active,
            S::Completing,
            S::Complete
        ]
    );

    // No task of the paused job ran between its pause and its resumption, and
    // only the chunks in flight when it began pausing were recorded after that.
    let times = event_times(&server, &low).await;
    let at = |name: &str, nth: usize| times.iter().filter(|(_, t)| t == name).nth(nth).unwrap().0;
    let pausing = at("PauseRequested", 0);
    let paused = at("JobPaused", 0);
    let resumed = at("JobActivated", 1);
    assert!(results_between(&server, &low, pausing, paused).await <= 4);
    assert_eq!(results_between(&server, &low, paused, resumed).await, 0);
    let high_done = event_times(&server, &high)
        .await
        .iter()
        .find(|(_, t)| t == "AllTasksFinished")
        .unwrap()
        .0;
    assert!(
        high_done <= resumed,
        "the preempting job finished before the paused one resumed"
    );
    server.stop().await;
}

#[tokio::test]
async fn raising_a_waiting_jobs_priority_gives_it_the_slot_at_once() {
    // The engine polls only hourly: everything below happens because
    // commands and finished steps wake the engine loops.
    let mut server = TestServer::start_with(Settings {
        max_active_jobs: 1,
        chunk_size: 2,
        task_concurrency: 2,
        poll_interval_ms: 3_600_000,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &vec!["data,a".to_string(); 20]);
    let lock = TableLock::take(&server.db, "task_results").await;
    let first = server.create(checksum_job("first", Some(false))).await;
    wait_for(&mut server.client, &first, S::Active).await;
    let second = server.create(checksum_job("second", Some(false))).await;
    wait_for(&mut server.client, &second, S::Ready).await;
    // Equal priority never preempts.
    let client = server.client.clone();
    holds_for(std::time::Duration::from_millis(200), || {
        let (mut client, first) = (client.clone(), first.clone());
        async move { describe(&mut client, &first).await.status == S::Active as i32 }
    })
    .await;

    let response = server
        .client
        .update_job_priority(pb::UpdateJobPriorityRequest {
            account_id: ACCOUNT.into(),
            job_id: second.clone(),
            priority: 50,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.priority, 50);
    wait_for(&mut server.client, &first, S::Pausing).await;
    lock.release().await;
    wait_for(&mut server.client, &second, S::Complete).await;
    wait_for(&mut server.client, &first, S::Complete).await;
    let path = status_path(&mut server.client, &first).await;
    assert!(
        path.windows(2).any(|w| w == [S::Pausing, S::Paused]),
        "{path:?}"
    );
    server.stop().await;
}

fn threshold_manifest(server: &TestServer, tasks: usize, failing_percent: usize) {
    server.put_object("data", "present", b"here");
    let lines: Vec<String> = (0..tasks)
        .map(|i| {
            if i % 100 < failing_percent {
                "data,absent".to_string()
            } else {
                "data,present".to_string()
            }
        })
        .collect();
    write_manifest(server, &lines);
}

#[tokio::test]
async fn sixty_percent_failures_over_1200_tasks_fail_the_job_with_the_counts() {
    let mut server = TestServer::start_with(Settings {
        chunk_size: 50,
        task_concurrency: 16,
        ..Settings::default()
    })
    .await;
    threshold_manifest(&server, 1200, 60);
    let job_id = server.create(checksum_job("fail", Some(false))).await;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    let reason = &job.failure_reasons[0];
    assert_eq!(reason.failure_code, "TaskFailureThresholdExceeded");
    let progress = job.progress_summary.unwrap();
    let run = progress.number_of_tasks_succeeded + progress.number_of_tasks_failed;
    assert!(run >= 1000, "{run} tasks ran before the check");
    assert!(progress.number_of_tasks_failed * 2 > run);
    assert!(
        reason.failure_reason.contains("of") && reason.failure_reason.contains("50 %"),
        "{}",
        reason.failure_reason
    );
    assert_eq!(
        status_path(&mut server.client, &job_id).await,
        vec![
            S::New,
            S::Preparing,
            S::Ready,
            S::Active,
            S::Failing,
            S::Failed
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn forty_percent_failures_over_1200_tasks_complete_the_job() {
    let mut server = TestServer::start_with(Settings {
        chunk_size: 50,
        task_concurrency: 16,
        ..Settings::default()
    })
    .await;
    threshold_manifest(&server, 1200, 40);
    let job_id = server.create(checksum_job("pass", Some(false))).await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (720, 480)
    );
    assert!(job.failure_reasons.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_job_may_lower_its_own_failure_threshold() {
    let mut server = TestServer::start().await;
    threshold_manifest(&server, 100, 30);
    let mut request = checksum_job("strict", Some(false));
    request.failure_threshold = Some(pb::FailureThreshold {
        minimum_tasks_run: Some(10),
        max_failure_percent: Some(10),
    });
    let job_id = server.create(request).await;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert_eq!(
        job.failure_reasons[0].failure_code,
        "TaskFailureThresholdExceeded"
    );
    let threshold = job.failure_threshold.unwrap();
    assert_eq!(
        (threshold.minimum_tasks_run, threshold.max_failure_percent),
        (Some(10), Some(10))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_job_left_suspended_past_the_limit_fails_saying_so() {
    let mut server = TestServer::start_with(Settings {
        suspension_limit_seconds: 1,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &["data,a".into()]);
    let job_id = server.create(checksum_job("wait", None)).await;
    wait_for(&mut server.client, &job_id, S::Suspended).await;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert_eq!(
        job.failure_reasons[0].failure_code,
        "SuspensionLimitExceeded"
    );
    assert!(
        job.failure_reasons[0].failure_reason.contains("1 second"),
        "{:?}",
        job.failure_reasons
    );
    assert_eq!(
        status_path(&mut server.client, &job_id).await,
        vec![S::New, S::Preparing, S::Suspended, S::Failing, S::Failed]
    );
    server.stop().await;
}

#[tokio::test]
async fn jobs_run_to_the_end_without_waiting_for_polls() {
    // The engine polls only hourly: the job moves because steps wake it.
    let mut server = TestServer::start_with(Settings {
        poll_interval_ms: 3_600_000,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &vec!["data,a".to_string(); 25]);
    let done = server.create(checksum_job("fast", None)).await;
    wait_for(&mut server.client, &done, S::Suspended).await;
    server
        .client
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: ACCOUNT.into(),
            job_id: done.clone(),
            requested_job_status: S::Ready as i32,
            status_update_reason: String::new(),
        })
        .await
        .unwrap();
    let job = wait_for(&mut server.client, &done, S::Complete).await;
    assert_eq!(job.progress_summary.unwrap().number_of_tasks_succeeded, 25);
    server.stop().await;
}
