//! The `batchops` binary as users run it: `serve` with no database URL on a
//! private PostgreSQL cluster, and the client subcommands against a real
//! server, checked by their output and exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

const ACCOUNT: &str = "111122223333";
const SHA256: &str = r#"{"compute_object_checksum": {"algorithm": "CHECKSUM_ALGORITHM_SHA256"}}"#;

/// Runs a client subcommand against `address` and returns its output.
fn cli(address: std::net::SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(args)
        .args(["--endpoint", &format!("http://{address}")])
        .args(["--account-id", ACCOUNT])
        .env_remove("BATCHOPS_OUTPUT")
        .output()
        .unwrap()
}

/// `update-job-status Ready`, then `watch` until the job ends Complete.
fn confirm_and_watch(address: std::net::SocketAddr, job_id: &str) -> Output {
    let confirmed = cli(
        address,
        &[
            "update-job-status",
            "--job-id",
            job_id,
            "--requested-job-status",
            "Ready",
        ],
    );
    assert_code(&confirmed, 0);
    let watched = cli(address, &["watch", "--job-id", job_id]);
    assert_code(&watched, 0);
    watched
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

fn json(output: &Output) -> serde_json::Value {
    assert_code(output, 0);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Puts `count` objects and a CSV manifest listing them into `bucket`.
fn put_objects(objects: &Path, bucket: &str, count: usize) {
    let mut manifest = String::new();
    for i in 0..count {
        put_object(
            objects,
            bucket,
            &format!("o{i}.txt"),
            format!("object {i}").as_bytes(),
        );
        manifest.push_str(&format!("{bucket},o{i}.txt\n"));
    }
    put_object(objects, bucket, "manifest.csv", manifest.as_bytes());
}

/// Processes whose command line mentions `needle`, or whose parent is `pid`.
fn processes_of(needle: &str, pid: Option<u32>) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(own) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent pid is the second field after the parenthesised name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        // A zombie has exited; only its parent (here often a container's
        // init that never reaps) keeps its entry.
        let zombie = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("Z");
        if zombie {
            continue;
        }
        if cmdline.contains(needle) || Some(own) == pid || (pid.is_some() && parent == pid) {
            found.push(format!("{own}: {cmdline}"));
        }
    }
    found
}

/// A directory the postgres user can reach (the private cluster runs as
/// that user when the tests run as root).
fn reachable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    base
}

/// `batchops serve` with no database URL from flag, environment or file.
fn zero_config_serve(data: &Path, objects: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batchops"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--object-store")
        .arg(objects)
        .env_remove("DATABASE_URL")
        .env_remove("BATCHOPS_DATABASE_URL")
        .env_remove("BATCHOPS_CONFIG");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_without_a_database_url_runs_a_job_through_the_cli_and_leaves_nothing_running() {
    // Given a data directory the postgres user can reach and some objects.
    let base = reachable_tempdir();
    let data = base.path().join("data");
    let objects = base.path().join("objects");
    put_objects(&objects, "photos", 40);

    // When batchops serve starts with no database URL at all,
    let mut server = ServerProcess::launch(zero_config_serve(&data, &objects));
    let postmaster: u32 = std::fs::read_to_string(data.join("postgres/postmaster.pid"))
        .expect("the private cluster runs")
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // then a job runs through the CLI: create, confirm, watch, report.
    let address = server.address;
    let created = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "photos/manifest.csv",
            "--operation",
            SHA256,
            "--report",
            r#"{"enabled": true, "bucket": "reports", "prefix": "cli", "report_scope": "REPORT_SCOPE_ALL_TASKS"}"#,
            "--description",
            "zero config",
        ],
    );
    assert_code(&created, 0);
    let job_id = stdout(&created).trim().to_owned();
    assert!(uuid::Uuid::parse_str(&job_id).is_ok(), "{job_id:?}");
    let suspended = wait_for_cli_status(address, &job_id, "Suspended");
    assert_eq!(
        suspended["job"]["progressSummary"]["totalNumberOfTasks"],
        "40"
    );

    let watched = confirm_and_watch(address, &job_id);
    let text = stdout(&watched);
    for step in [
        "New -> Preparing",
        "Suspended -> Ready",
        "Ready -> Active",
        "Completing -> Complete",
        "40 succeeded, 0 failed, 40 total",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }

    let report = cli(address, &["report", "--job-id", &job_id, "--object-store"]);
    assert_code(&report, 2); // --object-store needs a value
    let store = objects.to_str().unwrap();
    let report = cli(
        address,
        &["report", "--job-id", &job_id, "--object-store", store],
    );
    assert_code(&report, 0);
    let rows = stdout(&report);
    assert_eq!(rows.lines().count(), 40);
    // `--output json` prints the same rows as JSON objects, keys decoded.
    let report_json = cli(
        address,
        &[
            "report",
            "--job-id",
            &job_id,
            "--object-store",
            store,
            "--output",
            "json",
        ],
    );
    assert_code(&report_json, 0);
    let objects_json: Vec<serde_json::Value> = stdout(&report_json)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(objects_json.len(), 40);
    assert!(objects_json.iter().all(|row| row["bucket"] == "photos"
        && row["task_status"] == "succeeded"
        && row["http_status_code"] == 200
        && row["key"].as_str().unwrap().starts_with('o')));
    assert!(
        rows.lines()
            .all(|row| row.starts_with("photos,o") && row.contains(",succeeded,200,"))
    );

    // When the server gets SIGTERM, it exits 0 and stops its cluster.
    server.stop_cleanly();
    let left = processes_of(&data.display().to_string(), Some(postmaster));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(!data.join("postgres/postmaster.pid").exists());

    // And a second start reuses the cluster and its data.
    let mut again = ServerProcess::launch(zero_config_serve(&data, &objects));
    let listed = json(&cli(again.address, &["list-jobs", "--output", "json"]));
    assert_eq!(listed["jobs"][0]["jobId"], job_id.as_str());
    assert_eq!(listed["jobs"][0]["status"], "JOB_STATUS_COMPLETE");
    again.stop_cleanly();
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let base = reachable_tempdir();
    let (data, objects) = (base.path().join("data"), base.path().join("objects"));
    let mut first = ServerProcess::launch(zero_config_serve(&data, &objects));
    let second = zero_config_serve(&data, &objects)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("in use by another batchops process"),
        "{}",
        stderr(&second)
    );
    first.stop_cleanly();
}

#[test]
fn a_postgres_bin_dir_without_the_programs_is_refused_by_name() {
    let base = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(base.path().join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("BATCHOPS_DATABASE_URL")
        .env("BATCHOPS_POSTGRES_BIN_DIR", base.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("no initdb and pg_ctl there"), "{message}");
}

/// Polls `describe-job --output json` until the job has `status`.
fn wait_for_cli_status(
    address: std::net::SocketAddr,
    job_id: &str,
    status: &str,
) -> serde_json::Value {
    let wanted = format!("JOB_STATUS_{}", status.to_ascii_uppercase());
    for _ in 0..300 {
        let described = json(&cli(
            address,
            &["describe-job", "--job-id", job_id, "--output", "json"],
        ));
        if described["job"]["status"] == wanted.as_str() {
            return described;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("job {job_id} never reached {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_codes_tell_scripts_what_went_wrong() {
    let server = TestServer::start().await;
    let address = server.address;
    let unknown = uuid::Uuid::now_v7().to_string();

    let not_found = cli(address, &["describe-job", "--job-id", &unknown]);
    assert_code(&not_found, 3);
    assert!(
        stderr(&not_found).contains("NOT_FOUND"),
        "{}",
        stderr(&not_found)
    );

    let invalid = cli(address, &["describe-job", "--job-id", "not-a-uuid"]);
    assert_code(&invalid, 2);
    assert!(stderr(&invalid).contains("job_id"), "{}", stderr(&invalid));

    let bad_json = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "b/k",
            "--operation",
            r#"{"compute_object_checksum": {"algoritm": 1}}"#,
        ],
    );
    assert_code(&bad_json, 2);
    assert!(
        stderr(&bad_json).contains("--operation"),
        "{}",
        stderr(&bad_json)
    );
    assert!(
        stderr(&bad_json).contains("algoritm"),
        "{}",
        stderr(&bad_json)
    );

    let bad_status = cli(address, &["list-jobs", "--job-statuses", "Active,Done"]);
    assert_code(&bad_status, 2);
    assert!(stderr(&bad_status).contains("\"Done\""));

    let missing_account = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["describe-job", "--job-id", &unknown])
        .env_remove("BATCHOPS_ACCOUNT_ID")
        .output()
        .unwrap();
    assert_code(&missing_account, 2);
    assert!(stderr(&missing_account).contains("--account-id"));

    // Account ids have AWS's form, so a typo never acts for another account.
    for typo in ["123", "abc", "1111222233334"] {
        let wrong_account = Command::new(env!("CARGO_BIN_EXE_batchops"))
            .args(["list-jobs", "--account-id", typo, "--endpoint"])
            .arg(format!("http://{address}"))
            .output()
            .unwrap();
        assert_code(&wrong_account, 2);
        assert!(
            stderr(&wrong_account).contains("must be 12 digits"),
            "{}",
            stderr(&wrong_account)
        );
    }

    // Nothing listens on port 1.
    let unreachable = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args([
            "list-jobs",
            "--account-id",
            ACCOUNT,
            "--endpoint",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_code(&unreachable, 5);
    assert!(stderr(&unreachable).contains("cannot reach batchops at http://127.0.0.1:1"));

    // A job that completed cannot be cancelled: FAILED_PRECONDITION → 4.
    put_objects(server.objects.path(), "photos", 3);
    let created = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "photos/manifest.csv",
            "--operation",
            SHA256,
            "--no-confirmation-required",
        ],
    );
    assert_code(&created, 0);
    let job_id = stdout(&created).trim().to_owned();
    let watched = cli(address, &["watch", "--job-id", &job_id]);
    assert_code(&watched, 0);
    let refused = cli(
        address,
        &[
            "update-job-status",
            "--job-id",
            &job_id,
            "--requested-job-status",
            "Cancelled",
        ],
    );
    assert_code(&refused, 4);
    assert!(stderr(&refused).contains("FAILED_PRECONDITION"));

    // A job without a report says so, and --from-results still prints rows.
    let no_report = cli(address, &["report", "--job-id", &job_id]);
    assert_code(&no_report, 7);
    assert!(
        stderr(&no_report).contains("was created without a completion report"),
        "{}",
        stderr(&no_report)
    );
    let rows = cli(address, &["report", "--job-id", &job_id, "--from-results"]);
    assert_code(&rows, 0);
    assert_eq!(stdout(&rows).lines().count(), 3);
    // As JSON, each row is an object with the report's columns.
    let rows = cli(
        address,
        &[
            "report",
            "--job-id",
            &job_id,
            "--from-results",
            "--output",
            "json",
        ],
    );
    assert_code(&rows, 0);
    for line in stdout(&rows).lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["bucket"], "photos");
        assert_eq!(row["task_status"], "succeeded");
        assert_eq!(row["http_status_code"], 200);
        for field in ["key", "version_id", "error_code", "result_message"] {
            assert!(row[field].is_string(), "{field} in {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_exits_1_when_the_job_is_cancelled() {
    // Given a job waiting for confirmation and a watcher following it,
    let server = TestServer::start().await;
    let address = server.address;
    put_objects(server.objects.path(), "photos", 2);
    let created = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "photos/manifest.csv",
            "--operation",
            SHA256,
        ],
    );
    let job_id = stdout(&created).trim().to_owned();
    wait_for_cli_status(address, &job_id, "Suspended");
    let watcher = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["watch", "--job-id", &job_id, "--account-id", ACCOUNT])
        .args(["--endpoint", &format!("http://{address}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // when it is cancelled with a reason (the watcher replays the log from
    // the start, so it needs no head start),
    let cancelled = cli(
        address,
        &[
            "update-job-status",
            "--job-id",
            &job_id,
            "--requested-job-status",
            "cancelled",
            "--status-update-reason",
            "wrong bucket",
        ],
    );
    assert_code(&cancelled, 0);
    assert!(stdout(&cancelled).contains("Cancelled"));

    // then the watcher prints the change and exits 1.
    let watched = watcher.wait_with_output().unwrap();
    assert_code(&watched, 1);
    let text = stdout(&watched);
    assert!(
        text.contains("Suspended -> Cancelling  (wrong bucket)"),
        "{text}"
    );
    assert!(text.contains("Cancelling -> Cancelled"), "{text}");
    assert!(text.contains("Status  Cancelled"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_priority_history_and_listing_round_trip_as_json() {
    let server = TestServer::start().await;
    let address = server.address;
    put_objects(server.objects.path(), "photos", 5);
    let create = [
        "create-job",
        "--manifest",
        "photos/manifest.csv",
        "--operation",
        SHA256,
        "--priority",
        "3",
        "--tags",
        "team=data,env=test",
        "--client-request-token",
        "token-1",
        "--output",
        "json",
    ];
    let created = json(&cli(address, &create));
    let job_id = created["jobId"].as_str().unwrap().to_owned();
    // The same token and request give the same job.
    let again = json(&cli(address, &create));
    assert_eq!(again["jobId"], job_id.as_str());

    let tags = json(&cli(
        address,
        &["get-job-tagging", "--job-id", &job_id, "--output", "json"],
    ));
    assert_eq!(
        tags["tags"],
        serde_json::json!([{"key": "team", "value": "data"}, {"key": "env", "value": "test"}])
    );
    let put = json(&cli(
        address,
        &[
            "put-job-tagging",
            "--job-id",
            &job_id,
            "--tags",
            r#"[{"key": "owner", "value": "ana"}]"#,
            "--output",
            "json",
        ],
    ));
    assert_eq!(
        put["tags"],
        serde_json::json!([{"key": "owner", "value": "ana"}])
    );
    let table = cli(address, &["get-job-tagging", "--job-id", &job_id]);
    assert_eq!(stdout(&table), "KEY    VALUE\nowner  ana\n");
    let deleted = json(&cli(
        address,
        &[
            "delete-job-tagging",
            "--job-id",
            &job_id,
            "--output",
            "json",
        ],
    ));
    assert_eq!(deleted["tags"], serde_json::json!([]));

    let priority = json(&cli(
        address,
        &[
            "update-job-priority",
            "--job-id",
            &job_id,
            "--priority",
            "42",
            "--output",
            "json",
        ],
    ));
    assert_eq!(priority["priority"], 42);

    wait_for_cli_status(address, &job_id, "Suspended");
    let listed = json(&cli(
        address,
        &[
            "list-jobs",
            "--job-statuses",
            "Suspended",
            "--output",
            "json",
        ],
    ));
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(listed["jobs"][0]["priority"], 42);
    let none = json(&cli(
        address,
        &[
            "list-jobs",
            "--job-statuses",
            "Active,Complete",
            "--output",
            "json",
        ],
    ));
    assert_eq!(none["jobs"], serde_json::json!([]));
    let table = stdout(&cli(address, &["list-jobs"]));
    assert!(table.starts_with("JOB ID"), "{table}");
    assert!(
        table.contains(&format!("{job_id}  Suspended  42")),
        "{table}"
    );

    // History: one JSON document per event, in sequence order.
    let history = cli(
        address,
        &["history", "--job-id", &job_id, "--output", "json"],
    );
    assert_code(&history, 0);
    let events: Vec<serde_json::Value> = stdout(&history)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "JobCreated");
    assert!(types.contains(&"PriorityChanged"), "{types:?}");
    assert!(types.contains(&"TagsReplaced"), "{types:?}");
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["event"]["sequence"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_is_saved_with_its_files_and_a_tampered_file_is_refused() {
    let server = TestServer::start().await;
    let address = server.address;
    let objects = server.objects.path().to_owned();
    put_objects(&objects, "photos", 6);
    put_object(
        &objects,
        "photos",
        "manifest-missing.csv",
        b"photos,o1.txt\nphotos,gone.txt\n",
    );
    let created = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "photos/manifest-missing.csv",
            "--operation",
            SHA256,
            "--no-confirmation-required",
            "--report",
            r#"{"enabled": true, "bucket": "reports", "prefix": "r", "report_scope": "REPORT_SCOPE_ALL_TASKS"}"#,
        ],
    );
    let job_id = stdout(&created).trim().to_owned();
    assert_code(&cli(address, &["watch", "--job-id", &job_id]), 0);

    let saved = tempfile::tempdir().unwrap();
    let store = objects.to_str().unwrap();
    let output = cli(
        address,
        &[
            "report",
            "--job-id",
            &job_id,
            "--object-store",
            store,
            "--output-dir",
            saved.path().to_str().unwrap(),
        ],
    );
    assert_code(&output, 0);
    let files: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(
        files.len(),
        3,
        "manifest.json, one succeeded and one failed file"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["Format"], "Report_CSV_20180820");
    let all: String = files[1..]
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(all.contains("photos,o1.txt,,succeeded,200,"), "{all}");
    assert!(
        all.contains("photos,gone.txt,,failed,404,NoSuchKey,"),
        "{all}"
    );

    // When a report file is changed after it was written, the CLI refuses it.
    let key = manifest["Results"][0]["Key"].as_str().unwrap();
    let stored = objects.join("reports").join(key);
    let mut content = std::fs::read(&stored).unwrap();
    content.extend_from_slice(b"photos,forged.txt,,succeeded,200,,\n");
    std::fs::write(&stored, content).unwrap();
    let output = cli(
        address,
        &["report", "--job-id", &job_id, "--object-store", store],
    );
    assert_code(&output, 7);
    assert!(stderr(&output).contains("MD5"), "{}", stderr(&output));
}

#[test]
fn help_lists_what_each_flag_accepts() {
    let help = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_batchops"))
            .args(args)
            .output()
            .unwrap();
        assert_code(&output, 0);
        stdout(&output)
    };
    let create = help(&["create-job", "--help"]);
    for accepted in [
        "compute_object_checksum",
        "delete_object",
        "put_object_copy",
        "invoke",
        "CHECKSUM_ALGORITHM_CRC32",
        "_CRC64NVME",
        "REPORT_SCOPE_ALL_TASKS",
        "REPORT_SCOPE_FAILED_TASKS_ONLY",
        "MANIFEST_FORMAT_S3_INVENTORY_REPORT_CSV_20161130",
        "A description of the job",
    ] {
        assert!(
            create.contains(accepted),
            "{accepted} missing from:\n{create}"
        );
    }
    let serve = help(&["serve", "--help"]);
    assert!(serve.contains("s3://"), "{serve}");
    // A value that is not accepted is answered with those that are.
    let wrong = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["create-job", "--account-id", ACCOUNT, "--manifest", "a/b"])
        .args([
            "--operation",
            r#"{"compute_object_checksum": {"algorithm": "SHA256"}}"#,
        ])
        .output()
        .unwrap();
    assert_code(&wrong, 2);
    assert!(
        stderr(&wrong).contains("CHECKSUM_ALGORITHM_SHA256"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn stopping_after_the_private_cluster_died_says_it_was_already_down() {
    // Given a zero-config server whose private PostgreSQL is killed,
    let base = reachable_tempdir();
    let (data, objects) = (base.path().join("data"), base.path().join("objects"));
    let mut server = ServerProcess::launch(zero_config_serve(&data, &objects));
    let pid_file = std::fs::read_to_string(data.join("postgres/postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
    let killed = Command::new("kill")
        .args(["-KILL", &postmaster])
        .status()
        .unwrap();
    assert!(killed.success());
    while std::path::Path::new(&format!("/proc/{postmaster}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // when the server is stopped, it says the cluster was already down
    // instead of reporting that pg_ctl failed.
    server.stop_cleanly();
    let logs = server.logs.lock().unwrap();
    let said = |text: &str| {
        logs.iter().any(|line| {
            line["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(text)
        })
    };
    assert!(said("already down"), "{logs:?}");
    assert!(
        !logs
            .iter()
            .any(|line| line.to_string().contains("pg_ctl failed"))
    );
}

/// A line of `watch` or of the README with times and job ids made uniform.
fn uniform(line: &str) -> String {
    let mut line = line.trim_end().to_owned();
    let is_time = |text: &str| {
        text.len() == 20
            && text.as_bytes()[4] == b'-'
            && text.as_bytes()[10] == b'T'
            && text.ends_with('Z')
    };
    if line.get(..20).is_some_and(is_time) {
        line.replace_range(..20, "<time>");
    }
    if let Some(start) = line.find("job-") {
        let rest = &line[start + 4..];
        let end = rest
            .find(|c: char| !(c.is_ascii_hexdigit() || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        line.replace_range(start + 4..start + 4 + end, "<id>");
    }
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_watch_sample_is_what_watch_prints() {
    // The README's worked example: two photos, a checksum job with a report.
    let server = TestServer::start().await;
    let address = server.address;
    server.put_object("photos", "2024/a.jpg", b"first\n");
    server.put_object("photos", "2024/b c.jpg", b"second\n");
    server.put_object(
        "photos",
        "manifest.csv",
        b"photos,2024/a.jpg\nphotos,2024/b%20c.jpg\n",
    );
    let created = cli(
        address,
        &[
            "create-job",
            "--manifest",
            "photos/manifest.csv",
            "--operation",
            r#"{"compute_object_checksum": {"algorithm": "CHECKSUM_ALGORITHM_SHA256"}}"#,
            "--report",
            r#"{"enabled": true, "bucket": "reports", "prefix": "batch", "report_scope": "REPORT_SCOPE_ALL_TASKS"}"#,
            "--description",
            "checksum my photos",
            "--priority",
            "10",
        ],
    );
    assert_code(&created, 0);
    let job_id = stdout(&created).trim().to_owned();
    let mut client = server.client.clone();
    wait_for(&mut client, &job_id, batchops::proto::JobStatus::Suspended).await;
    let watched = confirm_and_watch(address, &job_id);
    // Off a terminal, watch prints progress lines where a terminal shows
    // the bar (on stderr); the README shows a terminal.
    let is_progress = |line: &&str| line.contains(" tasks") && line.contains('%');
    let printed: Vec<String> = stdout(&watched)
        .lines()
        .filter(|line| !is_progress(line))
        .map(uniform)
        .collect();

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sample: Vec<String> = readme
        .lines()
        .skip_while(|line| !line.starts_with("batchops watch --job-id $JOB"))
        .skip(1)
        .take_while(|line| line.starts_with("# "))
        .map(|line| uniform(&line[2..]))
        .collect();
    assert!(!sample.is_empty(), "the README has no watch sample");
    assert_eq!(sample, printed, "README sample vs what watch printed");
}

#[test]
fn head_object_prints_what_a_manifest_location_needs() {
    let objects = tempfile::tempdir().unwrap();
    put_object(objects.path(), "photos", "manifest.csv", b"photos,a.jpg\n");
    let store = objects.path().to_str().unwrap();
    let head = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_batchops"))
            .arg("head-object")
            .args(args)
            .args(["--object-store", store])
            .env_remove("BATCHOPS_OUTPUT")
            .output()
            .unwrap()
    };
    let described = head(&["photos/manifest.csv", "--output", "json"]);
    assert_code(&described, 0);
    let described = json(&described);
    assert_eq!(described["size"], 13);
    let etag = described["etag"].as_str().unwrap();
    assert!(!etag.is_empty(), "{described}");
    chrono::DateTime::parse_from_rfc3339(described["last_modified"].as_str().unwrap()).unwrap();

    let text = head(&["photos/manifest.csv"]);
    assert_code(&text, 0);
    assert!(
        stdout(&text).contains("Size          13\n"),
        "{}",
        stdout(&text)
    );
    assert!(stdout(&text).contains(&format!("ETag          {etag}\n")));

    let missing = head(&["photos/gone.csv"]);
    assert_code(&missing, 7);
    assert!(
        stderr(&missing).contains("photos/gone.csv"),
        "{}",
        stderr(&missing)
    );
    assert_code(&head(&["photos"]), 2);
}
