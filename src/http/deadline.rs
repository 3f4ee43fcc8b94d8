//! The write deadline of [`serve`](super::serve)'s connections: a connection whose socket takes
//! no byte for a while is closed.
//!
//! A client that stops reading a response (a big GET) would otherwise keep its connection, the
//! chunks made ahead for it and its socket buffers for as long as it stays connected. Only the
//! socket is watched: a response whose next chunk is still being made (a slow query) is not
//! stalled, and neither is an idle keep-alive connection, which writes nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once one has waited
/// `timeout` for the socket to take a byte; reads pass through.
pub(crate) struct WriteDeadline<I> {
    io: I,
    timeout: Duration,
    /// When the write waiting now fails; armed when a write finds the socket full, disarmed by
    /// any write that completes. One timer per connection, reset rather than remade.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<I> WriteDeadline<I> {
    /// `io`, whose writes fail once one has waited `timeout` for it to take a byte;
    /// `Duration::MAX` is no deadline.
    pub(crate) fn new(io: I, timeout: Duration) -> Self {
        WriteDeadline {
            io,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// `polled`, the result of a write-side call, unless it is still waiting past the deadline.
    fn within_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        if !self.armed {
            match Instant::now().checked_add(self.timeout) {
                Some(at) => self.deadline.as_mut().reset(at),
                // Past the clock's end (`Duration::MAX`): no deadline.
                None => return Poll::Pending,
            }
            self.armed = true;
        }
        // Registers the task with the timer too, so that it runs again when the deadline passes.
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took no byte of the response for {:?}",
                    self.timeout
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.within_deadline(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.within_deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.within_deadline(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.within_deadline(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A write waits for the other end as long as it takes a byte within the deadline, however
    /// long the whole takes; one the other end never takes fails once the deadline passes.
    #[tokio::test(start_paused = true)]
    async fn a_write_fails_after_the_deadline_without_progress() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut conn = WriteDeadline::new(near, Duration::from_secs(60));
        let reader = tokio::spawn(async move {
            let mut taken = [0; 16];
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                far.read_exact(&mut taken).await.unwrap();
            }
            far
        });
        // 11 buffers' worth: 10 of them wait 50 s each for the reader, 500 s in all.
        let started = Instant::now();
        conn.write_all(&[1; 16 * 11]).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(500));
        let _far = reader.await.unwrap();
        // The buffer is full and nobody reads any more.
        let started = Instant::now();
        let err = conn.write_all(&[2; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    /// `Duration::MAX` is no deadline (and no overflow).
    #[tokio::test(start_paused = true)]
    async fn the_longest_timeout_never_fails_a_write() {
        let (near, _far) = tokio::io::duplex(16);
        let mut conn = WriteDeadline::new(near, Duration::MAX);
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        let write = tokio::time::timeout(ten_years, conn.write_all(&[1; 32]));
        assert!(write.await.is_err(), "the write ended");
    }
}
