//! Audit replay: after a run with a pause, retries and a cancellation, the
//! projections rebuilt from the log equal what is stored; a tampered
//! projection is reported and repaired; history can include task results.

mod common;

use std::process::Command;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

fn replay(db: &TestDb, repair: bool) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batchops"));
    command.args(["replay", "--database-url", &db.url]);
    if repair {
        command.arg("--repair");
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn replaying_the_log_after_pauses_retries_and_cancellations_equals_the_stored_projections() {
    // Retries: every key fails once with a temporary failure.
    let endpoint = TestEndpoint::start(|event, _, previous| {
        if previous == 0 {
            Reply::result(event, "TemporaryFailure", "busy")
        } else {
            Reply::result(event, "Succeeded", "ok")
        }
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        max_active_jobs: 1,
        chunk_size: 2,
        task_concurrency: 2,
        invoke_allowlist: endpoint.url.clone(),
        ..Settings::default()
    })
    .await;
    let lines: Vec<String> = (0..20).map(|i| format!("data,k{i}")).collect();
    write_manifest(&server, &lines);

    // A low-priority job is paused by a higher-priority one.
    let lock = TableLock::take(&server.db, "task_results").await;
    let mut low = invoke_job(
        "low",
        &endpoint.url,
        pb::InvocationSchemaVersion::InvocationSchemaVersion20,
    );
    low.priority = 1;
    let low = server.create(low).await;
    wait_for(&mut server.client, &low, S::Active).await;
    let mut high = invoke_job(
        "high",
        &endpoint.url,
        pb::InvocationSchemaVersion::InvocationSchemaVersion20,
    );
    high.priority = 9;
    let high = server.create(high).await;
    wait_for(&mut server.client, &low, S::Pausing).await;
    lock.release().await;
    wait_for(&mut server.client, &high, S::Complete).await;
    wait_for(&mut server.client, &low, S::Complete).await;

    // A third job is cancelled while it runs.
    let lock = TableLock::take(&server.db, "task_results").await;
    let cancelled = server
        .create(invoke_job(
            "cancel",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion10,
        ))
        .await;
    wait_for(&mut server.client, &cancelled, S::Active).await;
    wait_until(|| !endpoint.calls().is_empty()).await;
    server
        .update_status(&cancelled, S::Cancelled, "stop")
        .await
        .unwrap();
    lock.release().await;
    wait_for(&mut server.client, &cancelled, S::Cancelled).await;
    let path = status_path(&mut server.client, &low).await;
    assert!(path.contains(&S::Paused), "{path:?}");

    let (clean, output) = replay(&server.db, false);
    assert!(clean, "{output}");
    assert!(output.contains("3 jobs replayed, 0 differ"), "{output}");

    // History can carry the task results after the events.
    let mut stream = server
        .client
        .get_job_history(pb::GetJobHistoryRequest {
            account_id: ACCOUNT.into(),
            job_id: low.clone(),
            after_sequence: 0,
            include_task_results: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut events, mut results) = (0, 0);
    while let Some(message) = stream.message().await.unwrap() {
        match (message.event, message.task_result) {
            (Some(_), None) => {
                assert_eq!(results, 0, "events come first");
                events += 1;
            }
            (None, Some(result)) => {
                assert_eq!(result.task_status, pb::TaskStatus::Succeeded as i32);
                results += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(events > 5);
    assert_eq!(results, 20);

    // A projection changed behind the log's back is reported, then repaired.
    server
        .db
        .client()
        .await
        .execute(
            "UPDATE jobs SET state = jsonb_set(state, '{priority}', '999') WHERE job_id = $1",
            &[&uuid::Uuid::parse_str(&high).unwrap()],
        )
        .await
        .unwrap();
    let (clean, output) = replay(&server.db, false);
    assert!(!clean);
    assert!(
        output.contains(&format!(
            "job {high}: stored projection differs from the log in priority"
        )),
        "{output}"
    );
    let (repaired, output) = replay(&server.db, true);
    assert!(repaired && output.contains("1 repaired"), "{output}");
    let (clean, output) = replay(&server.db, false);
    assert!(clean, "{output}");
    server.stop().await;
}

#[tokio::test]
async fn failures_are_summarised_by_error_code_as_they_are_recorded_and_replay_rebuilds_the_summary()
 {
    let endpoint = TestEndpoint::start(|event, key, _| match key.split('/').next() {
        Some("perm") => Reply::result(event, "PermanentFailure", &format!("cannot do {key}")),
        Some("http404") => Reply::raw(404, "no such function"),
        _ => Reply::result(event, "Succeeded", "ok"),
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        chunk_size: 4,
        task_concurrency: 4,
        invoke_allowlist: endpoint.url.clone(),
        ..Settings::default()
    })
    .await;
    // Task numbers follow the manifest: ok 0–9, perm 10–21, http404 22–24,
    // and perm again at 25–29.
    let mut lines: Vec<String> = (0..10).map(|i| format!("data,ok/{i}")).collect();
    lines.extend((0..12).map(|i| format!("data,perm/{i}")));
    lines.extend((0..3).map(|i| format!("data,http404/{i}")));
    lines.extend((12..17).map(|i| format!("data,perm/{i}")));
    write_manifest(&server, &lines);
    let job_id = server
        .create(invoke_job(
            "errors",
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;

    let summary: Vec<(String, u64, Vec<i64>)> = job
        .error_summaries
        .iter()
        .map(|code| {
            (
                code.error_code.clone(),
                code.failed_tasks,
                code.samples.iter().map(|s| s.task_number).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("InvokeHttpError".to_owned(), 3, vec![22, 23, 24]),
            ("PermanentFailure".to_owned(), 17, vec![10, 11, 12, 13, 14]),
        ]
    );
    let sample = &job.error_summaries[1].samples[0];
    assert_eq!(
        (sample.bucket.as_str(), sample.key.as_str()),
        ("data", "perm/0")
    );
    assert_eq!(sample.message, "cannot do perm/0");
    assert_eq!(job.other_codes_failed_tasks, 0);
    // The server runs on this test's runtime: the CLI is waited for on
    // another thread.
    let endpoint = format!("http://{}", server.address);
    let (account, job) = (ACCOUNT.to_owned(), job_id.clone());
    let described = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_batchops"))
            .args([
                "describe-job",
                "--endpoint",
                &endpoint,
                "--account-id",
                &account,
                "--job-id",
                &job,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(text.contains("PermanentFailure ×17"), "{text}");
    assert!(
        text.contains("task 10 data/perm/0: cannot do perm/0"),
        "{text}"
    );

    // The summary is a projection like the others: replay rebuilds it from
    // the task result log and finds it equal; a tampered one is reported.
    let (clean, report) = replay(&server.db, false);
    assert!(clean, "{report}");
    let id = uuid::Uuid::parse_str(&job_id).unwrap();
    server
        .db
        .client()
        .await
        .execute(
            "UPDATE jobs SET state = jsonb_set(state, '{errors,codes,PermanentFailure,failed}', '1') \
             WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (clean, report) = replay(&server.db, false);
    assert!(!clean, "a tampered summary is a difference: {report}");
    replay(&server.db, true);
    let (clean, report) = replay(&server.db, false);
    assert!(clean, "repaired: {report}");
    let repaired = describe(&mut server.client, &job_id).await;
    assert_eq!(repaired.error_summaries[1].failed_tasks, 17);
    server.stop().await;
}
