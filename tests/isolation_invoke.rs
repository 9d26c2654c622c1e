//! Attacks through the Invoke operation, against the real server: a
//! redirect off the allowlist, dot segments that walk out of an allowed
//! path, a reply too large to hold, and an endpoint that never finishes.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_redirect_off_the_allowlist_is_not_followed() {
    // Given an endpoint outside the allowlist that would record any call,
    let secret =
        TestEndpoint::start(|event, _, _| Reply::result(event, "Succeeded", "secret")).await;
    // and an allowed endpoint that redirects every call there,
    let target = format!("{}/secret", secret.base);
    let redirecting = TestEndpoint::start(move |_, key, _| {
        let status = if key == "permanent" { 308 } else { 307 };
        Reply::redirect(status, &target)
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: redirecting.url.clone(),
        task_max_attempts: 1,
        ..Settings::default()
    })
    .await;
    write_manifest(&server, &["data,temporary".into(), "data,permanent".into()]);

    // when a job invokes the allowed endpoint,
    let job = server
        .create(invoke_job(
            "redirect",
            &redirecting.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    wait_for(&mut server.client, &job, S::Complete).await;

    // then the redirect fails each task, naming the status and no body,
    let results = server.results(&job).await;
    assert_eq!(results.len(), 2);
    for (succeeded, status, code, message) in &results {
        assert!(!succeeded);
        assert!([307, 308].contains(status), "{status}");
        assert_eq!(code.as_deref(), Some("InvokeRedirect"));
        let message = message.as_deref().unwrap_or_default();
        assert!(message.contains(&status.to_string()), "{message}");
        assert!(!message.contains("redirect body"), "{message}");
    }
    // and the URL the redirect named was never called.
    assert!(secret.calls().is_empty(), "{:?}", secret.calls());
}

#[tokio::test]
async fn dot_segments_cannot_walk_out_of_an_allowed_path() {
    let endpoint =
        TestEndpoint::start(|event, _, _| Reply::result(event, "Succeeded", "reached")).await;
    let allowed = format!("{}/hooks/", endpoint.base);
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: allowed.clone(),
        ..Settings::default()
    })
    .await;
    write_manifest(&server, &["data,a".into()]);
    for (n, path) in [
        "/hooks/%2e%2e/admin",
        "/hooks/%2E%2E/admin",
        "/hooks/../admin",
        "/hooks/./../admin",
        "/hooks/..%2fadmin",
        "/hooks/%2e%2e%2fadmin",
    ]
    .iter()
    .enumerate()
    {
        let escaping = format!("{}{path}", endpoint.base);
        let refused = server
            .client
            .create_job(invoke_job(
                &format!("dots-{n}"),
                &escaping,
                pb::InvocationSchemaVersion::InvocationSchemaVersion20,
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{path}");
        assert!(
            refused.message().contains("operation.invoke.endpoint_url"),
            "{path}: {}",
            refused.message()
        );
    }
    // A plain path under the prefix still works.
    let fine = server
        .create(invoke_job(
            "plain",
            &format!("{allowed}resize"),
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await;
    wait_for(&mut server.client, &fine, S::Complete).await;
    let paths: Vec<String> = endpoint.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(paths, vec!["/hooks/resize".to_owned()]);
}

/// An endpoint that answers every call with `bytes` of body, streamed
/// without a length, and counts how much it managed to send.
async fn flooding_endpoint(bytes: usize) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/flood", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 65536];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b' '; 1 << 20];
                let mut sent = 0;
                while sent < bytes {
                    if socket.write_all(&block).await.is_err() {
                        return;
                    }
                    sent += block.len();
                }
            });
        }
    });
    (url, handle)
}

/// The peak resident memory of a process, in MiB (Linux's VmHWM).
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_reply_is_cut_off_at_the_limit_and_memory_stays_bounded() {
    // Given an allowed endpoint that answers with 200 MiB,
    let (url, _flood) = flooding_endpoint(200 << 20).await;
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    put_object(objects.path(), "data", "manifest.csv", b"data,a\ndata,b\n");
    let mut server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &["--invoke-allowlist", &url, "--task-max-attempts", "1"],
        &[],
    );
    let mut client = connect(server.address).await;

    // when a job calls it,
    let job = client
        .create_job(invoke_job(
            "flood",
            &url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        ))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    wait_for(&mut client, &job, S::Complete).await;

    // then each task fails naming the limit,
    let results = task_results(&db, &job).await;
    for (succeeded, _, code, message) in &results {
        assert!(!succeeded);
        assert_eq!(code.as_deref(), Some("InvokeReplyTooLarge"));
        assert!(
            message
                .as_deref()
                .unwrap_or_default()
                .contains("1048576 bytes"),
            "{message:?}"
        );
    }
    // and the server never held the reply.
    if let Some(peak) = peak_rss_mib(server.child.id()) {
        assert!(peak < 256, "server peak RSS {peak} MiB");
    }
    server.terminate();
}

#[tokio::test]
async fn an_operation_that_outlives_the_timeout_fails_and_the_job_ends() {
    // Given an endpoint that takes 3 s for some keys, a per-call Invoke
    // timeout of 30 s and an operation timeout of 1 s,
    let endpoint = TestEndpoint::start(|event, key, _| {
        let delay = if key.starts_with("slow") {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        Reply {
            delay,
            ..Reply::result(event, "Succeeded", "done")
        }
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        task_max_attempts: 1,
        extra: vec!["--operation-timeout-seconds=1".into()],
        ..Settings::default()
    })
    .await;
    write_manifest(&server, &["data,slow-1".into(), "data,quick".into()]);
    let mut request = invoke_job(
        "timeout",
        &endpoint.url,
        pb::InvocationSchemaVersion::InvocationSchemaVersion20,
    );
    if let Some(pb::operation::Operation::Invoke(invoke)) = request
        .operation
        .as_mut()
        .and_then(|operation| operation.operation.as_mut())
    {
        invoke.timeout_seconds = 30;
    }

    // when the job runs,
    let job = server.create(request).await;
    wait_for(&mut server.client, &job, S::Complete).await;

    // then the slow task failed with the timeout, and the quick one ran.
    let results = server.results(&job).await;
    assert_eq!(results[0].2.as_deref(), Some("RequestTimeout"));
    assert!(
        results[0]
            .3
            .as_deref()
            .unwrap_or_default()
            .contains("within 1 s")
    );
    assert!(results[1].0);
}
