//! Attacks on access and shared resources, against the real server: a
//! token reaching another tenant's buckets, stalled streams taking the
//! database pool, oversized and forged input echoed or mishandled, and
//! database errors that do not say what failed.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use common::*;
use pb::JobStatus as S;
use tonic::transport::Channel;

const OTHER_ACCOUNT: &str = "444455556666";

const TOKENS: &str = r#"
[[tokens]]
name = "tenant-a"
token = "token-a"
accounts = ["111122223333"]
buckets = ["tenant-a", "tenant-a-*"]

[[tokens]]
name = "admin"
token = "token-admin"
accounts = ["*"]
"#;

fn signed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn wait_signed(
    client: &mut JobServiceClient<Channel>,
    token: &str,
    job_id: &str,
    status: S,
) -> pb::JobDescriptor {
    for _ in 0..1500 {
        let job = client
            .describe_job(signed(
                pb::DescribeJobRequest {
                    account_id: ACCOUNT.into(),
                    job_id: job_id.into(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap();
        if job.status == status as i32 {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job_id} never reached {status:?}");
}

/// A delete job over `bucket/manifest.csv`, reporting to `report_bucket`.
fn delete_job(token: &str, bucket: &str, report_bucket: Option<&str>) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(true));
    request.manifest.as_mut().unwrap().bucket = bucket.into();
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::DeleteObject(
            pb::DeleteObjectOperation {},
        )),
    });
    request.report = report_bucket.map(|bucket| pb::JobReport {
        enabled: true,
        bucket: bucket.into(),
        prefix: "reports".into(),
        report_scope: pb::ReportScope::AllTasks as i32,
    });
    request
}

#[tokio::test]
async fn a_token_limited_to_buckets_cannot_reach_another_tenants() {
    // Given a token limited to the buckets tenant-a and tenant-a-*,
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), TOKENS).unwrap();
    let settings = Settings {
        extra: vec![format!("--auth-tokens={}", tokens.path().display())],
        ..Settings::default()
    };
    let mut server = TestServer::start_with(settings.clone()).await;
    server.put_object(
        "tenant-a",
        "manifest.csv",
        b"tenant-a,mine\ntenant-b,theirs\n",
    );
    server.put_object("tenant-a", "mine", b"mine");
    server.put_object("tenant-b", "theirs", b"someone else's report");
    server.put_object("tenant-b", "manifest.csv", b"tenant-b,theirs\n");

    // CreateJob refuses a manifest, a report or a copy target elsewhere,
    let mut refused = Vec::new();
    refused.push(delete_job("m", "tenant-b", None));
    refused.push(delete_job("r", "tenant-a", Some("tenant-b")));
    let mut copy = delete_job("c", "tenant-a", None);
    copy.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::PutObjectCopy(
            pb::PutObjectCopyOperation {
                target_bucket: "tenant-b".into(),
                target_key_prefix: String::new(),
                metadata_directive: 0,
                new_object_metadata: None,
            },
        )),
    });
    refused.push(copy);
    for request in refused {
        let status = server
            .client
            .create_job(signed(request, "token-a"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("\"tenant-b\""),
            "{}",
            status.message()
        );
    }
    // while one within its buckets is created,
    let job = server
        .client
        .create_job(signed(
            delete_job("ok", "tenant-a", Some("tenant-a-reports")),
            "token-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_signed(&mut server.client, "token-a", &job, S::Suspended).await;

    // and the grant survives a restart of the server without the token file.
    server.stop().await;
    let (address, stop, handle) =
        spawn_server(&server.db.url, server.objects.path(), &Settings::default()).await;
    let mut client = connect(address).await;
    client
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: ACCOUNT.into(),
            job_id: job.clone(),
            requested_job_status: S::Ready as i32,
            status_update_reason: String::new(),
        })
        .await
        .unwrap();
    wait_for(&mut client, &job, S::Complete).await;

    // The task on the other tenant's object failed and touched nothing.
    let results = server.results(&job).await;
    assert!(results[0].0, "tenant-a/mine deleted: {:?}", results[0]);
    assert_eq!(results[1].1, 403);
    assert_eq!(results[1].2.as_deref(), Some("AccessDenied"));
    assert!(!server.object_exists("tenant-a", "mine"));
    assert!(server.object_exists("tenant-b", "theirs"));
    // The grant is in the job's created event, for replays and audits.
    let created: serde_json::Value = server
        .db
        .client()
        .await
        .query_one(
            "SELECT payload FROM job_events WHERE job_id = $1 AND sequence = 1",
            &[&uuid::Uuid::parse_str(&job).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        created["spec"]["bucket_grant"]["patterns"],
        serde_json::json!(["tenant-a", "tenant-a-*"])
    );
    let _ = stop.send(());
    let _ = handle.await;
}

#[tokio::test]
async fn an_inventory_in_a_bucket_outside_the_grant_is_not_read() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), TOKENS).unwrap();
    let mut server = TestServer::start_with(Settings {
        extra: vec![format!("--auth-tokens={}", tokens.path().display())],
        ..Settings::default()
    })
    .await;
    let listing = r#"{"destinationBucket":"arn:aws:s3:::tenant-b","fileFormat":"CSV",
        "fileSchema":"Bucket, Key","files":[{"key":"inventory/a.csv"}]}"#;
    server.put_object("tenant-a", "manifest.json", listing.as_bytes());
    server.put_object("tenant-b", "inventory/a.csv", b"\"tenant-b\",\"x\"\n");
    let mut request = delete_job("inventory", "tenant-a", None);
    request.confirmation_required = Some(false);
    let manifest = request.manifest.as_mut().unwrap();
    manifest.format = pb::ManifestFormat::S3InventoryReportCsv20161130 as i32;
    manifest.key = "manifest.json".into();
    let job = server
        .client
        .create_job(signed(request, "token-a"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let described = wait_signed(&mut server.client, "token-a", &job, S::Failed).await;
    assert_eq!(described.failure_reasons[0].failure_code, "AccessDenied");
    assert!(
        described.failure_reasons[0]
            .failure_reason
            .contains("tenant-b"),
        "{:?}",
        described.failure_reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_do_not_take_the_database_pool() {
    // Given a job with 20,000 task results (pool of 8 connections): more
    // than HTTP/2's windows let a stream send before the client reads,
    let mut server = TestServer::start_with(Settings {
        chunk_size: 500,
        ..Settings::default()
    })
    .await;
    let lines: Vec<String> = (0..20_000).map(|n| format!("data,gone-{n}")).collect();
    write_manifest(&server, &lines);
    let mut request = checksum_job("results", Some(false));
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::DeleteObject(
            pb::DeleteObjectOperation {},
        )),
    });
    let job = server.create(request).await;
    wait_for(&mut server.client, &job, S::Complete).await;

    // when 48 result and history streams are opened on one connection of
    // their own and never read,
    let stalling = connect(server.address).await;
    let mut stalled = Vec::new();
    for n in 0..48 {
        let mut client = stalling.clone();
        let stream: Result<Box<dyn std::any::Any + Send>, tonic::Status> = if n % 2 == 0 {
            client
                .list_job_task_results(pb::ListJobTaskResultsRequest {
                    account_id: ACCOUNT.into(),
                    job_id: job.clone(),
                    only_failed: false,
                    ..Default::default()
                })
                .await
                .map(|response| Box::new(response.into_inner()) as _)
        } else {
            client
                .get_job_history(pb::GetJobHistoryRequest {
                    account_id: ACCOUNT.into(),
                    job_id: job.clone(),
                    after_sequence: 0,
                    include_task_results: true,
                })
                .await
                .map(|response| Box::new(response.into_inner()) as _)
        };
        // Keep the stream open; never poll it.
        stalled.push(stream.unwrap());
    }

    // then DescribeJob still answers, well before the pool's 10 s wait,
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        server.client.describe_job(pb::DescribeJobRequest {
            account_id: ACCOUNT.into(),
            job_id: job.clone(),
        }),
    )
    .await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "DescribeJob under 48 stalled streams: {answered:?}"
    );
    // and new jobs still run.
    write_manifest(&server, &["data,gone".into()]);
    let mut request = checksum_job("after", Some(false));
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::DeleteObject(
            pb::DeleteObjectOperation {},
        )),
    });
    let next = server.create(request).await;
    wait_for(&mut server.client, &next, S::Complete).await;
    drop(stalled);
}

#[tokio::test]
async fn oversized_and_forged_input_is_refused_briefly_and_uniformly() {
    let mut server = TestServer::idle().await;
    // A 100 KB job id is an INVALID_ARGUMENT quoting a short excerpt.
    let huge = "x".repeat(100_000);
    let refused = server
        .client
        .describe_job(pb::DescribeJobRequest {
            account_id: ACCOUNT.into(),
            job_id: huge.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().len() < 200, "{}", refused.message().len());
    let refused = server
        .client
        .watch_jobs(pb::WatchJobsRequest {
            account_id: ACCOUNT.into(),
            job_ids: vec![huge],
            after_position: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("job_ids[0]"),
        "{}",
        refused.message()
    );
    assert!(refused.message().len() < 200);

    // Page tokens the server did not issue are INVALID_ARGUMENT.
    for n in 0..3 {
        server
            .create(checksum_job(&format!("page-{n}"), None))
            .await;
    }
    let page = server
        .client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            statuses: vec![],
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("-8200000000000000000|{}", uuid::Uuid::nil()));
    let mut tampered = page.next_page_token.clone().into_bytes();
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (account, token) in [
        (ACCOUNT, forged.as_str()),
        (ACCOUNT, tampered.as_str()),
        (OTHER_ACCOUNT, page.next_page_token.as_str()),
    ] {
        let refused = server
            .client
            .list_jobs(pb::ListJobsRequest {
                account_id: account.into(),
                statuses: vec![],
                page_size: 1,
                page_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{token}");
        assert!(refused.message().starts_with("page_token"));
    }
    let next = server
        .client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            statuses: vec![],
            page_size: 1,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.jobs.len(), 1);

    // An unknown job and another account's job are refused alike.
    let theirs = {
        let mut request = checksum_job("theirs", None);
        request.account_id = OTHER_ACCOUNT.into();
        server.create(request).await
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut messages = Vec::new();
    for id in [&theirs, &unknown] {
        let refused = server
            .client
            .describe_job(pb::DescribeJobRequest {
                account_id: ACCOUNT.into(),
                job_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound);
        messages.push(refused.message().replace(id.as_str(), "<id>"));
    }
    assert_eq!(messages[0], messages[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_is_named_in_the_log() {
    // Given a real server process whose jobs table disappears (every
    // engine loop reads it, idle or not),
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&db, &objects.path().display().to_string(), &[], &[]);
    let admin = db.client().await;
    admin
        .batch_execute("ALTER TABLE jobs RENAME TO jobs_gone")
        .await
        .unwrap();

    // then the engine's failure names the statement (by its name, not its
    // SQL) and the database's reason,
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let line = loop {
        let found = server.logs.lock().unwrap().iter().find_map(|entry| {
            let error = entry["fields"]["error"].as_str()?;
            let statement = error
                .strip_prefix("database error in ")?
                .split(':')
                .next()?;
            (!statement.is_empty()
                && statement
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_'))
            .then(|| error.to_owned())
        });
        if let Some(line) = found {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line named the statement"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("42P01"), "{line}");
    assert!(line.contains("\"jobs\""), "{line}");
    assert!(!line.contains("SELECT"), "no SQL in the log: {line}");
    admin
        .batch_execute("ALTER TABLE jobs_gone RENAME TO jobs")
        .await
        .unwrap();
}
