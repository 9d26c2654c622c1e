//! The S3 backend against a real S3-compatible server: moto's S3 server
//! (PyPI `moto[server]`, installed by `.ci/test`) on loopback.

mod common;

use std::{sync::Arc, time::Duration};

use batchops::proto as pb;
use common::*;
use object_store::{ObjectStore, PutPayload, aws::AmazonS3Builder, path::Path};
use pb::JobStatus as S;

/// A moto S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    /// Starts moto on a free port; if another process took the port first,
    /// our moto exits and is started again on another one.
    async fn start() -> Moto {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect(
                    "moto[server] must be installed (pip install 'moto[server]'; .ci/test does)",
                );
            // Owned at once, so that it is stopped whatever happens next.
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            for _ in 0..200 {
                if moto.child.try_wait().unwrap().is_some() {
                    break;
                }
                let ready = reqwest::get(format!("{}/moto-api/", moto.endpoint))
                    .await
                    .is_ok();
                if ready && moto.child.try_wait().unwrap().is_none() {
                    return moto;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("moto did not start");
    }

    async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "create bucket {bucket}: {}",
            response.status()
        );
    }

    fn bucket(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_bucket_name(bucket)
                .build()
                .unwrap(),
        )
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, content: &[u8]) {
    store
        .put(&Path::from(key), PutPayload::from(content.to_vec()))
        .await
        .unwrap();
}

#[tokio::test]
async fn checksum_copy_and_delete_run_against_an_s3_compatible_server() {
    let moto = Moto::start().await;
    for bucket in ["source", "backup"] {
        moto.create_bucket(bucket).await;
    }
    let source = moto.bucket("source");
    let backup = moto.bucket("backup");
    put(&source, "photos/a.jpg", b"123456789").await;
    put(&source, "photos/b c.jpg", b"second").await;
    put(
        &source,
        "manifest.csv",
        b"source,photos/a.jpg\nsource,photos/b%20c.jpg\nsource,photos/missing.jpg\n",
    )
    .await;

    let db = TestDb::new().await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start(&db, "s3://", &[], &env);
    let mut client = connect(server.address).await;

    let job = |token: &str, operation: pb::operation::Operation| {
        let mut request = checksum_job(token, Some(false));
        let manifest = request.manifest.as_mut().unwrap();
        manifest.bucket = "source".into();
        manifest.key = "manifest.csv".into();
        request.operation = Some(pb::Operation {
            operation: Some(operation),
        });
        request
    };

    // Checksum
    let checksum =
        pb::operation::Operation::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation {
            algorithm: pb::ChecksumAlgorithm::Crc32c as i32,
        });
    let id = client
        .create_job(job("sum", checksum))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let done = wait_for(&mut client, &id, S::Complete).await;
    let progress = done.progress_summary.unwrap();
    assert_eq!(
        (
            progress.number_of_tasks_succeeded,
            progress.number_of_tasks_failed
        ),
        (2, 1)
    );
    let rows = db
        .client()
        .await
        .query(
            "SELECT result_message, error_code, http_status_code FROM task_results WHERE job_id = $1 ORDER BY task_number",
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap();
    let message: serde_json::Value =
        serde_json::from_str(rows[0].get::<_, Option<String>>(0).as_deref().unwrap()).unwrap();
    assert_eq!(message["checksumHex"], "e3069283");
    assert_eq!(
        rows[2].get::<_, Option<String>>(1).as_deref(),
        Some("NoSuchKey")
    );
    assert_eq!(rows[2].get::<_, i32>(2), 404);

    // Copy to another bucket
    let copy = pb::operation::Operation::PutObjectCopy(pb::PutObjectCopyOperation {
        target_bucket: "backup".into(),
        target_key_prefix: "2026/".into(),
        metadata_directive: pb::MetadataDirective::Replace as i32,
        new_object_metadata: Some(pb::ObjectMetadata {
            content_type: "image/jpeg".into(),
            cache_control: String::new(),
            user_metadata: Default::default(),
        }),
    });
    let id = client
        .create_job(job("copy", copy))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut client, &id, S::Complete).await;
    let copied = backup
        .get(&Path::from("2026/photos/b c.jpg"))
        .await
        .unwrap();
    assert_eq!(
        copied
            .attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref().to_owned()),
        Some("image/jpeg".to_owned())
    );
    assert_eq!(copied.bytes().await.unwrap().as_ref(), b"second");

    // A generated manifest lists the bucket instead.
    let mut generated = checksum_job("generated", Some(false));
    generated.manifest = None;
    generated.manifest_generator = Some(pb::ManifestGenerator {
        source_bucket: "source".into(),
        prefix: "photos/".into(),
        key_name_constraint: Some(pb::KeyNameConstraint {
            match_any_suffix: vec![".jpg".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = client
        .create_job(generated)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let done = wait_for(&mut client, &id, S::Complete).await;
    let progress = done.progress_summary.unwrap();
    assert_eq!(
        (
            progress.total_number_of_tasks,
            progress.number_of_tasks_succeeded
        ),
        (2, 2)
    );

    // Delete
    let delete = pb::operation::Operation::DeleteObject(pb::DeleteObjectOperation {});
    let id = client
        .create_job(job("delete", delete))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let done = wait_for(&mut client, &id, S::Complete).await;
    assert_eq!(
        done.progress_summary.unwrap().number_of_tasks_succeeded,
        3,
        "deleting a missing key succeeds, as in S3"
    );
    assert!(matches!(
        source.head(&Path::from("photos/a.jpg")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(source.head(&Path::from("manifest.csv")).await.is_ok());
}

#[tokio::test]
async fn an_s3_manifest_pinned_to_another_etag_fails_the_job() {
    let moto = Moto::start().await;
    moto.create_bucket("source").await;
    let source = moto.bucket("source");
    put(&source, "manifest.csv", b"source,a\n").await;
    let db = TestDb::new().await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start(&db, "s3://", &[], &env);
    let mut client = connect(server.address).await;
    let mut request = checksum_job("etag", Some(false));
    let manifest = request.manifest.as_mut().unwrap();
    manifest.bucket = "source".into();
    manifest.key = "manifest.csv".into();
    manifest.etag = "\"0123456789abcdef0123456789abcdef\"".into();
    let id = client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let job = wait_for(&mut client, &id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestETagMismatch");
}

#[tokio::test]
async fn a_manifest_pinned_to_a_version_reads_that_version() {
    let moto = Moto::start().await;
    moto.create_bucket("source").await;
    let versioning = reqwest::Client::new()
        .put(format!("{}/source?versioning", moto.endpoint))
        .body(
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Status>Enabled</Status></VersioningConfiguration>",
        )
        .send()
        .await
        .unwrap();
    assert!(versioning.status().is_success(), "{}", versioning.status());
    let source = moto.bucket("source");
    put(&source, "a", b"a").await;
    put(&source, "b", b"b").await;
    let first = source
        .put(
            &Path::from("manifest.csv"),
            PutPayload::from_static(b"source,a\nsource,b\n"),
        )
        .await
        .unwrap();
    let first_version = first.version.expect("moto keeps versions");
    let first_etag = first.e_tag.unwrap();
    let second = source
        .put(
            &Path::from("manifest.csv"),
            PutPayload::from_static(b"source,a\n"),
        )
        .await
        .unwrap();

    let db = TestDb::new().await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start(&db, "s3://", &[], &env);
    let mut client = connect(server.address).await;
    let pinned = |token: &str, version: &str, etag: &str| {
        let mut request = checksum_job(token, Some(false));
        let manifest = request.manifest.as_mut().unwrap();
        manifest.bucket = "source".into();
        manifest.key = "manifest.csv".into();
        manifest.object_version_id = version.into();
        manifest.etag = etag.into();
        request
    };

    // The first version lists two objects; the current one lists one.
    let id = create(&mut client, pinned("v1", &first_version, &first_etag)).await;
    let job = wait_for(&mut client, &id, S::Complete).await;
    assert_eq!(job.progress_summary.unwrap().total_number_of_tasks, 2);
    assert_eq!(job.manifest.unwrap().object_version_id, first_version);

    // The current version's ETag does not match the pinned version's, and
    // the reason names the pinned version's.
    let current_etag = second.e_tag.unwrap();
    let id = create(
        &mut client,
        pinned("v1-etag", &first_version, &current_etag),
    )
    .await;
    let job = wait_for(&mut client, &id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestETagMismatch");
    assert!(
        job.failure_reasons[0]
            .failure_reason
            .contains(first_etag.trim_matches('"')),
        "{:?}",
        job.failure_reasons[0]
    );

    let id = create(&mut client, pinned("unknown", "no-such-version", "")).await;
    let job = wait_for(&mut client, &id, S::Failed).await;
    assert_eq!(job.failure_reasons[0].failure_code, "ManifestNotFound");
}

async fn create(
    client: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    request: pb::CreateJobRequest,
) -> String {
    client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id
}
