//! Manifest formats end to end: S3 Inventory reports.

mod common;

use std::io::Write;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

fn inventory_job(token: &str) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    let manifest = request.manifest.as_mut().unwrap();
    manifest.format = pb::ManifestFormat::S3InventoryReportCsv20161130 as i32;
    manifest.bucket = "inventory".into();
    manifest.key = "data/daily/2026-11-24T00-00Z/manifest.json".into();
    request
}

fn write_inventory(server: &TestServer, files: &[&str]) {
    let listed: Vec<String> = files
        .iter()
        .map(|key| format!(r#"{{"key":"{key}","size":100,"MD5checksum":"00"}}"#))
        .collect();
    let manifest = format!(
        r#"{{"sourceBucket":"data","destinationBucket":"arn:aws:s3:::inventory","version":"2016-11-30",
            "creationTimestamp":"1764000000000","fileFormat":"CSV",
            "fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size",
            "files":[{}]}}"#,
        listed.join(",")
    );
    server.put_object(
        "inventory",
        "data/daily/2026-11-24T00-00Z/manifest.json",
        manifest.as_bytes(),
    );
}

#[tokio::test]
async fn an_inventory_report_with_gzipped_and_plain_files_becomes_one_task_per_row() {
    let mut server = TestServer::start().await;
    for key in ["a.txt", "b c.txt", "d.txt"] {
        server.put_object("data", key, key.as_bytes());
    }
    server.put_object(
        "inventory",
        "data/files/one.csv.gz",
        &gzip("\"data\",\"a.txt\",\"\",\"true\",\"false\",\"5\"\n\"data\",\"b%20c.txt\",\"\",\"true\",\"false\",\"7\"\n"),
    );
    server.put_object("inventory", "data/files/two.csv", b"\"data\",\"d.txt\",\"\",\"true\",\"false\",\"5\"\n\"data\",\"gone.txt\",\"\",\"true\",\"false\",\"1\"\n");
    write_inventory(&server, &["data/files/one.csv.gz", "data/files/two.csv"]);
    let job_id = server
        .client
        .create_job(inventory_job("inv"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.total_number_of_tasks,
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (4, 3, 1)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_inventory_listing_a_missing_or_malformed_file_fails_the_job_naming_it() {
    let mut server = TestServer::start().await;
    write_inventory(&server, &["data/files/absent.csv"]);
    let job_id = server
        .client
        .create_job(inventory_job("absent"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestNotFound");
    assert!(
        job.failure_reasons[0]
            .failure_reason
            .contains("inventory/data/files/absent.csv"),
        "{:?}",
        job.failure_reasons
    );

    server.put_object(
        "inventory",
        "data/files/bad.csv",
        b"\"data\",\"a\",\"\",\"true\",\"false\",\"1\"\n\"data\"\n",
    );
    write_inventory(&server, &["data/files/bad.csv"]);
    let job_id = server
        .client
        .create_job(inventory_job("bad"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    let reason = &job.failure_reasons[0];
    assert_eq!(reason.failure_code, "ManifestInvalid");
    assert!(
        reason.failure_reason.contains("line 2")
            && reason.failure_reason.contains("data/files/bad.csv"),
        "{}",
        reason.failure_reason
    );

    server.put_object(
        "inventory",
        "data/daily/2026-11-24T00-00Z/manifest.json",
        br#"{"fileFormat":"Parquet"}"#,
    );
    let job_id = server
        .client
        .create_job(inventory_job("parquet"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestInvalid");
    server.stop().await;
}
