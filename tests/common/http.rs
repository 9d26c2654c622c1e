//! Raw HTTP/1.1 exchanges, for listeners whose refusals no client library
//! would provoke.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What came back: the status, the header lines and the body.
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `head` (request line and headers, without the final blank line)
/// and `body` on a new connection and reads the whole reply.
pub async fn request(address: SocketAddr, head: &str, body: &[u8]) -> HttpReply {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer before it has read a body it refuses.
    let _ = stream.write_all(body).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {reply:?}"));
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    HttpReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// [`request`]'s status and body.
pub async fn exchange(address: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let reply = request(address, head, body).await;
    (reply.status, reply.body)
}
