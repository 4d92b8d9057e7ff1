//! The request's host: one parsed, validated value (pipeline stage `target`).
//!
//! Routes with a `host` decide on it, and the app reads it again from `Host`
//! or `X-Forwarded-Host`. If the two parsers disagree, a `deny` rule for
//! `admin.test` is bypassed with `Host: admin.test:abc`, which Starlette reads
//! as `admin.test` while a lenient gateway sees no usable host at all. So a
//! host is accepted only in the strict form below, anything else is refused
//! (400) before routing, and the upstream receives the canonical spelling the
//! routes matched, never the client's:
//!
//! * an IP literal `[v6]`, or a name of ASCII letters, digits, `-`, `_` and
//!   `.` (what nginx accepts, minus percent-encoding and sub-delims, which no
//!   DNS name needs: `admin%2etest` and `a.test,evil.example` are refused);
//!   labels are non-empty and at most 63 bytes, the name at most 253, and one
//!   trailing dot is allowed and dropped (`admin.test.` is `admin.test`);
//!   a name whose last label is a number (`127.1`, `0x7f.1`, `2130706433`),
//!   which browsers and WHATWG URL parsers read as IPv4, must be a plain
//!   dotted quad;
//! * optionally `:` and a port of 1 to 5 digits, at most 65535 (`:`, `:abc`,
//!   `:99999`, `:443x`, `:-1` and `:1:2` are refused);
//! * nothing else: no userinfo, path, query, fragment, whitespace, backslash
//!   or non-ASCII byte.
//!
//! Names are lowercased and IPv6 literals printed in canonical form, so two
//! spellings of one host compare equal.

use std::fmt;
use std::net::Ipv6Addr;

/// A validated host and optional port in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Lowercase name without a trailing dot, or `[v6]` in canonical form.
    name: String,
    port: Option<u16>,
}

/// Why a host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No host at all.
    #[error("empty host")]
    Empty,
    /// A byte outside the name alphabet, or a misplaced `:`.
    #[error("invalid character in host")]
    InvalidChar,
    /// An empty label (`a..b`, `.a`, `a..`) or one over 63 bytes, or a name
    /// over 253 bytes.
    #[error("invalid host name")]
    InvalidName,
    /// `[...]` that is not an IPv6 address.
    #[error("invalid IP literal")]
    InvalidIpLiteral,
    /// A port that is empty, not digits, or over 65535.
    #[error("invalid port")]
    InvalidPort,
}

impl Host {
    /// Parses a `Host` header value, an HTTP/2 `:authority` or the authority
    /// of an absolute-form target.
    pub fn parse(raw: &[u8]) -> Result<Host, HostError> {
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(rest) = raw.strip_prefix(b"[") {
            let close = rest
                .iter()
                .position(|&b| b == b']')
                .ok_or(HostError::InvalidIpLiteral)?;
            let (inner, after) = rest.split_at(close);
            let after = after.get(1..).unwrap_or_default();
            let addr: Ipv6Addr = std::str::from_utf8(inner)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HostError::InvalidIpLiteral)?;
            let port = match after {
                [] => None,
                [b':', port @ ..] => Some(parse_port(port)?),
                _ => return Err(HostError::InvalidChar),
            };
            return Ok(Host {
                name: format!("[{addr}]"),
                port,
            });
        }
        let (name, port) = match raw.iter().position(|&b| b == b':') {
            Some(i) => {
                let (name, port) = raw.split_at(i);
                (name, Some(parse_port(port.get(1..).unwrap_or_default())?))
            }
            None => (raw, None),
        };
        Ok(Host {
            name: parse_name(name)?,
            port,
        })
    }

    /// The name routes compare: lowercase, no trailing dot, or `[v6]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, if the client named one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The host as [`Display`](fmt::Display) writes it, reusing the name's
    /// buffer.
    pub fn into_string(self) -> String {
        let mut out = self.name;
        if let Some(p) = self.port {
            out.push(':');
            out.push_str(itoa::Buffer::new().format(p));
        }
        out
    }
}

/// Why a request has no usable host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestHostError {
    /// Neither a `Host` header nor an authority (an HTTP/1.0 request too:
    /// routes with a `host` and the app must never see different hosts, or none).
    #[error("no host")]
    Missing,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    Several,
    /// The `Host` header and the authority name different hosts.
    #[error("Host and the request's authority disagree")]
    Conflict,
    /// One of them is not a strict host.
    #[error(transparent)]
    Invalid(#[from] HostError),
}

/// The request's one host: every `Host` header and the authority (HTTP/2
/// `:authority` or an absolute-form target's), each parsed strictly; there
/// must be exactly one host between them, on every protocol version.
pub fn request_host<'a>(
    host_headers: impl IntoIterator<Item = &'a [u8]>,
    authority: Option<&[u8]>,
) -> Result<Host, RequestHostError> {
    let mut headers = host_headers.into_iter();
    let host = headers.next().map(Host::parse).transpose()?;
    if headers.next().is_some() {
        return Err(RequestHostError::Several);
    }
    let authority = authority.map(Host::parse).transpose()?;
    match (host, authority) {
        (Some(h), Some(a)) if h == a => Ok(h),
        (Some(_), Some(_)) => Err(RequestHostError::Conflict),
        (Some(h), None) | (None, Some(h)) => Ok(h),
        (None, None) => Err(RequestHostError::Missing),
    }
}

impl Host {
    /// The `https://` URL of `target` on this host, at `port` (`None`: the
    /// default 443). The client's own port is dropped: it was the plain one.
    pub fn https_url(&self, port: Option<u16>, target: &str) -> String {
        match port {
            Some(p) => format!("https://{}:{p}{target}", self.name),
            None => format!("https://{}{target}", self.name),
        }
    }
}

/// `name[:port]`, what the upstream receives as `Host`.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn parse_port(port: &[u8]) -> Result<u16, HostError> {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(HostError::InvalidPort);
    }
    std::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(HostError::InvalidPort)
}

fn parse_name(name: &[u8]) -> Result<String, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if !name
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(HostError::InvalidChar);
    }
    let name = name.strip_suffix(b".").unwrap_or(name);
    // WHATWG URL parsers (browsers, Node's `new URL`) read a name whose last
    // label is a number as IPv4 (`0x7f.1` is 127.0.0.1): such a name must
    // be a plain dotted quad, or a host rule for 127.0.0.1 is bypassed.
    if ends_in_a_number(name) && !is_dotted_quad(name) {
        return Err(HostError::InvalidName);
    }
    let labels_ok = name.len() <= 253
        && name
            .split(|&b| b == b'.')
            .all(|label| (1..=63).contains(&label.len()));
    if !labels_ok {
        return Err(HostError::InvalidName);
    }
    // Only ASCII alphanumerics, '-', '_' and '.' remain: valid UTF-8.
    let name = String::from_utf8_lossy(name);
    Ok(name.to_ascii_lowercase())
}

/// The WHATWG "ends in a number" check: the last label is decimal digits or
/// `0x` followed by hex digits.
fn ends_in_a_number(name: &[u8]) -> bool {
    let last = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
    match last {
        [] => false,
        [b'0', b'x' | b'X', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        digits => digits.iter().all(u8::is_ascii_digit),
    }
}

/// Four decimal labels 0-255 without leading zeros, as IPv4 is printed.
/// (Checked by hand: parsing and printing the address again cost more than
/// the rest of the host check.)
fn is_dotted_quad(name: &[u8]) -> bool {
    let mut labels = 0;
    for label in name.split(|&b| b == b'.') {
        labels += 1;
        let octet = match label {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => {
                rest.len() <= 2
                    && rest.iter().all(u8::is_ascii_digit)
                    && label
                        .iter()
                        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
                        <= 255
            }
            _ => false,
        };
        if !octet || labels > 4 {
            return false;
        }
    }
    labels == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        let host = Host::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        let shown = host.to_string();
        assert_eq!(host.into_string(), shown, "{raw:?}");
        shown
    }

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("admin.test", "admin.test"),
            ("ADMIN.Test", "admin.test"),
            ("admin.test.", "admin.test"),
            ("admin.test:8443", "admin.test:8443"),
            ("admin.test.:443", "admin.test:443"),
            ("admin.test:00443", "admin.test:443"),
            ("admin.test:0", "admin.test:0"),
            ("admin.test:65535", "admin.test:65535"),
            ("localhost", "localhost"),
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0.0.0.0", "0.0.0.0"),
            ("1.2.3.x4", "1.2.3.x4"),
            ("0x.example", "0x.example"),
            ("my_host.internal", "my_host.internal"),
            ("[::1]", "[::1]"),
            ("[::1]:8443", "[::1]:8443"),
            ("[2001:DB8:0:0::1]", "[2001:db8::1]"),
            ("xn--caf-dma.example", "xn--caf-dma.example"),
        ] {
            assert_eq!(ok(raw), want, "{raw:?}");
        }
        let h = Host::parse(b"Example.COM:8080").expect("host");
        assert_eq!((h.name(), h.port()), ("example.com", Some(8080)));
    }

    /// Every spelling the security review used against `host = "admin.test"`,
    /// and the usual smuggling characters.
    #[test]
    fn refuses_what_an_app_could_read_differently() {
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = format!("{}a", "a.".repeat(127));
        for raw in [
            "",
            ":443",
            "admin.test:",
            "admin.test:abc",
            "admin.test:99999",
            "admin.test:65536",
            "admin.test:443x",
            "admin.test:-1",
            "admin.test:+1",
            "admin.test:1:2",
            "admin.test: 443",
            "admin.test:4 43",
            "admin.test..",
            "admin..test",
            ".admin.test",
            ".",
            "admin.test/x",
            "admin.test?x",
            "admin.test#x",
            "a.test,evil.example",
            "admin%2etest",
            "admin.test\\",
            "admin\\test",
            "user@admin.test",
            "admin.test ",
            " admin.test",
            "admin.test\t",
            "admin test",
            "admin.tést",
            "admin.test\0",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:99999",
            "[::1%eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "::1",
            "2001:db8::1",
            long_label.as_str(),
            long_name.as_str(),
            // Numbers a WHATWG parser reads as IPv4.
            "0x7f.1",
            "0x7f000001",
            "2130706433",
            "127.1",
            "127.0.0.01",
            "0177.0.0.1",
            "127.0.0.1.0x0",
            "256.0.0.1",
            "a.b.0x",
            "1.2.3.4.5",
        ] {
            assert!(Host::parse(raw.as_bytes()).is_err(), "{raw:?} was accepted");
        }
        assert!(Host::parse(b"admin.test\xc3\xa9").is_err());
        assert!(Host::parse(b"admin.test\xff").is_err());
    }

    /// The hand-written check agrees with "std parses it and prints it back
    /// the same" on every string over the characters that matter.
    #[test]
    fn dotted_quad_is_what_std_prints() {
        use proptest::prelude::*;
        let canonical = |s: &str| {
            s.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.to_string() == s)
        };
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "127.0.0.1",
            "10.0.0.255",
        ] {
            assert!(is_dotted_quad(s.as_bytes()), "{s}");
        }
        for s in [
            "",
            ".",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "256.1.1.1",
            "1.2.3.04",
            "00.1.2.3",
            "1.2.3.1000",
            "1.2.3.a",
        ] {
            assert!(!is_dotted_quad(s.as_bytes()), "{s}");
        }
        proptest!(ProptestConfig::with_cases(20_000), |(s in "[0-9.x]{0,17}")| {
            prop_assert_eq!(is_dotted_quad(s.as_bytes()), canonical(&s), "{:?}", s);
        });
    }

    #[test]
    fn errors_say_which_part() {
        assert_eq!(Host::parse(b""), Err(HostError::Empty));
        assert_eq!(Host::parse(b"a.test:x"), Err(HostError::InvalidPort));
        assert_eq!(Host::parse(b"a..test"), Err(HostError::InvalidName));
        assert_eq!(Host::parse(b"a/test"), Err(HostError::InvalidChar));
        assert_eq!(Host::parse(b"[zz]"), Err(HostError::InvalidIpLiteral));
    }

    #[test]
    fn one_host_per_request() {
        let h = |v: &[&str], a: Option<&str>| {
            request_host(v.iter().map(|s| s.as_bytes()), a.map(str::as_bytes))
        };
        assert_eq!(
            h(&["Example.COM."], None).map(|h| h.to_string()),
            Ok("example.com".into())
        );
        assert_eq!(
            h(&[], Some("a.test:8443")).map(|h| h.to_string()),
            Ok("a.test:8443".into())
        );
        // The same host in two spellings is one host.
        assert!(h(&["A.test"], Some("a.test.")).is_ok());
        assert_eq!(h(&[], None), Err(RequestHostError::Missing));
        assert_eq!(
            h(&["a.test", "a.test"], None),
            Err(RequestHostError::Several)
        );
        assert_eq!(
            h(&["a.test"], Some("b.test")),
            Err(RequestHostError::Conflict)
        );
        assert_eq!(
            h(&["a.test:80"], Some("a.test")),
            Err(RequestHostError::Conflict)
        );
        assert_eq!(
            h(&["a.test:abc"], None),
            Err(RequestHostError::Invalid(HostError::InvalidPort))
        );
        assert!(matches!(
            h(&["a.test"], Some("a.test@evil")),
            Err(RequestHostError::Invalid(_))
        ));
    }

    #[test]
    fn https_url_keeps_path_and_drops_the_plain_port() {
        let url = |h: &str, port, t| Host::parse(h.as_bytes()).map(|h| h.https_url(port, t));
        assert_eq!(
            url("Example.COM:80", None, "/a?b=1").as_deref(),
            Ok("https://example.com/a?b=1")
        );
        assert_eq!(
            url("example.com.", Some(8443), "/").as_deref(),
            Ok("https://example.com:8443/")
        );
        assert_eq!(
            url("[::1]:8080", Some(8443), "/x").as_deref(),
            Ok("https://[::1]:8443/x")
        );
        assert_eq!(url("[0:0::1]", None, "/").as_deref(), Ok("https://[::1]/"));
    }
}
