//! The gateway's own shape for the few responses pingora writes by itself.
//!
//! pingora answers an HTTP/1 request head it cannot parse (raw non-ASCII in
//! the target, an absolute-form authority that disagrees with `Host`, a head
//! over 1 MiB, ...) with a canned `400` before any portcullis code runs:
//! `Server: Pingora`, no body, no security headers, no `X-Request-Id`. It has
//! no hook for that response, so [`OwnErrorsApp`] wraps every accepted
//! connection in [`OwnErrors`], which forwards all I/O untouched except a
//! response head carrying pingora's `Server: Pingora` signature: that one is
//! replaced, before it reaches the socket, by the gateway's error response
//! for the same status (JSON body, the global security headers, a fresh
//! `X-Request-Id`, `Connection: close`). The gateway itself never sends a
//! `Server` header, so nothing else can match.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::respond::{self, Extras};
use crate::runtime::SharedRuntime;

/// What pingora's canned responses carry and the gateway's never do.
const SIGNATURE: &[u8] = b"\r\nserver: pingora\r\n";
/// What every response that went through the gateway's filters carries,
/// proxied ones included (so an upstream that is itself a pingora app keeps
/// its own answers).
const OURS: &[u8] = b"\r\nx-request-id:";

/// Wraps a server app: every connection it serves is an [`OwnErrors`].
pub struct OwnErrorsApp<A> {
    pub inner: Arc<A>,
    pub runtime: SharedRuntime,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for OwnErrorsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A kept-alive connection comes back already wrapped.
        let stream: Stream = if stream.as_any().is::<OwnErrors>() {
            stream
        } else {
            Box::new(OwnErrors {
                inner: stream,
                runtime: self.runtime.clone(),
                replacing: None,
                tunnel: false,
            })
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// A connection whose pingora-made response heads are replaced by ours.
pub struct OwnErrors {
    inner: Stream,
    runtime: SharedRuntime,
    /// Our response being written in place of pingora's.
    replacing: Option<Replacement>,
    /// A `101` went out: the rest is a tunnel's bytes, never inspected.
    tunnel: bool,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of pingora's head, which the caller is told was written.
    claimed: usize,
}

impl fmt::Debug for OwnErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The status of a pingora-made error response head, if `buf` is one: an
/// HTTP/1.1 head with status 400 or above, pingora's `Server`, and none of
/// the gateway's `X-Request-Id`.
fn pingora_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    // Every proxied response head passes here: bail out on the status
    // digit before scanning anything.
    if !matches!(rest.first(), Some(b'4' | b'5')) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf.get(..end + 2)?;
    let has = |needle: &[u8]| {
        head.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    (status >= 400 && has(SIGNATURE) && !has(OURS)).then_some(status)
}

impl OwnErrors {
    /// The gateway's error response for `status`, serialised.
    fn page(&self, status: u16) -> Vec<u8> {
        let rt = self.runtime.load();
        let extras = Extras {
            request_id: crate::ctx::new_request_id(),
            headers: Some(rt.headers.clone()),
            https: self.inner.get_ssl_digest().is_some(),
            ..Extras::default()
        };
        let (content_type, body) = respond::error_body(status, false);
        let mut out = format!("HTTP/1.1 {status} {}\r\n", respond::reason(status)).into_bytes();
        if let Ok(h) = respond::header(status, &extras, Some(content_type), body.len()) {
            for (name, value) in h.headers.iter() {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        tracing::debug!(request_id = %extras.request_id, status, "replaced pingora's own response");
        out
    }
}

impl AsyncWrite for OwnErrors {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            if this.tunnel {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
            let Some(status) = pingora_status(buf) else {
                this.tunnel = buf.starts_with(b"HTTP/1.1 101 ");
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            };
            this.replacing = Some(Replacement {
                bytes: this.page(status),
                written: 0,
                claimed: buf.len(),
            });
        }
        // pingora writes a head with `write_all`, which calls again with the
        // same bytes after `Pending`: carry on with ours.
        let Some(r) = this.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while let Some(left) = r.bytes.get(r.written..).filter(|l| !l.is_empty()) {
            match Pin::new(&mut this.inner).poll_write(cx, left) {
                Poll::Ready(Ok(0)) => {
                    this.replacing = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => r.written += n,
                Poll::Ready(Err(e)) => {
                    this.replacing = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let claimed = r.claimed;
        this.replacing = None;
        Poll::Ready(Ok(claimed))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncRead for OwnErrors {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[async_trait]
impl Shutdown for OwnErrors {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for OwnErrors {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for OwnErrors {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for OwnErrors {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for OwnErrors {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for OwnErrors {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for OwnErrors {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pingora_heads_are_recognised() {
        assert_eq!(
            pingora_status(
                b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n"
            ),
            Some(400)
        );
        assert_eq!(
            pingora_status(b"HTTP/1.1 405 Method Not Allowed\r\nserver: pingora\r\n\r\n"),
            Some(405)
        );
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..],
            // Through the gateway's filters (an upstream that is a pingora app).
            b"HTTP/1.1 404 Not Found\r\nServer: Pingora\r\nX-Request-Id: ab\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: Pingora\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Server: Pingora\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nServer: Pingora-ish\r\n\r\n",
            b"{\"server: pingora\"}",
            b"HTTP/1.1 400 Bad Request\r\n\r\nServer: Pingora\r\n",
            b"HTTP/1.1 400",
            b"",
        ] {
            assert_eq!(
                pingora_status(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
