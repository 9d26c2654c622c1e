//! Shared test harness: a fresh database per test cloned from a migrated
//! template, the real server on a free loopback port, and the generated client.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use batchops::config::{DatabaseConfig, ServeConfig};
use batchops::proto::{self as pb, job_service_client::JobServiceClient};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;
use tonic::transport::Channel;

pub const ACCOUNT: &str = "111122223333";
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("BATCHOPS_TEST_ADMIN_URL").unwrap_or_else(|_| ADMIN_URL.to_owned())
}

fn url_for(database: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{database}")
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
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
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_active_jobs: 4,
            task_concurrency: 8,
            chunk_size: 4,
            poll_interval_ms: 20,
            suspension_limit_seconds: 30 * 24 * 3600,
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

    /// A server whose engine looks for work once at start and then only
    /// hourly, so jobs created afterwards stay New.
    pub async fn idle() -> TestServer {
        let server = TestServer::start_with(Settings {
            poll_interval_ms: 3_600_000,
            ..Settings::default()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
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
    let config = ServeConfig {
        listen: address,
        database: DatabaseConfig {
            database_url: Some(database_url.to_owned()),
            database_pool_size: 8,
        },
        object_store: objects.display().to_string(),
        max_active_jobs: settings.max_active_jobs,
        task_concurrency: settings.task_concurrency,
        chunk_size: settings.chunk_size,
        lease_seconds: 30,
        poll_interval_ms: settings.poll_interval_ms,
        suspension_limit_seconds: settings.suspension_limit_seconds,
    };
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
    }
}

pub async fn describe(client: &mut JobServiceClient<Channel>, job_id: &str) -> pb::JobDescriptor {
    client
        .describe_job(pb::DescribeJobRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
}

/// Polls DescribeJob until the job has `status`, failing after 30 s.
pub async fn wait_for(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
    status: pb::JobStatus,
) -> pb::JobDescriptor {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = describe(client, job_id).await;
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
