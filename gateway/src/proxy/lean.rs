//! The lean HTTP/1.1 path (issue 22): a bodiless request proxied by one
//! short loop on pingora-core's sessions and connector, through the very
//! same [`Gateway`] hooks pingora-proxy calls (their work called directly:
//! the `ProxyHttp` methods are `async_trait`s, each call a boxed future).
//!
//! pingora-proxy runs every request as two futures joined by two channels
//! (a body pump each way), batches tasks into vectors, and carries cache,
//! module, subrequest and custom-protocol plumbing around them; measured
//! with nothing of the gateway in it (`benches/load/floor.sh`) that costs
//! about 12 µs a request on top of the same work done in sequence. This
//! path does that work in sequence, for the heads
//! `policies::simple_head` lets through: `GET`/`HEAD`, HTTP/1.1,
//! origin-form, no body, no upgrade, no `Expect`, no hop-by-hop field but a
//! plain `Connection`. For those, each pingora-proxy step is mirrored here
//! in its order — the hooks, the request-header sanitising (which for such
//! a head only drops `Connection`), the retry loop over `upstream_peer`,
//! `fail_to_connect` and `error_while_proxy`, the response filter with its
//! `101` and chunked-framing rules, watching the client for a close while
//! the app answers, `fail_to_proxy`, `logging` and keep-alive. Every other
//! request still goes through pingora-proxy.
//!
//! The gateway implements none of the hooks this path does not call
//! (`connected_to_upstream`, `upstream_response_filter`, body filters on the
//! response, cache and module hooks): their defaults do nothing.

use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::HttpTask;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::Peer;

use super::Gateway;
use crate::conn_loop::LeanPath;
use crate::ctx::Ctx;

/// The gateway's hooks with a connection pool of their own.
pub struct Lean {
    gateway: Gateway,
    connector: Connector,
    max_retries: usize,
}

/// How one attempt at the upstream ended: whether the client's connection
/// may be kept, and the error if any.
type Attempt = (bool, Option<Box<Error>>);

impl Lean {
    pub fn new(gateway: Gateway, conf: &ServerConf) -> Self {
        Self {
            gateway,
            // As pingora-proxy builds its own.
            connector: Connector::new(Some(ConnectorOptions::from_server_conf(conf))),
            max_retries: conf.max_retries,
        }
    }

    /// One request on `session`, whose head is already in its buffer; the
    /// connection back if it may be kept alive.
    async fn request(
        &self,
        mut session: Session,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // An awaited future is copied whole into its caller's state, at the
        // size of its largest state. pingora's `finish` (4 KiB) is awaited
        // here and its connect future (8 KiB) boxed where it is needed, not
        // nested in helpers' futures that are copied again (issue 22: the
        // request's future was 10.6 KiB, copied into its box every request).
        if !self.handle(&mut session, shutdown).await {
            return None;
        }
        // The client's connection for its next request, if HTTP allows.
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.downstream_session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    /// The request proxied and logged; whether its connection may be kept.
    async fn handle(&self, session: &mut Session, shutdown: &ShutdownWatch) -> bool {
        match session.downstream_session.read_request().await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(mut e) => {
                // As pingora-proxy answers a head it cannot parse.
                e.as_down();
                if matches!(e.etype(), InvalidHTTPHeader) {
                    if let Err(we) = session.downstream_session.respond_error(400).await {
                        tracing::debug!(error = %we, "could not write the 400");
                    }
                }
                session.downstream_session.shutdown().await;
                return false;
            }
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let gw = &self.gateway;
        let mut ctx = gw.new_ctx();
        // The hooks' work is called directly (`Gateway::run_pipeline` and
        // the like), not through `ProxyHttp`: each `async_trait` call would
        // box its future, six allocations a request.
        crate::conn_loop::head_read();
        match gw.run_pipeline(session, &mut ctx).await {
            Ok(true) => return self.finish(session, &mut ctx, true, None),
            Ok(false) => {}
            Err(e) => return self.handle_error(session, &mut ctx, e).await,
        }
        let mut reuse = false;
        let mut error = None;
        let mut tries = 0;
        while tries < self.max_retries {
            tries += 1;
            let (r, e) = self.to_upstream(session, &mut ctx).await;
            reuse = r;
            match e {
                // The same lines pingora-proxy logs (operators grep them).
                Some(e) if e.retry() => {
                    tracing::warn!(request_id = %ctx.out.request_id, "Fail to proxy: {e}, tries: {tries}, retry: true");
                    error = Some(e);
                }
                e => {
                    error = e;
                    break;
                }
            }
        }
        if let Some(e) = error.as_deref() {
            let res = gw.fail_to_proxy(session, e, &mut ctx).await;
            tracing::error!(
                request_id = %ctx.out.request_id,
                "Fail to proxy: {e}, status: {}, tries: {tries}, retry: false",
                res.error_code
            );
        }
        self.finish(session, &mut ctx, reuse, error)
    }

    /// pingora-proxy's `handle_error`: the error answered and logged; the
    /// connection is closed (the gateway never reuses it after one).
    async fn handle_error(&self, session: &mut Session, ctx: &mut Ctx, e: Box<Error>) -> bool {
        let res = self.gateway.fail_to_proxy(session, &e, ctx).await;
        Gateway::log(session, Some(&e), ctx);
        session.downstream_session.on_proxy_failure(e);
        res.can_reuse_downstream
    }

    /// pingora-proxy's `finish`: logged; the connection kept if `reuse`.
    fn finish(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reuse: bool,
        error: Option<Box<Error>>,
    ) -> bool {
        Gateway::log(session, error.as_deref(), ctx);
        if let Some(e) = error {
            session.downstream_session.on_proxy_failure(e);
        }
        reuse
    }

    /// One attempt: an address, a connection, the exchange.
    async fn to_upstream(&self, session: &mut Session, ctx: &mut Ctx) -> Attempt {
        let gw = &self.gateway;
        let peer = match Gateway::peer(ctx) {
            Ok(p) => p,
            Err(e) => return (false, Some(e)),
        };
        // A pooled connection first, as `get_http_session` would; its
        // connect path (a future of ~8 KiB) only boxed when there is none.
        let (mut up, reused) = match self.connector.reused_http_session(&*peer).await {
            Some(up) => (up, true),
            None => match Box::pin(self.connector.get_http_session(&*peer)).await {
                Ok(c) => c,
                Err(mut e) => {
                    e.as_up();
                    return (
                        false,
                        Some(gw.fail_to_connect(session, &peer, ctx, e).into_up()),
                    );
                }
            },
        };
        let (server_reuse, client_reuse, error) = self.exchange(session, &mut up, &peer, ctx).await;
        if client_reuse {
            self.connector
                .release_http_session(up, &*peer, peer.idle_timeout())
                .await;
        }
        let error = error.map(|e| gw.error_while_proxy(&peer, session, e, ctx, reused));
        (server_reuse, error)
    }

    /// The request to the app and its answer back: (client connection
    /// reusable, upstream connection reusable, error).
    async fn exchange(
        &self,
        session: &mut Session,
        up: &mut Upstream,
        peer: &HttpPeer,
        ctx: &mut Ctx,
    ) -> (bool, bool, Option<Box<Error>>) {
        up.read_timeout = peer.options.read_timeout;
        up.write_timeout = peer.options.write_timeout;
        let mut req = session.req_header().clone();
        // pingora-proxy's sanitising, for a simple head: `Connection` (a
        // plain keep-alive or close) is the only hop-by-hop field it has.
        req.remove_header(&http::header::CONNECTION);
        if let Err(e) = super::upstream::rewrite(&mut req, ctx) {
            return (false, true, Some(e));
        }
        if let Err(e) = up.write_request_header(Box::new(req)).await {
            return (false, false, Some(e.into_up()));
        }
        if let Err(e) = up.finish_body().await {
            return (false, false, Some(e.into_up()));
        }
        match self.relay(session, up, ctx).await {
            Ok(()) => (true, true, None),
            Err(e) => (false, false, Some(e)),
        }
    }

    /// The app's answer, task by task, to the client; meanwhile a client
    /// that closes (or sends more) ends the exchange, as in pingora-proxy.
    async fn relay(&self, session: &mut Session, up: &mut Upstream, ctx: &mut Ctx) -> Result<()> {
        let mut watch_client = true;
        loop {
            let task = if watch_client {
                tokio::select! {
                    task = up.read_response_task() => task.map_err(|e| e.into_up())?,
                    idle = session.downstream_session.read_body_or_idle(true) => {
                        // Only errors come back once the body is done.
                        if let Err(e) = idle {
                            return Err(e.into_down());
                        }
                        watch_client = false;
                        continue;
                    }
                }
            } else {
                up.read_response_task().await.map_err(|e| e.into_up())?
            };
            let task = self.filter(session, task, ctx).await?;
            if session.write_response_tasks(vec![task]).await? {
                break;
            }
        }
        session.finish_body().await.map(|_| ())
    }

    /// pingora-proxy's HTTP/1 response filter, for a request that asked for
    /// no upgrade.
    async fn filter(
        &self,
        session: &mut Session,
        task: HttpTask,
        ctx: &mut Ctx,
    ) -> Result<HttpTask> {
        let HttpTask::Header(mut header, end) = task else {
            return Ok(task);
        };
        refuse_101(&header).map_err(|e| e.into_up())?;
        // A close-delimited answer goes out chunked, so that the client's
        // connection can be kept.
        let no_body = session.req_header().method == http::Method::HEAD
            || matches!(header.status.as_u16(), 204 | 304);
        if !no_body
            && !header.status.is_informational()
            && !header.headers.contains_key(http::header::TRANSFER_ENCODING)
            && !header.headers.contains_key(http::header::CONTENT_LENGTH)
            && !end
        {
            header.set_version(http::Version::HTTP_11);
            header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        super::response::check(session, &mut header, ctx)?;
        refuse_101(&header).map_err(|e| e.into_in())?;
        Ok(HttpTask::Header(header, end))
    }
}

impl LeanPath for Lean {
    fn serve(
        &self,
        session: Session,
        shutdown: &ShutdownWatch,
    ) -> impl std::future::Future<Output = Option<ReusedHttpStream>> + Send {
        self.request(session, shutdown)
    }
}

/// A `101` answers an upgrade request, and these requests asked for none.
fn refuse_101(header: &ResponseHeader) -> Result<()> {
    if header.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Error::e_explain(
            InvalidHTTPHeader,
            "101 response to a request without upgrade",
        );
    }
    Ok(())
}
