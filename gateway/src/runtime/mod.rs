//! The compiled, immutable serving state, and the holder that swaps it.
//!
//! A request loads the current [`Runtime`] once and keeps that `Arc` to the
//! end, so a reload never changes the rules under a request in flight.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{health_check, LoadBalancer};
use policies::client_ip::TrustedProxies;
use policies::routes::{RouteMatcher, RouteTable};

use bytes::Bytes;
use http::HeaderName;
use policies::session::{Lifetimes, SessionKeys};

use crate::limits::{Limiter, Store};

use crate::config::{Access, Config, CorsPolicy, RateKey, SameSite, TlsMode};
use crate::response_headers::ResponseHeaders;

/// Shared, atomically replaceable runtime.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

/// What a matched route (or the fallback for unmatched paths) decides.
#[derive(Debug)]
pub struct RouteRule {
    /// Shown in logs and `check`: the route's prefix, or `(default)`.
    pub label: String,
    pub access: Access,
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
}

/// Everything sessions need, compiled from `[secrets]` and `[session]`.
pub struct SessionRt {
    pub keys: SessionKeys,
    pub life: Lifetimes,
    pub same_site: SameSite,
    /// Derived from the signing key; signs CSRF tokens.
    pub csrf_key: [u8; 32],
}

/// `[identity]`, as header names ready to compare and to insert.
pub struct IdentityRt {
    pub user: HeaderName,
    pub roles: HeaderName,
    pub assertion: HeaderName,
    /// The same names as shared bytes: pingora's `insert_header` copies a
    /// `HeaderName` it cannot title-case, a `Bytes` clone is free.
    pub user_name: Bytes,
    pub roles_name: Bytes,
    pub assertion_name: Bytes,
    pub assertion_key: Option<Vec<u8>>,
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

pub struct Runtime {
    pub config: Config,
    /// `Some` only while the gate is enabled.
    pub emergency: Option<EmergencyRt>,
    /// `None` without `secrets.session_keys`: no login, no sessions.
    pub session: Option<SessionRt>,
    pub identity: IdentityRt,
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
    /// ACME is on: the plain listener answers pending HTTP-01 tokens.
    pub acme: bool,
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

    /// Compiles a validated config. Fails only on what validation cannot see
    /// (e.g. a balancer that cannot be built), with one sentence.
    pub fn build(config: Config, store: Store) -> Result<Runtime, String> {
        let mut matchers = Vec::with_capacity(config.routes.len());
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let limit = match &r.rate_limit {
                Some((rate, key)) => {
                    let name = format!("route-{}", i + 1);
                    Some(RouteLimit {
                        store: Limiter::new(name.clone(), *rate, &store).ok_or_else(|| {
                            format!("route {}: rate_limit is too fast to express", r.path)
                        })?,
                        name,
                        key: key.clone(),
                    })
                }
                None => None,
            };
            matchers.push(
                RouteMatcher::new(r.host.as_deref(), &r.path, r.methods.clone())
                    .map_err(|e| format!("route {}: {e}", r.path))?,
            );
            routes.push(RouteRule {
                label: r.path.clone(),
                access: r.access.clone(),
                upstream: Some(r.upstream),
                max_body: r.max_body,
                headers: Arc::new(
                    ResponseHeaders::new(&r.headers)
                        .map_err(|e| format!("route {}: {e}", r.path))?,
                ),
                limit,
                method_override: r.method_override,
                buffer_body: r.buffer_body,
            });
        }
        let table = RouteTable::new(matchers, config.server.case_insensitive_paths);
        let global_headers = Arc::new(ResponseHeaders::new(&config.headers)?);
        let fallback = RouteRule {
            label: "(default)".to_string(),
            access: config.access_default.clone(),
            upstream: (config.upstreams.len() == 1).then_some(0),
            max_body: config.server.max_body,
            headers: global_headers.clone(),
            limit: None,
            method_override: false,
            buffer_body: config.server.buffer_body,
        };
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
            let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(u.addrs.iter())
                .map_err(|e| format!("upstream {}: {e}", u.name))?;
            if let Some(path) = &u.health {
                let mut hc = health_check::HttpHealthCheck::new(&u.sni, u.tls);
                hc.req.set_uri(
                    path.parse()
                        .map_err(|e| format!("upstream {} health: {e}", u.name))?,
                );
                hc.peer_template.options.connection_timeout = Some(u.connect_timeout);
                hc.peer_template.options.read_timeout = Some(u.connect_timeout);
                lb.set_health_check(Box::new(hc));
                lb.health_check_frequency = Some(HEALTH_INTERVAL);
            }
            upstreams.push(UpstreamRt {
                name: u.name.clone(),
                lb: Arc::new(lb),
                tls: u.tls,
                sni: u.sni.clone(),
                connect_timeout: u.connect_timeout,
                read_timeout: u.read_timeout,
                has_health_check: u.health.is_some(),
                addr_count: u.addrs.len(),
            });
        }
        let https_port = config.server.https.map(|a| a.port()).filter(|p| *p != 443);
        let session = match &config.secrets.session_keys {
            Some(keys) => {
                let keys =
                    SessionKeys::new(keys.value.clone()).ok_or("secrets.session_keys: no keys")?;
                let csrf_key = policies::csrf::derive_key(keys.signing(), "csrf");
                Some(SessionRt {
                    keys,
                    life: Lifetimes::new(config.session.ttl, config.session.idle),
                    same_site: config.session.same_site,
                    csrf_key,
                })
            }
            None => None,
        };
        let header = |name: &str| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("identity header {name:?}: {e}"))
        };
        let (user, roles, assertion) = (
            header(&config.identity.user_header)?,
            header(&config.identity.roles_header)?,
            header(&config.identity.assertion_header)?,
        );
        let shared = |name: &HeaderName| Bytes::from(name.as_str().to_owned());
        let identity = IdentityRt {
            user_name: shared(&user),
            roles_name: shared(&roles),
            assertion_name: shared(&assertion),
            user,
            roles,
            assertion,
            assertion_key: config
                .secrets
                .assertion_key
                .as_ref()
                .map(|k| k.value.clone()),
        };
        let emergency = match (&config.secrets.emergency, config.emergency.enabled) {
            (Some(secret), true) if session.is_some() => Some(EmergencyRt {
                verifier: secret.value.clone(),
                ttl: config.emergency.ttl.as_secs(),
                roles: config.emergency.roles.clone(),
                allow_from: config.emergency.allow_from.clone(),
            }),
            (_, true) => {
                return Err(
                    "emergency.enabled needs secrets.emergency and secrets.session_keys".into(),
                )
            }
            _ => None,
        };
        Ok(Runtime {
            emergency,
            session,
            identity,
            headers: global_headers,
            cors: config.cors.clone(),
            default_limit: match config.rate_limit.default {
                Some(rate) => Some(
                    Limiter::new("default", rate, &store)
                        .ok_or("rate_limit.default is too fast to express")?,
                ),
                None => None,
            },
            store,
            trusted: TrustedProxies::new(config.server.trusted_proxies.clone()),
            table,
            routes,
            fallback,
            upstreams,
            https_port,
            tls_off: config.tls.mode == TlsMode::Off,
            acme: matches!(config.tls.mode, TlsMode::Acme(_)),
            body_timeout: config.server.body_timeout,
            body_min_rate: config.server.body_min_rate,
            pass_client_headers: config.server.pass_client_headers.clone(),
            config,
        })
    }
}

/// How often active health checks run.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the active health checks of whatever runtime is current, so a reload
/// that changes upstreams needs no new background service.
pub struct HealthChecks {
    pub runtime: SharedRuntime,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let rt = self.runtime.load_full();
            for u in rt.upstreams.iter().filter(|u| u.has_health_check) {
                u.lb.backends().run_health_check(true).await;
            }
        }
    }
}
