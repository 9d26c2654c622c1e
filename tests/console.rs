//! The console listener with the real binary: its page and files with their
//! security headers, nothing else served, and JobService over gRPC-Web
//! behind the same token check as the gRPC listener. (The console itself
//! runs in a browser in tests/python/test_console.py.)

mod common;

use common::http::request;
use common::*;

/// A gRPC-Web ListJobs call of `account` (an empty request body frame
/// would be refused: the account is field 1).
fn list_jobs_frame(account: &str) -> Vec<u8> {
    let mut message = vec![0x0a, account.len() as u8];
    message.extend_from_slice(account.as_bytes());
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_policy_and_nothing_else_is() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&db, &objects.path().display().to_string(), &[], &[]);
    let console = server.console_address.expect("console address logged");

    let page = request(console, "GET / HTTP/1.1\r\nhost: localhost", b"").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"<div id="app">"#), "{}", page.body);
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    for (path, kind) in [
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let file = request(
            console,
            &format!("GET {path} HTTP/1.1\r\nhost: localhost"),
            b"",
        )
        .await;
        assert_eq!(file.status, 200, "{path}");
        assert!(file.header("content-type").unwrap().starts_with(kind));
    }
    for path in [
        "/../Cargo.toml",
        "/etc/passwd",
        "/console.js.map",
        "/%2e%2e/src/main.rs",
    ] {
        let refused = request(
            console,
            &format!("GET {path} HTTP/1.1\r\nhost: localhost"),
            b"",
        )
        .await;
        assert_eq!(refused.status, 404, "{path}");
    }
    let refused = request(console, "POST / HTTP/1.1\r\nhost: localhost", b"x").await;
    assert_eq!(refused.status, 405);

    // gRPC-Web reaches the same service.
    let listed = request(
        console,
        "POST /batchops.v1.JobService/ListJobs HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1",
        &list_jobs_frame(ACCOUNT),
    )
    .await;
    assert_eq!(listed.status, 200);
    assert!(listed.body.contains("grpc-status:0"), "{:?}", listed.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_need_the_same_token_as_grpc() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let tokens = objects.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"a\"\ntoken = \"secret-a\"\naccounts = [\"111122223333\"]\n",
    )
    .unwrap();
    let server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &["--auth-tokens", tokens.to_str().unwrap()],
        &[],
    );
    let console = server.console_address.unwrap();
    let call = |auth: &str, account: &str| {
        let head = format!(
            "POST /batchops.v1.JobService/ListJobs HTTP/1.1\r\nhost: localhost\r\n\
             content-type: application/grpc-web+proto\r\nx-grpc-web: 1{auth}"
        );
        let frame = list_jobs_frame(account);
        async move { request(console, &head, &frame).await }
    };
    // grpc-status 16 (UNAUTHENTICATED) and 7 (PERMISSION_DENIED) come in the
    // headers of a trailers-only response.
    let status_of = |reply: &common::http::HttpReply| {
        reply
            .header("grpc-status")
            .map(str::to_owned)
            .or_else(|| {
                reply.body.split("grpc-status:").nth(1).map(|rest| {
                    rest.trim_start()
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    assert_eq!(status_of(&call("", ACCOUNT).await), "16");
    assert_eq!(
        status_of(&call("\r\nauthorization: Bearer wrong", ACCOUNT).await),
        "16"
    );
    assert_eq!(
        status_of(&call("\r\nauthorization: Bearer secret-a", "444455556666").await),
        "7"
    );
    assert_eq!(
        status_of(&call("\r\nauthorization: Bearer secret-a", ACCOUNT).await),
        "0"
    );
}
