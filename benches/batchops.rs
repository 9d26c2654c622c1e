//! Benchmarks of batchops against the limits of the machine it runs on. Each
//! prints its figures; none asserts a time.
//!
//! ```text
//! cargo bench --bench batchops -- all                 # every benchmark below
//! cargo bench --bench batchops -- throughput --tasks 1000000
//! cargo bench --bench batchops -- prepare --lines 10000000
//! cargo bench --bench batchops -- reads --tasks 1000000
//! cargo bench --bench batchops -- notify --watchers 1000 --rounds 10
//! cargo bench --bench batchops -- peers --peer-jobs 100000
//! cargo bench --bench batchops -- growth --growth-jobs 10,1000 --growth-tasks 100000
//! ```
//!
//! - throughput: a job of N tasks whose operation is a no-op (registered only
//!   here), from Active to Completing, against a raw binary `COPY` of N rows
//!   of the same shape into a table like `task_results` in the same
//!   database; then the completion report of those N rows (rows/s).
//! - prepare: an N-line CSV manifest read into task rows (lines/s) and the
//!   peak RSS of the process meanwhile.
//! - reads: DescribeJob and ListJobs latency at 1, 16 and 64 concurrent
//!   clients, for a job of N tasks and for a small one.
//! - notify: a status change committed → received by W concurrent WatchJobs
//!   streams (p50/p99/max over W × rounds deliveries).
//! - growth: DescribeJob, ListJobs, GetJobHistory's first page and a
//!   WatchJobs catch-up as the database fills with finished jobs.
//! - peers: the same N no-op units of work through batchops and through
//!   graphile-worker and pg-boss (`benches/peers/`, Node.js), side by side.
//!
//! Each run uses a database of its own on `BATCHOPS_BENCH_ADMIN_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the
//! end.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use batchops::config::ServeConfig;
use batchops::domain::Task;
use batchops::objects::{TaskOperation, TaskOutcome};
use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use chrono::Utc;
use clap::Parser;
use common::ACCOUNT;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// throughput, prepare, reads, notify, peers or all. Without one (as when
    /// `cargo test --all-targets` runs this binary) nothing is measured.
    benchmark: Option<String>,
    /// Tasks of the big job (throughput, reads, report).
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Manifest lines (prepare).
    #[arg(long, default_value_t = 10_000_000)]
    lines: u64,
    /// Concurrent watchers (notify).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Status changes watched (notify).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Status changes watched first and left out of the figures (notify):
    /// the first changes after a thousand streams open grow their buffers.
    #[arg(long, default_value_t = 10)]
    warmup_rounds: usize,
    /// Units of work for the side-by-side run with graphile-worker and
    /// pg-boss (peers).
    #[arg(long, default_value_t = 100_000)]
    peer_jobs: u64,
    /// Finished jobs at which the growth benchmark measures, comma-separated.
    #[arg(long, default_value = "10,1000", value_delimiter = ',')]
    growth_jobs: Vec<usize>,
    /// Tasks of each finished job of the growth benchmark.
    #[arg(long, default_value_t = 100_000)]
    growth_tasks: u64,
    /// Seconds each read level runs.
    #[arg(long, default_value_t = 3)]
    read_seconds: u64,
    /// Tasks run at once by the engine.
    #[arg(long, default_value_t = 64)]
    task_concurrency: usize,
    /// Tasks per chunk.
    #[arg(long, default_value_t = 1000)]
    chunk_size: u32,
    // `cargo bench` passes --bench; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The operation only benchmarks register: ends at once. One task in a
/// hundred (numbers ending in 99) fails with one of three error codes, so
/// that DescribeJob of the big job carries an error summary while a job of
/// ten tasks carries none.
struct NoOp;

impl TaskOperation for NoOp {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            if task.number % 100 == 99 {
                let code = ["BenchFailureA", "BenchFailureB", "BenchFailureC"]
                    [(task.number / 100 % 3) as usize];
                TaskOutcome::failure(500, code, "failed on purpose")
            } else {
                TaskOutcome::success(200, "")
            }
        })
    }
}

/// A server of this process on its own database and object directory.
struct Bench {
    args: Args,
    database: String,
    admin_url: String,
    url: String,
    objects: tempfile::TempDir,
    client: JobServiceClient<Channel>,
    address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Bench {
    async fn start(args: Args) -> Bench {
        let admin_url = std::env::var("BATCHOPS_BENCH_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let database = format!("batchops_bench_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0);
        let objects = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            config: ServeConfig,
        }
        let config = Serve::parse_from([
            "serve".to_owned(),
            format!("--database-url={url}"),
            format!("--object-store={}", objects.path().display()),
            format!("--task-concurrency={}", args.task_concurrency),
            format!("--chunk-size={}", args.chunk_size),
            format!("--file-chunk-size={}", args.chunk_size),
            "--poll-interval-ms=20".to_owned(),
            format!("--database-pool-size={POOL_SIZE}"),
            "--s3control-listen=off".to_owned(),
            "--console-listen=off".to_owned(),
            // All watchers come from this one address.
            format!("--max-streams-per-caller={}", args.watchers + 10),
        ])
        .config;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            batchops::server::serve_with(
                config,
                listener,
                async {
                    let _ = stopped.await;
                },
                Some(Arc::new(NoOp)),
            )
            .await
            .expect("server failed");
        });
        let client = loop {
            if let Ok(client) = JobServiceClient::connect(format!("http://{address}")).await {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Bench {
            args,
            database,
            admin_url,
            url,
            objects,
            client,
            address,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await;
    }

    /// Writes an N-line Bucket,Key manifest (the objects need not exist for
    /// the no-op) and returns its key.
    fn manifest(&self, lines: u64) -> String {
        let key = format!("manifest-{lines}.csv");
        let dir = self.objects.path().join("bench");
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join(&key)).unwrap();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for i in 0..lines {
            writeln!(out, "bench,objects/{i:012}.dat").unwrap();
        }
        out.flush().unwrap();
        key
    }

    async fn create(&mut self, key: &str, confirmation: bool, report: bool) -> String {
        self.client
            .create_job(pb::CreateJobRequest {
                account_id: ACCOUNT.into(),
                client_request_token: uuid::Uuid::new_v4().to_string(),
                description: key.into(),
                priority: 1,
                confirmation_required: Some(confirmation),
                manifest: Some(pb::Manifest {
                    format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
                    fields: vec![],
                    bucket: "bench".into(),
                    key: key.into(),
                    ..Default::default()
                }),
                operation: Some(pb::Operation {
                    operation: Some(pb::operation::Operation::DeleteObject(
                        pb::DeleteObjectOperation {},
                    )),
                }),
                report: report.then(|| pb::JobReport {
                    enabled: true,
                    bucket: "reports".into(),
                    prefix: "bench".into(),
                    report_scope: pb::ReportScope::AllTasks as i32,
                }),
                tags: vec![],
                failure_threshold: None,
                manifest_generator: None,
                role_arn: String::new(),
                dry_run: false,
                notification: None,
            })
            .await
            .unwrap()
            .into_inner()
            .job_id
    }

    async fn wait_for(&mut self, job_id: &str, status: pb::JobStatus) {
        loop {
            let job = common::describe(&mut self.client, job_id).await;
            if job.status == status as i32 {
                return;
            }
            assert!(
                ![
                    pb::JobStatus::Failed as i32,
                    pb::JobStatus::Cancelled as i32
                ]
                .contains(&job.status),
                "job ended {:?}: {:?}",
                job.status,
                job.failure_reasons
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The commit time of each event of the job, by event type.
    async fn event_times(&mut self, job_id: &str) -> Vec<(String, f64)> {
        common::event_times(&mut self.client, job_id).await
    }
}

fn between(times: &[(String, f64)], from: &str, to: &str) -> Duration {
    let at = |name: &str| common::first(times, name).unwrap_or_else(|| panic!("no {name} event"));
    Duration::from_secs_f64((at(to) - at(from)).max(0.0))
}

fn per_second(count: u64, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Resets the peak RSS counter (Linux: write 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Job of `tasks` no-op tasks: Active → Completing against raw COPY; then
/// the report. Returns the job id for the read benchmark.
async fn throughput(bench: &mut Bench) -> String {
    let tasks = bench.args.tasks;
    let key = bench.manifest(tasks);
    let started = Instant::now();
    let job_id = bench.create(&key, false, true).await;
    bench.wait_for(&job_id, pb::JobStatus::Complete).await;
    let end_to_end = started.elapsed();
    let times = bench.event_times(&job_id).await;
    let run = between(&times, "JobActivated", "AllTasksFinished");
    let report = between(&times, "AllTasksFinished", "ReportWritten");
    let copy = raw_copy(&bench.url, tasks).await;
    let batchops_rate = per_second(tasks, run);
    let copy_rate = per_second(tasks, copy);
    println!("## throughput: {tasks} no-op tasks");
    println!(
        "batchops   {:>12.0} tasks/s  (Active → Completing in {:.2} s; create → Complete {:.2} s)",
        batchops_rate,
        run.as_secs_f64(),
        end_to_end.as_secs_f64()
    );
    println!(
        "raw COPY   {:>12.0} rows/s   ({:.2} s, one binary COPY into a table like task_results)",
        copy_rate,
        copy.as_secs_f64()
    );
    println!(
        "ratio      {:>12.3}  (batchops ÷ COPY)",
        batchops_rate / copy_rate
    );
    println!("## report: {tasks} rows");
    println!(
        "report     {:>12.0} rows/s   ({:.2} s from AllTasksFinished to ReportWritten)",
        per_second(tasks, report),
        report.as_secs_f64()
    );
    job_id
}

/// Time of one binary COPY of `rows` result rows into a copy of
/// `task_results` (same columns and primary key), in one transaction.
async fn raw_copy(url: &str, rows: u64) -> Duration {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_copy;
             CREATE TABLE bench_copy (LIKE task_results INCLUDING ALL)",
        )
        .await
        .unwrap();
    let job = uuid::Uuid::new_v4();
    let now = Utc::now();
    let started = Instant::now();
    let transaction = client.transaction().await.unwrap();
    let sink = transaction
        .copy_in("COPY bench_copy (job_id, task_number, succeeded, http_status_code, error_code, result_message, recorded_at) FROM STDIN BINARY")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::INT8,
            Type::BOOL,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ],
    );
    futures::pin_mut!(writer);
    let none: Option<&str> = None;
    for number in 0..rows as i64 {
        writer
            .as_mut()
            .write(&[&job, &number, &true, &200i32, &none, &none, &now])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    transaction.commit().await.unwrap();
    let took = started.elapsed();
    client.batch_execute("DROP TABLE bench_copy").await.unwrap();
    took
}

async fn prepare(bench: &mut Bench) {
    let lines = bench.args.lines;
    let key = bench.manifest(lines);
    reset_peak_rss();
    let before = peak_rss_mib();
    let job_id = bench.create(&key, true, false).await;
    bench.wait_for(&job_id, pb::JobStatus::Suspended).await;
    let peak = peak_rss_mib();
    let times = bench.event_times(&job_id).await;
    let took = between(&times, "PreparationStarted", "ManifestPrepared");
    println!("## prepare: {lines}-line CSV manifest");
    println!(
        "prepare    {:>12.0} lines/s  ({:.2} s); peak RSS {:.0} MiB (was {:.0} MiB before)",
        per_second(lines, took),
        took.as_secs_f64(),
        peak,
        before
    );
}

/// Latency percentiles of a sorted sample, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}

async fn reads(bench: &mut Bench, big_job: &str) {
    let small_key = bench.manifest(10);
    let small_job = bench.create(&small_key, false, false).await;
    bench.wait_for(&small_job, pb::JobStatus::Complete).await;
    println!(
        "## reads: latency in ms (p50 / p99 / max), {} s per level",
        bench.args.read_seconds
    );
    println!(
        "{:<34} {:>8} {:>22} {:>10}",
        "call", "clients", "p50 / p99 / max", "calls/s"
    );
    let calls: [(&str, Option<String>); 3] = [
        ("DescribeJob (big job, 3 codes)", Some(big_job.to_owned())),
        ("DescribeJob (10 tasks, no error)", Some(small_job.clone())),
        ("ListJobs (first page)", None),
    ];
    const RAW: &str = "raw SELECT of the job row by key";
    // Each level measures every call one after the other, so that all of
    // them meet the machine in the same state.
    let mut rates = std::collections::HashMap::new();
    let mut rows = Vec::new();
    for clients in [1usize, 16, 64] {
        for (name, job) in &calls {
            let (samples, took) = read_load(bench, job.clone(), clients).await;
            let rate = samples.len() as f64 / took.as_secs_f64();
            rows.push((*name, clients, samples, rate));
            rates.insert((*name, clients), rate);
        }
        // The same job rows read straight from PostgreSQL, by primary key,
        // over as many connections as the server's pool: what DescribeJob
        // could reach at most.
        let (samples, took) = raw_read_load(bench, big_job, clients).await;
        let rate = samples.len() as f64 / took.as_secs_f64();
        rows.push((RAW, clients, samples, rate));
        rates.insert((RAW, clients), rate);
    }
    rows.sort_by_key(|(name, clients, _, _)| {
        let order = calls
            .iter()
            .position(|(call, _)| call == name)
            .unwrap_or(calls.len());
        (order, *clients)
    });
    for (name, clients, mut samples, rate) in rows {
        print_level(name, clients, &mut samples, rate);
    }
    for clients in [16usize, 64] {
        for (name, _) in &calls[..2] {
            println!(
                "ratio {name} ÷ raw SELECT at {clients} clients: {:.2}",
                rates[&(*name, clients)] / rates[&(RAW, clients)]
            );
        }
    }
}

fn print_level(name: &str, clients: usize, samples: &mut [Duration], rate: f64) {
    let (p50, p99, max) = percentiles(samples);
    println!(
        "{name:<34} {clients:>8} {:>22} {rate:>10.0}",
        format!("{p50:.2} / {p99:.2} / {max:.2}"),
    );
}

/// Connections of the server's pool in these benchmarks.
const POOL_SIZE: usize = 24;

/// `clients` concurrent callers reading the job's row by primary key over
/// up to `POOL_SIZE` connections, as [`read_load`] calls DescribeJob.
async fn raw_read_load(bench: &Bench, job_id: &str, clients: usize) -> (Vec<Duration>, Duration) {
    let job_id: uuid::Uuid = job_id.parse().unwrap();
    let mut connections = Vec::new();
    for _ in 0..clients.min(POOL_SIZE) {
        let (client, connection) = tokio_postgres::connect(&bench.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let statement = client
            .prepare("SELECT state FROM jobs WHERE job_id = $1")
            .await
            .unwrap();
        connections.push(Arc::new((client, statement)));
    }
    let connections = Arc::new(connections);
    timed_calls(bench, clients, move |index| {
        let connection = connections[index % connections.len()].clone();
        async move {
            let (client, statement) = &*connection;
            let row = client.query_one(statement, &[&job_id]).await.unwrap();
            let _: serde_json::Value = row.get(0);
        }
    })
    .await
}

/// `clients` concurrent callers, over up to 8 connections, for the
/// configured seconds; returns every call's latency and the time taken.
async fn read_load(
    bench: &Bench,
    job: Option<String>,
    clients: usize,
) -> (Vec<Duration>, Duration) {
    let mut channels = Vec::new();
    for _ in 0..clients.min(8) {
        channels.push(
            JobServiceClient::connect(format!("http://{}", bench.address))
                .await
                .unwrap(),
        );
    }
    let channels = Arc::new(channels);
    timed_calls(bench, clients, move |index| {
        let mut client = channels[index % channels.len()].clone();
        let job = job.clone();
        async move {
            match job {
                Some(job_id) => {
                    common::describe(&mut client, &job_id).await;
                }
                None => list_first_page(&mut client, 0).await,
            }
        }
    })
    .await
}

/// `clients` callers, each making calls one after another for the
/// configured seconds (`call(index)` makes caller `index`'s next call);
/// returns every call's latency and the time taken.
async fn timed_calls<F, Fut>(bench: &Bench, clients: usize, call: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let seconds = Duration::from_secs(bench.args.read_seconds);
    let call = Arc::new(call);
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for index in 0..clients {
        let call = call.clone();
        callers.spawn(async move {
            let mut samples = Vec::new();
            while started.elapsed() < seconds {
                let at = Instant::now();
                call(index).await;
                samples.push(at.elapsed());
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(samples) = callers.join_next().await {
        all.extend(samples.unwrap());
    }
    (all, started.elapsed())
}

/// Calls whose cost should not grow with the work the database holds:
/// DescribeJob, ListJobs' first page, GetJobHistory's first page and a
/// WatchJobs catch-up over one job's events, measured (200 sequential calls
/// each, p50 / p99 in ms) once the database holds each of `growth_jobs`
/// finished jobs of `growth_tasks` no-op tasks.
async fn growth(bench: &mut Bench) {
    let tasks = bench.args.growth_tasks;
    let levels = bench.args.growth_jobs.clone();
    let key = bench.manifest(tasks);
    println!("## growth: reads as finished jobs of {tasks} tasks accumulate (p50 / p99 ms)");
    println!(
        "{:>6} {:>16} {:>16} {:>16} {:>16}",
        "jobs", "DescribeJob", "ListJobs", "GetJobHistory", "WatchJobs catch-up"
    );
    let mut jobs: Vec<String> = Vec::new();
    for level in levels {
        // Several jobs run at once, as the engine allows.
        while jobs.len() < level {
            let batch = (level - jobs.len()).min(8);
            let mut created = Vec::new();
            for _ in 0..batch {
                created.push(bench.create(&key, false, false).await);
            }
            for job in &created {
                bench.wait_for(job, pb::JobStatus::Complete).await;
            }
            jobs.extend(created);
        }
        let oldest = jobs[0].clone();
        let newest = jobs[jobs.len() - 1].clone();
        let mut client = bench.client.clone();
        let describe = sample(200, || {
            let mut client = client.clone();
            let job_id = oldest.clone();
            async move {
                common::describe(&mut client, &job_id).await;
            }
        })
        .await;
        let list = sample(200, || {
            let mut client = client.clone();
            // The same page at every level: ten jobs.
            async move { list_first_page(&mut client, 10).await }
        })
        .await;
        let history = sample(200, || {
            let mut client = client.clone();
            let job_id = oldest.clone();
            async move {
                let mut stream = client
                    .get_job_history(history_of(&job_id))
                    .await
                    .unwrap()
                    .into_inner();
                while stream.next().await.is_some() {}
            }
        })
        .await;
        // The newest job's events, from just before its first one.
        let first = client
            .get_job_history(history_of(&newest))
            .await
            .unwrap()
            .into_inner()
            .next()
            .await
            .unwrap()
            .unwrap()
            .event
            .unwrap()
            .position;
        let catch_up = sample(200, || {
            let mut client = client.clone();
            let job_id = newest.clone();
            async move {
                let mut stream = client
                    .watch_jobs(pb::WatchJobsRequest {
                        account_id: ACCOUNT.into(),
                        job_ids: vec![job_id],
                        after_position: Some(first - 1),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                while let Some(item) = stream.next().await {
                    if matches!(
                        item.unwrap().message,
                        Some(pb::watch_jobs_response::Message::CaughtUp(_))
                    ) {
                        break;
                    }
                }
            }
        })
        .await;
        let show = |mut samples: Vec<Duration>| {
            let (p50, p99, _) = percentiles(&mut samples);
            format!("{p50:.2} / {p99:.2}")
        };
        println!(
            "{:>6} {:>16} {:>16} {:>16} {:>16}",
            jobs.len(),
            show(describe),
            show(list),
            show(history),
            show(catch_up)
        );
    }
}

/// ListJobs' first page of `page_size` jobs (0: the server's default).
async fn list_first_page(client: &mut JobServiceClient<Channel>, page_size: i32) {
    client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            statuses: vec![],
            page_size,
            page_token: String::new(),
        })
        .await
        .unwrap();
}

/// A request for the whole of a job's event history, without task results.
fn history_of(job_id: &str) -> pb::GetJobHistoryRequest {
    pb::GetJobHistoryRequest {
        account_id: ACCOUNT.into(),
        job_id: job_id.into(),
        after_sequence: 0,
        include_task_results: false,
    }
}

/// `count` sequential calls made by `call`; each one's latency.
async fn sample<F, Fut>(count: usize, call: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let at = Instant::now();
        call().await;
        samples.push(at.elapsed());
    }
    samples
}

/// The jobs a watcher saw leave Suspended, and when.
type Record = Arc<std::sync::Mutex<Vec<(String, Instant)>>>;

async fn notify(bench: &mut Bench) {
    let (watchers, rounds) = (bench.args.watchers, bench.args.rounds);
    let warmup = bench.args.warmup_rounds;
    // Jobs waiting in Suspended, one per round, before anyone watches.
    let key = bench.manifest(1);
    let mut jobs = Vec::new();
    for _ in 0..warmup + rounds {
        jobs.push(bench.create(&key, true, false).await);
    }
    for job in jobs.clone() {
        bench.wait_for(&job, pb::JobStatus::Suspended).await;
    }
    // Watchers over 16 connections. Each keeps the times it saw jobs leave
    // Suspended and counts them in one shared counter; only the delivery
    // that completes a round wakes the driver, so that measuring adds no
    // task wake-up per delivery.
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let round_done = Arc::new(tokio::sync::Notify::new());
    let (ready, mut all_ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Each watcher's own record, read once the rounds are over.
    let records: Vec<Record> = (0..watchers).map(|_| Arc::default()).collect();
    let mut channels = Vec::new();
    for _ in 0..16 {
        channels.push(
            JobServiceClient::connect(format!("http://{}", bench.address))
                .await
                .unwrap(),
        );
    }
    let mut streams = tokio::task::JoinSet::new();
    for index in 0..watchers {
        let mut client = channels[index % channels.len()].clone();
        let (delivered, round_done) = (delivered.clone(), round_done.clone());
        let (ready, record) = (ready.clone(), records[index].clone());
        streams.spawn(async move {
            let mut stream = client
                .watch_jobs(pb::WatchJobsRequest {
                    account_id: ACCOUNT.into(),
                    job_ids: vec![],
                    after_position: None,
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(Ok(message)) = stream.next().await {
                match message.message {
                    Some(pb::watch_jobs_response::Message::CaughtUp(_)) => {
                        let _ = ready.send(());
                    }
                    Some(pb::watch_jobs_response::Message::Event(event)) => {
                        if let Some(pb::job_event::Event::StatusChanged(change)) = &event.event
                            && change.previous_status == pb::JobStatus::Suspended as i32
                        {
                            let at = Instant::now();
                            record.lock().unwrap().push((event.job_id.clone(), at));
                            let count = delivered.fetch_add(1, Ordering::AcqRel) + 1;
                            if count % watchers == 0 {
                                round_done.notify_one();
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    for _ in 0..watchers {
        all_ready.recv().await.unwrap();
    }
    let mut sent_at = std::collections::HashMap::new();
    let mut commands = Vec::with_capacity(rounds);
    for (round, job) in jobs.iter().enumerate() {
        let sent = Instant::now();
        sent_at.insert(job.clone(), sent);
        bench
            .client
            .update_job_status(pb::UpdateJobStatusRequest {
                account_id: ACCOUNT.into(),
                job_id: job.clone(),
                requested_job_status: pb::JobStatus::Cancelled as i32,
                status_update_reason: "bench".into(),
            })
            .await
            .unwrap();
        if round >= warmup {
            commands.push(sent.elapsed());
        }
        while delivered.load(Ordering::Acquire) < watchers * (round + 1) {
            round_done.notified().await;
        }
    }
    streams.abort_all();
    let measured: std::collections::HashSet<&String> = jobs[warmup..].iter().collect();
    let mut samples = Vec::with_capacity(watchers * rounds);
    // When each round's change reached its first and its last watcher.
    let mut round_reach: std::collections::HashMap<&String, (Duration, Duration)> =
        std::collections::HashMap::new();
    for record in &records {
        for (job_id, at) in record.lock().unwrap().iter() {
            if !measured.contains(job_id) {
                continue;
            }
            let latency = at.duration_since(sent_at[job_id]);
            samples.push(latency);
            let (first, last) = round_reach
                .entry(sent_at.get_key_value(job_id).unwrap().0)
                .or_insert((latency, latency));
            *first = (*first).min(latency);
            *last = (*last).max(latency);
        }
    }
    let mut round_firsts: Vec<Duration> = round_reach.values().map(|(first, _)| *first).collect();
    let mut round_ends: Vec<Duration> = round_reach.values().map(|(_, last)| *last).collect();
    let mut spreads: Vec<Duration> = round_reach
        .values()
        .map(|(first, last)| *last - *first)
        .collect();
    assert_eq!(
        samples.len(),
        watchers * rounds,
        "a watcher missed a change"
    );
    let (p50, p99, max) = percentiles(&mut samples);
    // Sorted by `percentiles`: the first watcher's latency is what reaching
    // the process costs (the command, its commit, NOTIFY and the tail's
    // read); the rest is the fan-out to every stream.
    let first = samples[0].as_secs_f64() * 1000.0;
    let (command_p50, command_p99, _) = percentiles(&mut commands);
    let (first_p50, first_p99, _) = percentiles(&mut round_firsts);
    let (round_p50, round_p99, round_max) = percentiles(&mut round_ends);
    let (spread_p50, spread_p99, _) = percentiles(&mut spreads);
    println!(
        "## notify: {watchers} watchers × {rounds} status changes (after {warmup} not counted)"
    );
    println!(
        "command    p50 {command_p50:.2} ms  p99 {command_p99:.2} ms  (UpdateJobStatus sent → its response received)"
    );
    println!(
        "reach      first p50 {first_p50:.2} ms  p99 {first_p99:.2} ms  first → last p50 {spread_p50:.2} ms  p99 {spread_p99:.2} ms  (per change)"
    );
    println!(
        "notify     first {first:.2} ms  p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  (UpdateJobStatus sent → event received by each watcher)"
    );
    println!(
        "all        p50 {round_p50:.2} ms  p99 {round_p99:.2} ms  max {round_max:.2} ms  (UpdateJobStatus sent → received by its last watcher, per change)"
    );
}

/// The same no-op units of work through batchops (one job of N tasks) and
/// through graphile-worker and pg-boss (N jobs), on the same PostgreSQL.
async fn peers(bench: &mut Bench) {
    let n = bench.args.peer_jobs;
    let key = bench.manifest(n);
    let started = Instant::now();
    let job_id = bench.create(&key, false, false).await;
    bench.wait_for(&job_id, pb::JobStatus::Complete).await;
    let end_to_end = started.elapsed();
    let times = bench.event_times(&job_id).await;
    let run = between(&times, "JobActivated", "AllTasksFinished");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let installed = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .is_ok_and(|status| status.success());
    assert!(installed, "npm ci in benches/peers failed");
    let output = std::process::Command::new("node")
        .arg("peers.mjs")
        .arg(&bench.admin_url)
        .arg(n.to_string())
        .arg(bench.args.task_concurrency.to_string())
        .current_dir(&dir)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let batchops_rate = per_second(n, run);
    println!(
        "## peers: {n} no-op units of work, {} at once",
        bench.args.task_concurrency
    );
    println!(
        "{:<16} {:>12} {:>14} {:>22}",
        "system", "run jobs/s", "enqueue s", "batchops ÷ system"
    );
    println!(
        "{:<16} {:>12.0} {:>14.2} {:>22}",
        "batchops",
        batchops_rate,
        (end_to_end - run).as_secs_f64(),
        "1.00"
    );
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(peer) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let rate = peer["jobs_per_second"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<16} {:>12.0} {:>14.2} {:>22.1}",
            peer["peer"].as_str().unwrap_or("?"),
            rate,
            peer["enqueue_seconds"].as_f64().unwrap_or(f64::NAN),
            batchops_rate / rate
        );
    }
    println!(
        "(batchops: Active → Completing; its enqueue column is create → Active plus the finish, i.e. preparing {n} task rows from a manifest)"
    );
}

fn main() {
    let args = Args::parse();
    let Some(which) = args.benchmark.clone() else {
        println!(
            "no benchmark named: cargo bench --bench batchops -- all (or throughput, prepare, reads, notify, peers, growth)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut bench = Bench::start(args).await;
        let all = which == "all";
        let mut big_job = None;
        if all || which == "throughput" || which == "reads" {
            big_job = Some(throughput(&mut bench).await);
        }
        if all || which == "reads" {
            reads(&mut bench, big_job.as_deref().unwrap()).await;
        }
        if all || which == "notify" {
            notify(&mut bench).await;
        }
        if all || which == "prepare" {
            prepare(&mut bench).await;
        }
        if all || which == "peers" {
            peers(&mut bench).await;
        }
        if all || which == "growth" {
            growth(&mut bench).await;
        }
        if !all
            && !["throughput", "reads", "notify", "prepare", "peers", "growth"]
                .contains(&which.as_str())
        {
            eprintln!(
                "unknown benchmark {which:?}: throughput, prepare, reads, notify, peers, growth or all"
            );
        }
        bench.stop().await;
    });
}
