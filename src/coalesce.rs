//! Write coalescing for the gRPC listener's connections.
//!
//! HTTP/2 writes whatever frames are queued when its connection task runs.
//! When one event reaches a thousand streams of a connection, each stream's
//! task queues one frame and wakes the connection task, which the scheduler
//! runs next: one frame, one `writev`, one trip through the loopback or
//! network stack per stream. [`Coalesced`] keeps what HTTP/2 writes and, on
//! the first flush, lets every task that is already waiting run once before
//! it writes, so that their frames leave in one write. It is the
//! consolidation gRPC-Java and Netty do at flush time; a quiet connection
//! pays one scheduler turn per flush.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes kept before a write goes out regardless of flushes.
const LIMIT: usize = 256 * 1024;
/// Buffer capacity a quiet connection keeps after a burst.
const KEPT: usize = 16 * 1024;

/// A connection whose writes go out at flush, one scheduler turn late.
pub(crate) struct Coalesced<S> {
    inner: S,
    pending: Vec<u8>,
    /// How much of `pending` the socket has taken.
    written: usize,
    /// The current flush already let waiting tasks run.
    yielded: bool,
}

impl<S> Coalesced<S> {
    /// Wraps a connection.
    pub(crate) fn new(inner: S) -> Coalesced<S> {
        Coalesced {
            inner,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Hands everything kept to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let taken =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if taken == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += taken;
        }
        self.pending.clear();
        self.pending.shrink_to(KEPT);
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more bytes, writing out first when the buffer is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.pending.len() >= LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(LIMIT - self.pending.len()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = ready!(this.poll_room(cx))?;
        let taken = buf.len().min(room);
        this.pending.extend_from_slice(&buf[..taken]);
        Poll::Ready(Ok(taken))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut room = ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            if room == 0 {
                break;
            }
            let part = buf.len().min(room);
            this.pending.extend_from_slice(&buf[..part]);
            (taken, room) = (taken + part, room - part);
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.len() > this.written && !this.yielded {
            // Woken while running, the connection's task goes behind the
            // tasks already waiting, whose frames then join this write.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Connected for Coalesced<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_reach_the_peer_in_order_only_once_flushed() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut near = Coalesced::new(near);
        near.write_all(b"one ").await.unwrap();
        let taken = near
            .write_vectored(&[IoSlice::new(b"two "), IoSlice::new(b"three")])
            .await
            .unwrap();
        assert_eq!(taken, 9, "both slices are kept whole");
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut buf));
        assert!(early.await.is_err(), "nothing is written before a flush");
        near.flush().await.unwrap();
        let mut got = vec![0u8; 13];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two three");
    }

    #[tokio::test]
    async fn a_full_buffer_waits_for_the_peer_instead_of_growing() {
        // The peer takes at most 64 KiB until it reads.
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut near = Coalesced::new(near);
        let data: Vec<u8> = (0..LIMIT * 3).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn(async move {
            near.write_all(&data).await.unwrap();
            assert!(near.pending.len() <= LIMIT);
            near.flush().await.unwrap();
            assert!(
                near.pending.capacity() <= KEPT,
                "a burst's buffer is not kept"
            );
            data
        });
        let mut got = Vec::new();
        while got.len() < LIMIT * 3 {
            let mut buf = vec![0u8; 8192];
            let n = far.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, writer.await.unwrap());
    }
}
