//! Every RPC validates its fields: bad input is INVALID_ARGUMENT naming the
//! field, unknown or foreign jobs are NOT_FOUND, a lost database is
//! UNAVAILABLE, and no message carries SQL.

mod common;

use batchops::proto as pb;
use common::*;
use tonic::Code;

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{field}: {}",
        status.message()
    );
    assert!(
        status.message().starts_with(field),
        "message {:?} should name {field}",
        status.message()
    );
}

fn with(change: impl FnOnce(&mut pb::CreateJobRequest)) -> pb::CreateJobRequest {
    let mut request = checksum_job("v", None);
    change(&mut request);
    request
}

#[tokio::test]
async fn create_job_names_each_invalid_field() {
    let mut server = TestServer::idle().await;
    let client = &mut server.client;
    let cases: Vec<(&str, pb::CreateJobRequest)> = vec![
        ("account_id", with(|r| r.account_id = String::new())),
        ("account_id", with(|r| r.account_id = "has space".into())),
        ("account_id", with(|r| r.account_id = "123".into())),
        ("role_arn", with(|r| r.role_arn = "admin".into())),
        (
            "role_arn",
            with(|r| r.role_arn = "arn:aws:iam::12:role/x".into()),
        ),
        ("account_id", with(|r| r.account_id = "abc".into())),
        (
            "account_id",
            with(|r| r.account_id = "1111222233334".into()),
        ),
        (
            "client_request_token",
            with(|r| r.client_request_token = String::new()),
        ),
        (
            "client_request_token",
            with(|r| r.client_request_token = "x".repeat(65)),
        ),
        ("description", with(|r| r.description = "d".repeat(257))),
        ("priority", with(|r| r.priority = -1)),
        ("manifest", with(|r| r.manifest = None)),
        (
            "manifest.format",
            with(|r| r.manifest.as_mut().unwrap().format = 0),
        ),
        (
            "manifest.format",
            with(|r| r.manifest.as_mut().unwrap().format = 42),
        ),
        (
            "manifest.bucket",
            with(|r| r.manifest.as_mut().unwrap().bucket = "Bad_Bucket!".into()),
        ),
        (
            "manifest.key",
            with(|r| r.manifest.as_mut().unwrap().key = "../escape.csv".into()),
        ),
        (
            "manifest.key",
            with(|r| r.manifest.as_mut().unwrap().key = String::new()),
        ),
        (
            "manifest.etag",
            with(|r| r.manifest.as_mut().unwrap().etag = "e".repeat(1025)),
        ),
        (
            "manifest.object_version_id",
            with(|r| r.manifest.as_mut().unwrap().object_version_id = "v".repeat(1025)),
        ),
        (
            "manifest.fields",
            with(|r| {
                r.manifest.as_mut().unwrap().fields = vec![
                    pb::ManifestField::Bucket as i32,
                    pb::ManifestField::Bucket as i32,
                    pb::ManifestField::Key as i32,
                ]
            }),
        ),
        (
            "manifest.fields[0]",
            with(|r| r.manifest.as_mut().unwrap().fields = vec![0]),
        ),
        ("operation", with(|r| r.operation = None)),
        (
            "operation",
            with(|r| r.operation = Some(pb::Operation { operation: None })),
        ),
        (
            "operation.compute_object_checksum.algorithm",
            with(|r| {
                r.operation = Some(pb::Operation {
                    operation: Some(pb::operation::Operation::ComputeObjectChecksum(
                        pb::ComputeObjectChecksumOperation { algorithm: 99 },
                    )),
                })
            }),
        ),
        (
            "report.report_scope",
            with(|r| {
                r.report = Some(pb::JobReport {
                    enabled: true,
                    bucket: "reports".into(),
                    prefix: String::new(),
                    report_scope: 0,
                })
            }),
        ),
        (
            "report.bucket",
            with(|r| {
                r.report = Some(pb::JobReport {
                    enabled: true,
                    bucket: String::new(),
                    prefix: String::new(),
                    report_scope: 1,
                })
            }),
        ),
        (
            "report.enabled",
            with(|r| {
                r.report = Some(pb::JobReport {
                    enabled: false,
                    bucket: "reports".into(),
                    prefix: String::new(),
                    report_scope: 1,
                })
            }),
        ),
        (
            "tags",
            with(|r| {
                r.tags = (0..51)
                    .map(|i| pb::Tag {
                        key: format!("k{i}"),
                        value: String::new(),
                    })
                    .collect()
            }),
        ),
        (
            "tags[1].key",
            with(|r| {
                r.tags = vec![
                    pb::Tag {
                        key: "a".into(),
                        value: "1".into(),
                    },
                    pb::Tag {
                        key: "a".into(),
                        value: "2".into(),
                    },
                ]
            }),
        ),
        (
            "tags[0].key",
            with(|r| {
                r.tags = vec![pb::Tag {
                    key: String::new(),
                    value: "1".into(),
                }]
            }),
        ),
        (
            "failure_threshold.max_failure_percent",
            with(|r| {
                r.failure_threshold = Some(pb::FailureThreshold {
                    minimum_tasks_run: None,
                    max_failure_percent: Some(101),
                })
            }),
        ),
        (
            "failure_threshold.minimum_tasks_run",
            with(|r| {
                r.failure_threshold = Some(pb::FailureThreshold {
                    minimum_tasks_run: Some(0),
                    max_failure_percent: None,
                })
            }),
        ),
    ];
    for (field, request) in cases {
        assert_invalid(client.create_job(request).await, field);
    }
    let listed = client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty(), "no invalid request created a job");
    server.stop().await;
}

#[tokio::test]
async fn the_directory_store_refuses_object_state_operations_naming_the_store_they_need() {
    use pb::operation::Operation as O;
    let mut server = TestServer::idle().await;
    let operations = [
        O::PutObjectTagging(pb::PutObjectTaggingOperation::default()),
        O::DeleteObjectTagging(pb::DeleteObjectTaggingOperation {}),
        O::PutObjectLegalHold(pb::PutObjectLegalHoldOperation {
            status: pb::LegalHoldStatus::On as i32,
        }),
        O::PutObjectRetention(pb::PutObjectRetentionOperation {
            mode: pb::RetentionMode::Governance as i32,
            retain_until: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            bypass_governance_retention: false,
        }),
        O::PutObjectAcl(pb::PutObjectAclOperation {
            acl: Some(pb::put_object_acl_operation::Acl::CannedAcl(
                pb::CannedAcl::Private as i32,
            )),
        }),
        O::InitiateRestoreObject(pb::InitiateRestoreObjectOperation {
            expiration_in_days: 1,
            glacier_job_tier: 0,
        }),
    ];
    for operation in operations {
        let request = with(|r| {
            r.operation = Some(pb::Operation {
                operation: Some(operation.clone()),
            })
        });
        let status = server.client.create_job(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{operation:?}");
        assert!(
            status.message().starts_with("operation")
                && status.message().contains("needs an S3 object store"),
            "{}",
            status.message()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn job_rpcs_name_invalid_fields_and_hide_other_accounts_jobs() {
    let mut server = TestServer::idle().await;
    let job_id = server
        .client
        .create_job(checksum_job("j", None))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let client = &mut server.client;

    let describe = |account: &str, job: &str| pb::DescribeJobRequest {
        account_id: account.into(),
        job_id: job.into(),
    };
    assert_invalid(
        client.describe_job(describe(ACCOUNT, "not-a-uuid")).await,
        "job_id",
    );
    assert_invalid(
        client.describe_job(describe("", &job_id)).await,
        "account_id",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = client
        .describe_job(describe(ACCOUNT, &unknown))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(&unknown));
    // Another account's job is indistinguishable from a missing one.
    let status = client
        .describe_job(describe("999999999999", &job_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: "999999999999".into(),
            job_id: job_id.clone(),
            requested_job_status: pb::JobStatus::Cancelled as i32,
            status_update_reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let update = |status: i32, reason: String| pb::UpdateJobStatusRequest {
        account_id: ACCOUNT.into(),
        job_id: job_id.clone(),
        requested_job_status: status,
        status_update_reason: reason,
    };
    assert_invalid(
        client.update_job_status(update(0, String::new())).await,
        "requested_job_status",
    );
    assert_invalid(
        client.update_job_status(update(99, String::new())).await,
        "requested_job_status",
    );
    assert_invalid(
        client
            .update_job_status(update(pb::JobStatus::Active as i32, String::new()))
            .await,
        "requested_job_status",
    );
    assert_invalid(
        client
            .update_job_status(update(pb::JobStatus::Cancelled as i32, "r".repeat(257)))
            .await,
        "status_update_reason",
    );
    assert_invalid(
        client
            .update_job_priority(pb::UpdateJobPriorityRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
                priority: -5,
            })
            .await,
        "priority",
    );
    assert_invalid(
        client
            .put_job_tagging(pb::PutJobTaggingRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
                tags: vec![pb::Tag {
                    key: "k".repeat(129),
                    value: String::new(),
                }],
            })
            .await,
        "tags[0].key",
    );
    let list = |size: i32, token: &str, statuses: Vec<i32>| pb::ListJobsRequest {
        account_id: ACCOUNT.into(),
        statuses,
        page_size: size,
        page_token: token.into(),
    };
    assert_invalid(client.list_jobs(list(1001, "", vec![])).await, "page_size");
    assert_invalid(client.list_jobs(list(-1, "", vec![])).await, "page_size");
    assert_invalid(
        client.list_jobs(list(10, "garbage!", vec![])).await,
        "page_token",
    );
    assert_invalid(client.list_jobs(list(10, "", vec![0])).await, "statuses[0]");
    assert_invalid(
        client
            .get_job_history(pb::GetJobHistoryRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
                after_sequence: -1,
                include_task_results: false,
            })
            .await,
        "after_sequence",
    );
    let status = client
        .get_job_history(pb::GetJobHistoryRequest {
            account_id: "999999999999".into(),
            job_id: job_id.clone(),
            after_sequence: 0,
            include_task_results: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Nothing above changed the job.
    assert_eq!(common::describe(client, &job_id).await.version, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_database_is_unavailable_without_leaking_sql() {
    let mut server = TestServer::idle().await;
    let job_id = server
        .client
        .create_job(checksum_job("u", None))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let admin = {
        let (client, connection) = tokio_postgres::connect(admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = || tonic_health::pb::HealthCheckRequest {
        service: "batchops.v1.JobService".into(),
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(
        health.check(check()).await.unwrap().into_inner().status,
        serving
    );
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", server.db.name))
        .await
        .unwrap();
    // The health check notices within its 2 s period.
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let mut status = serving;
    for _ in 0..100 {
        status = health.check(check()).await.unwrap().into_inner().status;
        if status == not_serving {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, not_serving);
    for _ in 0..3 {
        let status = server
            .client
            .describe_job(pb::DescribeJobRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
        let message = status.message().to_lowercase();
        assert!(
            !message.contains("select") && !message.contains("jobs") && !message.contains("sql")
        );
    }
    server.stop().await;
}
