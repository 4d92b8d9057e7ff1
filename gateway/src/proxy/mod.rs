//! The pingora `ProxyHttp` glue. `request_filter` runs the pipeline
//! (`crate::stages`) and sends its answer; the other phases pick an
//! upstream address, rewrite the upstream request (`upstream`), check the
//! response (`response`), map failures to a status and log.

mod lean;
mod response;
mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use policies::failure::{self, Failure, Side};

use crate::access_log;
use crate::answer::{self, Answer};
use crate::ctx::Ctx;
use crate::metrics::{self, METRICS};
use crate::stages;
use crate::state::Shared;

pub use lean::Lean;

#[derive(Clone)]
pub struct Gateway {
    pub shared: Arc<Shared>,
    pub listener: Listener,
}

/// Which listener a [`Gateway`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `[server] https` and `http`: everything.
    Public,
    /// `[server] auth`: `/.portcullis/auth` only.
    Auth,
}

/// pingora's error, as `policies::failure` reads it.
fn failure_of(e: &Error) -> (Side, Failure) {
    let side = match e.esource() {
        ErrorSource::Upstream => Side::Upstream,
        ErrorSource::Downstream => Side::Downstream,
        ErrorSource::Internal | ErrorSource::Unset => Side::Internal,
    };
    let failure = match e.etype() {
        HTTPStatus(code) => Failure::Status(*code),
        ReadTimedout | WriteTimedout => Failure::Timeout,
        ConnectTimedout => Failure::ConnectTimeout,
        WriteError | ReadError | ConnectionClosed => Failure::Closed,
        _ => Failure::Other,
    };
    (side, failure)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        let mut ctx = Ctx::new(self.shared.runtime.load_full());
        ctx.auth_listener = self.listener == Listener::Auth;
        ctx
    }

    /// None. pingora's default is a downstream compression module switched
    /// off (level 0), which still builds a context and runs its filters on
    /// every request and body chunk; the gateway never compresses.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // The head is complete: lift the slow-head deadline.
        crate::conn_loop::head_read();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.run_pipeline(session, ctx).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(b) = body else { return Ok(()) };
        ctx.body_seen += b.len() as u64;
        if ctx.body_seen > ctx.max_body {
            return Error::e_explain(HTTPStatus(413), "request body over max_body");
        }
        // A streamed body sent slowly but steadily holds the app's request:
        // past `body_timeout` it must average `body_min_rate`.
        if let Some(started) = ctx.body_started {
            let elapsed = started.elapsed();
            if elapsed > ctx.rt.body_timeout
                && ctx.body_seen < ctx.rt.body_min_rate.saturating_mul(elapsed.as_secs())
            {
                return Error::e_explain(HTTPStatus(408), "request body below body_min_rate");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Self::peer(ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try the next address of the upstream, once each.
        let more = ctx
            .upstream
            .and_then(|i| ctx.rt.upstreams.get(i))
            .is_some_and(|u| ctx.tried.len() < u.addr_count);
        if more {
            e.set_retry(true);
        }
        e
    }

    /// pingora's rule (a failure on a reused connection is retried, for an
    /// idempotent request whose body is still at hand), plus: the retry may
    /// use the same address again. Such a failure is the pooled
    /// connection's (the app closed it while it sat idle), not the
    /// address's; without this a one-address upstream found its only
    /// address tried and answered an error for a healthy app.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.retry() {
            if let Some(i) = ctx.tried.iter().rposition(|a| *a == peer._address) {
                ctx.tried.remove(i);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        upstream::rewrite(up, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        response::check(session, resp, ctx)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (side, what) = failure_of(e);
        let status = failure::status(side, what).unwrap_or(0);
        if matches!(status, 502 | 504) {
            let upstream = ctx
                .upstream
                .and_then(|i| ctx.rt.upstreams.get(i))
                .map_or("", |u| u.name.as_str());
            let kind = if status == 504 { "timeout" } else { "error" };
            METRICS
                .upstream_errors
                .with_label_values(&[upstream, kind])
                .inc();
        }
        if status > 0 && session.response_written().is_none() {
            // A 400 here is the client's own stream failing, a 408 a client
            // too slow to wait for: nothing to drain. Either way the
            // connection is not reused: the body may be half read.
            let drain = !matches!(status, 400 | 408);
            let answer = Answer::Fatal { status, drain };
            if let Err(we) = answer::send(session, ctx, answer).await {
                tracing::debug!(error = %we, "could not write the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        Self::log(session, e, ctx);
    }
}

/// The work of the hooks the lean path calls too: there, called directly,
/// they cost no `async_trait` box and no copy of their future into it.
impl Gateway {
    /// `request_filter`: the pipeline, and its answer sent if it has one
    /// (`true`: the request is answered).
    async fn run_pipeline(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match stages::run(&self.shared, session, ctx).await {
            std::ops::ControlFlow::Continue(()) => Ok(false),
            std::ops::ControlFlow::Break(a) => answer::send(session, ctx, a).await.map(|()| true),
        }
    }

    /// `upstream_peer`: an address of the route's upstream not tried yet.
    fn peer(ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(up) = ctx.upstream.and_then(|i| ctx.rt.upstreams.get(i)) else {
            return Error::e_explain(InternalError, "no upstream selected");
        };
        let tried = &ctx.tried;
        let backend = match &up.single {
            // What the balancer would answer for one address, without it.
            Some(b) => (!tried.contains(&b.addr)).then(|| b.clone()),
            // Healthy and untried first; then anything untried (health may lag).
            None => up
                .lb
                .select_with(b"", 256, |b, healthy| healthy && !tried.contains(&b.addr))
                .or_else(|| up.lb.select_with(b"", 256, |b, _| !tried.contains(&b.addr))),
        };
        let Some(backend) = backend else {
            return Error::e_explain(
                ConnectNoRoute,
                format!("no address left for upstream {}", up.name),
            );
        };
        ctx.tried.push(backend.addr.clone());
        let mut peer = HttpPeer::new(backend, up.tls, up.sni.clone());
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.read_timeout = Some(up.read_timeout);
        Ok(Box::new(peer))
    }

    /// `logging`: metrics and the access-log line.
    fn log(session: &Session, e: Option<&Error>, ctx: &Ctx) {
        if let Some(e) = e {
            tracing::warn!(request_id = %ctx.out.request_id, error = %e, "request failed");
        }
        let status = session
            .response_written()
            .map_or(ctx.status, |r| r.status.as_u16());
        let upstream = ctx
            .upstream
            .and_then(|i| ctx.rt.upstreams.get(i))
            .map(|u| u.name.as_str());
        let route = ctx.label();
        METRICS
            .requests
            .with_label_values(&[route, metrics::status_label(status)])
            .inc();
        METRICS
            .latency
            .with_label_values(&[route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if status == 429 {
            METRICS.rate_limited.with_label_values(&[route]).inc();
        }
        access_log::write(&access_log::Line {
            request_id: &ctx.out.request_id,
            client_ip: ctx.client_ip(),
            method: session.req_header().method.as_str(),
            path: ctx.upstream_target.as_deref().unwrap_or(""),
            route,
            status,
            bytes: session.body_bytes_sent(),
            duration: ctx.started.elapsed(),
            upstream,
            user: ctx.identity.as_ref().map(|i| i.user.as_str()),
        });
    }
}
