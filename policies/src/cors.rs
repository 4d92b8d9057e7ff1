//! CORS (docs/configuration.md `[cors]`, the response): off unless `allow_origins` is set.
//!
//! The gateway builds a [`CorsPolicy`] only when `allow_origins` is present,
//! answers preflights itself (204, no auth, the app is not reached) with
//! [`CorsPolicy::preflight`], adds [`CorsPolicy::actual`] to other responses,
//! and, whenever CORS is configured, adds `Vary: Origin` ([`VARY`]) to every
//! response — [`PREFLIGHT_VARY`] on preflight answers — so a shared cache
//! never serves one origin's grant to another. Rules, and why:
//!
//! * **Origins are exact.** Each entry is `scheme://host[:port]` with scheme
//!   `http` or `https`, normalised at load (scheme and host lowercased,
//!   default port 443/80 dropped). Paths (even a trailing `/`), queries,
//!   fragments, userinfo and wildcards such as `https://*.example.com` are
//!   refused: suffix/prefix matching is how `app.example.com.evil` and
//!   `evilapp.example.com` get in. A request `Origin` matches only when
//!   equal to an entry ignoring ASCII case (browsers send the serialised,
//!   lowercase form; nothing else is normalised).
//! * **`null` is never allowed**, and refused in config: sandboxed iframes,
//!   `file:` pages and redirects all send it, so anyone can produce it.
//! * **`"*"` stands alone** and never with `allow_credentials` (browsers
//!   reject that pair, and echoing origins instead would hand every site the
//!   user's session). With `"*"`, responses carry `*`, never the origin.
//! * **Methods** are tokens, uppercased; a preflight's requested method must
//!   be listed (compared exactly; methods are case-sensitive on the wire).
//! * **Headers** are tokens, lowercased; each requested header must be listed
//!   or CORS-safelisted (`accept`, `accept-language`, `content-language`).
//!   `content-type` and `range` are not treated as safelisted: a browser
//!   only names them in a preflight when their value is *not* safelisted.
//! * **`*` in methods or headers is refused**: it is a wildcard only without
//!   credentials, which would make the same config mean two things.

use crate::token::is_tchar;
use std::net::Ipv6Addr;

/// `Vary` value for every response when CORS is configured.
pub const VARY: &str = "Origin";

/// `Vary` value for preflight answers (allowed or not).
pub const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// Headers a browser may send cross-origin without listing them.
const SAFELISTED: [&str; 3] = ["accept", "accept-language", "content-language"];

/// Why a `[cors]` table is invalid; `Display` names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// `allow_origins = []`: leave it out to turn CORS off.
    #[error("allow_origins is empty: leave it out to turn CORS off")]
    NoOrigins,
    /// An `allow_origins` entry is not an exact `scheme://host[:port]`.
    #[error("invalid origin {origin:?} in allow_origins: {reason}")]
    InvalidOrigin {
        /// The configured value.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `"*"` listed together with other origins.
    #[error("allow_origins: \"*\" must be the only entry")]
    WildcardNotAlone,
    /// `"*"` together with `allow_credentials = true`.
    #[error("allow_origins = [\"*\"] cannot be combined with allow_credentials = true")]
    WildcardWithCredentials,
    /// An `allow_methods` entry is not an HTTP method token (or is `*`).
    #[error(
        "invalid method {0:?} in allow_methods: expected an HTTP method token, not a wildcard"
    )]
    InvalidMethod(String),
    /// An `allow_headers` entry is not a header-name token (or is `*`).
    #[error("invalid header {0:?} in allow_headers: expected a header name, not a wildcard")]
    InvalidHeader(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    List(Vec<String>),
}

/// A validated `[cors]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Origins,
    methods: Vec<String>,
    headers: Vec<String>,
    allow_methods_value: String,
    allow_headers_value: String,
    credentials: bool,
    max_age: u64,
}

impl CorsPolicy {
    /// Validates and normalises `[cors]`. `allow_origins`: exact origins or
    /// the single value `"*"`; `max_age` in seconds.
    pub fn new(
        allow_origins: &[String],
        allow_methods: &[String],
        allow_headers: &[String],
        allow_credentials: bool,
        max_age: u64,
    ) -> Result<CorsPolicy, CorsError> {
        let origins = if allow_origins.is_empty() {
            return Err(CorsError::NoOrigins);
        } else if allow_origins.iter().any(|o| o == "*") {
            if allow_origins.len() != 1 {
                return Err(CorsError::WildcardNotAlone);
            }
            if allow_credentials {
                return Err(CorsError::WildcardWithCredentials);
            }
            Origins::Any
        } else {
            let mut list: Vec<String> = Vec::with_capacity(allow_origins.len());
            for o in allow_origins {
                let norm = normalize_origin(o).map_err(|reason| CorsError::InvalidOrigin {
                    origin: o.clone(),
                    reason,
                })?;
                if !list.contains(&norm) {
                    list.push(norm);
                }
            }
            Origins::List(list)
        };
        let methods = tokens(
            allow_methods,
            str::to_ascii_uppercase,
            CorsError::InvalidMethod,
        )?;
        let headers = tokens(
            allow_headers,
            str::to_ascii_lowercase,
            CorsError::InvalidHeader,
        )?;
        Ok(CorsPolicy {
            origins,
            allow_methods_value: methods.join(", "),
            allow_headers_value: headers.join(", "),
            methods,
            headers,
            credentials: allow_credentials,
            max_age,
        })
    }

    /// Whether a request `Origin` is allowed: equal to a configured origin
    /// ignoring ASCII case, or anything but `null` under `"*"`.
    pub fn allowed_origin(&self, origin: &str) -> bool {
        self.grant(origin).is_some()
    }

    /// A preflight: `OPTIONS` with an `Origin` and an
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &str, origin: Option<&str>, acr_method: Option<&str>) -> bool {
        method == "OPTIONS" && origin.is_some() && acr_method.is_some()
    }

    /// Headers for the preflight answer (204; add `Vary:`
    /// [`PREFLIGHT_VARY`] either way). Empty when the origin, the requested
    /// method or any requested header (comma list, case-insensitive) is not
    /// allowed: the browser then blocks the request.
    pub fn preflight(
        &self,
        origin: &str,
        acr_method: &str,
        acr_headers: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let Some(allow_origin) = self.grant(origin) else {
            return Vec::new();
        };
        if !self.methods.iter().any(|m| m == acr_method) {
            return Vec::new();
        }
        let headers_ok = acr_headers.is_none_or(|list| {
            list.split(',')
                .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
                .filter(|t| !t.is_empty())
                .all(|t| {
                    SAFELISTED.iter().any(|s| s.eq_ignore_ascii_case(t))
                        || self.headers.iter().any(|h| h.eq_ignore_ascii_case(t))
                })
        });
        if !headers_ok {
            return Vec::new();
        }
        let mut out = vec![
            ("access-control-allow-origin", allow_origin.to_owned()),
            (
                "access-control-allow-methods",
                self.allow_methods_value.clone(),
            ),
        ];
        if !self.headers.is_empty() {
            out.push((
                "access-control-allow-headers",
                self.allow_headers_value.clone(),
            ));
        }
        out.push(("access-control-max-age", self.max_age.to_string()));
        if self.credentials {
            out.push(("access-control-allow-credentials", "true".to_owned()));
        }
        out
    }

    /// Headers for an actual (non-preflight) response to this `Origin`:
    /// `access-control-allow-origin` (the configured origin, or `*`) and
    /// `access-control-allow-credentials: true` when configured. Empty when
    /// the origin is not allowed.
    pub fn actual(&self, origin: &str) -> Vec<(&'static str, String)> {
        let Some(allow_origin) = self.grant(origin) else {
            return Vec::new();
        };
        let mut out = vec![("access-control-allow-origin", allow_origin.to_owned())];
        if self.credentials {
            out.push(("access-control-allow-credentials", "true".to_owned()));
        }
        out
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn grant(&self, origin: &str) -> Option<&str> {
        match &self.origins {
            Origins::Any => {
                let plausible = !origin.is_empty()
                    && !origin.eq_ignore_ascii_case("null")
                    && origin.bytes().all(|b| b.is_ascii_graphic());
                plausible.then_some("*")
            }
            Origins::List(list) => list
                .iter()
                .find(|o| o.eq_ignore_ascii_case(origin))
                .map(String::as_str),
        }
    }
}

fn tokens(
    list: &[String],
    case: fn(&str) -> String,
    err: fn(String) -> CorsError,
) -> Result<Vec<String>, CorsError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for t in list {
        if t.is_empty() || t == "*" || !t.bytes().all(is_tchar) {
            return Err(err(t.clone()));
        }
        let t = case(t);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// `scheme://host[:port]` → its serialised origin, or why not.
fn normalize_origin(raw: &str) -> Result<String, &'static str> {
    if raw.eq_ignore_ascii_case("null") {
        return Err("\"null\" is sent by sandboxed and file: pages and can never be allowed");
    }
    if raw.contains('*') {
        return Err("wildcards are not supported: list each origin");
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only visible ASCII without spaces is allowed");
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("expected scheme://host[:port]");
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err("scheme must be http or https"),
    };
    if rest.contains('@') {
        return Err("userinfo is not part of an origin");
    }
    if rest.contains('/') {
        return Err("an origin has no path, not even a trailing /");
    }
    if rest.contains('?') {
        return Err("an origin has no query");
    }
    if rest.contains('#') {
        return Err("an origin has no fragment");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("unclosed [ in IPv6 host");
        };
        let addr: Ipv6Addr = addr.parse().map_err(|_| "invalid IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :port after ]")?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if !is_hostname(host) {
            return Err("invalid host");
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("invalid port");
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err("invalid port"),
                Ok(n) if n == default_port => None,
                Ok(n) => Some(n),
            }
        }
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Dot-separated labels of 1–63 of `A-Za-z0-9-_`, not starting or ending
/// with `-`; at most 253 bytes; no trailing dot (browsers keep it, so it
/// would be a different origin).
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| (*x).to_owned()).collect()
    }

    fn spec() -> CorsPolicy {
        CorsPolicy::new(
            &s(&["https://app.example.com"]),
            &s(&["GET", "POST"]),
            &s(&["Content-Type"]),
            true,
            600,
        )
        .unwrap()
    }

    fn origin_err(o: &str) -> Option<&'static str> {
        match CorsPolicy::new(&s(&[o]), &[], &[], false, 0) {
            Err(CorsError::InvalidOrigin { origin, reason }) => {
                assert_eq!(origin, o);
                Some(reason)
            }
            Ok(_) => None,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn allowed_origin() {
        let p = spec();
        assert!(p.allowed_origin("https://app.example.com"));
        assert_eq!(
            p.actual("https://app.example.com"),
            [
                (
                    "access-control-allow-origin",
                    "https://app.example.com".to_owned()
                ),
                ("access-control-allow-credentials", "true".to_owned()),
            ]
        );
    }

    #[test]
    fn disallowed_origins() {
        let p = spec();
        for o in [
            "https://evil.example",
            "null",
            "NULL",
            "",
            // Same host, other port; other scheme.
            "https://app.example.com:8443",
            "http://app.example.com",
            "http://app.example.com:443",
            "wss://app.example.com",
            // Suffix and prefix tricks.
            "https://app.example.com.evil",
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://evil.app.example.com",
            "https://app.example.com@evil",
            "https://evil@app.example.com",
            "https://app.example.co",
            "https://app.example.comx",
            "app.example.com",
            "//app.example.com",
            // Not normalised at request time: trailing slash, default port,
            // trailing dot, whitespace.
            "https://app.example.com/",
            "https://app.example.com:443",
            "https://app.example.com.",
            " https://app.example.com",
            "https://app.example.com ",
            "https://app.example.com\r\n",
            "https://app.example.com\0",
            "https://app.example.com, https://evil.example",
            // Non-ASCII lookalike (Cyrillic a).
            "https://\u{430}pp.example.com",
        ] {
            assert!(!p.allowed_origin(o), "{o:?}");
            assert!(p.actual(o).is_empty(), "{o:?}");
            assert!(p.preflight(o, "GET", None).is_empty(), "{o:?}");
        }
    }

    #[test]
    fn origin_case_insensitive() {
        let p = spec();
        assert!(p.allowed_origin("HTTPS://APP.EXAMPLE.COM"));
        assert!(p.allowed_origin("https://App.Example.Com"));
        // The configured (lowercase) form is echoed.
        assert_eq!(
            p.actual("HTTPS://APP.EXAMPLE.COM").first(),
            Some(&(
                "access-control-allow-origin",
                "https://app.example.com".to_owned()
            ))
        );
    }

    #[test]
    fn config_origins_normalised() {
        let p = CorsPolicy::new(
            &s(&[
                "https://app.example.com:443",
                "HTTP://Other.Example.COM:80",
                "https://api.example.com:8443",
                "http://localhost:3000",
                "http://127.0.0.1:8080",
                "https://[::1]:443",
                "https://[0:0:0:0:0:0:0:2]",
                "https://app.example.com",
            ]),
            &[],
            &[],
            false,
            0,
        )
        .unwrap();
        assert_eq!(
            p.origins,
            Origins::List(s(&[
                "https://app.example.com",
                "http://other.example.com",
                "https://api.example.com:8443",
                "http://localhost:3000",
                "http://127.0.0.1:8080",
                "https://[::1]",
                "https://[::2]",
            ]))
        );
        assert!(p.allowed_origin("https://app.example.com"));
        assert!(p.allowed_origin("http://other.example.com"));
        assert!(p.allowed_origin("https://api.example.com:8443"));
        assert!(!p.allowed_origin("https://api.example.com"));
        assert!(p.allowed_origin("https://[::1]"));
        assert!(!p.allowed_origin("http://localhost"));
    }

    #[test]
    fn config_origins_refused() {
        for bad in [
            "null",
            "Null",
            "*.example.com",
            "https://*.example.com",
            "https://app.*",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://app.example.com#f",
            "https://user@app.example.com",
            "https://user:pw@app.example.com",
            "https://app.example.com@evil",
            "app.example.com",
            "//app.example.com",
            "https:app.example.com",
            "ftp://app.example.com",
            "chrome-extension://abc",
            "https://",
            "https://:443",
            "https://app.example.com:",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:+443",
            "https://app.example.com:0443x",
            "https://app.example.com:1:2",
            "https://app.example.com.",
            "https://app..example.com",
            "https://-app.example.com",
            "https://app-.example.com",
            "https://app example.com",
            " https://app.example.com",
            "https://app.example.com\r\n",
            "https://ex\u{e4}mple.com",
            "https://[::1",
            "https://[zz::1]",
            "https://[::1]x",
            "https://::1",
            "",
        ] {
            assert!(origin_err(bad).is_some(), "{bad:?}");
        }
        let msg = CorsPolicy::new(&s(&["https://*.example.com"]), &[], &[], false, 0)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("https://*.example.com"), "{msg}");
    }

    #[test]
    fn empty_origins_refused() {
        assert_eq!(
            CorsPolicy::new(&[], &[], &[], false, 0),
            Err(CorsError::NoOrigins)
        );
    }

    #[test]
    fn wildcard_rules() {
        assert_eq!(
            CorsPolicy::new(&s(&["*"]), &[], &[], true, 0),
            Err(CorsError::WildcardWithCredentials)
        );
        assert_eq!(
            CorsPolicy::new(&s(&["*", "https://a.example"]), &[], &[], false, 0),
            Err(CorsError::WildcardNotAlone)
        );
        let p = CorsPolicy::new(&s(&["*"]), &s(&["GET"]), &[], false, 60).unwrap();
        assert!(p.allowed_origin("https://anything.example"));
        assert_eq!(
            p.actual("https://anything.example"),
            [("access-control-allow-origin", "*".to_owned())]
        );
        // null and junk are never granted, even under "*".
        for o in ["null", "NULL", "", "a b", "https://x\r\n"] {
            assert!(!p.allowed_origin(o), "{o:?}");
            assert!(p.actual(o).is_empty());
        }
        assert_eq!(
            p.preflight("https://anything.example", "GET", None),
            [
                ("access-control-allow-origin", "*".to_owned()),
                ("access-control-allow-methods", "GET".to_owned()),
                ("access-control-max-age", "60".to_owned()),
            ]
        );
    }

    #[test]
    fn methods_and_headers_validated() {
        let p = CorsPolicy::new(
            &s(&["https://a.example"]),
            &s(&["get", "Post", "GET", "PATCH"]),
            &s(&["Content-Type", "X-Requested-With", "content-type"]),
            false,
            0,
        )
        .unwrap();
        assert_eq!(p.methods, s(&["GET", "POST", "PATCH"]));
        assert_eq!(p.headers, s(&["content-type", "x-requested-with"]));
        for bad in ["", "*", "GET POST", "GET,POST", "G\u{e9}T", "GET\r\n"] {
            assert_eq!(
                CorsPolicy::new(&s(&["https://a.example"]), &s(&[bad]), &[], false, 0),
                Err(CorsError::InvalidMethod(bad.to_owned())),
                "{bad:?}"
            );
            assert_eq!(
                CorsPolicy::new(&s(&["https://a.example"]), &[], &s(&[bad]), false, 0),
                Err(CorsError::InvalidHeader(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn is_preflight_rules() {
        assert!(CorsPolicy::is_preflight(
            "OPTIONS",
            Some("https://a"),
            Some("GET")
        ));
        assert!(!CorsPolicy::is_preflight("OPTIONS", None, Some("GET")));
        assert!(!CorsPolicy::is_preflight(
            "OPTIONS",
            Some("https://a"),
            None
        ));
        assert!(!CorsPolicy::is_preflight(
            "GET",
            Some("https://a"),
            Some("GET")
        ));
        assert!(!CorsPolicy::is_preflight(
            "options",
            Some("https://a"),
            Some("GET")
        ));
    }

    #[test]
    fn allowed_preflight_headers() {
        let p = spec();
        assert_eq!(
            p.preflight("https://app.example.com", "POST", Some("content-type")),
            [
                (
                    "access-control-allow-origin",
                    "https://app.example.com".to_owned()
                ),
                ("access-control-allow-methods", "GET, POST".to_owned()),
                ("access-control-allow-headers", "content-type".to_owned()),
                ("access-control-max-age", "600".to_owned()),
                ("access-control-allow-credentials", "true".to_owned()),
            ]
        );
        // No credentials configured, no allow_headers: those are left out.
        let q = CorsPolicy::new(&s(&["https://a.example"]), &s(&["PUT"]), &[], false, 0).unwrap();
        assert_eq!(
            q.preflight("https://a.example", "PUT", None),
            [
                (
                    "access-control-allow-origin",
                    "https://a.example".to_owned()
                ),
                ("access-control-allow-methods", "PUT".to_owned()),
                ("access-control-max-age", "0".to_owned()),
            ]
        );
    }

    #[test]
    fn preflight_disallowed_method() {
        let p = spec();
        for m in ["PUT", "DELETE", "get", "Post", "", "GET, POST", "CONNECT"] {
            assert!(
                p.preflight("https://app.example.com", m, None).is_empty(),
                "{m:?}"
            );
        }
    }

    #[test]
    fn preflight_disallowed_header() {
        let p = spec();
        for h in [
            "x-custom",
            "content-type, x-custom",
            "authorization",
            "content-type,x-evil",
            "content-type\r\nx",
            "content-type;x",
            "content-typex",
            "content",
        ] {
            assert!(
                p.preflight("https://app.example.com", "POST", Some(h))
                    .is_empty(),
                "{h:?}"
            );
        }
    }

    #[test]
    fn preflight_header_list_case_and_spaces() {
        let p = spec();
        for h in [
            "Content-Type",
            "CONTENT-TYPE",
            " content-type ",
            "\tcontent-type\t",
            "content-type,accept",
            "Accept , Content-Type ,Accept-Language, content-language",
            "content-type,,",
            ",",
            "",
        ] {
            assert!(
                !p.preflight("https://app.example.com", "POST", Some(h))
                    .is_empty(),
                "{h:?}"
            );
        }
        // content-type is not implicitly safelisted.
        let q = CorsPolicy::new(&s(&["https://a.example"]), &s(&["POST"]), &[], false, 0).unwrap();
        assert!(q
            .preflight("https://a.example", "POST", Some("content-type"))
            .is_empty());
        assert!(!q
            .preflight("https://a.example", "POST", Some("accept"))
            .is_empty());
    }

    #[test]
    fn actual_without_credentials() {
        let p = CorsPolicy::new(&s(&["https://a.example"]), &[], &[], false, 0).unwrap();
        assert_eq!(
            p.actual("https://a.example"),
            [(
                "access-control-allow-origin",
                "https://a.example".to_owned()
            )]
        );
    }

    #[test]
    fn error_messages_name_value() {
        let e =
            CorsPolicy::new(&s(&["https://a.example"]), &s(&["G T"]), &[], false, 0).unwrap_err();
        assert!(e.to_string().contains("\"G T\""), "{e}");
        let e = CorsPolicy::new(&s(&["https://a.example"]), &[], &s(&["*"]), false, 0).unwrap_err();
        assert!(e.to_string().contains("\"*\""), "{e}");
    }
}
