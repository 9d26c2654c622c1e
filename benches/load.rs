//! Load run: mixed CreateJob, DescribeJob, ListJobs, GetJobHistory and
//! WatchJobs calls from many clients on loopback against the real server
//! binary for a while (60 s by default), printing the calls served, the
//! errors (there must be none) and the server's resident memory every 5 s.
//!
//! ```text
//! cargo bench --bench load -- --seconds 60 --clients 32
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use clap::Parser;
use futures::StreamExt;
use tonic::transport::Channel;

mod common;
use common::{ACCOUNT, BenchDatabase, checksum_job, start_server};

const CALLS: [&str; 5] = [
    "CreateJob",
    "DescribeJob",
    "ListJobs",
    "GetJobHistory",
    "WatchJobs",
];

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent clients, over 8 connections.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    // `cargo bench` passes --bench; `cargo test` runs this with no flag.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Default)]
struct Tally {
    served: [AtomicU64; 5],
    errors: [AtomicU64; 5],
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, call: usize, outcome: Result<(), tonic::Status>) {
        match outcome {
            Ok(()) => self.served[call].fetch_add(1, Ordering::Relaxed),
            Err(status) => {
                let mut first = self.first_errors.lock().unwrap();
                if first.len() < 5 {
                    first.push(format!("{}: {status}", CALLS[call]));
                }
                self.errors[call].fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn main() {
    let args = Args::parse();
    if !args.bench {
        println!("the load run happens only under `cargo bench --bench load`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run(args));
}

async fn run(args: Args) {
    let database = BenchDatabase::new("batchops_load");
    let url = database.url.clone();
    let objects = tempfile::tempdir().unwrap();
    let bucket = objects.path().join("load");
    std::fs::create_dir_all(&bucket).unwrap();
    let mut manifest = String::new();
    for i in 0..10 {
        std::fs::write(bucket.join(format!("o{i}")), format!("object {i}")).unwrap();
        manifest.push_str(&format!("load,o{i}\n"));
    }
    std::fs::write(bucket.join("m.csv"), manifest).unwrap();
    let mut server = start_server(&url, objects.path(), 8);

    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(
            JobServiceClient::connect(format!("http://{}", server.address))
                .await
                .unwrap(),
        );
    }
    let tally = Arc::new(Tally::default());
    let jobs = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..args.clients {
        let (client, tally, jobs) = (channels[index % 8].clone(), tally.clone(), jobs.clone());
        clients.spawn(async move {
            let mut round = index;
            while Instant::now() < deadline {
                round += 1;
                let call = match round % 10 {
                    0 => 0,
                    1..=5 => 1,
                    6 | 7 => 2,
                    8 => 3,
                    _ => 4,
                };
                let outcome = one_call(client.clone(), call, &jobs, round).await;
                tally.record(call, outcome);
            }
        });
    }
    let mut memory = Vec::new();
    while Instant::now() < deadline {
        memory.push(server.rss_mib());
        tokio::time::sleep(Duration::from_secs(5).min(deadline - Instant::now())).await;
    }
    while clients.join_next().await.is_some() {}
    memory.push(server.rss_mib());

    let served: Vec<u64> = tally
        .served
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let errors: Vec<u64> = tally
        .errors
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    println!("## load: {} clients for {} s", args.clients, args.seconds);
    for (index, call) in CALLS.iter().enumerate() {
        println!(
            "{call:<14} {:>9} served {:>6} errors",
            served[index], errors[index]
        );
    }
    let total: u64 = served.iter().sum();
    println!(
        "total          {total:>9} served {:>6} errors ({:.0} calls/s)",
        errors.iter().sum::<u64>(),
        total as f64 / args.seconds as f64
    );
    let samples: Vec<String> = memory.iter().map(|m| format!("{m:.0}")).collect();
    println!("server RSS every 5 s (MiB): {}", samples.join(" "));
    for error in tally.first_errors.lock().unwrap().iter() {
        println!("error: {error}");
    }

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    database.drop_database().await;
    assert_eq!(errors.iter().sum::<u64>(), 0, "calls failed under load");
}

async fn one_call(
    mut client: JobServiceClient<Channel>,
    call: usize,
    jobs: &Mutex<Vec<String>>,
    round: usize,
) -> Result<(), tonic::Status> {
    let known = {
        let jobs = jobs.lock().unwrap();
        (!jobs.is_empty()).then(|| jobs[round % jobs.len()].clone())
    };
    match (call, known) {
        (0, _) | (1 | 3, None) => {
            let id = client
                .create_job(pb::CreateJobRequest {
                    priority: (round % 5) as i32,
                    confirmation_required: Some(round.is_multiple_of(2)),
                    ..checksum_job("load", "m.csv", pb::ChecksumAlgorithm::Crc32c)
                })
                .await?
                .into_inner()
                .job_id;
            jobs.lock().unwrap().push(id);
        }
        (1, Some(job_id)) => {
            client
                .describe_job(pb::DescribeJobRequest {
                    account_id: ACCOUNT.into(),
                    job_id,
                })
                .await?;
        }
        (2, _) => {
            client
                .list_jobs(pb::ListJobsRequest {
                    account_id: ACCOUNT.into(),
                    page_size: 20,
                    ..Default::default()
                })
                .await?;
        }
        (3, Some(job_id)) => {
            let mut stream = client
                .get_job_history(pb::GetJobHistoryRequest {
                    account_id: ACCOUNT.into(),
                    job_id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            while let Some(item) = stream.next().await {
                item?;
            }
        }
        _ => {
            let mut stream = client
                .watch_jobs(pb::WatchJobsRequest {
                    account_id: ACCOUNT.into(),
                    job_ids: vec![],
                    after_position: None,
                })
                .await?
                .into_inner();
            // Read until caught up, then follow briefly and hang up.
            let follow = async {
                while let Some(message) = stream.next().await {
                    message?;
                }
                Ok::<(), tonic::Status>(())
            };
            if let Ok(outcome) = tokio::time::timeout(Duration::from_millis(200), follow).await {
                outcome?;
            }
        }
    }
    Ok(())
}
