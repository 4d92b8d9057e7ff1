//! `[[route]]` matching: optional host, path prefix, optional methods.
//!
//! Routes are tried in file order and the first match wins. Rules, and why:
//!
//! * **Prefix on segment boundaries.** `/admin` matches `/admin`, `/admin/`
//!   and `/admin/x` but not `/administrator`, so a rule never leaks onto a
//!   sibling resource. `/` matches every path. A configured trailing `/` is
//!   trimmed (`/admin/` ≡ `/admin`) so the bare `/admin` cannot slip past a
//!   rule written with a slash.
//! * **Prefixes are canonical.** A prefix goes through the same
//!   [`normalize_path`] as requests (so `/%61dmin` is stored as `/admin`) and
//!   additionally may not contain `//`, `?` or `#`: a prefix that no
//!   normalised request could ever equal is a configuration error, not a
//!   silently dead rule.
//! * **Paths** handed to [`RouteTable::find`] are expected to be already
//!   normalised by [`crate::target`], whose canonical form gives every
//!   resource one spelling (`/a%3Ab` arrives as `/a:b`, the way apps decode
//!   it; found by `policies/tests/differential.rs`), so bytes compare
//!   exactly, or ASCII case-insensitively when `case_insensitive_paths` is
//!   set (for upstreams that ignore case, where `/ADMIN` must hit the
//!   `/admin` rule).
//! * **Methods** are HTTP tokens, uppercased at configuration time and
//!   compared exactly; the gateway refuses any request method with a
//!   lowercase letter before routing ([`crate::method`]), so `post` never
//!   falls through. `GET` covers `HEAD`, as every common framework serves
//!   HEAD from the GET view (nginx's `limit_except GET` does the same). A
//!   method mismatch falls through to later routes.
//! * **Hosts** compare ASCII case-insensitively with any port and one
//!   trailing dot ignored; IPv6 literals compare as addresses. A route with a
//!   host never matches a request without a usable host.
//!
//! Matching allocates nothing.

use crate::token::is_tchar;
use std::net::Ipv6Addr;

use crate::target::{normalize_path, TargetError};

/// A route's matching criteria, validated and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatcher {
    host: Option<String>,
    host_v6: Option<Ipv6Addr>,
    prefix: String,
    methods: Option<Vec<String>>,
}

/// Why a route's matching criteria are invalid; `Display` is one sentence
/// fragment for the config error naming the route.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RouteError {
    /// `host` is not a hostname, IPv4 or IPv6 literal (with optional port).
    #[error("invalid host {0:?}: expected a hostname or IP literal, optionally with a port")]
    InvalidHost(String),
    /// `path` cannot be a prefix of any normalised request path.
    #[error("invalid path {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The configured value.
        prefix: String,
        /// What is wrong with it.
        reason: PrefixError,
    },
    /// A `methods` entry is not an HTTP token.
    #[error("invalid method {0:?}: not an HTTP method token")]
    InvalidMethod(String),
    /// `methods = []` would never match; leave `methods` out to allow all.
    #[error("methods is empty: leave it out to allow every method")]
    EmptyMethods,
}

/// What is wrong with a configured path prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PrefixError {
    /// Contains `//` (requests are normalised, so it could never match).
    #[error("must not contain '//'")]
    DoubleSlash,
    /// Contains `?` (a prefix matches the path only).
    #[error("must not contain '?'")]
    Query,
    /// Contains `#`.
    #[error("must not contain '#'")]
    Fragment,
    /// Fails the request-path rules (not starting with `/`, dot segment, ...).
    #[error("{0}")]
    Unsafe(TargetError),
}

impl RouteMatcher {
    /// Validates and normalises one route's criteria.
    pub fn new(
        host: Option<&str>,
        prefix: &str,
        methods: Option<Vec<String>>,
    ) -> Result<Self, RouteError> {
        let (host, host_v6) = match host {
            None => (None, None),
            Some(h) => match host_core(h) {
                Some(HostCore::Name(name)) => (Some(name.to_ascii_lowercase()), None),
                Some(HostCore::V6(addr)) => (Some(format!("[{addr}]")), Some(addr)),
                None => return Err(RouteError::InvalidHost(h.to_owned())),
            },
        };
        let prefix = normalize_prefix(prefix).map_err(|reason| RouteError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })?;
        let methods = methods.map(normalize_methods).transpose()?;
        Ok(RouteMatcher {
            host,
            host_v6,
            prefix,
            methods,
        })
    }

    /// The normalised prefix (no trailing `/` unless it is `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The normalised host (lowercase, no port or trailing dot; IPv6 in
    /// brackets), if the route has one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The uppercase methods, if the route filters on them.
    pub fn methods(&self) -> Option<&[String]> {
        self.methods.as_deref()
    }

    /// Whether this route matches; `host` is the request's raw host (Host
    /// header or absolute-form authority), `path` its normalised path.
    pub fn matches(
        &self,
        host: Option<&str>,
        path: &str,
        method: &str,
        case_insensitive: bool,
    ) -> bool {
        self.matches_path(path, case_insensitive)
            && self.matches_method(method)
            && self.matches_host(host)
    }

    fn matches_path(&self, path: &str, case_insensitive: bool) -> bool {
        if self.prefix == "/" {
            return true;
        }
        let Some((head, rest)) = path.as_bytes().split_at_checked(self.prefix.len()) else {
            return false;
        };
        let same = if case_insensitive {
            head.eq_ignore_ascii_case(self.prefix.as_bytes())
        } else {
            head == self.prefix.as_bytes()
        };
        same && matches!(rest.first(), None | Some(b'/'))
    }

    fn matches_method(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|list| {
            list.iter()
                .any(|m| m == method || (method == "HEAD" && m == "GET"))
        })
    }

    fn matches_host(&self, host: Option<&str>) -> bool {
        let Some(want) = &self.host else {
            return true;
        };
        match (host.and_then(host_core), self.host_v6) {
            (Some(HostCore::Name(name)), None) => name.eq_ignore_ascii_case(want),
            (Some(HostCore::V6(addr)), Some(want_v6)) => addr == want_v6,
            _ => false,
        }
    }
}

/// The routes of one configuration, in file order, indexed by prefix.
///
/// Prefixes match on segment boundaries, so a route can only match a path
/// if its prefix is `/` or equals the path cut at one of its segment
/// boundaries (`/api/v1/users/7` → `/api`, `/api/v1`, `/api/v1/users`,
/// `/api/v1/users/7`). [`find`] looks those cuts up in a map from prefix to
/// the routes with that prefix (in file order) and keeps the lowest index
/// that matches, catch-alls included: the same answer as trying every route
/// in file order, for a few hash lookups instead of one comparison per
/// route.
///
/// [`find`]: RouteTable::find
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    matchers: Vec<RouteMatcher>,
    case_insensitive: bool,
    /// Prefix (lowercased when case-insensitive) → route indices, ascending.
    /// The keys come from the config, not from clients, so a fast unkeyed
    /// hash is fine: lookups cannot build collisions.
    by_prefix: foldhash::HashMap<Box<str>, Vec<usize>>,
    /// Length of the longest key: longer cuts of a path cannot be keys.
    longest: usize,
    /// Routes with prefix `/`, ascending.
    catch_all: Vec<usize>,
}

/// Longest path lowercased on the stack for a case-insensitive lookup;
/// longer paths fall back to trying every route.
const LOWER_BUF: usize = 256;

impl RouteTable {
    /// `case_insensitive` is `[server] case_insensitive_paths`.
    pub fn new(matchers: Vec<RouteMatcher>, case_insensitive: bool) -> Self {
        let mut by_prefix: foldhash::HashMap<Box<str>, Vec<usize>> = Default::default();
        let mut catch_all = Vec::new();
        for (i, m) in matchers.iter().enumerate() {
            if m.prefix == "/" {
                catch_all.push(i);
            } else if case_insensitive {
                by_prefix
                    .entry(m.prefix.to_ascii_lowercase().into_boxed_str())
                    .or_default()
                    .push(i);
            } else {
                by_prefix
                    .entry(m.prefix.clone().into_boxed_str())
                    .or_default()
                    .push(i);
            }
        }
        let longest = by_prefix.keys().map(|k| k.len()).max().unwrap_or(0);
        RouteTable {
            matchers,
            case_insensitive,
            by_prefix,
            longest,
            catch_all,
        }
    }

    /// Index of the first route whose host (if any), prefix and methods (if
    /// any) match.
    pub fn find(&self, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
        let ci = self.case_insensitive;
        let matches = |i: usize| {
            self.matchers
                .get(i)
                .is_some_and(|m| m.matches(host, path, method, ci))
        };
        let mut best = self.catch_all.iter().copied().find(|&i| matches(i));
        if self.by_prefix.is_empty() {
            return best;
        }
        let mut buf = [0u8; LOWER_BUF];
        let keyed = if ci && path.bytes().any(|b| b.is_ascii_uppercase()) {
            let Some(lower) = buf.get_mut(..path.len()) else {
                return (0..self.matchers.len()).find(|&i| matches(i));
            };
            lower.copy_from_slice(path.as_bytes());
            lower.make_ascii_lowercase();
            // Lowercasing ASCII bytes keeps UTF-8 valid.
            std::str::from_utf8(lower).unwrap_or(path)
        } else {
            path
        };
        let bytes = keyed.as_bytes();
        for end in 1..=bytes.len().min(self.longest) {
            if bytes.get(end).is_some_and(|&b| b != b'/') {
                continue;
            }
            // Cut at a `/`, an ASCII byte: always a char boundary.
            let Some(list) = keyed.get(..end).and_then(|k| self.by_prefix.get(k)) else {
                continue;
            };
            let earlier = list
                .iter()
                .copied()
                .take_while(|&i| best.is_none_or(|b| i < b))
                .find(|&i| matches(i));
            if earlier.is_some() {
                best = earlier;
            }
        }
        best
    }

    /// The route at `index` (as returned by [`RouteTable::find`]).
    pub fn get(&self, index: usize) -> Option<&RouteMatcher> {
        self.matchers.get(index)
    }

    /// All routes in order.
    pub fn matchers(&self) -> &[RouteMatcher] {
        &self.matchers
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.matchers.len()
    }

    /// No routes configured.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Whether paths compare ASCII case-insensitively.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }
}

/// Lowercases, strips the port (`[v6]:port` too) and one trailing dot;
/// `None` if empty or not a valid host. IPv6 literals come back in brackets
/// and canonical form (`[2001:db8::1]`). For matching prefer
/// [`RouteMatcher::matches`], which compares without allocating.
pub fn normalize_host(host: &str) -> Option<String> {
    match host_core(host)? {
        HostCore::Name(name) => Some(name.to_ascii_lowercase()),
        HostCore::V6(addr) => Some(format!("[{addr}]")),
    }
}

/// A host with port and trailing dot removed, still borrowed.
#[derive(Debug, PartialEq, Eq)]
enum HostCore<'a> {
    Name(&'a str),
    V6(Ipv6Addr),
}

fn host_core(host: &str) -> Option<HostCore<'_>> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        return inner.parse().ok().map(HostCore::V6);
    }
    if host.bytes().filter(|&b| b == b':').count() > 1 {
        // A bare IPv6 literal: invalid in a Host header, convenient in config.
        return host.parse().ok().map(HostCore::V6);
    }
    let name = match host.split_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    valid.then_some(HostCore::Name(name))
}

/// RFC 3986 `port = *DIGIT`, bounded to u16 (empty allowed: `host:`).
fn is_port(port: &str) -> bool {
    port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok())
}

fn normalize_prefix(prefix: &str) -> Result<String, PrefixError> {
    if prefix.contains("//") {
        return Err(PrefixError::DoubleSlash);
    }
    if prefix.contains('?') {
        return Err(PrefixError::Query);
    }
    if prefix.contains('#') {
        return Err(PrefixError::Fragment);
    }
    let mut prefix = normalize_path(prefix.as_bytes())
        .map_err(PrefixError::Unsafe)?
        .into_string();
    if prefix.len() > 1 && prefix.ends_with('/') {
        prefix.pop();
    }
    Ok(prefix)
}

fn normalize_methods(methods: Vec<String>) -> Result<Vec<String>, RouteError> {
    if methods.is_empty() {
        return Err(RouteError::EmptyMethods);
    }
    methods
        .into_iter()
        .map(|m| {
            if !m.is_empty() && m.bytes().all(is_tchar) {
                Ok(m.to_ascii_uppercase())
            } else {
                Err(RouteError::InvalidMethod(m))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index finds exactly what a scan of every route in file order
    /// finds, over every table of up to four routes drawn from prefixes that
    /// share, nest and differ in case, and paths around them.
    #[test]
    fn index_agrees_with_a_linear_scan() {
        let prefixes = ["/", "/a", "/a/b", "/A", "/ab", "/b", "/a/B"];
        let routes: Vec<RouteMatcher> = prefixes
            .iter()
            .flat_map(|p| {
                [
                    RouteMatcher::new(None, p, None).expect("route"),
                    RouteMatcher::new(None, p, Some(vec!["POST".into()])).expect("route"),
                    RouteMatcher::new(Some("h.test"), p, None).expect("route"),
                ]
            })
            .collect();
        let long = format!("/{}", "x".repeat(300));
        let paths = [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/a/b/c",
            "/A",
            "/A/B",
            "/ab",
            "/aB",
            "/b",
            "/b/a",
            "/c",
            "/a/B",
            long.as_str(),
        ];
        let mut checked = 0;
        // Tables: every ordered choice of up to 4 routes (sampled by stride
        // to keep the test fast but covering every route in every position).
        let n = routes.len();
        for a in 0..n {
            for b in (0..n).step_by(2) {
                for c in (a % 3..n).step_by(5) {
                    let table_routes =
                        vec![routes[a].clone(), routes[b].clone(), routes[c].clone()];
                    for ci in [false, true] {
                        let table = RouteTable::new(table_routes.clone(), ci);
                        for path in paths {
                            for method in ["GET", "POST"] {
                                for host in [None, Some("h.test"), Some("H.TEST:443")] {
                                    let linear = table_routes
                                        .iter()
                                        .position(|m| m.matches(host, path, method, ci));
                                    assert_eq!(
                                        table.find(host, path, method),
                                        linear,
                                        "{:?} ci={ci} {host:?} {method} {path}",
                                        table_routes.iter().map(|m| m.prefix()).collect::<Vec<_>>()
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
        // A long first segment, case-insensitive, still finds its route.
        let long_route = format!("/{}", "Y".repeat(300));
        let table = RouteTable::new(
            vec![RouteMatcher::new(None, &long_route, None).expect("route")],
            true,
        );
        assert_eq!(
            table.find(None, &long_route.to_ascii_lowercase(), "GET"),
            Some(0)
        );
        assert_eq!(table.find(None, &format!("{long_route}/z"), "GET"), Some(0));
    }

    /// A reserved character sent percent-encoded is decoded by the
    /// canonical form (`crate::target`), as the upstream decodes it, so the
    /// route applies to every spelling (found by
    /// policies/tests/differential.rs).
    #[test]
    fn encoded_reserved_characters_match_their_prefix() {
        let canon = |p: &str| crate::target::normalize_path(p.as_bytes()).unwrap();
        let table = |prefix: &str, ci: bool| {
            RouteTable::new(vec![RouteMatcher::new(None, prefix, None).unwrap()], ci)
        };
        let t = table("/a:b", false);
        for (path, want) in [
            ("/a:b", true),
            ("/a%3Ab", true),
            ("/a%3ab/c", true),
            ("/a:b/", true),
            ("/a%3Abc", false),
            ("/a%3A", false),
            ("/a", false),
        ] {
            let p = canon(path);
            assert_eq!(t.find(None, p.as_str(), "GET").is_some(), want, "{path}");
        }
        // The prefix is canonical too, whichever spelling the config used.
        let r = RouteMatcher::new(None, "/s!p%40m", None).unwrap();
        assert_eq!(r.prefix(), "/s!p@m");
        assert!(table("/s!p%40m", false)
            .find(None, canon("/s%21p@m/x").as_str(), "GET")
            .is_some());
        assert!(table("/s!p%40m", true)
            .find(None, canon("/S%21P%40M").as_str(), "GET")
            .is_some());
        assert!(table("/s!p%40m", false)
            .find(None, canon("/S%21P%40M").as_str(), "GET")
            .is_none());
        // Bytes that may not appear raw stay encoded, on both sides.
        let t = table("/caf%C3%A9", true);
        assert!(t
            .find(None, canon("/caf%c3%a9/menu").as_str(), "GET")
            .is_some());
        assert!(t.find(None, canon("/caf%C3%A8").as_str(), "GET").is_none());
    }

    fn route(host: Option<&str>, prefix: &str, methods: Option<&[&str]>) -> RouteMatcher {
        RouteMatcher::new(
            host,
            prefix,
            methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
        )
        .unwrap()
    }

    fn prefix_err(prefix: &str) -> PrefixError {
        match RouteMatcher::new(None, prefix, None) {
            Err(RouteError::InvalidPrefix { reason, .. }) => reason,
            other => panic!("{prefix:?}: {other:?}"),
        }
    }

    #[test]
    fn prefix_validation() {
        assert_eq!(prefix_err(""), PrefixError::Unsafe(TargetError::Empty));
        assert_eq!(
            prefix_err("admin"),
            PrefixError::Unsafe(TargetError::RelativePath)
        );
        assert_eq!(prefix_err("//admin"), PrefixError::DoubleSlash);
        assert_eq!(prefix_err("/a//b"), PrefixError::DoubleSlash);
        assert_eq!(prefix_err("/a?x"), PrefixError::Query);
        assert_eq!(prefix_err("/a#x"), PrefixError::Fragment);
        assert_eq!(
            prefix_err("/a/../b"),
            PrefixError::Unsafe(TargetError::DotSegment)
        );
        assert_eq!(
            prefix_err("/./a"),
            PrefixError::Unsafe(TargetError::DotSegment)
        );
        assert_eq!(
            prefix_err("/a/."),
            PrefixError::Unsafe(TargetError::DotSegment)
        );
        assert_eq!(
            prefix_err("/%2e%2e"),
            PrefixError::Unsafe(TargetError::DotSegment)
        );
        assert_eq!(
            prefix_err("/a%2Fb"),
            PrefixError::Unsafe(TargetError::EncodedSlash)
        );
        assert_eq!(
            prefix_err("/a;b"),
            PrefixError::Unsafe(TargetError::Semicolon)
        );
        assert_eq!(
            prefix_err("/a b"),
            PrefixError::Unsafe(TargetError::ForbiddenChar)
        );
        assert_eq!(
            prefix_err("/a\\b"),
            PrefixError::Unsafe(TargetError::Backslash)
        );
    }

    #[test]
    fn prefix_normalisation() {
        assert_eq!(route(None, "/", None).prefix(), "/");
        assert_eq!(route(None, "/admin", None).prefix(), "/admin");
        assert_eq!(route(None, "/admin/", None).prefix(), "/admin");
        assert_eq!(route(None, "/api/v1/", None).prefix(), "/api/v1");
        assert_eq!(route(None, "/%61dmin", None).prefix(), "/admin");
        assert_eq!(route(None, "/caf%c3%a9", None).prefix(), "/caf%C3%A9");
        assert_eq!(route(None, "/.well-known", None).prefix(), "/.well-known");
    }

    #[test]
    fn error_messages_name_the_value() {
        let e = RouteMatcher::new(None, "/a/../b", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid path \"/a/../b\": dot segment in path"
        );
        let e = RouteMatcher::new(None, "/a//b", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid path \"/a//b\": must not contain '//'"
        );
        let e = RouteMatcher::new(Some("a b"), "/", None).unwrap_err();
        assert!(e.to_string().contains("\"a b\""));
        let e = RouteMatcher::new(None, "/", Some(vec!["GE T".into()])).unwrap_err();
        assert!(e.to_string().contains("\"GE T\""));
    }

    #[test]
    fn segment_boundaries() {
        let r = route(None, "/admin", None);
        for p in ["/admin", "/admin/", "/admin/x", "/admin/x/y", "/admin/..x"] {
            assert!(r.matches(None, p, "GET", false), "{p}");
        }
        for p in [
            "/administrator",
            "/admin-x",
            "/admin.",
            "/admin%2F",
            "/admin%2Fx",
            "/admin%20",
            "/admi",
            "/",
            "",
            "/x/admin",
            "admin",
        ] {
            assert!(!r.matches(None, p, "GET", false), "{p}");
        }
        let slash = route(None, "/admin/", None);
        assert!(slash.matches(None, "/admin", "GET", false));
        assert!(!slash.matches(None, "/administrator", "GET", false));
    }

    #[test]
    fn root_matches_everything() {
        let r = route(None, "/", None);
        for p in ["/", "/a", "/admin/x", "/ADMIN", "*", ""] {
            assert!(r.matches(None, p, "GET", false), "{p}");
        }
    }

    #[test]
    fn case_sensitivity_modes() {
        let table = RouteTable::new(
            vec![route(None, "/admin", None), route(None, "/", None)],
            false,
        );
        assert_eq!(table.find(None, "/admin/x", "GET"), Some(0));
        assert_eq!(table.find(None, "/Admin/x", "GET"), Some(1));
        assert_eq!(table.find(None, "/ADMIN", "GET"), Some(1));
        assert!(!table.case_insensitive());

        let table = RouteTable::new(
            vec![route(None, "/admin", None), route(None, "/", None)],
            true,
        );
        assert_eq!(table.find(None, "/Admin/x", "GET"), Some(0));
        assert_eq!(table.find(None, "/ADMIN", "GET"), Some(0));
        assert_eq!(table.find(None, "/aDmIn/", "GET"), Some(0));
        assert_eq!(table.find(None, "/ADMINISTRATOR", "GET"), Some(1));
        // Only ASCII folds: a non-ASCII lookalike is not the same path.
        assert_eq!(table.find(None, "/adm%C4%B0n", "GET"), Some(1));

        let upper = RouteTable::new(vec![route(None, "/Admin", None)], true);
        assert_eq!(upper.find(None, "/admin", "GET"), Some(0));
        let upper = RouteTable::new(vec![route(None, "/Admin", None)], false);
        assert_eq!(upper.find(None, "/admin", "GET"), None);
    }

    #[test]
    fn methods_are_tokens_uppercased_and_exact() {
        let r = route(None, "/api", Some(&["get", "Post"]));
        assert_eq!(
            r.methods(),
            Some(&["GET".to_string(), "POST".to_string()][..])
        );
        assert!(r.matches(None, "/api", "GET", false));
        assert!(r.matches(None, "/api", "POST", false));
        assert!(!r.matches(None, "/api", "get", false));
        assert!(!r.matches(None, "/api", "PUT", false));
        assert!(!r.matches(None, "/api", "", false));
        assert!(!r.matches(None, "/api", "GET ", false));
        assert_eq!(route(None, "/", None).methods(), None);
        assert_eq!(
            route(None, "/", Some(&["M-SEARCH"])).methods(),
            Some(&["M-SEARCH".to_string()][..])
        );

        for bad in ["", "GE T", "GET\r\n", "GET/", "GET,POST", "\u{e9}", "G:ET"] {
            assert_eq!(
                RouteMatcher::new(None, "/", Some(vec![bad.to_string()])),
                Err(RouteError::InvalidMethod(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            RouteMatcher::new(None, "/", Some(vec![])),
            Err(RouteError::EmptyMethods)
        );
    }

    #[test]
    fn method_mismatch_falls_through() {
        let table = RouteTable::new(
            vec![
                route(None, "/api", Some(&["POST"])),
                route(None, "/api", Some(&["GET", "HEAD"])),
                route(None, "/", None),
            ],
            false,
        );
        assert_eq!(table.find(None, "/api/x", "POST"), Some(0));
        assert_eq!(table.find(None, "/api/x", "GET"), Some(1));
        assert_eq!(table.find(None, "/api/x", "HEAD"), Some(1));
        assert_eq!(table.find(None, "/api/x", "DELETE"), Some(2));
        // The gateway refuses `post` before routing (`crate::method`).
        assert_eq!(table.find(None, "/api/x", "post"), Some(2));
    }

    /// `GET` covers `HEAD`: a GET-only rule never lets HEAD fall through.
    #[test]
    fn get_covers_head() {
        let table = RouteTable::new(
            vec![
                route(None, "/admin", Some(&["GET"])),
                route(None, "/", None),
            ],
            false,
        );
        assert_eq!(table.find(None, "/admin", "GET"), Some(0));
        assert_eq!(table.find(None, "/admin", "HEAD"), Some(0));
        assert_eq!(table.find(None, "/admin", "POST"), Some(1));
        let head_only = RouteTable::new(vec![route(None, "/a", Some(&["HEAD"]))], false);
        assert_eq!(head_only.find(None, "/a", "GET"), None);
    }

    #[test]
    fn first_match_wins() {
        let table = RouteTable::new(
            vec![route(None, "/", None), route(None, "/admin", None)],
            false,
        );
        assert_eq!(table.find(None, "/admin", "GET"), Some(0));
        let empty = RouteTable::default();
        assert!(empty.is_empty());
        assert_eq!(empty.find(None, "/", "GET"), None);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(1).map(RouteMatcher::prefix), Some("/admin"));
        assert_eq!(table.get(2), None);
        assert_eq!(table.matchers().len(), 2);
    }

    #[test]
    fn normalize_host_rules() {
        for (input, want) in [
            ("App.Example.COM", Some("app.example.com")),
            ("app.example.com.", Some("app.example.com")),
            ("app.example.com:8443", Some("app.example.com")),
            ("APP.example.com.:443", Some("app.example.com")),
            ("app.example.com:", Some("app.example.com")),
            ("localhost", Some("localhost")),
            ("127.0.0.1:8080", Some("127.0.0.1")),
            ("my_host", Some("my_host")),
            ("[::1]", Some("[::1]")),
            ("[::1]:8443", Some("[::1]")),
            ("[2001:DB8:0::1]:443", Some("[2001:db8::1]")),
            ("2001:db8::1", Some("[2001:db8::1]")),
            ("", None),
            (".", None),
            (":443", None),
            ("app.example.com..", None),
            (".app.example.com", None),
            ("app..example.com", None),
            ("app.example.com:http", None),
            ("app.example.com:99999", None),
            ("app.example.com:1:2", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[::1]:x", None),
            ("[example.com]", None),
            ("[fe80::1%25eth0]", None),
            ("user@app.example.com", None),
            ("app.example.com/x", None),
            ("app example.com", None),
            (" app.example.com", None),
            ("app.example.com\r\n", None),
            ("*.example.com", None),
            ("ex\u{e4}mple.com", None),
        ] {
            assert_eq!(normalize_host(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn host_matching() {
        let r = route(Some("App.Example.com."), "/", None);
        assert_eq!(r.host(), Some("app.example.com"));
        for h in [
            "app.example.com",
            "APP.EXAMPLE.COM",
            "app.example.com.",
            "app.example.com:443",
            "App.Example.Com.:8443",
        ] {
            assert!(r.matches(Some(h), "/", "GET", false), "{h}");
        }
        for h in [
            "example.com",
            "app.example.com.evil",
            "evilapp.example.com",
            "app.example.com..",
            "app.example.com:bad",
            "app.example.com@evil",
            "",
        ] {
            assert!(!r.matches(Some(h), "/", "GET", false), "{h}");
        }
        assert!(!r.matches(None, "/", "GET", false));
        assert!(route(None, "/", None).matches(None, "/", "GET", false));
        assert!(route(None, "/", None).matches(Some("garbage host"), "/", "GET", false));
    }

    #[test]
    fn ipv6_host_matching() {
        let r = route(Some("[2001:db8::1]:443"), "/", None);
        assert_eq!(r.host(), Some("[2001:db8::1]"));
        for h in ["[2001:db8::1]", "[2001:DB8::1]:8443", "[2001:db8:0:0::1]"] {
            assert!(r.matches(Some(h), "/", "GET", false), "{h}");
        }
        for h in ["[2001:db8::2]", "2001.db8.1", "[::1]", "localhost"] {
            assert!(!r.matches(Some(h), "/", "GET", false), "{h}");
        }
        let name = route(Some("localhost"), "/", None);
        assert!(!name.matches(Some("[::1]"), "/", "GET", false));
        assert_eq!(
            RouteMatcher::new(Some("[::1"), "/", None),
            Err(RouteError::InvalidHost("[::1".into()))
        );
    }

    #[test]
    fn host_and_path_combined() {
        let table = RouteTable::new(
            vec![
                route(Some("admin.example.com"), "/", None),
                route(None, "/admin", Some(&["GET"])),
                route(None, "/", None),
            ],
            false,
        );
        assert_eq!(
            table.find(Some("ADMIN.example.com:443"), "/x", "GET"),
            Some(0)
        );
        assert_eq!(
            table.find(Some("app.example.com"), "/admin", "GET"),
            Some(1)
        );
        assert_eq!(
            table.find(Some("app.example.com"), "/admin", "POST"),
            Some(2)
        );
        assert_eq!(table.find(None, "/x", "GET"), Some(2));
    }
}
