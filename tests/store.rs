//! Invariants of the event store, checked against real PostgreSQL: the logs
//! are append-only, each task has one result, sequences are dense under
//! concurrency, and the projection always equals the fold of the log.

mod common;

use batchops::domain::{
    AccountId, ChecksumAlgorithm, Command, FailureThreshold, JobId, JobSpec, ManifestFormat,
    ManifestSource, ManifestSpec, ObjectLocation, Operation, Tag,
};
use batchops::store::{JobCache, Store, StoreError, jobs, notifications};
use chrono::Utc;
use common::{TestDb, TestServer, change_priority, checksum_job, wait_for, write_manifest};
use proptest::prelude::*;
use std::time::Duration;

fn spec(token: &str) -> JobSpec {
    JobSpec {
        account_id: AccountId("acct".into()),
        client_request_token: token.into(),
        description: String::new(),
        priority: 1,
        confirmation_required: true,
        manifest: ManifestSource::Manifest(ManifestSpec {
            format: ManifestFormat::S3BatchOperationsCsv20180820,
            fields: vec![],
            location: ObjectLocation {
                bucket: "data".into(),
                key: "m.csv".into(),
            },
            etag: None,
            version_id: None,
        }),
        operation: Operation::ComputeObjectChecksum {
            algorithm: ChecksumAlgorithm::Crc32c,
        },
        report: None,
        tags: vec![],
        failure_threshold: FailureThreshold::default(),
        bucket_grant: None,
        role_arn: None,
        dry_run: false,
        notification_endpoint: None,
    }
}

async fn store(db: &TestDb) -> Store {
    Store::connect(&db.url, 8).await.unwrap()
}

async fn new_job(store: &Store, token: &str) -> JobId {
    new_job_of(store, &spec(token)).await
}

async fn new_job_of(store: &Store, spec: &JobSpec) -> JobId {
    let mut client = store.client().await.unwrap();
    let (id, created) = jobs::create(&mut client, JobId::generate(), spec, "fp", None, Utc::now())
        .await
        .unwrap();
    assert!(created);
    id
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_logged_events_and_results() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let id = new_job(&store, "a").await;
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO task_results (job_id, task_number, succeeded, http_status_code, recorded_at)
             VALUES ($1, 0, true, 200, now())",
            &[&id.0],
        )
        .await
        .unwrap();
    for statement in [
        "UPDATE job_events SET event_type = 'Forged'",
        "DELETE FROM job_events",
        "TRUNCATE job_events",
        "UPDATE task_results SET succeeded = false",
        "DELETE FROM task_results",
        "TRUNCATE task_results",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        let message = error.as_db_error().unwrap().message().to_owned();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let events: i64 = client
        .query_one("SELECT count(*) FROM job_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
}

#[tokio::test]
async fn a_task_has_at_most_one_result() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let id = new_job(&store, "a").await;
    let client = db.client().await;
    let insert =
        "INSERT INTO task_results (job_id, task_number, succeeded, http_status_code, recorded_at)
                  VALUES ($1, 7, $2, 200, now())";
    client.execute(insert, &[&id.0, &true]).await.unwrap();
    let error = client.execute(insert, &[&id.0, &false]).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}

#[tokio::test]
async fn an_event_with_a_taken_sequence_is_a_conflict_not_a_second_event() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let id = new_job(&store, "a").await;
    let client = db.client().await;
    let error = client
        .execute(
            "INSERT INTO job_events (job_id, sequence, event_type, schema_version, payload, recorded_at)
             VALUES ($1, 1, 'JobCreated', 1, '{}', now())",
            &[&id.0],
        )
        .await
        .unwrap_err();
    assert!(matches!(StoreError::from(error), StoreError::Conflict));
}

#[tokio::test]
async fn concurrent_commands_on_one_job_all_land_with_dense_sequences() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let id = new_job(&store, "a").await;
    let mut tasks = Vec::new();
    for priority in 100..120 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = store.client().await.unwrap();
            change_priority(&mut client, id, priority).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let client = store.client().await.unwrap();
    let events = jobs::events_after(&client, id, 0, 1000).await.unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=21).collect::<Vec<u64>>());
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let job = jobs::load(&client, id, None).await.unwrap();
    assert_eq!(job.version, 21);
    assert_eq!(
        batchops::store::replay(&client, id).await.unwrap().unwrap(),
        job
    );
}

#[tokio::test]
async fn after_a_full_run_the_projection_equals_the_fold_of_the_log() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a", b"a");
    let mut lines = vec!["data,a".to_string(); 30];
    lines.push("data,missing".into());
    write_manifest(&server, &lines);
    let mut ids = Vec::new();
    for token in ["x", "y"] {
        let id = server
            .client
            .create_job(checksum_job(token, Some(false)))
            .await
            .unwrap()
            .into_inner()
            .job_id;
        ids.push(id);
    }
    for id in &ids {
        wait_for(&mut server.client, id, batchops::proto::JobStatus::Complete).await;
    }
    let store = Store::connect(&server.db.url, 2).await.unwrap();
    let client = store.client().await.unwrap();
    for id in ids {
        let id = JobId(uuid::Uuid::parse_str(&id).unwrap());
        let stored = jobs::load(&client, id, None).await.unwrap();
        assert_eq!((stored.progress.succeeded, stored.progress.failed), (30, 1));
        assert_eq!(
            batchops::store::replay(&client, id).await.unwrap().unwrap(),
            stored
        );
    }
    server.stop().await;
}

fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::StartPreparation),
        (0u64..5, proptest::option::of(0u64..1 << 40)).prop_map(|(n, bytes)| {
            Command::FinishPreparation {
                total_number_of_tasks: n,
                total_bytes: bytes,
            }
        }),
        Just(Command::Confirm {
            reason: Some("ok".into())
        }),
        proptest::option::of("[a-z]{1,6}").prop_map(|reason| Command::Cancel { reason }),
        Just(Command::Activate),
        Just(Command::Pause),
        Just(Command::FinishDraining),
        Just(Command::FinishCompletion),
        (0i32..4).prop_map(|priority| Command::ChangePriority { priority }),
        "[a-c]".prop_map(|key| Command::ReplaceTags {
            tags: vec![Tag {
                key,
                value: "v".into()
            }]
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_commands_keep_the_stored_projection_equal_to_the_fold_of_the_log(
        dry_run in any::<bool>(),
        commands in proptest::collection::vec(any_command(), 1..25)
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let db = TestDb::new().await;
            let store = store(&db).await;
            let id = new_job_of(&store, &JobSpec { dry_run, ..spec("p") }).await;
            let mut client = store.client().await.unwrap();
            let mut accepted = 1;
            for command in &commands {
                match jobs::execute(&mut client, id, None, command, Utc::now()).await {
                    Ok((_, decision)) => accepted += decision.events.len(),
                    Err(StoreError::Domain(_)) => {}
                    Err(other) => panic!("{command:?}: {other}"),
                }
                let stored = jobs::load(&client, id, None).await.unwrap();
                let replayed = batchops::store::replay(&client, id).await.unwrap().unwrap();
                assert_eq!(replayed, stored, "after {command:?}");
                assert_eq!(stored.version as usize, accepted);
            }
        });
    }
}

/// Events exactly as schema version 1 stores them. If a change to the event
/// types breaks this test, bump the schema version and teach the decoder the
/// old shape instead: stored events are never rewritten.
const SCHEMA_V1_EVENTS: &[(&str, &str)] = &[
    (
        "JobCreated",
        r#"{"spec":{"account_id":"acct","client_request_token":"golden","description":"v1","priority":3,
            "confirmation_required":true,"manifest":{"format":"S3BatchOperationsCsv20180820","fields":[],
            "location":{"bucket":"data","key":"m.csv"},"etag":null},
            "operation":{"ComputeObjectChecksum":{"algorithm":"Sha256"}},"report":null,"tags":[],
            "failure_threshold":{"minimum_tasks_run":1000,"max_failure_percent":50}}}"#,
    ),
    ("PreparationStarted", r#"{"type":"PreparationStarted"}"#),
    (
        "ManifestPrepared",
        r#"{"type":"ManifestPrepared","total_number_of_tasks":2,"awaiting_confirmation":true}"#,
    ),
    (
        "PriorityChanged",
        r#"{"type":"PriorityChanged","previous":3,"priority":7}"#,
    ),
    ("JobConfirmed", r#"{"type":"JobConfirmed","reason":"ok"}"#),
    ("JobActivated", r#"{"type":"JobActivated"}"#),
    (
        "CancellationRequested",
        r#"{"type":"CancellationRequested","reason":"stop"}"#,
    ),
    ("JobCancelled", r#"{"type":"JobCancelled"}"#),
];

#[tokio::test]
async fn events_stored_in_schema_version_1_still_replay() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let id = uuid::Uuid::new_v4();
    for (sequence, (event_type, payload)) in SCHEMA_V1_EVENTS.iter().enumerate() {
        let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
        client
            .execute(
                "INSERT INTO job_events (job_id, sequence, event_type, schema_version, payload, recorded_at)
                 VALUES ($1, $2, $3, 1, $4, '2026-01-01T00:00:00Z'::timestamptz + make_interval(secs => $2::bigint))",
                &[&id, &(sequence as i64 + 1), event_type, &payload],
            )
            .await
            .unwrap();
    }
    let store = store(&db).await;
    let job = batchops::store::replay(&store.client().await.unwrap(), JobId(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, batchops::domain::JobStatus::Cancelled);
    assert_eq!(job.priority, 7);
    assert_eq!(job.progress.total, 2);
    assert_eq!(job.status_update_reason.as_deref(), Some("stop"));
    assert_eq!(job.version, SCHEMA_V1_EVENTS.len() as u64);
    assert!(job.confirmed && job.termination_time.is_some());
}

/// A job of `account` whose status changes go to a webhook.
async fn notified_job(store: &Store, account: &str, token: &str) -> JobId {
    let mut client = store.client().await.unwrap();
    let spec = JobSpec {
        account_id: AccountId(account.into()),
        ..spec(token)
    };
    let endpoint = notifications::NotificationEndpoint {
        url: "http://127.0.0.1:9/hook",
        operator: false,
    };
    jobs::create(
        &mut client,
        JobId::generate(),
        &spec,
        "fp",
        Some(endpoint),
        Utc::now(),
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn a_webhook_lease_that_ran_out_moves_no_checkpoint_and_another_deliverer_takes_over() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let job = notified_job(&store, "acct", "lease").await;
    let client = store.client().await.unwrap();
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // Given a delivery leased for a moment that has passed,
    let claimed = notifications::claim(&client, first, Duration::from_millis(1), &[], 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // then its owner can neither renew it nor move the checkpoint,
    assert!(
        !notifications::renew(&client, job, first, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        !notifications::advance(&client, job, first, 1, false)
            .await
            .unwrap()
    );
    // and another deliverer takes it from the same checkpoint and moves it.
    let taken = notifications::claim(&client, second, Duration::from_secs(5), &[], 8)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].delivered_sequence, 0);
    assert!(
        notifications::renew(&client, job, second, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        notifications::advance(&client, job, second, 1, false)
            .await
            .unwrap()
    );
    notifications::release(&client, job, second).await.unwrap();
    let state = notifications::state(&client, job).await.unwrap().unwrap();
    assert_eq!(state.delivered_sequence, 1);
}

#[tokio::test]
async fn webhook_claims_take_one_job_per_account_and_skip_busy_accounts() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    // Given five due jobs of one account and one of another,
    for i in 0..5 {
        notified_job(&store, "many", &format!("m{i}")).await;
    }
    notified_job(&store, "lone", "l").await;
    let client = store.client().await.unwrap();
    // a claim of up to eight takes one of each account,
    let claimed = notifications::claim(
        &client,
        uuid::Uuid::new_v4(),
        Duration::from_secs(5),
        &[],
        8,
    )
    .await
    .unwrap();
    let mut accounts: Vec<&str> = claimed.iter().map(|d| d.account.0.as_str()).collect();
    accounts.sort();
    assert_eq!(accounts, ["lone", "many"]);
    // and an account this process is busy with is left to others.
    let busy = [AccountId("many".into())];
    let next = notifications::claim(
        &client,
        uuid::Uuid::new_v4(),
        Duration::from_secs(5),
        &busy,
        8,
    )
    .await
    .unwrap();
    assert!(next.is_empty(), "{next:?}");
}

#[tokio::test]
async fn a_cached_read_is_the_committed_job_after_every_write_and_keeps_accounts_apart() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let id = new_job(&store, "a").await;
    let cache = JobCache::with_capacity(2);
    let mut client = store.client().await.unwrap();
    let account = AccountId("acct".into());
    let first = cache.load(&client, id, Some(&account)).await.unwrap();
    // Unchanged: the same job, without reading its state again.
    let again = cache.load(&client, id, Some(&account)).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    for priority in 100..110 {
        change_priority(&mut client, id, priority).await;
        let cached = cache.load(&client, id, Some(&account)).await.unwrap();
        assert_eq!(cached.priority, priority);
        assert_eq!(*cached, jobs::load(&client, id, None).await.unwrap());
    }
    // A writer that bypasses the commands is seen too: any new row version.
    client
        .execute(
            "UPDATE jobs SET state = jsonb_set(state, '{priority}', '7') WHERE job_id = $1",
            &[&id.0],
        )
        .await
        .unwrap();
    assert_eq!(cache.load(&client, id, None).await.unwrap().priority, 7);
    // Another account's job is not there for it, cached or not.
    let other = AccountId("other".into());
    assert!(matches!(
        cache.load(&client, id, Some(&other)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        cache.load(&client, JobId::generate(), Some(&account)).await,
        Err(StoreError::NotFound(_))
    ));
    // Bounded: more jobs than it keeps are all read right.
    let mut ids = vec![id];
    for token in ["b", "c", "d"] {
        ids.push(new_job(&store, token).await);
    }
    for round in 0..3 {
        for id in &ids {
            let cached = cache.load(&client, *id, Some(&account)).await.unwrap();
            assert_eq!(
                *cached,
                jobs::load(&client, *id, None).await.unwrap(),
                "round {round}"
            );
            assert!(cache.len() <= 2);
        }
    }
}
