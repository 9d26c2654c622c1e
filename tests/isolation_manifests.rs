//! Attacks through manifests and preparation, against the real server: a
//! poison line that would become a huge failure reason, too many tasks, an
//! inventory listing a file twice, and prefixes that would fail a job only
//! after its work.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

const OTHER_ACCOUNT: &str = "444455556666";

#[tokio::test]
async fn a_poison_line_fails_its_job_with_a_short_reason_and_holds_up_nobody() {
    // Given a manifest whose bucket field is 6 MB, in a top-priority job,
    let mut server = TestServer::start().await;
    let poison = format!("{},key\n", "b".repeat(6 << 20));
    server.put_object("data", "poison.csv", poison.as_bytes());
    server.put_object("data", "ok.csv", b"data,object\n");
    server.put_object("data", "object", b"content");
    let mut request = checksum_job_of(ACCOUNT, "poison", "poison.csv");
    request.priority = i32::MAX;
    let mut watch = server
        .client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: ACCOUNT.into(),
            job_ids: vec![],
            after_position: Some(0),
        })
        .await
        .unwrap()
        .into_inner();

    // when it is prepared next to another account's job,
    let poisoned = server.create(request).await;
    let other = server
        .create(checksum_job_of(OTHER_ACCOUNT, "other", "ok.csv"))
        .await;

    // then it fails with a reason that quotes a short excerpt,
    let job = wait_for(&mut server.client, &poisoned, S::Failed).await;
    let reason = &job.failure_reasons[0];
    assert_eq!(reason.failure_code, "ManifestInvalid");
    assert!(
        reason.failure_reason.len() < 300,
        "{} bytes",
        reason.failure_reason.len()
    );
    assert!(reason.failure_reason.contains("line 1"), "{reason:?}");
    // its history and the account's watch stream stay readable,
    let events = history(&mut server.client, &poisoned, 0).await;
    assert!(events.len() >= 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("the watch stream stalled")
            .expect("the watch stream failed")
            .expect("the watch stream ended");
        let failed = match &message.message {
            Some(pb::watch_jobs_response::Message::Event(event)) => matches!(
                &event.event,
                Some(pb::job_event::Event::StatusChanged(change)) if change.status == S::Failed as i32
            ),
            _ => false,
        };
        if failed {
            break;
        }
    }
    // and the other account's job ran.
    wait_for_of(&mut server.client, OTHER_ACCOUNT, &other, S::Complete).await;
}

#[tokio::test]
async fn a_manifest_over_the_task_limit_fails_its_job() {
    let mut server = TestServer::start_with(Settings {
        extra: vec!["--max-tasks-per-job=10".into()],
        ..Settings::default()
    })
    .await;
    let lines = |n: usize| -> String { (0..n).map(|i| format!("data,k{i}\n")).collect() };
    server.put_object("data", "eleven.csv", lines(11).as_bytes());
    server.put_object("data", "ten.csv", lines(10).as_bytes());

    let over = server
        .create(checksum_job_of(ACCOUNT, "eleven", "eleven.csv"))
        .await;
    let job = wait_for(&mut server.client, &over, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "TooManyTasks");
    assert!(
        job.failure_reasons[0]
            .failure_reason
            .contains("more than 10"),
        "{:?}",
        job.failure_reasons
    );
    assert_eq!(job.progress_summary.unwrap().total_number_of_tasks, 0);

    let within = server
        .create(checksum_job_of(ACCOUNT, "ten", "ten.csv"))
        .await;
    let job = wait_for(&mut server.client, &within, S::Complete).await;
    assert_eq!(job.progress_summary.unwrap().total_number_of_tasks, 10);
}

#[tokio::test]
async fn an_inventory_that_lists_a_file_twice_is_refused() {
    let mut server = TestServer::start().await;
    server.put_object("inv", "data/a.csv", b"\"data\",\"object\"\n");
    let listing = r#"{"sourceBucket":"data","destinationBucket":"arn:aws:s3:::inv",
        "fileFormat":"CSV","fileSchema":"Bucket, Key",
        "files":[{"key":"data/a.csv"},{"key":"data/a.csv"}]}"#;
    server.put_object("inv", "manifest.json", listing.as_bytes());
    let mut request = checksum_job("inventory", Some(false));
    request.manifest = Some(pb::Manifest {
        format: pb::ManifestFormat::S3InventoryReportCsv20161130 as i32,
        fields: vec![],
        bucket: "inv".into(),
        key: "manifest.json".into(),
        ..Default::default()
    });
    let job = server.create(request).await;
    let job = wait_for(&mut server.client, &job, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestInvalid");
    assert!(
        job.failure_reasons[0]
            .failure_reason
            .contains("\"data/a.csv\" more than once"),
        "{:?}",
        job.failure_reasons
    );
}

#[tokio::test]
async fn prefixes_that_could_only_fail_after_the_work_are_refused_at_creation() {
    let mut server = TestServer::idle().await;
    for (n, prefix) in ["a//b", "x\\y", "a/../b", "a/./b"].iter().enumerate() {
        let mut request = checksum_job(&format!("report-{n}"), Some(false));
        request.report = Some(pb::JobReport {
            enabled: true,
            bucket: "reports".into(),
            prefix: (*prefix).into(),
            report_scope: pb::ReportScope::AllTasks as i32,
        });
        let refused = server.client.create_job(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{prefix}");
        assert!(refused.message().starts_with("report.prefix"), "{prefix}");
    }
    for (n, prefix) in ["a//", "a//b/", "x\\y/"].iter().enumerate() {
        let mut request = checksum_job(&format!("copy-{n}"), Some(false));
        request.operation = Some(pb::Operation {
            operation: Some(pb::operation::Operation::PutObjectCopy(
                pb::PutObjectCopyOperation {
                    target_bucket: "target".into(),
                    target_key_prefix: (*prefix).into(),
                    metadata_directive: 0,
                    new_object_metadata: None,
                },
            )),
        });
        let refused = server.client.create_job(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{prefix}");
    }
    // Ordinary prefixes, with or without a trailing slash, are taken.
    for (n, prefix) in ["batch", "batch/2026/", "copies/"].iter().enumerate() {
        let mut request = checksum_job(&format!("fine-{n}"), Some(false));
        request.report = Some(pb::JobReport {
            enabled: true,
            bucket: "reports".into(),
            prefix: (*prefix).into(),
            report_scope: pb::ReportScope::AllTasks as i32,
        });
        server.create(request).await;
    }
}
