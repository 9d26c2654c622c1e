//! Chaos run: a job of N checksum tasks while the server process is killed
//! with SIGKILL over and over (and, with `--restart-postgres`, while the
//! PostgreSQL cluster restarts mid-job). The job must finish Complete with
//! exactly one result per task and a report listing every task once.
//!
//! ```text
//! cargo bench --bench chaos -- --tasks 100000 --kills 8
//! cargo bench --bench chaos -- --tasks 100000 --kills 4 --restart-postgres
//! ```
//!
//! `--restart-postgres` restarts the local cluster (the one
//! `BATCHOPS_BENCH_ADMIN_URL` should name) with `pg_ctlcluster`, which
//! disturbs anything else using it: run it on a machine of your own.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use clap::Parser;
use md5::{Digest, Md5};

mod common;
use common::{ACCOUNT, BenchDatabase, checksum_job, start_server};

#[derive(Parser)]
struct Args {
    /// Tasks in the job.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// SIGKILLs of the server while the job runs.
    #[arg(long, default_value_t = 8)]
    kills: u32,
    /// Tasks the server runs at once (fewer makes the job last through
    /// more kills).
    #[arg(long, default_value_t = 4)]
    task_concurrency: u32,
    /// Restart PostgreSQL once under the running server, before the kills.
    #[arg(long)]
    restart_postgres: bool,
    // `cargo bench` passes --bench; `cargo test` runs this with no flag.
    #[arg(long, hide = true)]
    bench: bool,
}

async fn describe(address: &str, job_id: &str) -> Option<pb::JobDescriptor> {
    let mut client = JobServiceClient::connect(format!("http://{address}"))
        .await
        .ok()?;
    client
        .describe_job(pb::DescribeJobRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.into(),
        })
        .await
        .ok()?
        .into_inner()
        .job
}

fn main() {
    let args = Args::parse();
    if !args.bench {
        println!("chaos runs only under `cargo bench --bench chaos`");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let database = BenchDatabase::new("batchops_chaos");
    let url = database.url.clone();
    let objects = tempfile::tempdir().unwrap();

    // N small objects and a manifest listing them.
    let bucket = objects.path().join("chaos");
    std::fs::create_dir_all(bucket.join("o")).unwrap();
    let mut manifest =
        std::io::BufWriter::new(std::fs::File::create(bucket.join("m.csv")).unwrap());
    for i in 0..args.tasks {
        std::fs::write(bucket.join(format!("o/{i}")), i.to_string()).unwrap();
        writeln!(manifest, "chaos,o/{i}").unwrap();
    }
    manifest.flush().unwrap();
    drop(manifest);

    let mut server = start_server(&url, objects.path(), args.task_concurrency);
    let mut client = JobServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let job_id = client
        .create_job(pb::CreateJobRequest {
            report: Some(pb::JobReport {
                enabled: true,
                bucket: "reports".into(),
                prefix: "chaos".into(),
                report_scope: pb::ReportScope::AllTasks as i32,
            }),
            ..checksum_job("chaos", "m.csv", pb::ChecksumAlgorithm::Sha256)
        })
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let started = Instant::now();
    let (mut kills, mut restarts) = (0, 0);
    let mut done_at_kill = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(800 + rand::random::<u64>() % 1700)).await;
        let job = describe(&server.address, &job_id).await;
        let status = job.as_ref().map(|j| j.status);
        if status == Some(pb::JobStatus::Complete as i32) {
            break;
        }
        if let Some(job) = &job
            && [
                pb::JobStatus::Failed as i32,
                pb::JobStatus::Cancelled as i32,
            ]
            .contains(&job.status)
        {
            panic!("the job ended {:?}: {:?}", job.status, job.failure_reasons);
        }
        if args.restart_postgres && restarts == 0 {
            // Under the running server: it must ride out the lost connections.
            let versions = std::fs::read_dir("/etc/postgresql").unwrap();
            let version = versions.flatten().next().unwrap().file_name();
            let status = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version.to_string_lossy()])
                .args(["main", "restart", "-m", "fast"])
                .status()
                .unwrap();
            assert!(status.success(), "pg_ctlcluster restart failed");
            restarts += 1;
        } else if kills < args.kills {
            let summary = job.and_then(|j| j.progress_summary).unwrap_or_default();
            done_at_kill.push(summary.number_of_tasks_succeeded + summary.number_of_tasks_failed);
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            kills += 1;
            server = start_server(&url, objects.path(), args.task_concurrency);
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the job never completed"
        );
    }
    let took = started.elapsed();
    let job = describe(&server.address, &job_id).await.unwrap();
    let summary = job.progress_summary.unwrap_or_default();

    // Exactly one result per task, in the log itself.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let id = uuid::Uuid::parse_str(&job_id).unwrap();
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT task_number), coalesce(min(task_number), -1), coalesce(max(task_number), -1)
             FROM task_results WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (results, distinct, min, max): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let n = args.tasks as i64;
    assert_eq!(
        (results, distinct, min, max),
        (n, n, 0, n - 1),
        "results per task"
    );
    assert_eq!(summary.number_of_tasks_succeeded, args.tasks);

    // The report lists every task once, each file matching its MD5.
    let location = job.report_location.expect("a report location");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            objects
                .path()
                .join(&location.bucket)
                .join(&location.manifest_key),
        )
        .unwrap(),
    )
    .unwrap();
    let mut keys = std::collections::HashSet::new();
    let mut rows = 0u64;
    for file in manifest["Results"].as_array().unwrap() {
        let content = std::fs::read(
            objects
                .path()
                .join(file["Bucket"].as_str().unwrap())
                .join(file["Key"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(
            hex::encode(Md5::digest(&content)),
            file["MD5Checksum"].as_str().unwrap()
        );
        for line in String::from_utf8(content).unwrap().lines() {
            rows += 1;
            keys.insert(line.split(',').nth(1).unwrap().to_owned());
        }
    }
    assert_eq!(
        (rows, keys.len() as u64),
        (args.tasks, args.tasks),
        "report rows"
    );

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(db);
    database.drop_database().await;

    println!("## chaos: {} checksum tasks", args.tasks);
    println!(
        "faults survived: {kills} SIGKILLs of the server (tasks done at each: {done_at_kill:?}), {restarts} PostgreSQL restarts"
    );
    println!(
        "results checked: {results} results for {n} tasks, {distinct} distinct, numbered 0..{max}; report: {rows} rows, {} distinct keys, every file's MD5 matches",
        keys.len()
    );
    println!("job Complete in {:.1} s", took.as_secs_f64());
}
