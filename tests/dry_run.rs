//! Dry runs end to end: the manifest or generator is read and counted, the
//! job ends in DryRunComplete, and nothing else happens: no task, no
//! object touched, no report, no confirmation asked for.

mod common;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

/// A DeleteObject dry run over `data/manifest.csv`, with confirmation left
/// unset (which means required) and a report asked for.
fn delete_dry_run(token: &str) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, None);
    request.operation = Some(pb::Operation {
        operation: Some(pb::operation::Operation::DeleteObject(
            pb::DeleteObjectOperation {},
        )),
    });
    request.report = Some(pb::JobReport {
        enabled: true,
        bucket: "reports".into(),
        prefix: "dry".into(),
        report_scope: pb::ReportScope::AllTasks as i32,
    });
    request.dry_run = true;
    request
}

/// Tasks and events the store holds for a job.
async fn stored_counts(server: &TestServer, job_id: &str) -> (i64, i64) {
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    let client = server.db.client().await;
    let tasks: i64 = client
        .query_one("SELECT count(*) FROM tasks WHERE job_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let results: i64 = client
        .query_one(
            "SELECT count(*) FROM task_results WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    (tasks, results)
}

#[tokio::test]
async fn a_dry_run_of_a_generator_counts_objects_and_bytes_and_deletes_nothing() {
    // Given five objects of known sizes under a prefix, and one outside it,
    let mut server = TestServer::start().await;
    let sizes = [1usize, 10, 100, 1000, 4096];
    for (i, size) in sizes.iter().enumerate() {
        server.put_object("data", &format!("logs/{i}.log"), &vec![b'x'; *size]);
    }
    server.put_object("data", "other/keep.txt", b"elsewhere");
    // when a DeleteObject dry run lists the prefix,
    let mut request = delete_dry_run("gen");
    request.manifest = None;
    request.manifest_generator = Some(pb::ManifestGenerator {
        source_bucket: "data".into(),
        prefix: "logs/".into(),
        ..Default::default()
    });
    let job_id = server.create(request).await;
    let job = wait_for(&mut server.client, &job_id, S::DryRunComplete).await;

    // then it counted the objects and their bytes,
    let summary = job.progress_summary.unwrap();
    assert!(job.dry_run);
    assert_eq!(summary.total_number_of_tasks, 5);
    assert_eq!(
        summary.total_object_bytes,
        Some(sizes.iter().sum::<usize>() as u64)
    );
    assert_eq!(
        summary.number_of_tasks_succeeded + summary.number_of_tasks_failed,
        0
    );
    // deleted nothing, made no task and wrote no report,
    for i in 0..sizes.len() {
        assert!(server.object_exists("data", &format!("logs/{i}.log")));
    }
    assert_eq!(stored_counts(&server, &job_id).await, (0, 0));
    assert_eq!(job.report_location, None);
    assert!(!server.objects.path().join("reports").exists());
    // went New → Preparing → DryRunComplete without asking for confirmation,
    assert_eq!(
        status_path(&mut server.client, &job_id).await,
        [S::New, S::Preparing, S::DryRunComplete]
    );
    assert!(job.suspended_time.is_none());
    assert!(job.termination_time.is_some());
    // and says so in ListJobs, where only tagging is left to ask of it.
    let listed = server
        .client
        .list_jobs(pb::ListJobsRequest {
            account_id: ACCOUNT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(listed[0].dry_run);
    assert_eq!(listed[0].status, S::DryRunComplete as i32);
    assert_eq!(
        job.allowed_actions,
        [pb::JobAction::UpdateTags as i32],
        "a counted dry run can be neither confirmed nor cancelled"
    );
    // The history's last status change carries the counts too.
    let counted = history(&mut server.client, &job_id, 0)
        .await
        .into_iter()
        .rev()
        .find_map(|event| match event.event {
            Some(pb::job_event::Event::StatusChanged(change)) => Some(change),
            _ => None,
        })
        .unwrap();
    assert_eq!(counted.total_number_of_tasks, Some(5));
    assert_eq!(counted.total_object_bytes, Some(5207));
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_of_a_csv_manifest_counts_its_rows_and_leaves_the_size_unknown() {
    let mut server = TestServer::start().await;
    let lines: Vec<String> = (0..7).map(|i| format!("data,k{i}")).collect();
    for i in 0..7 {
        server.put_object("data", &format!("k{i}"), b"abc");
    }
    let job = server
        .run_job(&lines, delete_dry_run("csv"), S::DryRunComplete)
        .await;
    let summary = job.progress_summary.unwrap();
    assert_eq!(summary.total_number_of_tasks, 7);
    assert_eq!(
        summary.total_object_bytes, None,
        "a CSV manifest names no sizes"
    );
    assert!(server.object_exists("data", "k3"));
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_of_an_empty_listing_answers_zero_where_a_job_would_fail() {
    let mut server = TestServer::start().await;
    let mut request = delete_dry_run("empty");
    request.manifest = None;
    request.manifest_generator = Some(pb::ManifestGenerator {
        source_bucket: "data".into(),
        prefix: "nothing-here/".into(),
        ..Default::default()
    });
    let job_id = server.create(request).await;
    let job = wait_for(&mut server.client, &job_id, S::DryRunComplete).await;
    let summary = job.progress_summary.unwrap();
    assert_eq!(summary.total_number_of_tasks, 0);
    assert_eq!(summary.total_object_bytes, Some(0));
    assert!(job.failure_reasons.is_empty());
    // An empty CSV manifest counts 0 objects of a size it cannot know.
    let job = server
        .run_job(&[], delete_dry_run("empty-csv"), S::DryRunComplete)
        .await;
    let summary = job.progress_summary.unwrap();
    assert_eq!(summary.total_number_of_tasks, 0);
    assert_eq!(summary.total_object_bytes, None);
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_fails_where_the_job_would_and_names_why() {
    // Given no manifest object, and a server that allows 3 tasks a job,
    let mut server = TestServer::start_with(Settings {
        extra: vec!["--max-tasks-per-job=3".into()],
        ..Settings::default()
    })
    .await;
    let missing = server.create(delete_dry_run("missing")).await;
    let job = wait_for(&mut server.client, &missing, S::Failed).await;
    assert!(job.dry_run);
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestNotFound");
    // and a manifest longer than a job may be,
    let lines: Vec<String> = (0..4).map(|i| format!("data,k{i}")).collect();
    let long = server
        .run_job(&lines, delete_dry_run("long"), S::Failed)
        .await;
    assert_eq!(long.failure_reasons[0].failure_code, "TooManyTasks");
    server.stop().await;
}

#[tokio::test]
async fn an_inventory_reports_sizes_add_up_for_a_dry_run_and_for_a_job_that_runs() {
    let mut server = TestServer::start().await;
    for key in ["a", "b"] {
        server.put_object("data", key, b"12345");
    }
    // Sizes as S3 Inventory writes them: the second row a delete marker.
    server.put_object(
        "inventory",
        "inv/one.csv",
        b"\"data\",\"a\",\"\",\"true\",\"false\",\"5\"\n\"data\",\"gone\",\"\",\"true\",\"true\",\"\"\n\"data\",\"b\",\"\",\"true\",\"false\",\"1000000000000\"\n",
    );
    server.put_object(
        "inventory",
        "inv/manifest.json",
        br#"{"sourceBucket":"data","destinationBucket":"arn:aws:s3:::inventory","version":"2016-11-30",
            "fileFormat":"CSV","fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size",
            "files":[{"key":"inv/one.csv","size":1,"MD5checksum":"00"}]}"#,
    );
    let inventory = |token: &str, dry_run: bool| {
        let mut request = checksum_job(token, Some(false));
        let manifest = request.manifest.as_mut().unwrap();
        manifest.format = pb::ManifestFormat::S3InventoryReportCsv20161130 as i32;
        manifest.bucket = "inventory".into();
        manifest.key = "inv/manifest.json".into();
        request.dry_run = dry_run;
        request
    };
    let dry = server.create(inventory("dry", true)).await;
    let dry = wait_for(&mut server.client, &dry, S::DryRunComplete).await;
    let real = server.create(inventory("real", false)).await;
    let real = wait_for(&mut server.client, &real, S::Complete).await;
    for job in [dry, real] {
        let summary = job.progress_summary.unwrap();
        assert_eq!(summary.total_number_of_tasks, 3);
        assert_eq!(summary.total_object_bytes, Some(1_000_000_000_005));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_dry_run_waits_for_the_count_and_prints_it() {
    let mut server = TestServer::start().await;
    for i in 0..3 {
        server.put_object("data", &format!("p/{i}"), &[0u8; 2048]);
    }
    let address = server.address;
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_batchops"))
                .args(&args)
                .args(["--endpoint", &format!("http://{address}")])
                .args(["--account-id", ACCOUNT])
                .env_remove("BATCHOPS_OUTPUT")
                .output()
                .unwrap()
        })
    };
    let output = run(vec![
        "create-job".into(),
        "--operation".into(),
        r#"{"delete_object": {}}"#.into(),
        "--manifest-generator".into(),
        r#"{"source_bucket": "data", "prefix": "p/"}"#.into(),
        "--dry-run".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("DryRunComplete"), "{stdout}");
    assert!(
        stdout.contains("3 objects, 6,144 bytes (6.0 KiB): nothing ran"),
        "{stdout}"
    );
    assert!(server.object_exists("data", "p/0"));
    // A dry run that fails exits 1 and names the failure.
    let output = run(vec![
        "create-job".into(),
        "--operation".into(),
        r#"{"delete_object": {}}"#.into(),
        "--manifest".into(),
        "data/no-such-manifest.csv".into(),
        "--dry-run".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ManifestNotFound"), "{stdout}");
    assert!(stdout.contains("ended before counting"), "{stdout}");
    // A notification endpoint outside the allowlist is refused by field.
    let output = run(vec![
        "create-job".into(),
        "--operation".into(),
        r#"{"delete_object": {}}"#.into(),
        "--manifest-generator".into(),
        r#"{"source_bucket": "data"}"#.into(),
        "--notification-endpoint".into(),
        "http://127.0.0.1:9/hook".into(),
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("notification.endpoint_url"), "{stderr}");
    server.stop().await;
}
