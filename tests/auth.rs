//! Access control of a real server process: tokens per account,
//! UNAUTHENTICATED and PERMISSION_DENIED (which never reveals whether a job
//! exists), open health checks, per-caller stream limits and the request
//! size limit.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use common::*;
use tonic::transport::Channel;

const OTHER_ACCOUNT: &str = "444455556666";

const TOKENS: &str = r#"
[[tokens]]
name = "owner"
token = "token-owner"
accounts = ["111122223333"]

[[tokens]]
name = "other"
token = "token-other"
accounts = ["444455556666"]

[[tokens]]
name = "admin"
# sha256("token-admin")
sha256 = "SHA_ADMIN"
accounts = ["*"]
"#;

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn describe(
    client: &mut JobServiceClient<Channel>,
    account: &str,
    job_id: &str,
    token: Option<&str>,
) -> Result<pb::DescribeJobResponse, tonic::Status> {
    client
        .describe_job(with_token(
            pb::DescribeJobRequest {
                account_id: account.into(),
                job_id: job_id.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn watch(
    client: &mut JobServiceClient<Channel>,
    token: &str,
) -> Result<tonic::Streaming<pb::WatchJobsResponse>, tonic::Status> {
    client
        .watch_jobs(with_token(
            pb::WatchJobsRequest {
                account_id: ACCOUNT.into(),
                job_ids: vec![],
                after_position: None,
            },
            Some(token),
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_accounts_and_limit_streams() {
    // Given a server that requires tokens and allows 2 streams per caller,
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let file = objects.path().join("tokens.toml");
    let admin_digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"token-admin"))
    };
    std::fs::write(&file, TOKENS.replace("SHA_ADMIN", &admin_digest)).unwrap();
    put_object(objects.path(), "data", "k", b"x");
    put_object(objects.path(), "data", "manifest.csv", b"data,k\n");
    let server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &[
            "--auth-tokens",
            file.to_str().unwrap(),
            "--max-streams-per-caller",
            "2",
            "--max-request-bytes",
            "65536",
        ],
        &[],
    );
    let mut client = connect(server.address).await;

    // Health checks need no token.
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    // The owner's token creates a job in its account.
    let job_id = client
        .create_job(with_token(
            checksum_job("auth-1", None),
            Some("token-owner"),
        ))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    assert!(
        describe(&mut client, ACCOUNT, &job_id, Some("token-owner"))
            .await
            .is_ok()
    );
    assert!(
        describe(&mut client, ACCOUNT, &job_id, Some("token-admin"))
            .await
            .is_ok()
    );

    // No token, or a wrong one: UNAUTHENTICATED.
    for token in [None, Some("token-nobody")] {
        let error = describe(&mut client, ACCOUNT, &job_id, token)
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated, "{error:?}");
    }

    // Another account's token: PERMISSION_DENIED for the real job and for a
    // job that does not exist alike, so existence is never revealed.
    let unknown = uuid::Uuid::now_v7().to_string();
    let real = describe(&mut client, ACCOUNT, &job_id, Some("token-other"))
        .await
        .unwrap_err();
    let missing = describe(&mut client, ACCOUNT, &unknown, Some("token-other"))
        .await
        .unwrap_err();
    assert_eq!(real.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        (missing.code(), missing.message()),
        (real.code(), real.message())
    );
    // Its own account is fine, and there the job is simply not found.
    let not_found = describe(&mut client, OTHER_ACCOUNT, &job_id, Some("token-other"))
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound);
    let listed = client
        .list_jobs(with_token(
            pb::ListJobsRequest {
                account_id: ACCOUNT.into(),
                ..Default::default()
            },
            Some("token-other"),
        ))
        .await
        .unwrap_err();
    assert_eq!(listed.code(), tonic::Code::PermissionDenied);

    // Two streams per caller: the third is refused until one closes; other
    // callers have their own.
    let first = watch(&mut client, "token-owner").await.unwrap();
    let _second = watch(&mut client, "token-owner").await.unwrap();
    let third = watch(&mut client, "token-owner").await.unwrap_err();
    assert_eq!(third.code(), tonic::Code::ResourceExhausted);
    assert!(watch(&mut client, "token-admin").await.is_ok());
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match watch(&mut client, "token-owner").await {
            Ok(_) => break,
            Err(error) => {
                assert_eq!(error.code(), tonic::Code::ResourceExhausted);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed stream never freed its slot"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // A request over --max-request-bytes is refused, and the server lives on.
    let mut huge = checksum_job("auth-huge", None);
    huge.description = "x".repeat(100_000);
    let refused = client
        .create_job(with_token(huge, Some("token-owner")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{refused:?}"
    );
    assert!(
        describe(&mut client, ACCOUNT, &job_id, Some("token-owner"))
            .await
            .is_ok()
    );

    // The CLI sends --token; without one it exits 6.
    let cli = |token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_batchops"));
        command
            .args(["describe-job", "--job-id", &job_id, "--account-id", ACCOUNT])
            .args(["--endpoint", &format!("http://{}", server.address)])
            .env_remove("BATCHOPS_TOKEN");
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.output().unwrap()
    };
    assert_eq!(cli(Some("token-owner")).status.code(), Some(0));
    let refused = cli(None);
    assert_eq!(refused.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"));
}
