//! Compiling a validated config into a [`Runtime`]: the route table and
//! rules, balancers, session and identity settings, once, so request-time
//! code parses nothing. Everything the runtime keeps is a compiled value;
//! the `Config` itself is not kept.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{health_check, LoadBalancer};
use policies::client_ip::TrustedProxies;
use policies::csrf::DerivedKeys;
use policies::routes::{RouteMatcher, RouteTable};
use policies::session::{Lifetimes, SessionKeys};

use super::health::HEALTH_INTERVAL;
use super::{
    AcmeRt, AssertionRt, EmergencyRt, Fixed, IdentityRt, RouteLimit, RouteRule, Runtime, SessionRt,
    UpstreamRt,
};
use crate::config::{AssertionAlg, Challenge, Config, TlsMode};
use crate::limits::{Limiter, Store};
use crate::response_headers::ResponseHeaders;

/// What passed validation but cannot be compiled (a limit of a library, or
/// a rule validation missed): the config key or item, and why.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct BuildError {
    /// `route /api`, `upstream app`, `rate_limit.default`, …
    pub at: String,
    pub reason: String,
}

fn fail(at: impl Into<String>, reason: impl ToString) -> BuildError {
    BuildError {
        at: at.into(),
        reason: reason.to_string(),
    }
}

impl Runtime {
    /// Compiles a validated config.
    pub fn build(config: &Config, store: Store) -> Result<Runtime, BuildError> {
        let (table, routes) = routes(config, &store)?;
        let headers =
            Arc::new(ResponseHeaders::new(&config.headers).map_err(|e| fail("headers", e))?);
        let fallback = RouteRule {
            label: "(default)".to_string(),
            access: config.access_default.clone(),
            mfa: false,
            upstream: (config.upstreams.len() == 1).then_some(0),
            max_body: config.server.max_body,
            headers: headers.clone(),
            limit: None,
            method_override: false,
            buffer_body: config.server.buffer_body,
        };
        let session = session(config)?;
        let emergency = emergency(config, session.is_some())?;
        let default_limit = match config.rate_limit.default {
            Some(rate) => Some(
                Limiter::builtin("default", rate, &store)
                    .ok_or_else(|| fail("rate_limit.default", "too fast to express"))?,
            ),
            None => None,
        };
        Ok(Runtime {
            fingerprint: crate::config::fingerprint(config),
            fixed: fixed(config),
            acme: acme(config),
            emergency,
            session,
            identity: identity(config)?,
            login: crate::oauth::Providers::build(&config.login).map_err(|e| fail("login", e))?,
            headers,
            cors: config.cors.clone(),
            default_limit,
            store,
            trusted: TrustedProxies::new(config.server.trusted_proxies.clone()),
            table,
            routes,
            fallback,
            upstreams: upstreams(config)?,
            https_port: config.server.https.map(|a| a.port()).filter(|p| *p != 443),
            tls_off: config.tls.mode == TlsMode::Off,
            body_timeout: config.server.body_timeout,
            body_min_rate: config.server.body_min_rate,
            pass_client_headers: config.server.pass_client_headers.clone(),
        })
    }
}

/// What a running process cannot change.
pub fn fixed(config: &Config) -> Fixed {
    Fixed {
        file: config.file.clone(),
        https: config.server.https,
        http: config.server.http,
        ops: config.server.ops,
        auth: config.server.auth,
        threads: config.server.threads,
        tls_off: config.tls.mode == TlsMode::Off,
        // Accounts need the store; so does ACME state when the store is the
        // shared PostgreSQL (several instances share certificates there).
        store: (config.secrets.session_keys.is_some()
            || config.secrets.emergency.is_some()
            || matches!(config.identity.assertion, Some(AssertionAlg::Keys(_)))
            || (matches!(config.tls.mode, TlsMode::Acme(_))
                && crate::config::is_shared_store(&config.store.url.value)))
        .then(|| config.store.url.clone()),
        redis: config.rate_limit.redis.as_ref().map(|r| {
            (
                r.info.addr().to_string(),
                r.info.redis_settings().db(),
                r.on_error,
            )
        }),
        login: config.rate_limit.login,
        emergency_attempts: config.emergency.attempts,
    }
}

fn routes(config: &Config, store: &Store) -> Result<(RouteTable, Vec<RouteRule>), BuildError> {
    let mut matchers = Vec::with_capacity(config.routes.len());
    let mut rules = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        let at = || format!("route {}", r.path);
        let limit = match &r.rate_limit {
            Some((rate, key)) => {
                let name = r.id.clone().unwrap_or_else(|| format!("route-{}", i + 1));
                let counter = r.limit_counter().unwrap_or_else(|| name.clone());
                let store = Limiter::new(name.clone(), counter, *rate, store)
                    .ok_or_else(|| fail(at(), "rate_limit is too fast to express"))?;
                let key = key.clone();
                Some(RouteLimit { name, store, key })
            }
            None => None,
        };
        let matcher = RouteMatcher::new(r.host.as_deref(), &r.path, r.methods.clone());
        matchers.push(matcher.map_err(|e| fail(at(), e))?);
        let headers = ResponseHeaders::new(&r.headers).map_err(|e| fail(at(), e))?;
        rules.push(RouteRule {
            label: r.path.clone(),
            access: r.access.clone(),
            mfa: r.mfa,
            upstream: Some(r.upstream),
            max_body: r.max_body,
            headers: Arc::new(headers),
            limit,
            method_override: r.method_override,
            buffer_body: r.buffer_body,
        });
    }
    let table = RouteTable::new(matchers, config.server.case_insensitive_paths);
    Ok((table, rules))
}

fn upstreams(config: &Config) -> Result<Vec<UpstreamRt>, BuildError> {
    let mut out = Vec::with_capacity(config.upstreams.len());
    for u in &config.upstreams {
        let at = || format!("upstream {}", u.name);
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(u.addrs.iter()).map_err(|e| fail(at(), e))?;
        if let Some(path) = &u.health {
            let mut hc = health_check::HttpHealthCheck::new(&u.sni, u.tls);
            let uri = path
                .parse()
                .map_err(|e| fail(format!("{} health", at()), e))?;
            hc.req.set_uri(uri);
            hc.peer_template.options.connection_timeout = Some(u.connect_timeout);
            hc.peer_template.options.read_timeout = Some(u.connect_timeout);
            lb.set_health_check(Box::new(hc));
            lb.health_check_frequency = Some(HEALTH_INTERVAL);
        }
        let backends = lb.backends().get_backend();
        let single = match backends.len() {
            1 => backends.iter().next().cloned(),
            _ => None,
        };
        out.push(UpstreamRt {
            single,
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
    Ok(out)
}

fn session(config: &Config) -> Result<Option<SessionRt>, BuildError> {
    let Some(keys) = &config.secrets.session_keys else {
        return Ok(None);
    };
    let keys = SessionKeys::new(keys.value.clone())
        .ok_or_else(|| fail("secrets.session_keys", "no keys"))?;
    let csrf_keys = DerivedKeys::derive(&keys, "csrf");
    let oauth_keys = DerivedKeys::derive(&keys, "oauth2 state");
    Ok(Some(SessionRt {
        keys,
        life: Lifetimes::new(config.session.ttl, config.session.idle),
        same_site: config.session.same_site,
        csrf_keys,
        oauth_keys,
    }))
}

fn identity(config: &Config) -> Result<IdentityRt, BuildError> {
    let header = |name: &str| {
        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|e| fail(format!("identity header {name:?}"), e))
    };
    let (user, roles, email, assertion) = (
        header(&config.identity.user_header)?,
        header(&config.identity.roles_header)?,
        header(&config.identity.email_header)?,
        header(&config.identity.assertion_header)?,
    );
    let shared = |name: &HeaderName| Bytes::from(name.as_str().to_owned());
    let display = match &config.identity.name_header {
        Some(n) => Some(header(n)?),
        None => None,
    };
    let mut strip: Vec<String> = [&user, &roles, &email, &assertion]
        .into_iter()
        .chain(display.as_ref())
        .map(|h| h.as_str().to_string())
        .chain(crate::config::PRESET_HEADERS.iter().map(|h| h.to_string()))
        .collect();
    strip.sort();
    strip.dedup();
    Ok(IdentityRt {
        name_name: display.as_ref().map(shared),
        strip,
        user_name: shared(&user),
        roles_name: shared(&roles),
        email_name: shared(&email),
        assertion_name: shared(&assertion),
        assertion: match (config.identity.assertion, &config.secrets.assertion_key) {
            (Some(AssertionAlg::Keys(alg)), _) => AssertionRt::Keys(alg),
            (_, Some(key)) => AssertionRt::Hs256(key.value.clone()),
            (_, None) => AssertionRt::Off,
        },
        issuer: crate::config::issuer(&config.identity, &config.tls, &config.routes),
        old_key_published: config.identity.old_key_published,
    })
}

fn emergency(config: &Config, sessions: bool) -> Result<Option<EmergencyRt>, BuildError> {
    match (&config.secrets.emergency, config.emergency.enabled) {
        (Some(secret), true) if sessions => Ok(Some(EmergencyRt {
            verifier: secret.value.clone(),
            ttl: config.emergency.ttl.as_secs(),
            roles: config.emergency.roles.clone(),
            allow_from: config.emergency.allow_from.clone(),
        })),
        (_, true) => Err(fail(
            "emergency.enabled",
            "needs secrets.emergency and secrets.session_keys",
        )),
        _ => Ok(None),
    }
}

fn acme(config: &Config) -> Option<AcmeRt> {
    let TlsMode::Acme(mode) = &config.tls.mode else {
        return None;
    };
    Some(AcmeRt {
        config: certs::acme::AcmeConfig {
            directory: mode.directory.clone(),
            email: mode.email.clone(),
            domains: config.tls.domains.clone(),
            ca_pem: mode.ca_pem.clone(),
            challenge: match mode.challenge {
                Challenge::Http01 => certs::acme::Challenge::Http01,
                Challenge::TlsAlpn01 => certs::acme::Challenge::TlsAlpn01,
            },
        },
        storage: config.tls.storage.clone(),
    })
}
