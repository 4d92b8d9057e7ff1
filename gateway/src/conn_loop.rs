//! The HTTP/1 connection loop around pingora's proxy: a total deadline for
//! every request head (slowloris defence) and kept-alive connections that
//! hold no request state while they wait.
//!
//! pingora times each *read* of a request head (60 s), not the head as a
//! whole: a client trickling one byte every few seconds holds a connection
//! (and its buffer, up to pingora's 1 MiB head limit) for as long as it
//! likes. Here every HTTP/1 request, first on a connection or kept alive,
//! must have its complete head read within [`HEAD_TIMEOUT`] of the gateway
//! starting to wait for it, or the connection is closed without a response.
//! The same bound closes a kept-alive connection that stays idle that long.
//! HTTP/2 connections that carry no stream are closed after
//! [`H2_IDLE_TIMEOUT`] (pingora's `h2_idle_timeout`, off by default).
//!
//! Why the loop is ours and not pingora's: pingora's loop hands a kept-alive
//! connection straight back to the proxy, whose request future (about
//! 16 KiB, boxed) and a 4 KiB head buffer then sit in memory for as long as
//! the client stays idle. [`ConnLoop`] instead waits for the next request's
//! first bytes itself, holding only the connection, and gives what it read
//! to the new session as the start of its head (pingora's pipelined-prefix
//! hook), so nothing is read twice and nothing is lost.
//!
//! Which path a request takes: the loop reads the head itself (up to
//! 16 KiB) and asks `policies::simple_head`. A complete simple head (a
//! bodiless `GET`/`HEAD`, nothing unusual) goes to the [`LeanPath`], the
//! gateway's own short HTTP/1.1 proxy loop; anything else goes to
//! pingora-proxy with the bytes read so far as the start of its head.
//!
//! How the loop knows pingora-proxy has the whole head: its
//! `early_request_filter` runs right after pingora has parsed it, in the same
//! task, and calls [`head_read`], which flips a task-local flag.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{
    HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp,
};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use policies::simple_head::{self, Head};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest time from waiting for an HTTP/1 request to having read its whole
/// head (request line and headers).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/2 connection with no open stream is closed after this long.
pub const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How much a head read asks for at a time: pingora's own initial head
/// buffer size.
const FIRST_READ: usize = 4096;

/// The buffer a kept-alive connection waits with: it is allocated for as
/// long as the client stays idle, so it is smaller than a head read (issue
/// 22: 3 KiB less per idle connection). Heads of requests without large
/// cookies fit; a longer one costs one more read from TLS's plaintext
/// buffer (no system call: the record is already decrypted) and a copy.
const IDLE_READ: usize = 1024;

/// A head still incomplete at this size goes to pingora-proxy (whose own
/// limit is 1 MiB); typical heads, cookies included, are a few KiB.
const SIMPLE_HEAD_MAX: usize = 16 * 1024;

/// pingora's keep-alive setting for a new HTTP/1 connection (seconds); the
/// head deadline above is what closes idle connections first.
const KEEPALIVE_SECS: u64 = 60;

tokio::task_local! {
    static HEAD_READ: Arc<AtomicBool>;
}

/// Tells the loop around this task that the request head is complete.
/// A no-op outside it (HTTP/2 streams, tests).
pub fn head_read() {
    let _ = HEAD_READ.try_with(|flag| flag.store(true, Ordering::Release));
}

/// The server options the proxy runs with.
pub fn server_options() -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(H2_IDLE_TIMEOUT);
    options
}

/// Runs HTTP/1 connections for an HTTP app (the pingora proxy); anything
/// else (HTTP/2 by ALPN) goes to pingora's own handling of that app.
pub struct ConnLoop<A, L> {
    inner: Arc<A>,
    /// Serves the simple heads instead of `inner`.
    lean: L,
    /// Set when the service stops listening: idle connections close.
    closing: AtomicBool,
    closed: Notify,
}

impl<A, L> ConnLoop<A, L> {
    pub fn new(inner: A, lean: L) -> Self {
        Self {
            inner: Arc::new(inner),
            lean,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// Resolves once `cleanup` has run (registered before the flag is read,
    /// so a notification in between is not missed).
    async fn until_closing(&self) {
        let notified = self.closed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// How a request's session begins: the connection, what was read of the
/// head already, and the keep-alive settings of a new or kept-alive
/// connection. The session itself (about 1.5 KiB) is built only inside the
/// boxed request, so it is neither copied into that box nor given room in
/// the connection's own future.
struct Start {
    stream: Stream,
    how: How,
    /// The head's first bytes, read by the loop.
    first: BytesMut,
}

enum How {
    New {
        keepalive_reuses: Option<u32>,
    },
    Reused {
        settings: Option<HttpPersistentSettings>,
    },
}

impl How {
    fn apply(self, session: &mut ServerSession, shutdown: &ShutdownWatch) {
        match self {
            // As pingora's own loop sets up a new HTTP/1 connection.
            How::New { keepalive_reuses } => {
                session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_SECS));
                session.set_keepalive_reuses_remaining(keepalive_reuses);
            }
            How::Reused { settings } => {
                if let Some(settings) = settings {
                    settings.apply_to_session(session);
                }
            }
        }
    }
}

impl Start {
    /// The session pingora-proxy reads the head in.
    fn session(self, shutdown: &ShutdownWatch) -> ServerSession {
        let mut session = ServerSession::new_http1(self.stream);
        self.how.apply(&mut session, shutdown);
        give_prefix(&mut session, self.first);
        session
    }

    /// The session the lean path reads the (complete) head from.
    fn lean_session(self, shutdown: &ShutdownWatch) -> pingora::proxy::Session {
        let mut session = pingora::proxy::Session::new_h1(self.stream);
        self.how.apply(&mut session.downstream_session, shutdown);
        give_prefix(&mut session.downstream_session, self.first);
        session
    }
}

/// Pipelining is never enabled, so pingora passes no prefix of its own:
/// these bytes are all that was read past the last request.
fn give_prefix(session: &mut ServerSession, first: BytesMut) {
    if !first.is_empty() {
        session.set_pipelined_prefix(first);
    }
}

/// The lean HTTP/1.1 path for heads `policies::simple_head` calls simple
/// (the gateway's `proxy::lean`).
pub trait LeanPath: Send + Sync + 'static {
    fn serve(
        &self,
        session: pingora::proxy::Session,
        shutdown: &ShutdownWatch,
    ) -> impl Future<Output = Option<ReusedHttpStream>> + Send;
}

/// What the loop read before choosing a path.
enum Read {
    /// A complete simple head.
    Simple,
    /// Anything else, complete or not: pingora-proxy's.
    Other,
    /// Nothing to answer: closed, failed, too slow, or the service stops.
    Gone,
}

impl<A: HttpServerApp + Send + Sync + 'static, L: LeanPath> ConnLoop<A, L> {
    /// One request, its head due by `due`; the connection back if it may be
    /// kept alive.
    async fn one_request(
        &self,
        mut start: Start,
        due: Instant,
        flag: &Arc<AtomicBool>,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match self.read_head(&mut start, due).await {
            Read::Simple => {
                return self
                    .lean
                    .serve(start.lean_session(shutdown), shutdown)
                    .await
            }
            Read::Other => {}
            Read::Gone => return None,
        }
        flag.store(false, Ordering::Release);
        let session = start.session(shutdown);
        let work = HEAD_READ.scope(flag.clone(), self.inner.process_new_http(session, shutdown));
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep_until(due) => {}
        }
        if flag.load(Ordering::Acquire) {
            return work.await;
        }
        // Dropping the work drops the session: the connection is closed.
        tracing::debug!(
            timeout = ?HEAD_TIMEOUT,
            "no complete request head in time: connection closed"
        );
        None
    }

    /// Reads until the bytes so far are a complete simple head or cannot
    /// become one (then pingora-proxy reads on from them, under the same
    /// deadline), at most [`SIMPLE_HEAD_MAX`] bytes.
    async fn read_head(&self, start: &mut Start, due: Instant) -> Read {
        let buf = &mut start.first;
        loop {
            if !buf.is_empty() {
                match simple_head::classify(buf) {
                    Head::Simple => return Read::Simple,
                    Head::Partial if buf.len() < SIMPLE_HEAD_MAX => {}
                    Head::Partial | Head::Other => return Read::Other,
                }
            }
            if buf.capacity() - buf.len() < FIRST_READ / 4 {
                buf.reserve(FIRST_READ);
            }
            if !self.read_more(&mut start.stream, buf, due).await {
                return Read::Gone;
            }
        }
    }

    /// Waits, holding only the connection, for the next request's first
    /// bytes; `None` when [`Self::read_more`] reads none.
    async fn first_bytes(&self, stream: &mut Stream, due: Instant) -> Option<BytesMut> {
        let mut buf = BytesMut::with_capacity(IDLE_READ);
        self.read_more(stream, &mut buf, due).await.then_some(buf)
    }

    /// One read into `buf` by `due`; false when the client closes, the read
    /// fails, the deadline passes or the service is closing.
    async fn read_more(&self, stream: &mut Stream, buf: &mut BytesMut, due: Instant) -> bool {
        let read = tokio::select! {
            biased;
            read = tokio::time::timeout_at(due, stream.read_buf(buf)) => read,
            () = self.until_closing() => return false,
        };
        match read {
            Ok(Ok(n)) => n > 0,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading from a client failed");
                false
            }
            Err(_) => {
                tracing::debug!(
                    timeout = ?HEAD_TIMEOUT,
                    "no complete request head in time: connection closed"
                );
                false
            }
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static, L: LeanPath> ServerApp for ConnLoop<A, L> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        let custom = options.is_some_and(|o| o.h2c || o.force_custom);
        if custom || !matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1)) {
            // HTTP/2: the h2 layer reads whole header blocks itself.
            return self.inner.process_new(stream, shutdown).await;
        }
        let mut start = Start {
            stream,
            how: How::New {
                keepalive_reuses: options.and_then(|o| o.keepalive_request_limit),
            },
            first: BytesMut::with_capacity(FIRST_READ),
        };
        let mut due = Instant::now() + HEAD_TIMEOUT;
        // One flag for the connection's requests, reset for each.
        let flag = Arc::new(AtomicBool::new(false));
        loop {
            // Boxed: the request's state is freed with it instead of
            // widening this future, which an idle connection keeps.
            let reused = Box::pin(self.one_request(start, due, &flag, shutdown)).await?;
            let (mut stream, settings) = reused.consume();
            due = Instant::now() + HEAD_TIMEOUT;
            let first = self.first_bytes(&mut stream, due).await?;
            start = Start {
                stream,
                how: How::Reused { settings },
                first,
            };
        }
    }

    async fn cleanup(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
        self.inner.http_cleanup().await;
    }
}
