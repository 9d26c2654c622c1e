//! Completion reports and ListJobTaskResults. Report files are parsed with an
//! independent CSV reader (Python's `csv` module) and checked against the task
//! results, their MD5s, the scope and the layout.

mod common;

use std::collections::BTreeMap;

use batchops::proto as pb;
use common::*;
use md5::{Digest, Md5};
use pb::JobStatus as S;

fn with_report(token: &str, scope: pb::ReportScope) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    request.report = Some(pb::JobReport {
        enabled: true,
        bucket: "reports".into(),
        prefix: "batch/out".into(),
        report_scope: scope as i32,
    });
    request
}

/// Rows of a CSV file as Python's csv module reads them.
fn parse_csv(path: &std::path::Path) -> Vec<Vec<String>> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline='')))))",
            &path.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

struct Report {
    manifest: serde_json::Value,
    /// (TaskExecutionStatus, rows) per listed file.
    files: Vec<(String, Vec<Vec<String>>)>,
}

fn read_report(server: &TestServer, location: &pb::ReportLocation) -> Report {
    let root = server.objects.path();
    let manifest_path = root.join(&location.bucket).join(&location.manifest_key);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let mut files = Vec::new();
    for entry in manifest["Results"].as_array().unwrap() {
        assert_eq!(entry["Bucket"], location.bucket.as_str());
        let key = entry["Key"].as_str().unwrap();
        assert!(
            key.starts_with(&location.manifest_key.replace("manifest.json", "results/")),
            "{key}"
        );
        let path = root.join(&location.bucket).join(key);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            entry["MD5Checksum"],
            hex::encode(Md5::digest(&bytes)),
            "MD5 of {key}"
        );
        files.push((
            entry["TaskExecutionStatus"].as_str().unwrap().to_owned(),
            parse_csv(&path),
        ));
    }
    Report { manifest, files }
}

fn setup(server: &TestServer) {
    server.put_object("data", "ok 1.txt", b"one");
    server.put_object("data", "ok2.txt", b"two");
    server.put_object("data", "ok3.txt", b"three");
    write_manifest(
        server,
        &[
            "data,ok%201.txt".into(),
            "data,gone-a.txt".into(),
            "data,ok2.txt".into(),
            "data,gone-b.txt".into(),
            "data,ok3.txt".into(),
        ],
    );
}

#[tokio::test]
async fn a_completed_jobs_report_lists_every_task_in_bounded_files_with_their_md5s() {
    let mut server = TestServer::start_with(Settings {
        report_rows_per_file: 2,
        ..Settings::default()
    })
    .await;
    setup(&server);
    let job_id = server
        .create(with_report("all", pb::ReportScope::AllTasks))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let location = job.report_location.expect("DescribeJob shows the report");
    assert_eq!(location.bucket, "reports");
    assert_eq!(
        location.manifest_key,
        format!("batch/out/job-{job_id}/manifest.json")
    );
    let report = read_report(&server, &location);
    assert_eq!(report.manifest["Format"], "Report_CSV_20180820");
    assert_eq!(
        report.manifest["ReportSchema"],
        "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    );
    assert!(
        report.manifest["ReportCreationDate"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // 2 failed rows in one file, 3 succeeded rows in two files of at most 2.
    let sizes: Vec<(String, usize)> = report
        .files
        .iter()
        .map(|(s, rows)| (s.clone(), rows.len()))
        .collect();
    assert_eq!(
        sizes,
        vec![
            ("failed".into(), 2),
            ("succeeded".into(), 2),
            ("succeeded".into(), 1)
        ]
    );

    // Every row matches the task's stored result, in AWS's column order.
    let stored = server.results(&job_id).await;
    let mut by_key = BTreeMap::new();
    for (_, rows) in &report.files {
        for row in rows {
            assert_eq!(row.len(), 7, "{row:?}");
            by_key.insert(row[1].clone(), row.clone());
        }
    }
    let keys = [
        "ok%201.txt",
        "gone-a.txt",
        "ok2.txt",
        "gone-b.txt",
        "ok3.txt",
    ];
    assert_eq!(by_key.len(), keys.len());
    for (key, (succeeded, http, error, message)) in keys.iter().zip(&stored) {
        let row = &by_key[*key];
        assert_eq!(row[0], "data");
        assert_eq!(row[2], "", "no version id");
        assert_eq!(row[3], if *succeeded { "succeeded" } else { "failed" });
        assert_eq!(row[4], http.to_string());
        assert_eq!(row[5], error.clone().unwrap_or_default());
        assert_eq!(row[6], message.clone().unwrap_or_default());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failed_tasks_only_report_lists_only_failures() {
    let mut server = TestServer::start().await;
    setup(&server);
    let job_id = server
        .create(with_report("failed", pb::ReportScope::FailedTasksOnly))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let report = read_report(&server, &job.report_location.unwrap());
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].0, "failed");
    let keys: Vec<&str> = report.files[0]
        .1
        .iter()
        .map(|row| row[1].as_str())
        .collect();
    assert_eq!(keys, vec!["gone-a.txt", "gone-b.txt"]);
    let history = history(&mut server.client, &job_id, 0).await;
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        &types[types.len() - 3..],
        ["AllTasksFinished", "ReportWritten", "JobCompleted"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_job_that_ran_no_task_gets_no_report_and_a_report_that_cannot_be_written_is_a_failure_reason()
 {
    let mut server = TestServer::start().await;
    // No task ran: the manifest is missing.
    let job_id = server
        .create(with_report("none", pb::ReportScope::AllTasks))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert!(job.report_location.is_none());
    assert!(!server.objects.path().join("reports").exists());

    // The report bucket is a plain file: nothing can be written under it.
    setup(&server);
    std::fs::write(server.objects.path().join("reports"), b"not a directory").unwrap();
    let job_id = server
        .create(with_report("blocked", pb::ReportScope::AllTasks))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    assert!(job.report_location.is_none());
    let reason = job
        .failure_reasons
        .iter()
        .find(|r| r.failure_code == "ReportWriteFailed")
        .expect("a failure reason");
    assert!(
        reason.failure_reason.contains("reports/batch/out"),
        "{}",
        reason.failure_reason
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_job_that_ran_tasks_gets_a_report() {
    let mut server = TestServer::start_with(Settings {
        chunk_size: 2,
        task_concurrency: 2,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    write_manifest(&server, &vec!["data,a".to_string(); 40]);
    let lock = TableLock::take(&server.db, "task_results").await;
    let job_id = server
        .create(with_report("cancel", pb::ReportScope::AllTasks))
        .await;
    wait_for(&mut server.client, &job_id, S::Active).await;
    // Work is in flight (and blocked on the lock) when the cancel comes.
    eventually(|| async { leased_chunks(&server.db, &job_id).await >= 1 }).await;
    server
        .update_status(&job_id, S::Cancelled, "stop")
        .await
        .unwrap();
    lock.release().await;
    let job = wait_for(&mut server.client, &job_id, S::Cancelled).await;
    let run = job
        .progress_summary
        .as_ref()
        .map(|p| p.number_of_tasks_succeeded)
        .unwrap();
    assert!(run > 0 && run < 40);
    let report = read_report(&server, &job.report_location.unwrap());
    let rows: usize = report.files.iter().map(|(_, rows)| rows.len()).sum();
    assert_eq!(rows as u64, run);
    server.stop().await;
}

#[tokio::test]
async fn list_job_task_results_streams_every_result_or_only_failures() {
    let mut server = TestServer::start().await;
    setup(&server);
    let job_id = server.create(checksum_job("list", Some(false))).await;
    wait_for(&mut server.client, &job_id, S::Complete).await;
    for (only_failed, expected) in [(false, 5), (true, 2)] {
        let mut stream = server
            .client
            .list_job_task_results(pb::ListJobTaskResultsRequest {
                account_id: ACCOUNT.into(),
                job_id: job_id.clone(),
                only_failed,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut results = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            results.push(message.result.unwrap());
        }
        assert_eq!(results.len(), expected);
        assert!(
            results
                .windows(2)
                .all(|w| w[0].task_number < w[1].task_number)
        );
        if only_failed {
            assert!(
                results
                    .iter()
                    .all(|r| r.task_status == pb::TaskStatus::Failed as i32
                        && r.error_code == "NoSuchKey")
            );
            assert_eq!(results[0].key, "gone-a.txt");
        } else {
            assert_eq!(results[0].key, "ok 1.txt");
            assert_eq!(results[0].http_status_code, 200);
        }
    }
    let error = server
        .client
        .list_job_task_results(pb::ListJobTaskResultsRequest {
            account_id: "999999999999".into(),
            job_id: job_id.clone(),
            only_failed: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    server.stop().await;
}

/// Every message of a ListJobTaskResults call.
async fn task_results_of(
    server: &mut TestServer,
    request: pb::ListJobTaskResultsRequest,
) -> Result<Vec<pb::TaskResult>, tonic::Status> {
    let mut stream = server
        .client
        .list_job_task_results(request)
        .await?
        .into_inner();
    let mut results = Vec::new();
    while let Some(message) = stream.message().await? {
        results.push(message.result.unwrap());
    }
    Ok(results)
}

#[tokio::test]
async fn task_results_filter_by_error_code() {
    let mut server = TestServer::start().await;
    server.put_object("data", "here.txt", b"x");
    let job_id = server
        .run_job(
            &[
                "data,here.txt".into(),
                "data,gone.txt".into(),
                "data,..%2Fescape.txt".into(),
                "data,also-gone.txt".into(),
            ],
            checksum_job("codes", Some(false)),
            S::Complete,
        )
        .await
        .job_id;
    let request = |error_code: &str| pb::ListJobTaskResultsRequest {
        account_id: ACCOUNT.into(),
        job_id: job_id.clone(),
        error_code: error_code.into(),
        ..Default::default()
    };
    let missing = task_results_of(&mut server, request("NoSuchKey"))
        .await
        .unwrap();
    let keys: Vec<&str> = missing.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["gone.txt", "also-gone.txt"]);
    let invalid = task_results_of(&mut server, request("InvalidKey"))
        .await
        .unwrap();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        task_results_of(&mut server, request("Nope"))
            .await
            .unwrap()
            .is_empty()
    );
    let error = task_results_of(&mut server, request(&"E".repeat(65)))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().starts_with("error_code"), "{error:?}");
    server.stop().await;
}

/// Every byte of a GetJobReportFile call.
async fn report_file(
    server: &mut TestServer,
    account: &str,
    job_id: &str,
    key: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = server
        .client
        .get_job_report_file(pb::GetJobReportFileRequest {
            account_id: account.into(),
            job_id: job_id.into(),
            key: key.into(),
        })
        .await?
        .into_inner();
    let mut content = Vec::new();
    while let Some(message) = stream.message().await? {
        assert!(message.data.len() <= 64 * 1024);
        content.extend_from_slice(&message.data);
    }
    Ok(content)
}

#[tokio::test]
async fn report_files_are_read_back_through_the_api_and_nothing_else_is() {
    let mut server = TestServer::start().await;
    setup(&server);
    // A failed-results file bigger than one message: 100 missing keys of
    // 900 bytes each.
    let mut lines: Vec<String> = (0..100)
        .map(|i| format!("data,{i:03}{}", "k".repeat(897)))
        .collect();
    lines.push("data,ok2.txt".into());
    write_manifest(&server, &lines);
    let job_id = server
        .create(with_report("read-back", pb::ReportScope::AllTasks))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let location = job.report_location.unwrap();
    let root = server.objects.path().join(&location.bucket);

    let manifest = report_file(&mut server, ACCOUNT, &job_id, &location.manifest_key)
        .await
        .unwrap();
    assert_eq!(
        manifest,
        std::fs::read(root.join(&location.manifest_key)).unwrap()
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut largest = 0;
    for entry in manifest["Results"].as_array().unwrap() {
        let key = entry["Key"].as_str().unwrap();
        let content = report_file(&mut server, ACCOUNT, &job_id, key)
            .await
            .unwrap();
        assert_eq!(content, std::fs::read(root.join(key)).unwrap());
        assert_eq!(entry["MD5Checksum"], hex::encode(Md5::digest(&content)));
        largest = largest.max(content.len());
    }
    assert!(
        largest > 64 * 1024,
        "{largest} bytes: one file spans messages"
    );

    // Another object of the report bucket, one of another bucket, a path
    // out of the bucket: none is a file of this report.
    server.put_object(&location.bucket, "secret.txt", b"not yours");
    for key in [
        "secret.txt",
        "../data/ok2.txt",
        "batch/out/../../secret.txt",
    ] {
        let error = report_file(&mut server, ACCOUNT, &job_id, key)
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::NotFound, "{key}: {error:?}");
    }
    // Another account's job is not there for it.
    let error = report_file(&mut server, "999999999999", &job_id, &location.manifest_key)
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let error = report_file(&mut server, ACCOUNT, &job_id, "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);

    // A job without a report has nothing to read.
    let plain = server.create(checksum_job("no-report", Some(true))).await;
    wait_for(&mut server.client, &plain, S::Suspended).await;
    let error = report_file(&mut server, ACCOUNT, &plain, "manifest.json")
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(
        error.message().contains("no completion report"),
        "{error:?}"
    );

    // A report file removed from the store is NOT_FOUND, saying so.
    let first = manifest["Results"][0]["Key"].as_str().unwrap();
    std::fs::remove_file(root.join(first)).unwrap();
    let error = report_file(&mut server, ACCOUNT, &job_id, first)
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert!(error.message().contains("no longer"), "{error:?}");
    server.stop().await;
}

#[tokio::test]
async fn results_are_read_in_task_order_across_windows_with_none_lost_or_repeated() {
    // More tasks than one window of the report (5,000 task numbers) or of
    // ListJobTaskResults (1,000), with failures at the windows' edges.
    let mut server = TestServer::start_with(Settings {
        chunk_size: 1000,
        ..Settings::default()
    })
    .await;
    server.put_object("data", "a", b"a");
    let failing = [0usize, 999, 1000, 4999, 5000, 6000];
    let lines: Vec<String> = (0..=6000)
        .map(|i| {
            if failing.contains(&i) {
                format!("data,gone-{i}")
            } else {
                "data,a".to_string()
            }
        })
        .collect();
    write_manifest(&server, &lines);
    let job_id = server
        .create(with_report("windows", pb::ReportScope::AllTasks))
        .await;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;

    let report = read_report(&server, &job.report_location.unwrap());
    let rows_of = |status: &str| -> Vec<Vec<String>> {
        report
            .files
            .iter()
            .filter(|(s, _)| s == status)
            .flat_map(|(_, rows)| rows.clone())
            .collect()
    };
    let failed_keys: Vec<String> = rows_of("failed").iter().map(|r| r[1].clone()).collect();
    let expected: Vec<String> = failing.iter().map(|i| format!("gone-{i}")).collect();
    assert_eq!(failed_keys, expected);
    assert_eq!(rows_of("succeeded").len(), 6001 - failing.len());

    let all = task_results_of(
        &mut server,
        pb::ListJobTaskResultsRequest {
            account_id: ACCOUNT.into(),
            job_id: job_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let numbers: Vec<i64> = all.iter().map(|r| r.task_number).collect();
    assert_eq!(numbers, (0..=6000).collect::<Vec<i64>>());
    let failed = task_results_of(
        &mut server,
        pb::ListJobTaskResultsRequest {
            account_id: ACCOUNT.into(),
            job_id,
            only_failed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let numbers: Vec<i64> = failed.iter().map(|r| r.task_number).collect();
    assert_eq!(
        numbers,
        failing.iter().map(|&i| i as i64).collect::<Vec<i64>>()
    );
    server.stop().await;
}
