//! batchops against rclone on real objects in the directory store: the same
//! files, the same machine, one after the other in one run.
//!
//! ```text
//! cargo bench --bench objects -- all        # checksum, copy and delete
//! cargo bench --bench objects -- checksum --small 100000 --large 1000 --large-mib 8 --rounds 3
//! ```
//!
//! For each operation and each object set (many 1 KiB objects, fewer large
//! ones) it times, from the request to the end of the work:
//!
//! - batchops: the real server binary with its default settings; a job over
//!   a manifest generator (the listing of `objects/` in the bucket, as rclone
//!   lists the directory), from CreateJob to the job's Complete status, every
//!   task result committed to PostgreSQL and, for checksums, a completion
//!   report with every object's checksum written;
//! - rclone: `rclone hashsum sha256`, `rclone copy` and `rclone delete` on
//!   the same directories, with 32 checkers (and transfers).
//!
//! The files are read once before the first round, so both run on a warm
//! page cache. Each round deletes objects from fresh hard links of the
//! source set and copies into a fresh target. Figures are medians over the
//! rounds. rclone must be installed (Debian and Ubuntu: `apt install
//! rclone`; macOS: `brew install rclone`; or https://rclone.org/install/).
//!
//! The database is a new one on `BATCHOPS_BENCH_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchops::proto as pb;
use batchops::proto::job_service_client::JobServiceClient;
use clap::Parser;
use common::{ACCOUNT, BenchDatabase};
use rand::RngCore;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// checksum, copy, delete or all. Without one (as when `cargo test
    /// --all-targets` runs this binary) nothing is measured.
    benchmark: Option<String>,
    /// Objects of 1 KiB.
    #[arg(long, default_value_t = 100_000)]
    small: usize,
    /// Large objects.
    #[arg(long, default_value_t = 1000)]
    large: usize,
    /// Size of a large object, in MiB.
    #[arg(long, default_value_t = 8)]
    large_mib: usize,
    /// Rounds of each measurement (the median is printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the objects are written (a new directory in it, removed at the
    /// end): the system's temporary directory, or e.g. /dev/shm to keep a
    /// machine that pages out idle page cache from measuring its disk.
    #[arg(long)]
    objects_dir: Option<PathBuf>,
    /// Checkers (and transfers) rclone runs with.
    #[arg(long, default_value_t = 32)]
    rclone_checkers: usize,
    // `cargo bench` passes --bench; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One of the operations compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Checksum,
    Copy,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Checksum => "compute_object_checksum SHA-256 / rclone hashsum sha256",
            Operation::Copy => "put_object_copy / rclone copy",
            Operation::Delete => "delete_object / rclone delete",
        }
    }
}

/// A set of objects: `<root>/<bucket>/objects/<n>.dat`.
struct ObjectSet {
    label: String,
    bucket: &'static str,
    count: usize,
}

fn main() {
    let args = Args::parse();
    let operations = match args.benchmark.as_deref() {
        None => {
            eprintln!("the object benchmarks run only under `cargo bench --bench objects -- all`");
            return;
        }
        Some("all") => vec![Operation::Checksum, Operation::Copy, Operation::Delete],
        Some("checksum") => vec![Operation::Checksum],
        Some("copy") => vec![Operation::Copy],
        Some("delete") => vec![Operation::Delete],
        Some(other) => {
            eprintln!("no benchmark named {other:?}: checksum, copy, delete or all");
            std::process::exit(2);
        }
    };
    let Some(rclone) = rclone_version() else {
        eprintln!(
            "rclone is not installed, and this benchmark compares batchops with it.\n\
             Install it from your distribution (Debian and Ubuntu: `sudo apt install rclone`; \
             macOS: `brew install rclone`) or see https://rclone.org/install/, then run again."
        );
        std::process::exit(1);
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(args, operations, rclone));
}

async fn run(args: Args, operations: Vec<Operation>, rclone: String) {
    let root = match &args.objects_dir {
        Some(directory) => tempfile::tempdir_in(directory).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let sets = [
        ObjectSet {
            label: format!("{} objects of 1 KiB", args.small),
            bucket: "small",
            count: args.small,
        },
        ObjectSet {
            label: format!("{} objects of {} MiB", args.large, args.large_mib),
            bucket: "large",
            count: args.large,
        },
    ];
    let started = Instant::now();
    write_objects(&root.path().join("small/objects"), args.small, 1024);
    write_objects(
        &root.path().join("large/objects"),
        args.large,
        args.large_mib << 20,
    );
    // What was written reaches the disk now, not during a measurement.
    let _ = Command::new("sync").status();
    for set in &sets {
        warm(&root.path().join(set.bucket).join("objects"));
    }
    println!(
        "# objects written and read once in {:.1} s; {rclone}",
        started.elapsed().as_secs_f64()
    );

    let database = BenchDatabase::new("batchops_objects");
    let mut server = common::start_server_with(&database.url, root.path(), &[]);
    let mut client = JobServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();

    let mut rows = Vec::new();
    for &operation in &operations {
        for set in &sets {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            for round in 0..args.rounds {
                let (batchops, phases) =
                    batchops_round(&mut client, root.path(), set, operation, round).await;
                let rclone = rclone_round(root.path(), set, operation, round, args.rclone_checkers);
                eprintln!(
                    "{} · {} · round {}: batchops {:.2} s ({phases}), rclone {:.2} s",
                    operation.name(),
                    set.label,
                    round + 1,
                    batchops.as_secs_f64(),
                    rclone.as_secs_f64()
                );
                ours.push(batchops);
                theirs.push(rclone);
            }
            rows.push((operation, set.label.clone(), median(ours), median(theirs)));
        }
    }

    println!();
    println!("| operation | objects | batchops | rclone | rclone ÷ batchops |");
    println!("|---|---|---|---|---|");
    for (operation, label, ours, theirs) in &rows {
        println!(
            "| {} | {label} | {:.2} s | {:.2} s | **{:.2}** |",
            operation.name(),
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    database.drop_database().await;
}

/// `count` files of `size` random bytes under `directory`.
fn write_objects(directory: &Path, count: usize, size: usize) {
    std::fs::create_dir_all(directory).unwrap();
    let mut content = vec![0u8; size];
    let mut random = rand::rng();
    for n in 0..count {
        random.fill_bytes(&mut content);
        let mut file = std::fs::File::create(directory.join(format!("{n:07}.dat"))).unwrap();
        file.write_all(&content).unwrap();
    }
}

/// Reads every file under `directory` once, so that both tools start from
/// a warm page cache.
fn warm(directory: &Path) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let _ = std::fs::read(entry.unwrap().path()).unwrap();
    }
}

/// Hard links of the set's objects under `<bucket>/objects` of a new
/// bucket, to be deleted.
fn linked_copy(root: &Path, set: &ObjectSet, bucket: &str) {
    let from = root.join(set.bucket).join("objects");
    let to = root.join(bucket).join("objects");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::hard_link(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn count_files(directory: &Path) -> usize {
    std::fs::read_dir(directory).map_or(0, |entries| entries.count())
}

async fn batchops_round(
    client: &mut JobServiceClient<Channel>,
    root: &Path,
    set: &ObjectSet,
    operation: Operation,
    round: usize,
) -> (Duration, String) {
    let (bucket, target) = match operation {
        Operation::Checksum => (set.bucket.to_owned(), None),
        Operation::Copy => (
            set.bucket.to_owned(),
            Some(format!("{}-copy-{round}", set.bucket)),
        ),
        Operation::Delete => {
            let bucket = format!("{}-delete-{round}", set.bucket);
            linked_copy(root, set, &bucket);
            (bucket, None)
        }
    };
    let job_operation = match (operation, &target) {
        (Operation::Checksum, _) => {
            pb::operation::Operation::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation {
                algorithm: pb::ChecksumAlgorithm::Sha256 as i32,
            })
        }
        (Operation::Copy, Some(target)) => {
            pb::operation::Operation::PutObjectCopy(pb::PutObjectCopyOperation {
                target_bucket: target.clone(),
                ..Default::default()
            })
        }
        _ => pb::operation::Operation::DeleteObject(pb::DeleteObjectOperation {}),
    };
    let report_scope = if operation == Operation::Checksum {
        pb::ReportScope::AllTasks
    } else {
        pb::ReportScope::FailedTasksOnly
    };
    let request = pb::CreateJobRequest {
        account_id: ACCOUNT.into(),
        client_request_token: uuid::Uuid::new_v4().to_string(),
        description: format!("{} {round}", operation.name()),
        priority: 1,
        confirmation_required: Some(false),
        manifest_generator: Some(pb::ManifestGenerator {
            source_bucket: bucket.clone(),
            prefix: "objects/".into(),
            ..Default::default()
        }),
        operation: Some(pb::Operation {
            operation: Some(job_operation),
        }),
        report: Some(pb::JobReport {
            enabled: true,
            bucket: "reports".into(),
            prefix: format!("{bucket}-{round}"),
            report_scope: report_scope as i32,
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let job_id = client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = common::wait_until_ended(client, &job_id, Duration::from_millis(5)).await;
    let took = started.elapsed();
    let phases = common::phases(client, &job_id).await;
    let summary = job.progress_summary.unwrap_or_default();
    assert_eq!(
        job.status,
        pb::JobStatus::Complete as i32,
        "job {job_id} ended {:?}: {:?}",
        job.status,
        job.failure_reasons
    );
    assert_eq!(summary.number_of_tasks_succeeded, set.count as u64);
    assert_eq!(summary.number_of_tasks_failed, 0);
    match operation {
        Operation::Checksum => {}
        Operation::Copy => {
            let target = root.join(target.unwrap());
            assert_eq!(count_files(&target.join("objects")), set.count);
            std::fs::remove_dir_all(target).unwrap();
        }
        Operation::Delete => {
            assert_eq!(count_files(&root.join(&bucket).join("objects")), 0);
            std::fs::remove_dir_all(root.join(&bucket)).unwrap();
        }
    }
    (took, phases)
}

fn rclone_round(
    root: &Path,
    set: &ObjectSet,
    operation: Operation,
    round: usize,
    checkers: usize,
) -> Duration {
    let source = root.join(set.bucket).join("objects");
    let checkers = checkers.to_string();
    let mut command = Command::new("rclone");
    command
        .args(["--config", "", "--checkers", &checkers])
        .stderr(Stdio::inherit());
    let cleanup: Option<PathBuf> = match operation {
        Operation::Checksum => {
            command.arg("hashsum").arg("sha256").arg(&source);
            None
        }
        Operation::Copy => {
            let target = root.join(format!("rclone-{}-copy-{round}", set.bucket));
            command
                .args(["copy", "--transfers", &checkers])
                .arg(&source)
                .arg(&target);
            Some(target)
        }
        Operation::Delete => {
            let bucket = format!("rclone-{}-delete-{round}", set.bucket);
            linked_copy(root, set, &bucket);
            let target = root.join(&bucket);
            command.arg("delete").arg(target.join("objects"));
            Some(target)
        }
    };
    let started = Instant::now();
    let output = command.output().expect("run rclone");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "rclone failed: {:?}",
        output.status
    );
    match operation {
        Operation::Checksum => {
            let lines = output.stdout.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(
                lines, set.count,
                "rclone hashsum printed one line per object"
            );
        }
        Operation::Copy => assert_eq!(count_files(cleanup.as_ref().unwrap()), set.count),
        Operation::Delete => {
            assert_eq!(count_files(&cleanup.as_ref().unwrap().join("objects")), 0)
        }
    }
    if let Some(directory) = cleanup {
        std::fs::remove_dir_all(directory).unwrap();
    }
    took
}

fn rclone_version() -> Option<String> {
    let output = Command::new("rclone").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output
        .status
        .success()
        .then(|| text.lines().next().unwrap_or("rclone").trim().to_owned())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
