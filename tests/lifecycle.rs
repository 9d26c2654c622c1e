//! End-to-end lifecycle tests: the real server on loopback, real PostgreSQL,
//! real objects in a local directory, the generated tonic client.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;
use sha2::{Digest, Sha256};
use tonic::Code;

fn checksum_message(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

#[tokio::test]
async fn confirmed_job_goes_from_suspended_to_complete_with_correct_counts_and_checksums() {
    // Given five objects and a manifest listing them
    let mut server = TestServer::start().await;
    let contents: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("object number {i}").repeat(i + 1).into_bytes())
        .collect();
    let mut lines = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        server.put_object("data", &format!("dir/obj {i}.txt"), content);
        lines.push(format!("data,dir/obj%20{i}.txt"));
    }
    write_manifest(&server, &lines);

    // When a job is created without saying whether it needs confirmation
    let job_id = server.create(checksum_job("t1", None)).await;

    // Then it waits in Suspended with its tasks counted
    let job = wait_for(&mut server.client, &job_id, S::Suspended).await;
    assert!(job.confirmation_required);
    assert_eq!(
        job.progress_summary.as_ref().unwrap().total_number_of_tasks,
        5
    );
    assert!(job.suspended_time.is_some());
    assert!(!job.suspended_cause.is_empty());
    use pb::JobAction as A;
    let actions = |job: &pb::JobDescriptor| job.allowed_actions.clone();
    let all = [A::Confirm, A::Cancel, A::UpdatePriority, A::UpdateTags];
    assert_eq!(actions(&job), all.map(|a| a as i32));
    // It stays Suspended: nothing runs it without confirmation.
    let client = server.client.clone();
    holds_for(Duration::from_millis(200), || {
        let (mut client, job_id) = (client.clone(), job_id.clone());
        async move { describe(&mut client, &job_id).await.status == S::Suspended as i32 }
    })
    .await;

    // When it is confirmed, it runs to Complete
    let response = server
        .update_status(&job_id, S::Ready, "go ahead")
        .await
        .unwrap();
    assert_eq!(response.status, S::Ready as i32);
    assert_eq!(response.status_update_reason, "go ahead");
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.total_number_of_tasks,
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (5, 5, 0)
    );
    assert!(job.termination_time.is_some());
    assert_eq!(job.status_update_reason, "go ahead");
    // An ended job can only be tagged.
    assert_eq!(actions(&job), [A::UpdateTags as i32]);

    // And every task's result carries the object's SHA-256
    let rows = server.results(&job_id).await;
    assert_eq!(rows.len(), 5);
    for (number, (succeeded, http, error, message)) in rows.into_iter().enumerate() {
        assert!(succeeded);
        assert_eq!(http, 200);
        assert_eq!(error, None);
        let message: serde_json::Value = serde_json::from_str(&message.unwrap()).unwrap();
        assert_eq!(message["checksumAlgorithm"], "SHA256");
        assert_eq!(message["checksumHex"], checksum_message(&contents[number]));
    }
    assert_eq!(
        status_path(&mut server.client, &job_id).await,
        vec![
            S::New,
            S::Preparing,
            S::Suspended,
            S::Ready,
            S::Active,
            S::Completing,
            S::Complete
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn job_without_confirmation_runs_straight_through_and_failed_tasks_are_counted() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a.txt", b"abc");
    write_manifest(
        &server,
        &[
            "data,a.txt".into(),
            "data,missing.txt".into(),
            "data,..%2F..%2Fetc%2Fpasswd".into(),
        ],
    );
    let job_id = server.create(checksum_job("t2", Some(false))).await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (1, 2)
    );
    assert_eq!(
        status_path(&mut server.client, &job_id).await,
        vec![
            S::New,
            S::Preparing,
            S::Ready,
            S::Active,
            S::Completing,
            S::Complete
        ]
    );
    let rows = server.results(&job_id).await;
    assert_eq!((rows[1].1, rows[1].2.as_deref()), (404, Some("NoSuchKey")));
    assert_eq!((rows[2].1, rows[2].2.as_deref()), (400, Some("InvalidKey")));
    server.stop().await;
}

#[tokio::test]
async fn delete_object_deletes_each_listed_object_and_nothing_else() {
    let mut server = TestServer::start().await;
    server.put_object("data", "x/1", b"1");
    server.put_object("data", "x/2", b"2");
    server.put_object("data", "keep", b"k");
    write_manifest(&server, &["data,x/1".into(), "data,x/2".into()]);
    let mut request = checksum_job("del", Some(false));
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::DeleteObject(
            pb::DeleteObjectOperation {},
        )),
    });
    let job_id = server.create(request).await;
    wait_for(&mut server.client, &job_id, S::Complete).await;
    assert!(!server.object_exists("data", "x/1"));
    assert!(!server.object_exists("data", "x/2"));
    assert!(server.object_exists("data", "keep"));
    server.stop().await;
}

#[tokio::test]
async fn bad_manifests_fail_the_job_with_a_reason() {
    let mut server = TestServer::start().await;
    // Missing manifest
    let missing = server.create(checksum_job("missing", Some(false))).await;
    let job = wait_for(&mut server.client, &missing, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestNotFound");
    assert!(
        job.failure_reasons[0]
            .failure_reason
            .contains("data/manifest.csv")
    );
    assert_eq!(
        status_path(&mut server.client, &missing).await,
        vec![S::New, S::Preparing, S::Failing, S::Failed]
    );

    // Malformed third line
    write_manifest(
        &server,
        &["data,a".into(), "data,b".into(), "just-one-column".into()],
    );
    let malformed = server.create(checksum_job("malformed", Some(false))).await;
    let job = wait_for(&mut server.client, &malformed, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestInvalid");
    assert!(
        job.failure_reasons[0].failure_reason.contains("line 3"),
        "{:?}",
        job.failure_reasons
    );
    assert_eq!(job.progress_summary.unwrap().total_number_of_tasks, 0);

    // ETag mismatch, then the right ETag
    write_manifest(&server, &["data,a".into()]);
    server.put_object("data", "a", b"a");
    use object_store::ObjectStore;
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(server.objects.path()).unwrap();
    let etag = store
        .head(&object_store::path::Path::from("data/manifest.csv"))
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let mut pinned = checksum_job("etag-wrong", Some(false));
    pinned.manifest.as_mut().unwrap().etag = "\"not-the-etag\"".into();
    let wrong = server.create(pinned).await;
    let job = wait_for(&mut server.client, &wrong, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestETagMismatch");
    // The reason names the ETag found, so the caller can see which is right.
    assert!(
        job.failure_reasons[0].failure_reason.contains(&etag),
        "{:?}",
        job.failure_reasons[0]
    );
    let mut pinned = checksum_job("etag-right", Some(false));
    pinned.manifest.as_mut().unwrap().etag = format!("\"{etag}\"");
    let right = server.create(pinned).await;
    wait_for(&mut server.client, &right, S::Complete).await;

    // The directory store keeps no versions: a pinned version cannot be read.
    let mut versioned = checksum_job("version", Some(false));
    versioned.manifest.as_mut().unwrap().object_version_id = "v1".into();
    let versioned = server.create(versioned).await;
    let job = wait_for(&mut server.client, &versioned, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestUnreadable");
    assert!(
        job.failure_reasons[0].failure_reason.contains("versions"),
        "{:?}",
        job.failure_reasons[0]
    );

    // An empty manifest
    let job = server
        .run_job(&[], checksum_job("empty", Some(false)), S::Failed)
        .await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestEmpty");
    server.stop().await;
}

#[tokio::test]
async fn cancelling_idle_jobs_lands_in_cancelled_at_once() {
    // A server that activates nothing keeps confirmed jobs Ready.
    let mut server = TestServer::start_with(Settings {
        max_active_jobs: 0,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    let suspended_job = server
        .run_job(&["data,a".into()], checksum_job("s", None), S::Suspended)
        .await;

    let suspended = suspended_job.job_id.clone();
    let response = server
        .update_status(&suspended, S::Cancelled, "No longer needed")
        .await
        .unwrap();
    assert_eq!(response.status, S::Cancelled as i32);
    assert_eq!(response.status_update_reason, "No longer needed");
    let job = describe(&mut server.client, &suspended).await;
    assert_eq!(job.status, S::Cancelled as i32);
    assert!(job.termination_time.is_some());

    let ready = server.create(checksum_job("r", Some(false))).await;
    wait_for(&mut server.client, &ready, S::Ready).await;
    let response = server
        .update_status(&ready, S::Cancelled, "")
        .await
        .unwrap();
    assert_eq!(response.status, S::Cancelled as i32);
    assert_eq!(
        status_path(&mut server.client, &ready).await,
        vec![S::New, S::Preparing, S::Ready, S::Cancelling, S::Cancelled]
    );
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_new_job_lands_in_cancelled_at_once() {
    let mut server = TestServer::idle().await;
    let job_id = server.create(checksum_job("n", None)).await;
    assert_eq!(
        describe(&mut server.client, &job_id).await.status,
        S::New as i32
    );
    let response = server
        .update_status(&job_id, S::Cancelled, "")
        .await
        .unwrap();
    assert_eq!(response.status, S::Cancelled as i32);
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_preparing_job_drains_through_cancelling_and_keeps_no_tasks() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &["data,a".into(), "data,a".into()]);
    // The preparer blocks writing tasks while this lock is held.
    let lock = TableLock::take(&server.db, "tasks").await;
    let job_id = server.create(checksum_job("p", None)).await;
    wait_for(&mut server.client, &job_id, S::Preparing).await;
    let response = server
        .update_status(&job_id, S::Cancelled, "stop")
        .await
        .unwrap();
    assert_eq!(response.status, S::Cancelling as i32);
    // While the work in flight cannot record, the job stays Cancelling.
    let client = server.client.clone();
    holds_for(Duration::from_millis(200), || {
        let (mut client, job_id) = (client.clone(), job_id.clone());
        async move { describe(&mut client, &job_id).await.status == S::Cancelling as i32 }
    })
    .await;
    lock.release().await;
    wait_for(&mut server.client, &job_id, S::Cancelled).await;
    let client = server.db.client().await;
    let id = uuid::Uuid::parse_str(&job_id).unwrap();
    let tasks: i64 = client
        .query_one("SELECT count(*) FROM tasks WHERE job_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tasks, 0);
    server.stop().await;
}

#[tokio::test]
async fn cancelling_an_active_job_records_in_flight_tasks_and_starts_no_more() {
    let mut server = TestServer::start_with(Settings {
        chunk_size: 2,
        task_concurrency: 2,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &vec!["data,a".to_string(); 40]);
    // Workers block recording results while this lock is held.
    let lock = TableLock::take(&server.db, "task_results").await;
    let job_id = server.create(checksum_job("act", Some(false))).await;
    wait_for(&mut server.client, &job_id, S::Active).await;
    // Both workers have claimed a chunk and block on the lock.
    eventually(|| async { leased_chunks(&server.db, &job_id).await >= 2 }).await;
    let response = server
        .update_status(&job_id, S::Cancelled, "")
        .await
        .unwrap();
    assert_eq!(response.status, S::Cancelling as i32);
    // While the work in flight cannot record, the job stays Cancelling.
    let client = server.client.clone();
    holds_for(Duration::from_millis(200), || {
        let (mut client, job_id) = (client.clone(), job_id.clone());
        async move { describe(&mut client, &job_id).await.status == S::Cancelling as i32 }
    })
    .await;
    lock.release().await;
    let job = wait_for(&mut server.client, &job_id, S::Cancelled).await;
    let progress = job.progress_summary.unwrap();
    let run = progress.number_of_tasks_succeeded + progress.number_of_tasks_failed;
    // The chunks in flight (two workers × two tasks) were recorded; no others ran.
    assert!(run > 0 && run <= 4, "{run} tasks recorded");
    // And none is recorded later.
    holds_for(Duration::from_millis(300), || async {
        server.results(&job_id).await.len() as u64 == run
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn refused_transitions_are_failed_precondition_and_change_nothing() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a", b"a");
    let job_id_job = server
        .run_job(
            &["data,a".into()],
            checksum_job("c", Some(false)),
            S::Complete,
        )
        .await;
    let job_id = job_id_job.job_id.clone();
    let before = describe(&mut server.client, &job_id).await;
    let history_before = history(&mut server.client, &job_id, 0).await;

    for (requested, named) in [(S::Ready, "Ready"), (S::Cancelled, "Cancelled")] {
        let error = server
            .update_status(&job_id, requested, "")
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert!(error.message().contains("Complete"), "{}", error.message());
        assert!(error.message().contains(named), "{}", error.message());
    }
    let error = server
        .client
        .update_job_priority(pb::UpdateJobPriorityRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            priority: 50,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);

    let after = describe(&mut server.client, &job_id).await;
    assert_eq!(before, after);
    assert_eq!(
        history(&mut server.client, &job_id, 0).await,
        history_before
    );

    // Confirming a job that needs no confirmation is refused too.
    let mut request = checksum_job("c2", Some(false));
    request.manifest.as_mut().unwrap().key = "none.csv".into();
    let failed = server.create(request).await;
    wait_for(&mut server.client, &failed, S::Failed).await;
    let error = server
        .update_status(&failed, S::Ready, "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("Failed") && error.message().contains("Ready"));
    server.stop().await;
}

#[tokio::test]
async fn history_lists_every_event_in_order_and_resumes_after_a_sequence() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a", b"a");
    let job_id_job = server
        .run_job(&["data,a".into()], checksum_job("h", None), S::Suspended)
        .await;
    let job_id = job_id_job.job_id.clone();
    server
        .client
        .update_job_priority(pb::UpdateJobPriorityRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            priority: 77,
        })
        .await
        .unwrap();
    server
        .client
        .put_job_tagging(pb::PutJobTaggingRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            tags: vec![pb::Tag {
                key: "team".into(),
                value: "storage".into(),
            }],
        })
        .await
        .unwrap();
    server.update_status(&job_id, S::Ready, "").await.unwrap();
    wait_for(&mut server.client, &job_id, S::Complete).await;

    let events = history(&mut server.client, &job_id, 0).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "JobCreated",
            "PreparationStarted",
            "ManifestPrepared",
            "PriorityChanged",
            "TagsReplaced",
            "JobConfirmed",
            "JobActivated",
            "AllTasksFinished",
            "JobCompleted"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence, i as i64 + 1);
        assert_eq!(event.schema_version, 1);
        assert_eq!(event.job_id, job_id);
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert!(
        matches!(&events[0].event, Some(pb::job_event::Event::JobCreated(c)) if c.job.as_ref().unwrap().status == S::New as i32)
    );
    assert!(
        matches!(&events[3].event, Some(pb::job_event::Event::PriorityChanged(p)) if p.previous_priority == 10 && p.priority == 77)
    );
    let Some(pb::job_event::Event::StatusChanged(prepared)) = &events[2].event else {
        panic!("ManifestPrepared is a status change");
    };
    assert_eq!(
        (prepared.previous_status, prepared.status),
        (S::Preparing as i32, S::Suspended as i32)
    );
    assert_eq!(prepared.total_number_of_tasks, Some(1));

    let tail = history(&mut server.client, &job_id, 6).await;
    assert_eq!(tail, events[6..].to_vec());
    let Some(pb::job_event::Event::StatusChanged(activated)) = &tail[0].event else {
        panic!("JobActivated is a status change");
    };
    assert_eq!(activated.previous_status, S::Ready as i32);
    assert_eq!(describe(&mut server.client, &job_id).await.version, 9);
    server.stop().await;
}

#[tokio::test]
async fn create_job_is_idempotent_on_its_token() {
    let mut server = TestServer::idle().await;
    let first = server.create(checksum_job("same", None)).await;
    let again = server.create(checksum_job("same", None)).await;
    assert_eq!(first, again);
    let mut different = checksum_job("same", None);
    different.priority = 99;
    let error = server.client.create_job(different).await.unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(error.message().contains("client_request_token"));
    // The same token in another account is another job.
    let mut other_account = checksum_job("same", None);
    other_account.account_id = "444455556666".into();
    let other = server.create(other_account).await;
    assert_ne!(other, first);
    let listed = server
        .client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn list_jobs_filters_by_status_and_pages_newest_first() {
    let mut server = TestServer::idle().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(server.create(checksum_job(&format!("l{i}"), None)).await);
    }
    server
        .update_status(&created[1], S::Cancelled, "")
        .await
        .unwrap();
    server
        .update_status(&created[3], S::Cancelled, "")
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .client
            .list_jobs(pb::ListJobsRequest {
                account_id: ACCOUNT.into(),
                statuses: vec![],
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.into_iter().map(|j| j.job_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let cancelled = server
        .client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            statuses: vec![S::Cancelled as i32],
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = cancelled.jobs.iter().map(|j| j.job_id.clone()).collect();
    assert_eq!(ids, vec![created[3].clone(), created[1].clone()]);
    assert!(
        cancelled
            .jobs
            .iter()
            .all(|j| j.status == S::Cancelled as i32)
    );
    server.stop().await;
}

#[tokio::test]
async fn tags_are_put_read_and_deleted() {
    let mut server = TestServer::start().await;
    let job_id = server.create(checksum_job("tags", None)).await;
    let tags = vec![
        pb::Tag {
            key: "team".into(),
            value: "storage".into(),
        },
        pb::Tag {
            key: "cost-center".into(),
            value: "42".into(),
        },
    ];
    let put = server
        .client
        .put_job_tagging(pb::PutJobTaggingRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            tags: tags.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.tags, tags);
    let got = server
        .client
        .get_job_tagging(pb::GetJobTaggingRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tags, tags);
    server
        .client
        .delete_job_tagging(pb::DeleteJobTaggingRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
        })
        .await
        .unwrap();
    assert!(describe(&mut server.client, &job_id).await.tags.is_empty());
    server.stop().await;
}
