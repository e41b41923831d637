//! The connection hyper serves: a TCP stream that can hold back what hyper writes.
//!
//! A WebSocket join used to cost two writes on the socket: hyper's `101 Switching Protocols`,
//! then the session's first frames (hello and snapshot). Each write is a system call and a
//! segment the kernel sends and the client wakes for. So the upgrade handler turns the
//! connection's [`Hold`] on just before it answers: hyper's 101 then goes into a buffer instead
//! of the socket, the upgrade hands the stream and the held bytes to the session, and the live
//! engine writes those bytes and the first frames in one `writev`. Any other request never
//! turns it on, and its answer goes straight to the socket as before.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most bytes held: a 101 answer is a few hundred bytes; anything past this is written out, so
/// a response that is not a small upgrade answer is never kept.
pub const MAX_HELD_BYTES: usize = 4096;

/// The switch a request's handler finds in the request's extensions.
#[derive(Clone, Default)]
pub struct Hold(Arc<AtomicBool>);

impl Hold {
    /// From now on, what hyper writes on this connection is held (see the module documentation).
    pub fn on(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A TCP stream whose writes are held while its [`Hold`] is on.
pub struct HeldIo {
    tcp: TcpStream,
    hold: Hold,
    held: Vec<u8>,
}

impl HeldIo {
    pub fn new(tcp: TcpStream, hold: Hold) -> Self {
        Self {
            tcp,
            hold,
            held: Vec::new(),
        }
    }

    /// The stream, and what was written to it and held back: to be sent before anything else.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.tcp, self.held)
    }

    /// Whether this write is held: the switch is on and the bytes still fit.
    fn holds(&self, len: usize) -> bool {
        self.hold.is_on() && self.held.len() + len <= MAX_HELD_BYTES
    }

    /// Writes out whatever is held (a response grown past the bound): nothing may overtake it.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for HeldIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeldIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holds(buf.len()) {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.holds(len) {
            for b in bufs {
                this.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(len));
        }
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold.is_on() {
            // Held bytes leave with the session's first frames.
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A connection ending with bytes held (an upgrade that did not happen) sends them first.
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener.accept().await.unwrap().0, client)
    }

    /// Off, writes go through; on, they are held and handed over with the stream; a write
    /// past the bound releases what is held first, in order.
    #[tokio::test]
    async fn writes_are_held_only_while_on_and_within_the_bound() {
        let (server, mut client) = pair().await;
        let hold = Hold::default();
        let mut io = HeldIo::new(server, hold.clone());
        io.write_all(b"plain ").await.unwrap();
        io.flush().await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"plain ");

        hold.on();
        io.write_all(b"HTTP/1.1 101\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        let (tcp, held) = io.into_parts();
        assert_eq!(held, b"HTTP/1.1 101\r\n\r\n");

        let mut io = HeldIo::new(tcp, hold);
        io.write_all(b"small").await.unwrap();
        let big = vec![b'x'; MAX_HELD_BYTES];
        io.write_all(&big).await.unwrap();
        io.flush().await.unwrap();
        let mut got = vec![0u8; 5 + big.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"small", "the held bytes went first");
        assert!(got[5..].iter().all(|&b| b == b'x'));
        assert!(io.into_parts().1.is_empty());
    }
}
