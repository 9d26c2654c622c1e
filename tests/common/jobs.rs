//! Jobs as tests make and follow them: CreateJob requests, DescribeJob
//! until a status, histories and manifests.

use std::time::Duration;

use batchops::proto::{self as pb, job_service_client::JobServiceClient};
use tonic::transport::Channel;

use super::ACCOUNT;
use super::server::TestServer;

/// A one-object-per-line checksum job of `account` over `data/<manifest>`,
/// without confirmation.
pub fn checksum_job_of(account: &str, token: &str, manifest: &str) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    request.account_id = account.into();
    request.manifest.as_mut().unwrap().key = manifest.into();
    request
}

/// A checksum CreateJob request over a manifest at `data/manifest.csv`.
pub fn checksum_job(token: &str, confirmation_required: Option<bool>) -> pb::CreateJobRequest {
    pb::CreateJobRequest {
        account_id: ACCOUNT.into(),
        client_request_token: token.into(),
        description: format!("job {token}"),
        priority: 10,
        confirmation_required,
        manifest: Some(pb::Manifest {
            format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
            fields: vec![],
            bucket: "data".into(),
            key: "manifest.csv".into(),
            ..Default::default()
        }),
        operation: Some(pb::Operation {
            operation: Some(pb::operation::Operation::ComputeObjectChecksum(
                pb::ComputeObjectChecksumOperation {
                    algorithm: pb::ChecksumAlgorithm::Sha256 as i32,
                },
            )),
        }),
        report: None,
        tags: vec![],
        failure_threshold: None,
        manifest_generator: None,
        role_arn: String::new(),
        dry_run: false,
        notification: None,
    }
}

pub async fn describe(client: &mut JobServiceClient<Channel>, job_id: &str) -> pb::JobDescriptor {
    describe_of(client, ACCOUNT, job_id).await
}

/// DescribeJob for `account`.
pub async fn describe_of(
    client: &mut JobServiceClient<Channel>,
    account: &str,
    job_id: &str,
) -> pb::JobDescriptor {
    client
        .describe_job(pb::DescribeJobRequest {
            account_id: account.into(),
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
}

/// Waits until the async `check` holds, looking every 10 ms, failing after
/// 30 s: for conditions that need a call or a query.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition did not come true within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that `check` keeps holding for `period`, looking every 20 ms:
/// how a test says that something does not happen.
pub async fn holds_for<F, Fut>(period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + period;
    loop {
        assert!(check().await, "the condition stopped holding");
        if tokio::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `condition` holds, looking every 10 ms, failing after 30 s:
/// tests wait on what they need, never for a fixed time.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition did not come true within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls DescribeJob until the job has `status`, failing after 30 s.
pub async fn wait_for(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
    status: pb::JobStatus,
) -> pb::JobDescriptor {
    wait_for_of(client, ACCOUNT, job_id, status).await
}

/// [`wait_for`] for a job of `account`.
pub async fn wait_for_of(
    client: &mut JobServiceClient<Channel>,
    account: &str,
    job_id: &str,
    status: pb::JobStatus,
) -> pb::JobDescriptor {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = describe_of(client, account, job_id).await;
        if job.status == status as i32 {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} never reached {status:?}; it is {:?} with {:?}",
            pb::JobStatus::try_from(job.status),
            job.failure_reasons
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job's whole history.
pub async fn history(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
    after: i64,
) -> Vec<pb::JobEvent> {
    let mut stream = client
        .get_job_history(pb::GetJobHistoryRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.into(),
            after_sequence: after,
            include_task_results: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        events.push(message.event.unwrap());
    }
    events
}

/// The statuses a job went through, from its history.
pub async fn status_path(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
) -> Vec<pb::JobStatus> {
    let mut path = vec![pb::JobStatus::New];
    for event in history(client, job_id, 0).await {
        if let Some(pb::job_event::Event::StatusChanged(change)) = event.event {
            path.push(pb::JobStatus::try_from(change.status).unwrap());
        }
    }
    path
}

impl TestServer {
    /// The setup most tests share: writes `lines` as `data/manifest.csv`,
    /// creates the job `request` describes and waits until it has `status`;
    /// returns the job as DescribeJob shows it then.
    pub async fn run_job(
        &mut self,
        lines: &[String],
        request: pb::CreateJobRequest,
        status: pb::JobStatus,
    ) -> pb::JobDescriptor {
        write_manifest(self, lines);
        let job_id = self.create(request).await;
        wait_for(&mut self.client, &job_id, status).await
    }
}

pub fn write_manifest(server: &TestServer, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    server.put_object("data", "manifest.csv", text.as_bytes());
}

/// An Invoke CreateJob request over `data/manifest.csv`.
pub fn invoke_job(
    token: &str,
    endpoint: &str,
    schema: pb::InvocationSchemaVersion,
) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::Invoke(pb::InvokeOperation {
            endpoint_url: endpoint.into(),
            invocation_schema_version: schema as i32,
            user_arguments: Default::default(),
            timeout_seconds: 0,
            function_arn: String::new(),
        })),
    });
    request
}

/// Changes a job's priority through the store's command path, as the
/// server's commands do: one event, one new row version.
#[allow(dead_code)]
pub async fn change_priority(
    client: &mut deadpool_postgres::Client,
    job: batchops::domain::JobId,
    priority: i32,
) {
    batchops::store::jobs::execute(
        client,
        job,
        None,
        &batchops::domain::Command::ChangePriority { priority },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
}
