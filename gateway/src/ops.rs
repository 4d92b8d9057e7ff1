//! The `ops` listener (`[server] ops`): `/metrics` (Prometheus text),
//! `/healthz` (the process answers) and `/readyz` (it can serve: 503 while
//! the identity store is unreachable or its cache is stale, and while the
//! shared rate-limit store is down with `on_store_error = "deny"`, when
//! every request that needs either is refused anyway). Plain HTTP, GET only,
//! nothing else; it shares no code path with the public listeners.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use certs::resolver::Resolver;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::OnStoreError;
use crate::metrics::METRICS;
use crate::state::Shared;

pub struct OpsApp {
    pub shared: Arc<Shared>,
    pub resolver: Option<Arc<Resolver>>,
}

impl OpsApp {
    fn refresh_cert_expiry(&self) {
        METRICS.cert_expiry.reset();
        let Some(resolver) = &self.resolver else {
            return;
        };
        let now = SystemTime::now();
        for cert in resolver.current().certs() {
            let secs = match cert.not_after.duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            let name = cert.names.first().map_or("", String::as_str);
            METRICS.cert_expiry.with_label_values(&[name]).set(secs);
        }
    }

    /// `None` when ready, else what is missing.
    fn unready(&self) -> Option<&'static [u8]> {
        if !self.shared.accounts.ready() {
            return Some(b"identity store unreachable\n");
        }
        let rt = self.shared.runtime.load();
        let keys = matches!(rt.identity.assertion, crate::runtime::AssertionRt::Keys(_));
        if keys && !crate::assertion_keys::RING.load().loaded {
            return Some(b"assertion keys not read yet\n");
        }
        match rt.store.redis() {
            Some(r) if r.on_error == OnStoreError::Deny && r.is_down() => {
                Some(b"shared store unreachable\n")
            }
            _ => None,
        }
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                405,
                "text/plain; charset=utf-8",
                b"method not allowed\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => {
                self.refresh_cert_expiry();
                reply(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    METRICS.render(),
                )
            }
            "/healthz" => reply(200, "text/plain; charset=utf-8", b"ok\n".to_vec()),
            "/readyz" => match self.unready() {
                None => reply(200, "text/plain; charset=utf-8", b"ready\n".to_vec()),
                Some(why) => reply(503, "text/plain; charset=utf-8", why.to_vec()),
            },
            _ => reply(404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
        }
    }
}
