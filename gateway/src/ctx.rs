//! Per-request state, filled in by the pipeline's stages in order
//! (docs/behaviour.md) and read by the later pingora phases.

use std::sync::Arc;
use std::time::Instant;

use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use policies::client_ip::ClientAddr;
use policies::hex_id::HexId;

use crate::auth::{Identity, Unfinished};
use crate::respond::Extras;
use crate::runtime::Runtime;

/// The state of one request. The runtime `Arc` pins the rules for the
/// whole request: a reload never changes them under it.
pub struct Ctx {
    pub rt: Arc<Runtime>,
    pub started: Instant,
    /// Request id, cookies and headers every response of this request carries.
    pub out: Extras,
    /// Stage `session`: who is asking, if anyone.
    pub identity: Option<Identity>,
    /// Stage `session`: a session that must still use (or get) a second
    /// factor; never also in `identity`.
    pub unfinished: Option<Unfinished>,
    /// Stage `session`: a session cookie came that the identity store could
    /// not check; stage `access` answers 503 where an account is needed.
    pub identity_unavailable: bool,
    /// A valid emergency session (only while the gate is enabled for this client).
    pub emergency: Option<policies::emergency::Grant>,
    /// Stage `client_ip`.
    pub client: Option<ClientAddr>,
    /// The request came on the `[server] auth` listener: forward auth only.
    pub auth_listener: bool,
    /// Stage `forward`: this is a front proxy's auth request; the stages
    /// judge the original request it describes.
    pub forward: Option<Forward>,
    /// Stage `target`: the method the rules judge (the original one for an
    /// auth request).
    pub method: http::Method,
    /// The connection is TLS (`https` may also come from a trusted
    /// platform's `X-Forwarded-Proto` when TLS is off here).
    pub tls: bool,
    pub https: bool,
    /// Stage `target`: the host in canonical form, port included.
    pub host: Option<String>,
    /// Stage `target`: the normalised path, what routes match.
    pub path: String,
    /// Normalised path + `?query`, exactly what the upstream receives.
    pub upstream_target: Option<String>,
    /// Stage `reserved`: answered by the gateway itself, never routed.
    pub reserved: bool,
    /// Stage `route`: the matched route (`None`: the fallback rule).
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub max_body: u64,
    pub body_seen: u64,
    /// When stage `body` let a streamed body through (for its minimum rate).
    pub body_started: Option<Instant>,
    pub tried: Vec<PSocketAddr>,
    /// The status sent, for the access log (0: none).
    pub status: u16,
    /// The declared body is small enough to read whole before the upstream
    /// is contacted (stage `body`).
    pub buffer_body: bool,
    /// The route opted in to method-override headers and matched the
    /// overriding method too: they are forwarded.
    pub keep_method_override: bool,
}

impl Ctx {
    /// A fresh context on the current runtime.
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        Ctx {
            out: Extras {
                request_id: new_request_id(),
                headers: Some(rt.headers.clone()),
                ..Extras::default()
            },
            rt,
            started: Instant::now(),
            identity: None,
            unfinished: None,
            identity_unavailable: false,
            emergency: None,
            auth_listener: false,
            forward: None,
            method: http::Method::GET,
            client: None,
            tls: false,
            https: false,
            host: None,
            path: String::new(),
            upstream_target: None,
            reserved: false,
            route: None,
            upstream: None,
            max_body: 0,
            body_seen: 0,
            body_started: None,
            tried: Vec::new(),
            status: 0,
            buffer_body: false,
            keep_method_override: false,
        }
    }

    /// The client IP, once stage `client_ip` ran.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client.as_ref().map(|c| c.ip)
    }

    /// The route label of logs and metrics.
    pub fn label(&self) -> &str {
        match self.route {
            Some(i) => self.rt.routes.get(i).map_or("", |r| r.label.as_str()),
            None if self.reserved => "(gateway)",
            None if self.upstream_target.is_some() => self.rt.fallback.label.as_str(),
            None => "",
        }
    }
}

/// A forward-auth request's original request (`policies::forward_auth`),
/// owned: stage `target` judges it as it judges a request line.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: http::Method,
    pub host: Vec<u8>,
    pub target: Vec<u8>,
    /// `X-Portcullis-Auth-Mode: nginx`: only 2xx, 401 and 403 may answer
    /// (nginx's `auth_request` turns anything else into a 500).
    pub nginx: bool,
}

/// A 128-bit random id in hex.
pub fn new_request_id() -> String {
    HexId::new(&rand::random()).as_str().to_owned()
}
