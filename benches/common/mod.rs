//! What the bench binaries share: databases, the real `batchops` binary as a
//! server, and calls on the bench account's jobs.
// Each benchmark uses some of these helpers.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use batchops::proto as pb;

/// A database of its own for one run, on the server of
/// `BATCHOPS_BENCH_ADMIN_URL` (default the local one); batchops creates it.
pub struct BenchDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    pub fn new(prefix: &str) -> BenchDatabase {
        let admin = std::env::var("BATCHOPS_BENCH_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        BenchDatabase { admin, name, url }
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_database(self) {
        let (client, connection) = tokio_postgres::connect(&self.admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// The account the bench jobs belong to.
pub const ACCOUNT: &str = "111122223333";

/// A CreateJob request for a checksum job over the CSV manifest
/// `bucket/key`, starting without confirmation.
pub fn checksum_job(
    bucket: &str,
    key: &str,
    algorithm: pb::ChecksumAlgorithm,
) -> pb::CreateJobRequest {
    pb::CreateJobRequest {
        account_id: ACCOUNT.into(),
        client_request_token: uuid::Uuid::new_v4().to_string(),
        description: format!("{bucket}/{key}"),
        priority: 1,
        confirmation_required: Some(false),
        manifest: Some(pb::Manifest {
            format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
            fields: vec![],
            bucket: bucket.into(),
            key: key.into(),
            ..Default::default()
        }),
        operation: Some(pb::Operation {
            operation: Some(pb::operation::Operation::ComputeObjectChecksum(
                pb::ComputeObjectChecksumOperation {
                    algorithm: algorithm as i32,
                },
            )),
        }),
        ..Default::default()
    }
}

/// The real server binary, on a free port.
pub struct Server {
    pub child: Child,
    pub address: String,
}

/// The server with short leases and small chunks, for runs that kill it.
pub fn start_server(url: &str, objects: &std::path::Path, concurrency: u32) -> Server {
    let concurrency = concurrency.to_string();
    start_server_with(
        url,
        objects,
        &[
            "--lease-seconds",
            "3",
            "--chunk-size",
            "200",
            "--file-chunk-size",
            "200",
            "--task-concurrency",
            &concurrency,
            "--poll-interval-ms",
            "50",
        ],
    )
}

/// The server with its defaults but for `settings`.
pub fn start_server_with(url: &str, objects: &std::path::Path, settings: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--s3control-listen", "off", "--console-listen", "off"])
        .args(["--database-url", url])
        .args(settings)
        .arg("--object-store")
        .arg(objects)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start batchops");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server exited before serving")
            .unwrap();
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["fields"]["message"] == "serving" {
            break entry["fields"]["address"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, address }
}

impl Drop for Server {
    /// A bench that panics leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The process's resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

/// DescribeJob of one of the bench account's jobs.
pub async fn describe(
    client: &mut batchops::proto::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> pb::JobDescriptor {
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

/// Polls the job every `every` until it has ended (Complete, Failed or
/// Cancelled); gives its last description.
pub async fn wait_until_ended(
    client: &mut batchops::proto::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
    every: std::time::Duration,
) -> pb::JobDescriptor {
    let ended = [
        pb::JobStatus::Complete as i32,
        pb::JobStatus::Failed as i32,
        pb::JobStatus::Cancelled as i32,
    ];
    loop {
        let job = describe(client, job_id).await;
        if ended.contains(&job.status) {
            return job;
        }
        tokio::time::sleep(every).await;
    }
}

/// Each of the job's events with the time it was logged, in seconds since
/// the epoch, in log order.
#[allow(dead_code)]
pub async fn event_times(
    client: &mut batchops::proto::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> Vec<(String, f64)> {
    use futures::StreamExt;
    let mut stream = client
        .get_job_history(pb::GetJobHistoryRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.into(),
            after_sequence: 0,
            include_task_results: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut times = Vec::new();
    while let Some(item) = stream.next().await {
        if let Some(event) = item.unwrap().event {
            let time = event.event_time.unwrap();
            times.push((
                event.event_type,
                time.seconds as f64 + f64::from(time.nanos) / 1e9,
            ));
        }
    }
    times
}

/// When the job's first event of type `name` was logged.
#[allow(dead_code)]
pub fn first(times: &[(String, f64)], name: &str) -> Option<f64> {
    times
        .iter()
        .find(|(event, _)| event == name)
        .map(|(_, at)| *at)
}

/// Where an ended job's time went, from the times its events were logged:
/// preparation (creation to `ManifestPrepared`), the run (`JobActivated` to
/// `AllTasksFinished`) and the rest up to its last event.
#[allow(dead_code)]
pub async fn phases(
    client: &mut batchops::proto::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> String {
    let times = event_times(client, job_id).await;
    let (Some(created), Some(last)) = (times.first().map(|t| t.1), times.last().map(|t| t.1))
    else {
        return "no events".into();
    };
    let span = |from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(from), Some(to)) => format!("{:.2} s", to - from),
        _ => "-".into(),
    };
    format!(
        "prepare {} · run {} · finish {}",
        span(Some(created), first(&times, "ManifestPrepared")),
        span(
            first(&times, "JobActivated"),
            first(&times, "AllTasksFinished")
        ),
        span(first(&times, "AllTasksFinished"), Some(last)),
    )
}
