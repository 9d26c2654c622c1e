//! One job on 1, 2 and 4 `batchops` processes sharing one database, with a
//! latency-bound operation: Invoke against an endpoint on loopback that
//! answers each call after a fixed delay (20 ms by default).
//!
//! ```text
//! cargo bench --bench scale -- run --tasks 40000 --processes 1,2,4,8
//! ```
//!
//! For each process count it creates one job of N tasks through the first
//! process, lets every process's engine claim its chunks, and prints the
//! tasks per second from the job's activation to its last result (from the
//! event log), the growth over one process, and the CPU the servers,
//! PostgreSQL and the endpoint used meanwhile (of the machine's cores, from
//! `/proc`, so Linux only), which shows where the
//! growth stops: at the endpoint's latency times the task concurrency, at
//! the CPU, or at the database.
//!
//! The database is a new one on `BATCHOPS_BENCH_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::time::{Duration, Instant};

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use bytes::Bytes;
use clap::Parser;
use common::{ACCOUNT, BenchDatabase};
use http_body_util::{BodyExt, Full};

#[derive(Parser)]
struct Args {
    /// `run`. Without it (as when `cargo test --all-targets` runs this
    /// binary) nothing is measured.
    benchmark: Option<String>,
    /// Tasks of the job run at each process count.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Process counts, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    processes: Vec<usize>,
    /// Tasks each process runs at once (the server's default is 16).
    #[arg(long, default_value_t = 16)]
    task_concurrency: usize,
    /// How long the endpoint takes to answer, in ms.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    // `cargo bench` passes --bench; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    match args.benchmark.as_deref() {
        Some("run") => {}
        None => {
            eprintln!("the scale-out run happens only under `cargo bench --bench scale -- run`");
            return;
        }
        Some(other) => {
            eprintln!("no benchmark named {other:?}: run");
            std::process::exit(2);
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(args));
}

async fn run(args: Args) {
    let endpoint = start_endpoint(Duration::from_millis(args.latency_ms)).await;
    let objects = tempfile::tempdir().unwrap();
    let manifest = objects.path().join("bench");
    std::fs::create_dir_all(&manifest).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(manifest.join("m.csv")).unwrap());
    for n in 0..args.tasks {
        writeln!(out, "bench,objects/{n:08}.dat").unwrap();
    }
    out.flush().unwrap();
    drop(out);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "## scale-out: one job of {} Invoke tasks, endpoint answering after {} ms, {} tasks at once per process, {cores} cores",
        args.tasks, args.latency_ms, args.task_concurrency
    );
    println!(
        "{:>9} {:>12} {:>8} {:>16} {:>16} {:>16}",
        "processes", "tasks/s", "× one", "servers' CPU", "PostgreSQL CPU", "endpoint's CPU"
    );
    let mut first = None;
    for &count in &args.processes {
        let database = BenchDatabase::new("batchops_scale");
        let allow = format!("--invoke-allowlist={endpoint}");
        // Eight connections per process keep eight processes within
        // PostgreSQL's default 100 connections.
        let concurrency = format!("--task-concurrency={}", args.task_concurrency);
        let settings = [allow.as_str(), &concurrency, "--database-pool-size=8"];
        let mut servers = Vec::new();
        for index in 0..count {
            // The first process migrates the database; the others wait for it.
            servers.push(common::start_server_with(
                &database.url,
                objects.path(),
                &settings,
            ));
            if index == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut client = JobServiceClient::connect(format!("http://{}", servers[0].address))
            .await
            .unwrap();
        let cpu_before = (
            servers_cpu(&servers),
            postgres_cpu(),
            cpu_seconds(std::process::id()),
        );
        let started = Instant::now();
        let job_id = create(&mut client, &endpoint).await;
        wait_until_complete(&mut client, &job_id).await;
        let wall = started.elapsed().as_secs_f64();
        let servers_used = (servers_cpu(&servers) - cpu_before.0) / wall / cores as f64;
        let postgres_used = (postgres_cpu() - cpu_before.1) / wall / cores as f64;
        // This process is the endpoint (and the one client).
        let endpoint_used = (cpu_seconds(std::process::id()) - cpu_before.2) / wall / cores as f64;
        let active = active_seconds(&mut client, &job_id).await;
        let rate = args.tasks as f64 / active;
        let growth = rate / *first.get_or_insert(rate);
        println!(
            "{count:>9} {rate:>12.0} {growth:>8.2} {:>15.0}% {:>15.0}% {:>15.0}%",
            servers_used * 100.0,
            postgres_used * 100.0,
            endpoint_used * 100.0
        );
        // Dropping a server stops it.
        drop(servers);
        database.drop_database().await;
    }
}

async fn create(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    endpoint: &str,
) -> String {
    client
        .create_job(pb::CreateJobRequest {
            account_id: ACCOUNT.into(),
            client_request_token: uuid::Uuid::new_v4().to_string(),
            description: "scale-out".into(),
            priority: 1,
            confirmation_required: Some(false),
            manifest: Some(pb::Manifest {
                format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
                bucket: "bench".into(),
                key: "m.csv".into(),
                ..Default::default()
            }),
            operation: Some(pb::Operation {
                operation: Some(pb::operation::Operation::Invoke(pb::InvokeOperation {
                    endpoint_url: endpoint.into(),
                    invocation_schema_version:
                        pb::InvocationSchemaVersion::InvocationSchemaVersion20 as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .job_id
}

/// Waits for the job to end, which must be Complete with every call
/// succeeded.
async fn wait_until_complete(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) {
    let job = common::wait_until_ended(client, job_id, Duration::from_millis(50)).await;
    assert_eq!(
        job.status,
        pb::JobStatus::Complete as i32,
        "job ended {:?}: {:?}",
        job.status,
        job.failure_reasons
    );
    let summary = job.progress_summary.unwrap_or_default();
    assert_eq!(summary.number_of_tasks_failed, 0, "every call succeeds");
}

/// Seconds from the job's activation to its last result, from its history.
async fn active_seconds(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    job_id: &str,
) -> f64 {
    let times = common::event_times(client, job_id).await;
    let finished = times
        .iter()
        .rev()
        .find(|(event, _)| event == "AllTasksFinished")
        .map(|(_, at)| *at);
    finished.unwrap() - common::first(&times, "JobActivated").unwrap()
}

/// CPU seconds (user and system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn servers_cpu(servers: &[common::Server]) -> f64 {
    servers.iter().map(|s| cpu_seconds(s.child.id())).sum()
}

/// CPU seconds used so far by every PostgreSQL process on this machine
/// (whose backends come and go, so this is read as a total).
fn postgres_cpu() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// An Invoke endpoint on loopback that answers every call with Succeeded
/// after `latency`; gives its URL.
async fn start_endpoint(latency: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/invoke", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| async move {
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let event: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        tokio::time::sleep(latency).await;
                        let reply = serde_json::json!({
                            "invocationSchemaVersion": event["invocationSchemaVersion"],
                            "treatMissingKeysAs": "PermanentFailure",
                            "invocationId": event["invocationId"],
                            "results": [{
                                "taskId": event["tasks"][0]["taskId"],
                                "resultCode": "Succeeded",
                                "resultString": "done",
                            }],
                        });
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            reply.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}
