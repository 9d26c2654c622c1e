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

fn generator_job(token: &str, generator: pb::ManifestGenerator) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    request.manifest = None;
    request.manifest_generator = Some(generator);
    request
}

#[tokio::test]
async fn a_manifest_generator_selects_objects_by_prefix_suffix_and_size() {
    let mut server = TestServer::start().await;
    server.put_object("media", "photos/2024/a.jpg", &[1u8; 10]);
    server.put_object("media", "photos/2024/b.png", &[2u8; 20]);
    server.put_object("media", "photos/2025/c.jpg", &[3u8; 1000]);
    server.put_object("media", "photos/2025/d.jpg", &[4u8; 30]);
    server.put_object("media", "docs/x.jpg", &[5u8; 10]);
    let generator = pb::ManifestGenerator {
        source_bucket: "media".into(),
        prefix: "photos/20".into(),
        key_name_constraint: Some(pb::KeyNameConstraint {
            match_any_prefix: vec![],
            match_any_suffix: vec![".jpg".into()],
            match_any_substring: vec![],
        }),
        object_size_greater_than_bytes: None,
        object_size_less_than_bytes: Some(500),
        created_after: Some(prost_types::Timestamp {
            seconds: 0,
            nanos: 0,
        }),
        created_before: None,
    };
    let job_id = server
        .client
        .create_job(generator_job("gen", generator.clone()))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    assert_eq!(job.progress_summary.unwrap().total_number_of_tasks, 2);
    assert_eq!(job.manifest, None);
    assert_eq!(job.manifest_generator.unwrap().prefix, "photos/20");
    let client = server.db.client().await;
    let mut keys: Vec<String> = client
        .query(
            "SELECT key FROM tasks WHERE job_id = $1",
            &[&uuid::Uuid::parse_str(&job_id).unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["photos/2024/a.jpg", "photos/2025/d.jpg"]);

    // Nothing created before 1970: an empty result fails the job.
    let mut none = generator;
    none.created_after = None;
    none.created_before = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let job_id = server
        .client
        .create_job(generator_job("none", none))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestEmpty");
    server.stop().await;
}

#[tokio::test]
async fn a_job_names_exactly_one_of_manifest_and_generator() {
    let mut server = TestServer::idle().await;
    let mut both = checksum_job("both", None);
    both.manifest_generator = Some(pb::ManifestGenerator {
        source_bucket: "media".into(),
        ..Default::default()
    });
    let error = server.client.create_job(both).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().starts_with("manifest_generator"),
        "{}",
        error.message()
    );
    let mut neither = checksum_job("neither", None);
    neither.manifest = None;
    let error = server.client.create_job(neither).await.unwrap_err();
    assert!(
        error.message().starts_with("manifest"),
        "{}",
        error.message()
    );
    let bad = generator_job(
        "bad",
        pb::ManifestGenerator {
            source_bucket: "Not A Bucket".into(),
            ..Default::default()
        },
    );
    let error = server.client.create_job(bad).await.unwrap_err();
    assert!(
        error
            .message()
            .starts_with("manifest_generator.source_bucket"),
        "{}",
        error.message()
    );
    server.stop().await;
}
