//! TCP listener whose connections carry per-connection state that handlers
//! reach through `ConnectInfo`: the bandwidth pacing clock, and a flag that
//! turns the connection's close into a TCP reset (the `reset` fault).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub(crate) struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Conn, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let ctx = Arc::new(ConnCtx::default());
                    return (Conn { stream, ctx }, addr);
                }
                // E.g. EMFILE: back off instead of spinning.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Default)]
pub(crate) struct ConnCtx {
    reset_on_close: AtomicBool,
    /// When this connection may send its next body chunk (bandwidth limit).
    next_send: Mutex<Option<Instant>>,
}

impl ConnCtx {
    /// Makes the coming close of this connection a TCP RST (SO_LINGER 0).
    pub fn reset_on_close(&self) {
        self.reset_on_close.store(true, Ordering::Relaxed);
    }

    /// Token-bucket style pacing: reserves `n` bytes at `rate` bytes/s and
    /// returns when they may be sent.
    pub fn reserve(&self, n: usize, rate: u64) -> Instant {
        let mut next = self.next_send.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = next.map_or(now, |t| t.max(now));
        *next = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
        start
    }
}

/// Connection state handed to handlers (`ConnectInfo<ConnInfo>`).
#[derive(Clone)]
pub(crate) struct ConnInfo(pub Arc<ConnCtx>);

impl Connected<IncomingStream<'_, Listener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        ConnInfo(stream.io().ctx.clone())
    }
}

pub(crate) struct Conn {
    stream: TcpStream,
    ctx: Arc<ConnCtx>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.ctx.reset_on_close.load(Ordering::Relaxed) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    // Vectored writes let hyper send headers and body chunks without copying.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
