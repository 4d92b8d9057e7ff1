//! Which HTTP/1 request heads the gateway's lean path may serve.
//!
//! The gateway proxies most requests through its own short loop on
//! pingora-core's sessions instead of pingora-proxy (issue 22; the
//! gateway's `proxy::lean`). That loop forwards a bodiless request and
//! streams the answer back; it has no request body pump, no upgrade tunnel,
//! no `100 Continue`, no absolute-form authority reconciling and no
//! hop-by-hop header stripping. So it may only take heads for which every
//! one of those pingora-proxy steps would do nothing: [`classify`] says
//! [`Head::Simple`] for those alone, and everything else (anything odd,
//! malformed or merely unusual) stays on pingora-proxy, which reads the same
//! bytes as if nothing had happened.

/// What the bytes read so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Not a complete head yet, and nothing says it cannot become a simple
    /// one: read more.
    Partial,
    /// A complete head, alone in the buffer, that the lean path may serve.
    Simple,
    /// Anything else: pingora-proxy's.
    Other,
}

/// More header lines than this and the head is pingora-proxy's.
pub const MAX_HEADERS: usize = 64;

/// Request fields that make pingora-proxy do something for the request:
/// frame or pump a body (`content-length`, `transfer-encoding`, `expect`),
/// start a tunnel (`upgrade`, `http2-settings`) or strip hop-by-hop fields
/// (`keep-alive`, `proxy-connection`, `proxy-authenticate`,
/// `proxy-authorization`, `te`, `trailer`). Compared ASCII
/// case-insensitively, exactly as spelled (`content_length` is another
/// field, forwarded as it is on both paths).
const OTHER_FIELDS: [&[u8]; 11] = [
    b"content-length",
    b"transfer-encoding",
    b"expect",
    b"upgrade",
    b"http2-settings",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
];

/// Classifies the bytes read so far from a connection.
///
/// Simple: the method first (no empty line before it), `GET` or `HEAD`, `HTTP/1.1`, an origin-form target of visible
/// ASCII, exactly one `Host`, no field of [`OTHER_FIELDS`], at most one
/// `Connection` whose value is `keep-alive` or `close` (pingora-proxy drops
/// it and nominates nothing else), at most [`MAX_HEADERS`] fields, and no
/// byte after the head (a pipelined request is pingora-proxy's to refuse).
pub fn classify(buf: &[u8]) -> Head {
    // httparse skips empty lines before the request line (RFC 9112 §2.2
    // allows it); a head that starts with one is left to pingora-proxy,
    // whose raw-head readers see it as it came.
    if buf.first().is_some_and(|b| !b.is_ascii_uppercase()) {
        return Head::Other;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let simple = len == buf.len()
        && req.version == Some(1)
        && matches!(req.method, Some("GET" | "HEAD"))
        && req.path.is_some_and(origin_form)
        && simple_fields(req.headers);
    if simple {
        Head::Simple
    } else {
        Head::Other
    }
}

/// `/` then visible ASCII only.
fn origin_form(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic())
}

fn simple_fields(fields: &[httparse::Header<'_>]) -> bool {
    let mut hosts = 0;
    let mut connections = 0;
    for field in fields {
        let name = field.name.as_bytes();
        if OTHER_FIELDS.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            return false;
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connections += 1;
            let value = field.value.trim_ascii();
            if !(value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close"))
            {
                return false;
            }
        }
    }
    hosts == 1 && connections <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut h = lines.join("\r\n").into_bytes();
        h.extend_from_slice(b"\r\n\r\n");
        h
    }

    #[test]
    fn plain_gets_and_heads_are_simple() {
        for h in [
            head(&["GET / HTTP/1.1", "Host: a.example"]),
            head(&["HEAD /x?y=1 HTTP/1.1", "host: a.example", "Accept: */*"]),
            head(&["GET /a HTTP/1.1", "Host: a", "Connection: keep-alive"]),
            head(&["GET /a HTTP/1.1", "Host: a", "connection:  CLOSE "]),
            head(&[
                "GET /a HTTP/1.1",
                "Host: a",
                "Cookie: x=1",
                "Content_Length: 5",
            ]),
        ] {
            assert_eq!(
                classify(&h),
                Head::Simple,
                "{}",
                String::from_utf8_lossy(&h)
            );
        }
        // LF-only line ends are a complete head too.
        assert_eq!(classify(b"GET / HTTP/1.1\nHost: a\n\n"), Head::Simple);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let h = head(&["GET / HTTP/1.1", "Host: a.example"]);
        for cut in 0..h.len() {
            assert_eq!(classify(&h[..cut]), Head::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn anything_unusual_is_pingoras() {
        for h in [
            // methods with bodies, CONNECT, OPTIONS, lower-case spelling
            head(&["POST / HTTP/1.1", "Host: a"]),
            head(&["CONNECT a:443 HTTP/1.1", "Host: a"]),
            head(&["OPTIONS * HTTP/1.1", "Host: a"]),
            head(&["get / HTTP/1.1", "Host: a"]),
            // other versions
            head(&["GET / HTTP/1.0", "Host: a"]),
            // absolute-form and odd targets
            head(&["GET http://a/ HTTP/1.1", "Host: a"]),
            head(&["GET a/b HTTP/1.1", "Host: a"]),
            // hosts: none, two
            head(&["GET / HTTP/1.1"]),
            head(&["GET / HTTP/1.1", "Host: a", "HOST: b"]),
            // body framing, in any case
            head(&["GET / HTTP/1.1", "Host: a", "Content-Length: 0"]),
            head(&["GET / HTTP/1.1", "Host: a", "TRANSFER-ENCODING: chunked"]),
            head(&["GET / HTTP/1.1", "Host: a", "Expect: 100-continue"]),
            // upgrades and hop-by-hop fields
            head(&[
                "GET / HTTP/1.1",
                "Host: a",
                "Upgrade: websocket",
                "Connection: Upgrade",
            ]),
            head(&[
                "GET / HTTP/1.1",
                "Host: a",
                "HTTP2-Settings: AAMAAABkAAQAAP__",
            ]),
            head(&["GET / HTTP/1.1", "Host: a", "Keep-Alive: timeout=5"]),
            head(&["GET / HTTP/1.1", "Host: a", "Proxy-Connection: keep-alive"]),
            head(&[
                "GET / HTTP/1.1",
                "Host: a",
                "Proxy-Authorization: Basic eDp5",
            ]),
            head(&["GET / HTTP/1.1", "Host: a", "TE: trailers"]),
            head(&["GET / HTTP/1.1", "Host: a", "Trailer: x"]),
            // a Connection that nominates fields, or two of them
            head(&[
                "GET / HTTP/1.1",
                "Host: a",
                "Connection: keep-alive, x-forwarded-for",
            ]),
            head(&[
                "GET / HTTP/1.1",
                "Host: a",
                "Connection: close",
                "Connection: close",
            ]),
        ] {
            assert_eq!(classify(&h), Head::Other, "{}", String::from_utf8_lossy(&h));
        }
    }

    #[test]
    fn bytes_outside_visible_ascii_are_pingoras() {
        for target in ["/caf\u{e9}", "/a\tb", "/a%00"] {
            let h = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let expect = if target == "/a%00" {
                Head::Simple
            } else {
                Head::Other
            };
            assert_eq!(classify(h.as_bytes()), expect, "{target:?}");
        }
        // Raw bytes a parser might be lenient about.
        assert_eq!(
            classify(b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Head::Other
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), Head::Other);
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), Head::Other);
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n"),
            Head::Other
        );
    }

    #[test]
    fn empty_lines_before_the_request_line_are_pingoras() {
        for h in [
            &b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\nGET / HTTP/1.1\nHost: a\n\n",
            b"\r",
        ] {
            assert_eq!(classify(h), Head::Other, "{h:?}");
        }
    }

    #[test]
    fn a_pipelined_request_or_body_bytes_are_pingoras() {
        let mut h = head(&["GET / HTTP/1.1", "Host: a"]);
        h.extend_from_slice(b"GET /2 HTTP/1.1\r\n");
        assert_eq!(classify(&h), Head::Other);
    }

    #[test]
    fn too_many_fields_are_pingoras() {
        let mut lines = vec!["GET / HTTP/1.1".to_string(), "Host: a".to_string()];
        lines.extend((0..MAX_HEADERS).map(|i| format!("X-{i}: 1")));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(classify(&head(&lines)), Head::Other);
    }
}
