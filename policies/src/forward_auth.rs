//! Forward auth: the request a front proxy (nginx, Caddy, Traefik) asks
//! about, read from the headers it sets on `GET /.portcullis/auth`.
//!
//! Two spellings exist: Traefik and Caddy send `X-Forwarded-Method`,
//! `-Proto`, `-Host` and `-Uri`; an nginx `auth_request` is configured to
//! send `X-Original-Method` and `X-Original-URL` (the whole URL). When both
//! families are present every value given twice must agree: a client that
//! slips one family past the proxy beside the one the proxy sets gets a
//! 400, never a choice. Each header at most once; nothing is guessed or
//! defaulted. The result is raw bytes: the gateway then judges method,
//! host and target with the same functions as for a proxied request.

use thiserror::Error;

/// The original request, as the front proxy describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original<'a> {
    /// The method, as sent (judged later by `method::is_accepted`).
    pub method: &'a [u8],
    /// `https` (or `http`), case-insensitively.
    pub https: bool,
    /// The host, port included when the client gave one (judged later by `host::request_host`).
    pub host: &'a [u8],
    /// The request target, path and query (judged later by `target::parse_target`).
    pub target: &'a [u8],
}

/// Why the original request cannot be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ForwardError {
    /// A header the chosen family needs is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A header came more than once.
    #[error("{0} came more than once")]
    Duplicate(&'static str),
    /// The two families describe different requests.
    #[error("X-Original-* and X-Forwarded-* disagree on the {0}")]
    Conflict(&'static str),
    /// Neither family is there: not an auth request a proxy made.
    #[error("no X-Forwarded-Uri or X-Original-URL: not a forward-auth request")]
    Absent,
    /// `X-Original-URL` is not `http(s)://host/target`.
    #[error("X-Original-URL is not an absolute http(s) URL with a path")]
    BadUrl,
    /// `X-Forwarded-Proto` is not exactly `http` or `https`.
    #[error("X-Forwarded-Proto is not http or https")]
    BadProto,
    /// The method is not a method token (the gateway's check).
    #[error("the original method is not a method")]
    BadMethod,
}

/// The headers read, lowercase as `http` keeps them.
const NAMES: [&str; 6] = [
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-original-method",
    "x-original-url",
];

/// Canonical spellings, for errors.
const SHOWN: [&str; 6] = [
    "X-Forwarded-Method",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Uri",
    "X-Original-Method",
    "X-Original-URL",
];

fn scheme(value: &[u8]) -> Option<bool> {
    if value.eq_ignore_ascii_case(b"https") {
        Some(true)
    } else if value.eq_ignore_ascii_case(b"http") {
        Some(false)
    } else {
        None
    }
}

/// `scheme://authority/target` split into its parts; the target keeps its
/// leading `/`. No user info, no empty authority, no fragment.
fn split_url(url: &[u8]) -> Result<(bool, &[u8], &[u8]), ForwardError> {
    let sep = url
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(ForwardError::BadUrl)?;
    let (scheme_part, rest) = url.split_at(sep);
    let https = scheme(scheme_part).ok_or(ForwardError::BadUrl)?;
    let rest = rest.get(3..).ok_or(ForwardError::BadUrl)?;
    let slash = rest
        .iter()
        .position(|&b| b == b'/')
        .ok_or(ForwardError::BadUrl)?;
    let (authority, target) = rest.split_at(slash);
    let bad_authority = authority.is_empty()
        || authority
            .iter()
            .any(|b| matches!(b, b'@' | b'?' | b'#' | b'\\'));
    if bad_authority || target.contains(&b'#') {
        return Err(ForwardError::BadUrl);
    }
    Ok((https, authority, target))
}

/// Reads the original request from the auth request's headers (name,
/// value; names lowercase).
pub fn original<'a, I>(headers: I) -> Result<Original<'a>, ForwardError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut seen: [Option<&'a [u8]>; 6] = [None; 6];
    for (name, value) in headers {
        let Some(i) = NAMES.iter().position(|n| *n == name) else {
            continue;
        };
        let (Some(slot), Some(shown)) = (seen.get_mut(i), SHOWN.get(i)) else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(ForwardError::Duplicate(shown));
        }
    }
    let [f_method, f_proto, f_host, f_uri, o_method, o_url] = seen;
    let nginx = o_method.is_some() || o_url.is_some();
    let traefik = f_method.is_some() || f_uri.is_some();
    let forwarded_proto = f_proto
        .map(|p| scheme(p).ok_or(ForwardError::BadProto))
        .transpose()?;
    if nginx {
        let method = o_method.ok_or(ForwardError::Missing("X-Original-Method"))?;
        let url = o_url.ok_or(ForwardError::Missing("X-Original-URL"))?;
        let (https, host, target) = split_url(url)?;
        let agree = |given: Option<&[u8]>, ours: &[u8], what| match given {
            Some(g) if !g.eq_ignore_ascii_case(ours) => Err(ForwardError::Conflict(what)),
            _ => Ok(()),
        };
        agree(f_method, method, "method")?;
        agree(f_host, host, "host")?;
        if f_uri.is_some_and(|u| u != target) {
            return Err(ForwardError::Conflict("target"));
        }
        if forwarded_proto.is_some_and(|p| p != https) {
            return Err(ForwardError::Conflict("scheme"));
        }
        return Ok(Original {
            method,
            https,
            host,
            target,
        });
    }
    if !traefik {
        return Err(ForwardError::Absent);
    }
    Ok(Original {
        method: f_method.ok_or(ForwardError::Missing("X-Forwarded-Method"))?,
        https: forwarded_proto.ok_or(ForwardError::Missing("X-Forwarded-Proto"))?,
        host: f_host.ok_or(ForwardError::Missing("X-Forwarded-Host"))?,
        target: f_uri.ok_or(ForwardError::Missing("X-Forwarded-Uri"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(h: &'a [(&'a str, &'a str)]) -> Result<Original<'a>, ForwardError> {
        original(h.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    const TRAEFIK: [(&str, &str); 4] = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-uri", "/admin?x=1"),
    ];

    #[test]
    fn the_forwarded_family_is_read_whole() {
        let o = read(&TRAEFIK).unwrap();
        assert_eq!(o.method, b"GET");
        assert!(o.https);
        assert_eq!(o.host, b"app.example.com");
        assert_eq!(o.target, b"/admin?x=1");
        for i in 0..4 {
            let mut h = TRAEFIK.to_vec();
            let (name, _) = h.remove(i);
            // Method or target alone still marks the family: the rest is missing.
            assert!(matches!(read(&h), Err(ForwardError::Missing(_))), "{name}");
        }
    }

    #[test]
    fn the_nginx_family_is_read_from_the_url() {
        let h = [
            ("x-original-method", "POST"),
            (
                "x-original-url",
                "HTTP://app.example.com:8443/login?next=%2F",
            ),
        ];
        let o = read(&h).unwrap();
        assert_eq!(o.method, b"POST");
        assert!(!o.https);
        assert_eq!(o.host, b"app.example.com:8443");
        assert_eq!(o.target, b"/login?next=%2F");
        assert_eq!(read(&h[..1]), Err(ForwardError::Missing("X-Original-URL")));
        assert_eq!(
            read(&h[1..]),
            Err(ForwardError::Missing("X-Original-Method"))
        );
    }

    #[test]
    fn a_request_with_neither_family_is_no_auth_request() {
        assert_eq!(read(&[]), Err(ForwardError::Absent));
        // Proto and host alone are what any proxy sends on any request.
        assert_eq!(read(&TRAEFIK[1..3]), Err(ForwardError::Absent));
    }

    #[test]
    fn every_header_counts_once() {
        for (name, value) in TRAEFIK {
            let mut h = TRAEFIK.to_vec();
            h.push((name, value));
            assert!(
                matches!(read(&h), Err(ForwardError::Duplicate(_))),
                "{name}"
            );
        }
        let h = [
            ("x-original-method", "GET"),
            ("x-original-url", "https://a/"),
            ("x-original-url", "https://a/admin"),
        ];
        assert_eq!(read(&h), Err(ForwardError::Duplicate("X-Original-URL")));
    }

    #[test]
    fn both_families_must_describe_one_request() {
        let base = [
            ("x-original-method", "GET"),
            ("x-original-url", "https://app.example.com/admin"),
        ];
        let agreeing = [
            ("x-forwarded-method", "get"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "APP.example.com"),
            ("x-forwarded-uri", "/admin"),
        ];
        let mut h = base.to_vec();
        h.extend(agreeing);
        assert!(read(&h).is_ok());
        let spoofs = [
            ("x-forwarded-method", "POST", "method"),
            ("x-forwarded-proto", "http", "scheme"),
            ("x-forwarded-host", "evil.example", "host"),
            ("x-forwarded-uri", "/public", "target"),
            // The target is compared as bytes: no second reading of `/Admin`.
            ("x-forwarded-uri", "/Admin", "target"),
        ];
        for (name, value, what) in spoofs {
            let mut h = base.to_vec();
            h.push((name, value));
            assert_eq!(read(&h), Err(ForwardError::Conflict(what)), "{name}");
        }
    }

    #[test]
    fn a_scheme_is_http_or_https_and_nothing_else() {
        for proto in ["ftp", "https,http", "https ", "", "wss"] {
            let mut h = TRAEFIK.to_vec();
            h[1] = ("x-forwarded-proto", proto);
            assert_eq!(read(&h), Err(ForwardError::BadProto), "{proto:?}");
        }
    }

    #[test]
    fn an_original_url_is_absolute_with_a_path() {
        for url in [
            "/admin",
            "https://app.example.com",
            "https:///admin",
            "https://user@app.example.com/",
            "https://app.example.com?x=/",
            "https://app.example.com\\@evil/",
            "https://app.example.com/a#frag",
            "javascript://app.example.com/",
            "https:/app.example.com/",
        ] {
            let h = [("x-original-method", "GET"), ("x-original-url", url)];
            assert_eq!(read(&h), Err(ForwardError::BadUrl), "{url}");
        }
    }

    #[test]
    fn look_alike_names_are_not_read() {
        // `_` for `-`, and other spellings: the gateway sees names
        // lowercase, so only these exact bytes count.
        let h = [
            ("x_forwarded_uri", "/x"),
            ("x-forwarded-url", "/x"),
            ("x-original-uri", "/x"),
        ];
        assert_eq!(read(&h), Err(ForwardError::Absent));
    }
}
