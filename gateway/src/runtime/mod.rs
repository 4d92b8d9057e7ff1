//! The compiled, immutable serving state, and the holder that swaps it.
//!
//! A request loads the current [`Runtime`] once and keeps that `Arc` to the
//! end, so a reload never changes the rules under a request in flight.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use policies::client_ip::TrustedProxies;
use policies::routes::RouteTable;

use bytes::Bytes;
use policies::csrf::DerivedKeys;
use policies::session::{Lifetimes, SessionKeys};

mod build;
mod health;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use build::fixed;
pub use health::HealthChecks;

use crate::config::{Access, CorsPolicy, OnStoreError, Rate, RateKey, SameSite};
use crate::limits::{Limiter, Store};
use crate::response_headers::ResponseHeaders;

/// Shared, atomically replaceable runtime.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

/// What a matched route (or the fallback for unmatched paths) decides.
#[derive(Debug)]
pub struct RouteRule {
    /// Shown in logs and `check`: the route's prefix, or `(default)`.
    pub label: String,
    pub access: Access,
    /// `mfa = true`: a session must have used a second factor.
    pub mfa: bool,
    /// `None` only for the fallback when several upstreams exist: 404.
    pub upstream: Option<usize>,
    pub max_body: u64,
    /// Security headers for responses under this rule.
    pub headers: Arc<ResponseHeaders>,
    /// The route's own rate limit.
    pub limit: Option<RouteLimit>,
    /// Method-override headers pass (the route matched the overriding method too).
    pub method_override: bool,
    /// Bodies declared up to this many bytes are read whole before the
    /// upstream is contacted.
    pub buffer_body: u64,
}

/// A route's `rate_limit`, its key and its policy name in headers.
#[derive(Debug)]
pub struct RouteLimit {
    pub name: String,
    pub store: Limiter,
    pub key: RateKey,
}

/// One named upstream with its balancer.
pub struct UpstreamRt {
    pub name: String,
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    pub tls: bool,
    pub sni: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub has_health_check: bool,
    pub addr_count: usize,
    /// The one backend of a single-address upstream: the balancer would
    /// pick it every time, at the cost of a hash set per request.
    pub single: Option<pingora::lb::Backend>,
}

/// Everything sessions need, compiled from `[secrets]` and `[session]`.
pub struct SessionRt {
    pub keys: SessionKeys,
    pub life: Lifetimes,
    pub same_site: SameSite,
    /// Derived from every session key; sign and verify CSRF tokens.
    pub csrf_keys: DerivedKeys,
    /// Derived from every session key; sign provider sign-in states, from
    /// which their PKCE verifiers and nonces derive.
    pub oauth_keys: DerivedKeys,
}

/// `[identity]`, as header names ready to compare and to insert.
pub struct IdentityRt {
    /// `name_header`, when the preset or the file asks for one.
    pub name_name: Option<Bytes>,
    /// Every name removed from client requests: the above and those of
    /// every preset, lowercase.
    pub strip: Vec<String>,
    /// The same names as shared bytes: pingora's `insert_header` copies a
    /// `HeaderName` it cannot title-case, a `Bytes` clone is free.
    pub user_name: Bytes,
    pub roles_name: Bytes,
    pub email_name: Bytes,
    pub assertion_name: Bytes,
    /// How the assertion is signed, if one is sent.
    pub assertion: AssertionRt,
    /// Its `iss` claim.
    pub issuer: Option<String>,
    /// How long a replaced key stays published (also for keys of an
    /// algorithm the config no longer names).
    pub old_key_published: std::time::Duration,
}

/// How the assertion is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionRt {
    /// No assertion.
    Off,
    /// HS256 with `secrets.assertion_key`.
    Hs256(Vec<u8>),
    /// The current key of this algorithm in the identity store
    /// (`crate::assertion_keys`).
    Keys(policies::signing::Alg),
}

/// `[emergency]` when the gate is enabled (validation guarantees its secret
/// and the session keys its forms need).
pub struct EmergencyRt {
    pub verifier: Arc<policies::emergency::Verifier>,
    /// Seconds an emergency session lasts.
    pub ttl: u64,
    pub roles: Vec<String>,
    /// Empty: any client.
    pub allow_from: Vec<ipnet::IpNet>,
}

impl EmergencyRt {
    /// Whether the gate exists at all for this client (others get the 404).
    pub fn admits(&self, ip: Option<std::net::IpAddr>) -> bool {
        self.allow_from.is_empty()
            || ip.is_some_and(|ip| self.allow_from.iter().any(|n| n.contains(&ip)))
    }
}

/// Settings a running process cannot change: a reload that changes one of
/// the first kind is refused, one of the second kind waits for a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    /// The config file (reload reads it again).
    pub file: PathBuf,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub ops: Option<SocketAddr>,
    /// `[server] auth`: forward auth only, plain HTTP.
    pub auth: Option<SocketAddr>,
    pub threads: usize,
    pub tls_off: bool,
    /// The identity store; `None` when nothing needs accounts (no session
    /// keys, no emergency secret).
    pub store: Option<crate::config::Secret<String>>,
    /// The shared store (address, database, `on_store_error`); kept until restart.
    pub redis: Option<(String, i64, OnStoreError)>,
    /// `[rate_limit] login`; kept until restart.
    pub login: Option<Rate>,
    /// `[emergency] attempts`; kept until restart.
    pub emergency_attempts: Rate,
}

/// `tls.mode = "acme"`, compiled.
pub struct AcmeRt {
    pub config: certs::acme::AcmeConfig,
    /// `tls.storage`: account and certificates under `acme/`.
    pub storage: PathBuf,
}

pub struct Runtime {
    /// What a running process cannot change (reload compares it).
    pub fixed: Fixed,
    /// The effective policy's digest per section, published to the other
    /// instances (`crate::instances`).
    pub fingerprint: policies::fingerprint::Fingerprint,
    /// `tls.mode = "acme"`: what to order, and where it is kept.
    pub acme: Option<AcmeRt>,
    /// `Some` only while the gate is enabled.
    pub emergency: Option<EmergencyRt>,
    /// `None` without `secrets.session_keys`: no login, no sessions.
    pub session: Option<SessionRt>,
    pub identity: IdentityRt,
    /// `[login]`: the password form's switch and the providers.
    pub login: crate::oauth::Providers,
    /// `[headers]`: for responses before a route is known (and unmatched paths).
    pub headers: Arc<ResponseHeaders>,
    pub cors: Option<CorsPolicy>,
    /// `[rate_limit] default`: per client IP over all traffic.
    pub default_limit: Option<Limiter>,
    /// Where limiter state lives (kept for the attempt limits and revocations).
    pub store: Store,
    pub trusted: TrustedProxies,
    pub table: RouteTable,
    pub routes: Vec<RouteRule>,
    pub fallback: RouteRule,
    pub upstreams: Vec<UpstreamRt>,
    /// Where the http listener redirects to; `None` for port 443.
    pub https_port: Option<u16>,
    pub tls_off: bool,
    /// `[server] body_timeout`, `body_min_rate` (bytes per second) and
    /// `pass_client_headers`.
    pub body_timeout: Duration,
    pub body_min_rate: u64,
    pub pass_client_headers: Vec<&'static str>,
}

impl Runtime {
    /// The rule of a matched route, or the fallback's.
    pub fn rule(&self, route: Option<usize>) -> &RouteRule {
        route
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.fallback)
    }
}
