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
//!   normalised by [`crate::target`]. Comparison is on the bytes the path
//!   stands for: the canonical form keeps reserved characters such as `!`,
//!   `:`, `@` or `$` percent-encoded when the client sent them so, and app
//!   frameworks decode `%3A` and `:` alike, so a prefix `/a:b` must also
//!   match `/a%3Ab` (found by `policies/tests/differential.rs`; before, such a
//!   request skipped the route's rule and got the default access). Canonical
//!   paths never carry an encoded `/`, so segment boundaries are unaffected.
//!   Bytes compare exactly, or ASCII case-insensitively when
//!   `case_insensitive_paths` is set (for upstreams that ignore case, where
//!   `/ADMIN` must hit the `/admin` rule).
//! * **Methods** are HTTP tokens, uppercased at configuration time and
//!   compared exactly (methods are case-sensitive on the wire). A method
//!   mismatch falls through to later routes.
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
        let mut got = Decoded(path.as_bytes());
        for want in Decoded(self.prefix.as_bytes()) {
            match got.next() {
                Some(b) if b == want || (case_insensitive && b.eq_ignore_ascii_case(&want)) => {}
                _ => return false,
            }
        }
        matches!(got.0.first(), None | Some(b'/'))
    }

    fn matches_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == method))
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

/// The bytes a canonical path stands for: `%XX` read as one byte, anything
/// else as itself. Allocation-free, for matching on the hot path.
struct Decoded<'a>(&'a [u8]);

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        if let [b'%', hi, lo, tail @ ..] = self.0 {
            if let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo)) {
                self.0 = tail;
                return Some((hi << 4) | lo);
            }
        }
        self.0 = rest;
        Some(first)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The routes of one configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    matchers: Vec<RouteMatcher>,
    case_insensitive: bool,
}

impl RouteTable {
    /// `case_insensitive` is `[server] case_insensitive_paths`.
    pub fn new(matchers: Vec<RouteMatcher>, case_insensitive: bool) -> Self {
        RouteTable {
            matchers,
            case_insensitive,
        }
    }

    /// Index of the first route whose host (if any), prefix and methods (if
    /// any) match.
    pub fn find(&self, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
        self.matchers
            .iter()
            .position(|m| m.matches(host, path, method, self.case_insensitive))
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

    /// A reserved character sent percent-encoded stays encoded in the
    /// canonical path, but the upstream decodes it: the route must still
    /// apply (found by policies/tests/differential.rs).
    #[test]
    fn encoded_reserved_characters_match_their_prefix() {
        let r = RouteMatcher::new(None, "/a:b", None).unwrap();
        for (path, want) in [
            ("/a:b", true),
            ("/a%3Ab", true),
            ("/a%3Ab/c", true),
            ("/a:b/", true),
            ("/a%3Abc", false),
            ("/a%3A", false),
            ("/a", false),
            ("/a%3Bb", false),
        ] {
            assert_eq!(r.matches(None, path, "GET", false), want, "{path}");
        }
        let r = RouteMatcher::new(None, "/s!p%40m", None).unwrap();
        assert_eq!(r.prefix(), "/s!p%40m");
        assert!(r.matches(None, "/s%21p@m/x", "GET", false));
        assert!(r.matches(None, "/S%21P%40M", "GET", true));
        assert!(!r.matches(None, "/S%21P%40M", "GET", false));
        let r = RouteMatcher::new(None, "/caf%C3%A9", None).unwrap();
        assert!(r.matches(None, "/caf%C3%A9/menu", "GET", false));
        assert!(!r.matches(None, "/caf%C3%A8", "GET", true));
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
        assert_eq!(table.find(None, "/api/x", "post"), Some(2));
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
