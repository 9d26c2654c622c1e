//! Copy, delete and checksum against the local directory store.

mod common;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

fn with_operation(token: &str, operation: pb::operation::Operation) -> pb::CreateJobRequest {
    let mut request = checksum_job(token, Some(false));
    request.operation = Some(pb::Operation {
        operation: Some(operation),
    });
    request
}

async fn run(
    server: &mut TestServer,
    request: pb::CreateJobRequest,
) -> (
    pb::JobDescriptor,
    Vec<(bool, i32, Option<String>, Option<String>)>,
) {
    let job_id = server
        .client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut server.client, &job_id, S::Complete).await;
    (job, server.results(&job_id).await)
}

#[tokio::test]
async fn copy_writes_each_object_under_the_target_prefix() {
    let mut server = TestServer::start().await;
    server.put_object("data", "dir/a.txt", b"alpha");
    server.put_object("data", "b c.txt", b"beta");
    write_manifest(
        &server,
        &[
            "data,dir/a.txt".into(),
            "data,b%20c.txt".into(),
            "data,gone.txt".into(),
        ],
    );
    let copy = pb::PutObjectCopyOperation {
        target_bucket: "backup".into(),
        target_key_prefix: "2026/".into(),
        metadata_directive: pb::MetadataDirective::Copy as i32,
        new_object_metadata: None,
    };
    let (job, rows) = run(
        &mut server,
        with_operation("copy", pb::operation::Operation::PutObjectCopy(copy)),
    )
    .await;
    let progress = job.progress_summary.unwrap();
    assert_eq!(
        (
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (2, 1)
    );
    let root = server.objects.path();
    assert_eq!(
        std::fs::read(root.join("backup/2026/dir/a.txt")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        std::fs::read(root.join("backup/2026/b c.txt")).unwrap(),
        b"beta"
    );
    assert_eq!(
        std::fs::read(root.join("data/dir/a.txt")).unwrap(),
        b"alpha",
        "the source stays"
    );
    assert_eq!(
        rows[0].3.as_deref(),
        Some("copied to backup/2026/dir/a.txt")
    );
    assert_eq!((rows[2].1, rows[2].2.as_deref()), (404, Some("NoSuchKey")));
    server.stop().await;
}

#[tokio::test]
async fn copy_refuses_prefixes_that_leave_the_bucket() {
    let mut server = TestServer::idle().await;
    for prefix in ["../", "a/../../", "/abs"] {
        let copy = pb::PutObjectCopyOperation {
            target_bucket: "backup".into(),
            target_key_prefix: prefix.into(),
            metadata_directive: 0,
            new_object_metadata: None,
        };
        let error = server
            .client
            .create_job(with_operation(
                "bad",
                pb::operation::Operation::PutObjectCopy(copy),
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error
                .message()
                .starts_with("operation.put_object_copy.target_key_prefix"),
            "{}",
            error.message()
        );
    }
    let copy = pb::PutObjectCopyOperation {
        target_bucket: "backup".into(),
        target_key_prefix: String::new(),
        metadata_directive: pb::MetadataDirective::Copy as i32,
        new_object_metadata: Some(pb::ObjectMetadata::default()),
    };
    let error = server
        .client
        .create_job(with_operation(
            "meta",
            pb::operation::Operation::PutObjectCopy(copy),
        ))
        .await
        .unwrap_err();
    assert!(
        error
            .message()
            .starts_with("operation.put_object_copy.new_object_metadata"),
        "{}",
        error.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn copy_with_replaced_metadata_reports_what_the_local_store_supports() {
    let mut server = TestServer::start().await;
    server.put_object("data", "a", b"alpha");
    write_manifest(&server, &["data,a".into()]);
    let copy = pb::PutObjectCopyOperation {
        target_bucket: "backup".into(),
        target_key_prefix: String::new(),
        metadata_directive: pb::MetadataDirective::Replace as i32,
        new_object_metadata: Some(pb::ObjectMetadata {
            content_type: "text/plain".into(),
            cache_control: String::new(),
            user_metadata: [("owner".to_string(), "me".to_string())].into(),
        }),
    };
    let (_, rows) = run(
        &mut server,
        with_operation("replace", pb::operation::Operation::PutObjectCopy(copy)),
    )
    .await;
    // The directory store keeps no metadata: the task says so instead of
    // silently dropping it.
    assert_eq!(
        (rows[0].0, rows[0].1, rows[0].2.as_deref()),
        (false, 501, Some("NotImplemented")),
        "{rows:?}"
    );
    assert!(!server.object_exists("backup", "a"));
    server.stop().await;
}

#[tokio::test]
async fn every_checksum_algorithm_matches_its_reference_value() {
    let mut server = TestServer::start().await;
    server.put_object("data", "check", b"123456789");
    write_manifest(&server, &["data,check".into()]);
    let expected = [
        (pb::ChecksumAlgorithm::Crc32, "cbf43926"),
        (pb::ChecksumAlgorithm::Crc32c, "e3069283"),
        (pb::ChecksumAlgorithm::Crc64nvme, "ae8b14860a799888"),
        (
            pb::ChecksumAlgorithm::Sha1,
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
        ),
        (
            pb::ChecksumAlgorithm::Sha256,
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
        ),
        (
            pb::ChecksumAlgorithm::Md5,
            "25f9e794323b453885f5181f1b624d0b",
        ),
    ];
    for (i, (algorithm, hex)) in expected.iter().enumerate() {
        let operation =
            pb::operation::Operation::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation {
                algorithm: *algorithm as i32,
            });
        let (_, rows) = run(&mut server, with_operation(&format!("sum{i}"), operation)).await;
        let message: serde_json::Value =
            serde_json::from_str(rows[0].3.as_deref().unwrap()).unwrap();
        assert_eq!(message["checksumHex"], *hex, "{algorithm:?}");
    }
    server.stop().await;
}
