//! A minimal Invoke endpoint on loopback whose replies the test decides.

use std::time::Duration;

/// What the test endpoint answers to one call.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    /// Extra response headers, e.g. `Location`.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A batch response with one result for the event's task.
    pub fn result(event: &serde_json::Value, code: &str, message: &str) -> Reply {
        let body = serde_json::json!({
            "invocationSchemaVersion": event["invocationSchemaVersion"],
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event["invocationId"],
            "results": [{"taskId": event["tasks"][0]["taskId"], "resultCode": code, "resultString": message}],
        });
        Reply {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A redirect to `location`, with a body that a follower would not see.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            headers: vec![("Location".into(), location.into())],
            ..Reply::raw(status, "redirect body")
        }
    }
}

/// One call the endpoint received.
#[derive(Clone, Debug)]
pub struct Call {
    pub event: serde_json::Value,
    /// The decoded key of the event's task.
    pub key: String,
    /// The request target (path and query) as received.
    pub path: String,
    pub started: chrono::DateTime<chrono::Utc>,
}

type Handler = dyn Fn(&serde_json::Value, &str, usize) -> Reply + Send + Sync;

/// A minimal HTTP/1.1 endpoint on loopback whose replies the test decides:
/// the handler gets the event, the decoded key and how many times that key
/// was called before.
pub struct TestEndpoint {
    pub url: String,
    /// `http://127.0.0.1:PORT`, for other paths on the same endpoint.
    pub base: String,
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<Call>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl TestEndpoint {
    pub async fn start(
        handler: impl Fn(&serde_json::Value, &str, usize) -> Reply + Send + Sync + 'static,
    ) -> TestEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/invoke", listener.local_addr().unwrap());
        let base = format!("http://{}", listener.local_addr().unwrap());
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Call>::new()));
        let handler: std::sync::Arc<Handler> = std::sync::Arc::new(handler);
        let recorded = calls.clone();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve_one(socket, handler, recorded).await;
                });
            }
        });
        TestEndpoint {
            url,
            base,
            calls,
            handle,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, key: &str) -> usize {
        self.calls().iter().filter(|c| c.key == key).count()
    }
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn serve_one(
    mut socket: tokio::net::TcpStream,
    handler: std::sync::Arc<Handler>,
    calls: std::sync::Arc<std::sync::Mutex<Vec<Call>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let request_line = String::from_utf8_lossy(&buffer[..header_end])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let event: serde_json::Value =
        serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or_default();
    let encoded = event["tasks"][0]["s3Key"].as_str().unwrap_or_default();
    let key = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned();
    let previous = {
        let mut calls = calls.lock().unwrap();
        let previous = calls.iter().filter(|c| c.key == key).count();
        calls.push(Call {
            event: event.clone(),
            key: key.clone(),
            path,
            started: chrono::Utc::now(),
        });
        previous
    };
    let reply = handler(&event, &key, previous);
    tokio::time::sleep(reply.delay).await;
    let headers: String = reply
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let response = format!(
        "HTTP/1.1 {} Reply\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
