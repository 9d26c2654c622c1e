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
