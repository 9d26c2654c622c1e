//! Crash safety with real server processes: SIGKILL at any point of a run
//! loses nothing and duplicates nothing; two processes on one database share
//! the work without exceeding the slot limit.

mod common;

use std::time::Duration;

use batchops::domain::{JobId, JobStatus};
use batchops::proto as pb;
use batchops::store::{LoggedEvent, Store, jobs};
use common::*;
use pb::JobStatus as S;

fn start(db: &TestDb, objects: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--lease-seconds",
        "3",
        "--chunk-size",
        "4",
        "--file-chunk-size",
        "4",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(db, &objects.display().to_string(), &args, &[])
}

/// Checks the job's results: one per task, counters equal to them, and the
/// stored projection equal to the replay of the log.
async fn assert_exactly_one_result_per_task(db: &TestDb, job_id: &str, total: u64) {
    let client = db.client().await;
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT task_number), min(task_number), max(task_number)
             FROM task_results WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (count, distinct, min, max): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (count, distinct, min, max),
        (total as i64, total as i64, 0, total as i64 - 1)
    );
    let store = Store::connect(&db.url, 2).await.unwrap();
    let client = store.client().await.unwrap();
    let stored = jobs::load(&client, JobId(id), None).await.unwrap();
    assert_eq!(stored.progress.run(), total);
    assert_eq!(
        batchops::store::replay(&client, JobId(id))
            .await
            .unwrap()
            .unwrap(),
        stored
    );
}

#[tokio::test]
async fn sigkill_at_any_point_then_restart_finishes_with_one_result_per_task() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    for i in 0..10 {
        put_object(
            objects.path(),
            "data",
            &format!("o{i}"),
            format!("object {i}").as_bytes(),
        );
    }
    let total = 4000u64;
    let manifest: String = (0..total).map(|i| format!("data,o{}\n", i % 10)).collect();
    put_object(objects.path(), "data", "manifest.csv", manifest.as_bytes());

    let server = start(&db, objects.path(), &[]);
    let mut client = connect(server.address).await;
    let job_id = client
        .create_job(checksum_job("crash", Some(false)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut server = Some(server);
    // Kill it early (likely while preparing), then repeatedly mid-run.
    let mut kills = 0;
    for delay_ms in [30u64, 400, 250, 600, 150] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        drop(server.take());
        kills += 1;
        let job = describe(
            &mut connect_or_restart(&db, objects.path(), &mut server).await,
            &job_id,
        )
        .await;
        if job.status == S::Complete as i32 {
            break;
        }
    }
    assert!(
        kills >= 2,
        "the job finished before it could be killed twice"
    );
    let process = server.get_or_insert_with(|| start(&db, objects.path(), &[]));
    let mut client = connect(process.address).await;
    let job = wait_for(&mut client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.total_number_of_tasks,
            progress.number_of_tasks_succeeded
        ),
        (total, total)
    );
    assert_exactly_one_result_per_task(&db, &job_id, total).await;
}

/// Restarts the server (after a kill) and returns a client to it.
async fn connect_or_restart(
    db: &TestDb,
    objects: &std::path::Path,
    server: &mut Option<ServerProcess>,
) -> pb::job_service_client::JobServiceClient<tonic::transport::Channel> {
    let process = server.get_or_insert_with(|| start(db, objects, &[]));
    connect(process.address).await
}

#[tokio::test]
async fn two_processes_on_one_database_share_jobs_without_exceeding_slots_or_running_a_task_twice()
{
    // Every call the processes make is counted per object key.
    let endpoint = TestEndpoint::start(|event, _, _| Reply::result(event, "Succeeded", "ok")).await;
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let tasks = 300u64;
    let manifest: String = (0..tasks).map(|i| format!("data,k{i}\n")).collect();
    put_object(objects.path(), "data", "manifest.csv", manifest.as_bytes());
    let options = [
        "--max-active-jobs",
        "1",
        "--invoke-allowlist",
        endpoint.url.as_str(),
    ];
    let first = start(&db, objects.path(), &options);
    let second = start(&db, objects.path(), &options);
    let mut a = connect(first.address).await;
    let mut b = connect(second.address).await;

    let mut ids = Vec::new();
    for i in 0..4 {
        let client = if i % 2 == 0 { &mut a } else { &mut b };
        let mut request = invoke_job(
            &format!("shared{i}"),
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion10,
        );
        request.priority = i;
        ids.push(
            client
                .create_job(request)
                .await
                .unwrap()
                .into_inner()
                .job_id,
        );
    }
    for id in &ids {
        wait_for(&mut a, id, S::Complete).await;
    }
    for id in &ids {
        assert_exactly_one_result_per_task(&db, id, tasks).await;
    }
    // Without crashes, every task of every job was run exactly once.
    let mut runs = std::collections::HashMap::<(String, String), usize>::new();
    for call in endpoint.calls() {
        let job = call.event["job"]["id"].as_str().unwrap().to_owned();
        *runs.entry((job, call.key)).or_default() += 1;
    }
    assert_eq!(runs.len(), ids.len() * tasks as usize);
    assert!(runs.values().all(|n| *n == 1), "some task ran twice");

    // Replaying every status change in log order, the account never had more
    // than one job holding a slot (Active or Pausing).
    let store = Store::connect(&db.url, 2).await.unwrap();
    let client = store.client().await.unwrap();
    let mut changes = Vec::new();
    for id in &ids {
        let id = JobId(uuid::Uuid::parse_str(id).unwrap());
        for recorded in jobs::events_after(&client, id, 0, 1000).await.unwrap() {
            if let LoggedEvent::Changed(event) = &recorded.event
                && let Some(status) = event.target_status()
            {
                changes.push((recorded.position, id, status));
            }
        }
    }
    changes.sort_by_key(|(position, _, _)| *position);
    let mut status = std::collections::HashMap::new();
    let mut most = 0;
    for (_, id, next) in changes {
        status.insert(id, next);
        let holding = status
            .values()
            .filter(|s| matches!(s, JobStatus::Active | JobStatus::Pausing))
            .count();
        most = most.max(holding);
    }
    assert_eq!(most, 1);
}
