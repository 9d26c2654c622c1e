//! Attacks on the directory object store, against the real server: links
//! inside the root that point outside it (objects, directories, buckets,
//! manifests, report and copy targets, generator listings), special files
//! that would hang a task, and error messages that would reveal the
//! server's paths.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

/// A directory outside the server's object root holding one secret file.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"outside the root").unwrap();
        std::fs::write(dir.path().join("victim.txt"), b"must survive").unwrap();
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every file now in the directory.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = walk(self.path())
            .into_iter()
            .map(|p| p.strip_prefix(self.path()).unwrap().display().to_string())
            .collect();
        names.sort();
        names
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Asserts that no task message of the job names a path of the server.
async fn assert_no_server_paths(server: &TestServer, job: &str, outside: &Outside) {
    let root = server.objects.path().display().to_string();
    let other = outside.path().display().to_string();
    for (_, _, _, message) in server.results(job).await {
        let message = message.unwrap_or_default();
        assert!(
            !message.contains(&root) && !message.contains(&other),
            "{message}"
        );
    }
}

fn operation(operation: pb::operation::Operation) -> Option<pb::Operation> {
    Some(pb::Operation {
        operation: Some(operation),
    })
}

/// A copy operation into `bucket` under `prefix`.
fn copy_to(bucket: &str, prefix: &str) -> Option<pb::Operation> {
    operation(pb::operation::Operation::PutObjectCopy(
        pb::PutObjectCopyOperation {
            target_bucket: bucket.into(),
            target_key_prefix: prefix.into(),
            metadata_directive: 0,
            new_object_metadata: None,
        },
    ))
}

#[tokio::test]
async fn links_inside_the_root_are_never_followed_by_tasks() {
    // Given links inside the root to a file, a directory and a bucket outside it,
    let outside = Outside::new();
    let mut server = TestServer::start().await;
    let root = server.objects.path().to_owned();
    server.put_object("data", "real.txt", b"inside");
    symlink(
        outside.path().join("secret.txt"),
        root.join("data/link.txt"),
    )
    .unwrap();
    symlink(outside.path(), root.join("data/dir")).unwrap();
    symlink(outside.path(), root.join("evil")).unwrap();
    write_manifest(
        &server,
        &[
            "data,link.txt".into(),
            "data,dir/secret.txt".into(),
            "evil,secret.txt".into(),
            "data,real.txt".into(),
        ],
    );

    // when a checksum job reads through them,
    let job = server.create(checksum_job("checksum", Some(false))).await;
    wait_for(&mut server.client, &job, S::Complete).await;

    // then each linked object is refused with AccessDenied, the real one is read,
    let results = server.results(&job).await;
    for (succeeded, status, code, message) in &results[..3] {
        assert!(!succeeded);
        assert_eq!((*status, code.as_deref()), (403, Some("AccessDenied")));
        assert!(
            message
                .as_deref()
                .unwrap_or_default()
                .contains("symbolic link"),
            "{message:?}"
        );
    }
    assert!(results[3].0);
    assert_no_server_paths(&server, &job, &outside).await;

    // and a delete job through the same links removes nothing outside.
    write_manifest(
        &server,
        &[
            "data,dir/victim.txt".into(),
            "evil,victim.txt".into(),
            "data,link.txt".into(),
        ],
    );
    let mut request = checksum_job("delete", Some(false));
    request.operation = operation(pb::operation::Operation::DeleteObject(
        pb::DeleteObjectOperation {},
    ));
    let job = server.create(request).await;
    wait_for(&mut server.client, &job, S::Complete).await;
    let results = server.results(&job).await;
    assert!(
        results
            .iter()
            .all(|(succeeded, status, _, _)| !succeeded && *status == 403)
    );
    assert_eq!(outside.files(), vec!["secret.txt", "victim.txt"]);
    assert!(root.join("data/link.txt").symlink_metadata().is_ok());
}

#[tokio::test]
async fn copies_and_reports_never_write_through_links() {
    // Given a copy target bucket and a report bucket that are links outside,
    let outside = Outside::new();
    let mut server = TestServer::start().await;
    let root = server.objects.path().to_owned();
    server.put_object("data", "a.txt", b"a");
    symlink(
        outside.path().join("secret.txt"),
        root.join("data/link.txt"),
    )
    .unwrap();
    symlink(outside.path(), root.join("target")).unwrap();
    symlink(outside.path(), root.join("reports")).unwrap();
    write_manifest(&server, &["data,a.txt".into(), "data,link.txt".into()]);

    // when a copy job copies into the linked bucket and reports into the other,
    let mut request = checksum_job("copy", Some(false));
    request.operation = copy_to("target", "copies/");
    request.report = Some(pb::JobReport {
        enabled: true,
        bucket: "reports".into(),
        prefix: "batch".into(),
        report_scope: pb::ReportScope::AllTasks as i32,
    });
    let job = server.create(request).await;
    let described = wait_for(&mut server.client, &job, S::Complete).await;

    // then no copy and no report was written outside the root,
    assert_eq!(outside.files(), vec!["secret.txt", "victim.txt"]);
    let results = server.results(&job).await;
    assert!(results.iter().all(|(succeeded, status, code, _)| {
        !succeeded && *status == 403 && code.as_deref() == Some("AccessDenied")
    }));
    // the report's failure is recorded on the job,
    assert!(
        described
            .failure_reasons
            .iter()
            .any(|r| r.failure_code == "ReportWriteFailed"),
        "{:?}",
        described.failure_reasons
    );
    assert!(
        !described.failure_reasons[0]
            .failure_reason
            .contains(&outside.path().display().to_string())
    );
    assert_no_server_paths(&server, &job, &outside).await;
}

#[tokio::test]
async fn manifests_and_listings_never_read_through_links() {
    let outside = Outside::new();
    std::fs::write(outside.path().join("manifest.csv"), b"data,a.txt\n").unwrap();
    let mut server = TestServer::start().await;
    let root = server.objects.path().to_owned();
    server.put_object("data", "a.txt", b"a");
    server.put_object("data", "b.txt", b"b");
    symlink(outside.path(), root.join("data/linked")).unwrap();
    symlink(
        outside.path().join("manifest.csv"),
        root.join("data/manifest.csv"),
    )
    .unwrap();

    // A manifest that is a link is not read.
    let job = server
        .create(checksum_job("linked-manifest", Some(false)))
        .await;
    let described = wait_for(&mut server.client, &job, S::Failed).await;
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "ManifestUnreadable"
    );
    assert!(
        described.failure_reasons[0]
            .failure_reason
            .contains("symbolic link"),
        "{:?}",
        described.failure_reasons
    );

    // A generator lists the bucket's own files, not the linked directory's.
    let mut request = checksum_job("generated", Some(false));
    request.manifest = None;
    request.manifest_generator = Some(pb::ManifestGenerator {
        source_bucket: "data".into(),
        ..Default::default()
    });
    let job = server.create(request).await;
    let described = wait_for(&mut server.client, &job, S::Complete).await;
    assert_eq!(
        described.progress_summary.unwrap().total_number_of_tasks,
        2,
        "only data/a.txt and data/b.txt"
    );
}

#[tokio::test]
async fn special_files_are_refused_at_once() {
    // Given a FIFO where an object should be,
    let outside = Outside::new();
    let mut server = TestServer::start().await;
    let root = server.objects.path().to_owned();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("data/pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    server.put_object("data", "real.txt", b"inside");
    write_manifest(&server, &["data,pipe".into(), "data,real.txt".into()]);

    // when checksum and delete jobs meet it,
    let job = server.create(checksum_job("fifo", Some(false))).await;
    wait_for(&mut server.client, &job, S::Complete).await;
    let mut request = checksum_job("fifo-delete", Some(false));
    request.operation = operation(pb::operation::Operation::DeleteObject(
        pb::DeleteObjectOperation {},
    ));
    let deleting = server.create(request).await;
    wait_for(&mut server.client, &deleting, S::Complete).await;

    // then the FIFO's tasks fail at once, naming the reason, and it stays.
    for job in [&job, &deleting] {
        let results = server.results(job).await;
        assert_eq!(results[0].1, 403);
        assert!(
            results[0]
                .3
                .as_deref()
                .unwrap_or_default()
                .contains("not a regular file"),
            "{:?}",
            results[0]
        );
        assert!(results[1].0);
        assert_no_server_paths(&server, job, &outside).await;
    }
    assert!(root.join("data/pipe").exists());
}

#[tokio::test]
async fn task_messages_name_objects_not_server_paths() {
    let outside = Outside::new();
    let mut server = TestServer::start().await;
    server.put_object("data", "dir/inner.txt", b"x");
    server.put_object("data", "a.txt", b"a");
    server.put_object("target", "copies/a.txt/blocker", b"a directory now");
    let job_job = server
        .run_job(
            &["data,dir".into(), "data,missing".into()],
            checksum_job("paths", Some(false)),
            S::Complete,
        )
        .await;
    let job = job_job.job_id.clone();
    let results = server.results(&job).await;
    assert!(results.iter().all(|(_, status, _, _)| *status == 404));
    assert_no_server_paths(&server, &job, &outside).await;

    // A copy onto a name that is a directory fails without naming a path.
    write_manifest(&server, &["data,a.txt".into()]);
    let mut request = checksum_job("onto-directory", Some(false));
    request.operation = copy_to("target", "copies/");
    let job = server.create(request).await;
    wait_for(&mut server.client, &job, S::Complete).await;
    let results = server.results(&job).await;
    assert!(!results[0].0);
    assert_no_server_paths(&server, &job, &outside).await;
}
