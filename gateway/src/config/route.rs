//! `[[route]]` and `[access]`.

use policies::routes::RouteMatcher;

use super::headers::header_values;
use super::reader::size;
use super::server::{buffer_size, Server, DEFAULT_MAX_BODY, MAX_BUFFER_BODY};
use super::{Access, HeaderSet, Rate, Report, Section, Upstream};

/// What a route's `rate_limit` counts by (the key itself is derived per
/// request by `policies::ratekey`).
pub use policies::ratekey::RateKey;

#[derive(Debug)]
pub struct Route {
    /// `id`: `[a-z0-9-]{1,32}`, unique; names the route's rate-limit policy
    /// and counters.
    pub id: Option<String>,
    pub path: String,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub access: Access,
    /// A session must have used a second factor (`mfa = true`).
    pub mfa: bool,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub max_body: u64,
    /// The global headers with this route's overrides merged key by key.
    pub headers: HeaderSet,
    pub rate_limit: Option<(Rate, RateKey)>,
    /// Keep `X-HTTP-Method-Override` and its siblings (`policies::method`).
    pub method_override: bool,
    /// `[server] buffer_body` unless the route sets its own.
    pub buffer_body: u64,
}

/// `[access] default`: `"login"` when absent.
pub(super) fn read_access(sec: &mut Section<'_>, r: &mut Report) -> Option<Access> {
    match sec.str("default", r) {
        Some(s) => parse_access(s, &sec.key("default"), r),
        None => Some(Access::Login),
    }
}

/// What a route takes from other sections when it does not say.
pub(super) struct Inherited<'a> {
    pub upstreams: &'a [Upstream],
    /// `[access] default`; `None` when it had an error.
    pub access: Option<&'a Access>,
    pub server: Option<&'a Server>,
    pub headers: &'a HeaderSet,
}

/// Every `[[route]]`, in file order; a route with errors is left out.
pub(super) fn read_routes(
    root: &mut Section<'_>,
    inherited: &Inherited<'_>,
    r: &mut Report,
) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    if let Some(list) = root.table_list("route", r) {
        for mut sec in list {
            if let Some(route) = read_route(&mut sec, inherited, r) {
                let taken = route
                    .id
                    .as_ref()
                    .is_some_and(|id| routes.iter().any(|other| other.id.as_ref() == Some(id)));
                if taken {
                    r.error(sec.key("id"), "is already the id of another route");
                } else {
                    routes.push(route);
                }
            }
            sec.finish(r);
        }
    }
    routes
}

impl Route {
    /// Where this route's rate-limit counters live in a shared store: its
    /// `id`, or else a digest of the rule's definition (host, path,
    /// methods, rate, key), so instances whose files order or number routes
    /// differently never share the counters of different rules.
    pub fn limit_counter(&self) -> Option<String> {
        let (rate, key) = self.rate_limit.as_ref()?;
        if let Some(id) = &self.id {
            return Some(format!("id:{id}"));
        }
        let mut methods: Vec<String> = self
            .methods
            .iter()
            .flatten()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        methods.sort();
        methods.dedup();
        let definition = format!(
            "{:?}\n{:?}\n{:?}\n{}/{}\n{:?}",
            self.host.as_ref().map(|h| h.to_ascii_lowercase()),
            self.path,
            methods,
            rate.count,
            rate.per.as_nanos(),
            key
        );
        Some(format!(
            "def:{}",
            policies::fingerprint::short_digest(&definition)
        ))
    }
}

fn parse_access(s: &str, key: &str, r: &mut Report) -> Option<Access> {
    Access::parse(s)
        .map_err(|e| r.error(key, e.to_string()))
        .ok()
}

fn read_route(sec: &mut Section<'_>, inherited: &Inherited<'_>, r: &mut Report) -> Option<Route> {
    let errors_before = r.errors.len();
    let id = sec.str("id", r).map(str::to_string);
    let id_ok = id.as_ref().is_none_or(|id| {
        (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !id_ok {
        r.error(
            sec.key("id"),
            "must be 1–32 of a-z 0-9 - (it names the route's rate-limit policy)",
        );
    }
    let path = sec.str("path", r);
    if path.is_none() && !sec.has("path") {
        r.error(sec.key("path"), "required, e.g. path = \"/\"");
    }
    let host = sec.str("host", r).map(str::to_string);
    let methods = sec
        .str_list("methods", r)
        .map(|m| m.into_iter().map(str::to_string).collect::<Vec<_>>());
    let access = match sec.str("access", r) {
        Some(s) => parse_access(s, &sec.key("access"), r),
        None => inherited.access.cloned(),
    };
    let mfa = sec.bool("mfa", r).unwrap_or(false);
    if mfa && matches!(access, Some(Access::Public | Access::Deny)) {
        r.error(
            sec.key("mfa"),
            "needs access = \"login\" or \"role:…\": a public or denied route has no session to check",
        );
    }
    let upstream = route_upstream(sec, inherited.upstreams, r);
    let max_body = size(sec, "max_body", r);
    let method_override = sec.bool("method_override", r).unwrap_or(false);
    let buffer_body = buffer_size(sec, r);
    let rate_limit = route_rate_limit(sec, r);
    let headers = route_headers(sec, inherited.headers, r);
    // Validate the matcher now so a bad prefix is a config error, not a 404 later.
    if let Some(p) = path {
        if let Err(e) = RouteMatcher::new(host.as_deref(), p, methods.clone()) {
            r.error(sec.key("path"), e.to_string());
        }
    }
    if r.errors.len() != errors_before {
        return None;
    }
    let server = inherited.server;
    Some(Route {
        id,
        path: path?.to_string(),
        host,
        methods,
        access: access?,
        mfa,
        upstream: upstream?,
        max_body: max_body
            .or(server.map(|s| s.max_body))
            .unwrap_or(DEFAULT_MAX_BODY),
        headers: headers?,
        rate_limit,
        method_override,
        buffer_body: buffer_body
            .or(server.map(|s| s.buffer_body))
            .unwrap_or(MAX_BUFFER_BODY),
    })
}

/// `upstream`: a configured name; optional when there is only one.
fn route_upstream(sec: &mut Section<'_>, upstreams: &[Upstream], r: &mut Report) -> Option<usize> {
    match sec.str("upstream", r) {
        Some(name) => {
            let found = upstreams.iter().position(|u| u.name == name);
            if found.is_none() {
                let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                r.error(
                    sec.key("upstream"),
                    format!(
                        "{name:?} is not a configured upstream (have: {})",
                        names.join(", ")
                    ),
                );
            }
            found
        }
        None if upstreams.len() == 1 => Some(0),
        None if upstreams.is_empty() => None,
        None => {
            r.error(
                sec.key("upstream"),
                "required when more than one upstream is configured",
            );
            None
        }
    }
}

/// `rate_limit` and what it counts by (`rate_key`, the client IP by default).
fn route_rate_limit(sec: &mut Section<'_>, r: &mut Report) -> Option<(Rate, RateKey)> {
    let rate = sec.str("rate_limit", r).and_then(|s| {
        Rate::parse(s)
            .map_err(|e| r.error(sec.key("rate_limit"), e.to_string()))
            .ok()
    });
    let key = match sec.str("rate_key", r) {
        None | Some("ip") => Some(RateKey::Ip),
        Some("user") => Some(RateKey::User),
        Some(h) => match h.strip_prefix("header:") {
            Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Some(RateKey::Header(name.to_ascii_lowercase()))
            }
            Some(name) => {
                r.error(
                    sec.key("rate_key"),
                    format!("{name:?} is not a header name"),
                );
                None
            }
            None => {
                r.error(
                    sec.key("rate_key"),
                    format!("{h:?} is not one of \"ip\", \"user\", \"header:NAME\""),
                );
                None
            }
        },
    };
    if sec.has("rate_key") && !sec.has("rate_limit") {
        r.error(sec.key("rate_key"), "needs rate_limit on the same route");
    }
    rate.zip(key)
}

/// The global headers with this route's `headers` overrides merged in.
fn route_headers(sec: &mut Section<'_>, global: &HeaderSet, r: &mut Report) -> Option<HeaderSet> {
    match sec.table("headers", r) {
        Some(mut hs) => {
            let values = header_values(&mut hs, r);
            hs.finish(r);
            global
                .with_route_overrides(&values)
                .map_err(|e| r.error(sec.key("headers"), e.to_string()))
                .ok()
        }
        None => Some(global.clone()),
    }
}
