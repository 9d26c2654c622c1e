//! Shared test harness: a fresh database per test cloned from a migrated
//! template, the real server on a free loopback port, and the generated client.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use batchops::config::ServeConfig;
use batchops::proto::{self as pb, job_service_client::JobServiceClient};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;
use tonic::transport::Channel;

pub const ACCOUNT: &str = "111122223333";
pub mod postgres;

pub use postgres::{admin_url, url_for};

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(admin_url(), NoTls)
        .await
        .expect("cannot connect to the tests' PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The template's name changes whenever a migration does.
fn template_name() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<std::collections::BTreeSet<_>>()
    {
        for byte in std::fs::read(entry).unwrap() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("batchops_template_{hash:016x}")
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin().await;
        let template = template_name();
        // Serialise template creation across test processes.
        admin
            .execute("SELECT pg_advisory_lock(7421)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                .await
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap();
            {
                let (mut client, connection) = tokio_postgres::connect(&url_for(&building), NoTls)
                    .await
                    .unwrap();
                let driver = tokio::spawn(connection);
                batchops::store::migrate(&mut client).await.unwrap();
                drop(client);
                let _ = driver.await;
            }
            admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .unwrap();
        }
        admin
            .execute("SELECT pg_advisory_unlock(7421)", &[])
            .await
            .unwrap();
        let name = format!("batchops_test_{}", uuid::Uuid::new_v4().simple());
        let mut attempt = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                // Another test is cloning the same template at this instant.
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot clone template: {error}"),
            }
        }
        let url = url_for(&name);
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

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
            etag: String::new(),
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

pub fn write_manifest(server: &TestServer, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    server.put_object("data", "manifest.csv", text.as_bytes());
}

/// Holds an exclusive lock on a table from a separate connection, so that
/// the engine blocks at a known point, until released.
pub struct TableLock {
    client: tokio_postgres::Client,
}

impl TableLock {
    pub async fn take(db: &TestDb, table: &str) -> TableLock {
        let client = db.client().await;
        client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        TableLock { client }
    }

    pub async fn release(self) {
        self.client.batch_execute("COMMIT").await.unwrap();
    }
}

/// What the test endpoint answers to one call.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    /// Extra response headers, e.g. `Location`.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A batch response with one result for the event's task.
    pub fn result(event: &serde_json::Value, code: &str, message: &str) -> Reply {
        let body = serde_json::json!({
            "invocationSchemaVersion": event["invocationSchemaVersion"],
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event["invocationId"],
            "results": [{"taskId": event["tasks"][0]["taskId"], "resultCode": code, "resultString": message}],
        });
        Reply {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A redirect to `location`, with a body that a follower would not see.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            headers: vec![("Location".into(), location.into())],
            ..Reply::raw(status, "redirect body")
        }
    }
}

/// One call the endpoint received.
#[derive(Clone, Debug)]
pub struct Call {
    pub event: serde_json::Value,
    /// The decoded key of the event's task.
    pub key: String,
    /// The request target (path and query) as received.
    pub path: String,
    pub started: chrono::DateTime<chrono::Utc>,
}

type Handler = dyn Fn(&serde_json::Value, &str, usize) -> Reply + Send + Sync;

/// A minimal HTTP/1.1 endpoint on loopback whose replies the test decides:
/// the handler gets the event, the decoded key and how many times that key
/// was called before.
pub struct TestEndpoint {
    pub url: String,
    /// `http://127.0.0.1:PORT`, for other paths on the same endpoint.
    pub base: String,
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<Call>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl TestEndpoint {
    pub async fn start(
        handler: impl Fn(&serde_json::Value, &str, usize) -> Reply + Send + Sync + 'static,
    ) -> TestEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/invoke", listener.local_addr().unwrap());
        let base = format!("http://{}", listener.local_addr().unwrap());
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Call>::new()));
        let handler: std::sync::Arc<Handler> = std::sync::Arc::new(handler);
        let recorded = calls.clone();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve_one(socket, handler, recorded).await;
                });
            }
        });
        TestEndpoint {
            url,
            base,
            calls,
            handle,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, key: &str) -> usize {
        self.calls().iter().filter(|c| c.key == key).count()
    }
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn serve_one(
    mut socket: tokio::net::TcpStream,
    handler: std::sync::Arc<Handler>,
    calls: std::sync::Arc<std::sync::Mutex<Vec<Call>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let request_line = String::from_utf8_lossy(&buffer[..header_end])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let event: serde_json::Value =
        serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or_default();
    let encoded = event["tasks"][0]["s3Key"].as_str().unwrap_or_default();
    let key = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned();
    let previous = {
        let mut calls = calls.lock().unwrap();
        let previous = calls.iter().filter(|c| c.key == key).count();
        calls.push(Call {
            event: event.clone(),
            key: key.clone(),
            path,
            started: chrono::Utc::now(),
        });
        previous
    };
    let reply = handler(&event, &key, previous);
    tokio::time::sleep(reply.delay).await;
    let headers: String = reply
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let response = format!(
        "HTTP/1.1 {} Reply\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
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
        })),
    });
    request
}

/// The real `batchops` binary as a child process on a free loopback port;
/// killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
    /// Where `--metrics-listen` bound, when it was given.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Every JSON log line the process wrote so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl ServerProcess {
    /// Starts the binary on port 0 and reads the address it bound from its
    /// JSON "serving" log line, so no other process can take the port first.
    pub fn start(
        db: &TestDb,
        object_store: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_batchops"));
        command
            .args(["serve", "--database-url", &db.url])
            .args(["--object-store", object_store, "--poll-interval-ms", "20"])
            .args(extra)
            .envs(env.iter().copied());
        ServerProcess::launch(command)
    }

    /// Runs `command` (a `batchops serve` without `--listen`) on port 0 and
    /// waits for the address it reports.
    pub fn launch(mut command: std::process::Command) -> ServerProcess {
        use std::io::BufRead;
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    // What is not a log line (a last error message) is kept as text.
                    kept.lock()
                        .unwrap()
                        .push(serde_json::json!({ "text": line }));
                    continue;
                };
                kept.lock().unwrap().push(entry.clone());
                let message = entry["fields"]["message"].as_str().unwrap_or_default();
                if (message == "serving" || message == "serving metrics")
                    && let Some(sender) = &found
                {
                    let address = entry["fields"]["address"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send((message.to_owned(), address));
                    if message == "serving" {
                        found = None;
                    }
                } else if entry["level"] == "WARN" || entry["level"] == "ERROR" {
                    eprintln!("server: {line}");
                }
            }
        });
        let mut metrics_address = None;
        let address = loop {
            let (message, reported) = address
                .recv_timeout(Duration::from_secs(30))
                .expect("the server did not report its address");
            let reported = reported.parse().unwrap();
            if message == "serving" {
                break reported;
            }
            metrics_address = Some(reported);
        };
        ServerProcess {
            child,
            address,
            metrics_address,
            logs,
        }
    }
}

impl ServerProcess {
    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl ServerProcess {
    /// Sends SIGTERM and asserts a clean exit (0), showing the server's
    /// last log lines when it was not.
    pub fn stop_cleanly(&mut self) {
        let status = self.terminate();
        if !status.success() {
            let logs = self.logs.lock().unwrap();
            let tail: Vec<String> = logs
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|line| line.to_string())
                .collect();
            panic!(
                "the server exited with {status:?}; its last log lines:\n{}",
                tail.join("\n")
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One stored task result: succeeded, HTTP status code, error code, message.
pub type ResultRow = (bool, i32, Option<String>, Option<String>);

/// A job's task results, read from the database in task order.
pub async fn task_results(db: &TestDb, job_id: &str) -> Vec<ResultRow> {
    let client = db.client().await;
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    client
        .query(
            "SELECT succeeded, http_status_code, error_code, result_message FROM task_results
             WHERE job_id = $1 ORDER BY task_number",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}
