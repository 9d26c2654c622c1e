//! The S3 Control listener at the HTTP level, with the real binary: the
//! request forms AWS clients and proxies send, the errors a client gets for
//! requests the SDKs would never make, and a database failure answered as
//! InternalServiceException without a word of SQL. (boto3 and the AWS CLI
//! drive every operation in tests/python/test_s3control.py.)

mod common;

use std::net::SocketAddr;

use common::http::exchange;
use common::*;

/// The `<Code>` of an AWS error document.
fn code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .unwrap_or_else(|| panic!("no <Code> in {body}"))
}

struct Running {
    _db: TestDb,
    _objects: tempfile::TempDir,
    server: ServerProcess,
    s3control: SocketAddr,
    job_id: String,
}

/// A server with one job of [`ACCOUNT`] in it.
async fn running() -> Running {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    put_object(objects.path(), "data", "k", b"x");
    put_object(objects.path(), "data", "manifest.csv", b"data,k\n");
    let server = ServerProcess::start(&db, &objects.path().display().to_string(), &[], &[]);
    let s3control = server.s3control_address.expect("S3 Control address logged");
    let mut client = connect(server.address).await;
    let job_id = client
        .create_job(checksum_job("s3control-http", Some(true)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut client, &job_id, batchops::proto::JobStatus::Suspended).await;
    Running {
        _db: db,
        _objects: objects,
        server,
        s3control,
        job_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_absolute_targets_and_any_host_reach_the_job() {
    let running = running().await;
    let job = &running.job_id;
    // What a client sends through HTTP_PROXY: an absolute-form target whose
    // host is the account-prefixed endpoint name, which nothing resolves.
    let (status, body) = exchange(
        running.s3control,
        &format!(
            "GET http://{ACCOUNT}.batchops.internal/v20180820/jobs/{job} HTTP/1.1\r\n\
             host: {ACCOUNT}.batchops.internal\r\nx-amz-account-id: {ACCOUNT}"
        ),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<JobId>{job}</JobId>")), "{body}");
    assert!(body.contains("<Status>Suspended</Status>"), "{body}");
    // What a client sends to a wildcard DNS name in front of the listener.
    let (status, body) = exchange(
        running.s3control,
        &format!(
            "GET /v20180820/jobs/{job}/tagging HTTP/1.1\r\n\
             host: {ACCOUNT}.s3-control.example.com:443\r\nx-amz-account-id: {ACCOUNT}"
        ),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<GetJobTaggingResult"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_no_sdk_would_send_are_refused_by_name() {
    let running = running().await;
    let job = &running.job_id;
    let describe = |account: &str| {
        format!(
            "GET /v20180820/jobs/{job} HTTP/1.1\r\nhost: batchops\r\nx-amz-account-id: {account}"
        )
    };
    let (status, body) = exchange(
        running.s3control,
        &format!("GET /v20180820/jobs/{job} HTTP/1.1\r\nhost: batchops"),
        b"",
    )
    .await;
    assert_eq!((status, code(&body)), (400, "BadRequestException"));
    assert!(body.contains("x-amz-account-id"), "{body}");

    let (status, body) = exchange(running.s3control, &describe("1111222233334"), b"").await;
    assert_eq!((status, code(&body)), (400, "BadRequestException"));
    assert!(body.contains("12 digits"), "{body}");

    // Another account's job is not there for it, exactly like a missing one.
    let (status, body) = exchange(running.s3control, &describe("999988887777"), b"").await;
    assert_eq!((status, code(&body)), (404, "NotFoundException"), "{body}");

    let (status, body) = exchange(
        running.s3control,
        &format!(
            "POST /v20180820/accesspoint/x HTTP/1.1\r\nhost: batchops\r\nx-amz-account-id: {ACCOUNT}"
        ),
        b"",
    )
    .await;
    assert_eq!((status, code(&body)), (400, "InvalidRequestException"));

    let create =
        format!("POST /v20180820/jobs HTTP/1.1\r\nhost: batchops\r\nx-amz-account-id: {ACCOUNT}");
    let (status, body) = exchange(running.s3control, &create, b"<CreateJobRequest").await;
    assert_eq!(
        (status, code(&body)),
        (400, "BadRequestException"),
        "{body}"
    );

    // A body past --max-request-bytes (1 MiB) is not read whole.
    let huge = vec![b' '; 2 << 20];
    let (status, body) = exchange(running.s3control, &create, &huge).await;
    assert_eq!(
        (status, code(&body)),
        (413, "BadRequestException"),
        "{body}"
    );

    let (status, body) = exchange(
        running.s3control,
        &format!(
            "POST /v20180820/jobs/{job}/status?requestedJobStatus=Active HTTP/1.1\r\n\
             host: batchops\r\nx-amz-account-id: {ACCOUNT}"
        ),
        b"",
    )
    .await;
    assert_eq!((status, code(&body)), (400, "BadRequestException"));
    assert!(body.contains("Ready or Cancelled"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_is_an_internal_service_exception_without_sql() {
    let running = running().await;
    let job = &running.job_id;
    let admin = running._db.client().await;
    admin
        .batch_execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
        .await
        .unwrap();
    let (status, body) = exchange(
        running.s3control,
        &format!(
            "GET /v20180820/jobs/{job} HTTP/1.1\r\nhost: batchops\r\nx-amz-account-id: {ACCOUNT}"
        ),
        b"",
    )
    .await;
    assert_eq!((status, code(&body)), (500, "InternalServiceException"));
    for leak in ["jobs_elsewhere", "relation", "SELECT", "does not exist"] {
        assert!(!body.contains(leak), "{leak:?} leaked: {body}");
    }
    assert!(body.contains("<RequestId>"), "{body}");
    drop(running.server);
}
