//! A total deadline for an HTTP/1 request head (slowloris defence).
//!
//! pingora times each *read* of a request head (60 s), not the head as a
//! whole: a client trickling one byte every few seconds holds a connection
//! (and its buffer, up to pingora's 1 MiB head limit) for as long as it
//! likes. [`HeadDeadline`] wraps the proxy app: every HTTP/1 request,
//! first on a connection or kept alive, must have its complete head read
//! within [`HEAD_TIMEOUT`] of the gateway starting to wait for it, or the
//! connection is closed without a response. The same bound closes a kept-alive
//! connection that stays idle that long. HTTP/2 connections that carry no
//! stream are closed after [`H2_IDLE_TIMEOUT`] (pingora's `h2_idle_timeout`,
//! off by default).
//!
//! How the wrapper knows the head has arrived: the proxy's
//! `early_request_filter` runs right after pingora has parsed it, in the same
//! task, and calls [`head_read`], which flips a task-local flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// Longest time from waiting for an HTTP/1 request to having read its whole
/// head (request line and headers).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/2 connection with no open stream is closed after this long.
pub const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

tokio::task_local! {
    static HEAD_READ: Arc<AtomicBool>;
}

/// Tells the wrapper around this task that the request head is complete.
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

/// Wraps an HTTP app (the pingora proxy) with the head deadline.
pub struct HeadDeadline<A> {
    pub inner: Arc<A>,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeadDeadline<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if session.is_http2() {
            // The h2 layer has read the whole header block already.
            return self.inner.process_new_http(session, shutdown).await;
        }
        let flag = Arc::new(AtomicBool::new(false));
        let work = HEAD_READ.scope(flag.clone(), self.inner.process_new_http(session, shutdown));
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(HEAD_TIMEOUT) => {}
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

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}
