//! The real server, in the test's process, on a free loopback port over its
//! own database and object directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batchops::config::ServeConfig;
use batchops::proto::{self as pb, job_service_client::JobServiceClient};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::ACCOUNT;
use super::db::TestDb;
use super::sql::{ResultRow, task_results};

/// Engine settings a test may change.
#[derive(Clone)]
pub struct Settings {
    pub max_active_jobs: usize,
    pub task_concurrency: usize,
    pub chunk_size: u32,
    pub poll_interval_ms: u64,
    pub suspension_limit_seconds: u64,
    pub task_max_attempts: u32,
    pub invoke_allowlist: String,
    pub run_engine: bool,
    pub report_rows_per_file: u64,
    /// Further `serve` flags, e.g. `--max-tasks-per-job=10`.
    pub extra: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_active_jobs: 4,
            task_concurrency: 8,
            chunk_size: 4,
            poll_interval_ms: 20,
            suspension_limit_seconds: 30 * 24 * 3600,
            task_max_attempts: 3,
            invoke_allowlist: String::new(),
            run_engine: true,
            report_rows_per_file: 1_000_000,
            extra: Vec::new(),
        }
    }
}

/// The real server on a free loopback port, over its own database and
/// object directory.
pub struct TestServer {
    pub db: TestDb,
    pub objects: tempfile::TempDir,
    pub client: JobServiceClient<Channel>,
    pub address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(Settings::default()).await
    }

    /// A server that runs no engine (`--no-engine`), so jobs stay New.
    pub async fn idle() -> TestServer {
        TestServer::start_with(Settings {
            run_engine: false,
            ..Settings::default()
        })
        .await
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let db = TestDb::new().await;
        let objects = tempfile::tempdir().unwrap();
        let (address, stop, handle) = spawn_server(&db.url, objects.path(), &settings).await;
        let client = connect(address).await;
        TestServer {
            db,
            objects,
            client,
            address,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// Writes an object under `bucket/key`.
    pub fn put_object(&self, bucket: &str, key: &str, content: &[u8]) -> PathBuf {
        put_object(self.objects.path(), bucket, key, content)
    }

    /// Creates a job and returns its id.
    pub async fn create(&mut self, request: pb::CreateJobRequest) -> String {
        self.client
            .create_job(request)
            .await
            .unwrap()
            .into_inner()
            .job_id
    }

    /// UpdateJobStatus for this test's account.
    pub async fn update_status(
        &mut self,
        job_id: &str,
        status: pb::JobStatus,
        reason: &str,
    ) -> Result<pb::UpdateJobStatusResponse, tonic::Status> {
        self.client
            .update_job_status(pb::UpdateJobStatusRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.into(),
                requested_job_status: status as i32,
                status_update_reason: reason.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The job's task results in task order.
    pub async fn results(&self, job_id: &str) -> Vec<ResultRow> {
        task_results(&self.db, job_id).await
    }

    pub fn object_exists(&self, bucket: &str, key: &str) -> bool {
        self.objects.path().join(bucket).join(key).exists()
    }
}

pub fn put_object(root: &Path, bucket: &str, key: &str, content: &[u8]) -> PathBuf {
    let path = root.join(bucket).join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

/// The `serve` configuration of a test server, parsed from flags as the
/// binary parses them (so every other flag keeps its default).
pub fn serve_config(
    address: std::net::SocketAddr,
    database_url: &str,
    objects: &Path,
    settings: &Settings,
) -> ServeConfig {
    use clap::Parser;
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }
    let mut args = vec![
        "serve".to_owned(),
        format!("--listen={address}"),
        format!("--database-url={database_url}"),
        "--database-pool-size=8".to_owned(),
        format!("--data-dir={}", objects.join("unused-data-dir").display()),
        format!("--object-store={}", objects.display()),
        format!("--max-active-jobs={}", settings.max_active_jobs),
        format!("--task-concurrency={}", settings.task_concurrency),
        format!("--chunk-size={}", settings.chunk_size),
        format!("--file-chunk-size={}", settings.chunk_size),
        "--lease-seconds=30".to_owned(),
        format!("--poll-interval-ms={}", settings.poll_interval_ms),
        format!(
            "--suspension-limit-seconds={}",
            settings.suspension_limit_seconds
        ),
        format!("--task-max-attempts={}", settings.task_max_attempts),
        "--retry-base-delay-ms=10".to_owned(),
        format!("--invoke-allowlist={}", settings.invoke_allowlist),
        format!("--report-rows-per-file={}", settings.report_rows_per_file),
        "--watch-heartbeat-ms=200".to_owned(),
    ];
    if !settings.run_engine {
        args.push("--no-engine".to_owned());
    }
    // S3 Control and the console only where a test asks for them (on a
    // free port).
    for flag in ["--s3control-listen", "--console-listen"] {
        if !settings.extra.iter().any(|arg| arg.starts_with(flag)) {
            args.push(format!("{flag}=off"));
        }
    }
    args.extend(settings.extra.iter().cloned());
    Serve::parse_from(args).config
}

pub async fn spawn_server(
    database_url: &str,
    objects: &Path,
    settings: &Settings,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = serve_config(address, database_url, objects, settings);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        batchops::server::serve(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("server failed");
    });
    (address, stop, handle)
}

pub async fn connect(address: std::net::SocketAddr) -> JobServiceClient<Channel> {
    for _ in 0..100 {
        if let Ok(client) = JobServiceClient::connect(format!("http://{address}")).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on {address} did not come up");
}
