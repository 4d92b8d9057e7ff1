//! The outside security review's findings (issue 15), each as the attack the
//! review made against the real binary, over HTTP/1.1 and HTTP/2 where the
//! protocol matters, with the bypass spellings around it. Every case checks
//! what the client gets and what the app received (or that it received
//! nothing).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/h2raw.rs"]
mod h2raw;
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use h2raw::{frame, hpack_literal, H2Conn, END_HEADERS, END_STREAM, HEADERS};
use reqwest::header::HeaderValue;
use support::config::{basic, basic_with};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deny rules that the review bypassed, in front of a public catch-all.
const ROUTES: &str = r#"
[[route]]
path = "/api"
methods = ["POST", "PUT", "DELETE", "PATCH"]
access = "deny"
[[route]]
path = "/reports"
methods = ["GET"]
access = "deny"
[[route]]
host = "admin.test"
path = "/"
access = "deny"
[[route]]
path = "/forms"
methods = ["POST"]
method_override = true
[[route]]
path = "/"
access = "public"
"#;

struct Env {
    pki: TestPki,
    up: Upstream,
    gw: Gateway,
}

impl Env {
    fn start(server_extra: &str, extra: &str) -> Env {
        let (pki, up) = (TestPki::new(), Upstream::start());
        let gw = Gateway::start(&basic_with(&pki, &[up.addr()], server_extra, extra));
        Env { pki, up, gw }
    }

    /// One raw HTTP/1.1 request over TLS.
    async fn raw(&self, request: &[u8]) -> RawResponse {
        raw_tls(self.gw.https_port, &self.pki.ca_pem, "localhost", request).await
    }

    /// Status of a raw request, and whether the app saw anything.
    async fn status_and_reached(&self, request: &[u8]) -> (u16, bool) {
        let before = self.up.hits();
        let status = self.raw(request).await.status;
        (status, self.up.hits() > before)
    }

    /// One HTTP/2 request from raw frames: `(name, value)` pairs in order,
    /// pseudo-headers first. `Some(true)` when the response is 200, `Some(false)`
    /// for any other response or a stream reset, `None` if nothing came.
    async fn h2(&self, fields: &[(&[u8], &[u8])]) -> Option<bool> {
        let mut c = H2Conn::open(self.gw.https_port, &self.pki.ca_pem).await;
        let mut block = Vec::new();
        for (name, value) in fields {
            block.extend(hpack_literal(name, value));
        }
        c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .await
            .expect("send");
        c.wait_for(Duration::from_secs(5), |f| match f.ty {
            // `:status: 200` is static-table entry 8 (0x88).
            HEADERS if f.stream == 1 => Some(f.payload.first() == Some(&0x88)),
            h2raw::RST_STREAM if f.stream == 1 => Some(false),
            h2raw::GOAWAY => Some(false),
            _ => None,
        })
        .await
    }
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn with_method(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// An HTTP/1.1 connection over TLS to the gateway with `head` (and
/// `body_part`) written, left open for the test to go on with.
async fn open_with(
    port: u16,
    ca_pem: &str,
    head: &[u8],
    body_part: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut s = support::client::tls_connect(port, ca_pem, "localhost", &[b"http/1.1"])
        .await
        .expect("connect");
    s.write_all(head).await.expect("head");
    s.write_all(body_part).await.expect("part of the body");
    s.flush().await.expect("flush");
    s
}

/// Reads until one response head (interim or final) is complete, the
/// connection ends, or `wait` passes; returns what was read.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// Finding 1: a method spelled in lower or mixed case fell through a
/// POST-only deny rule to the public route, and the app upper-cased it.
#[tokio::test]
async fn methods_in_any_case_never_fall_through() {
    let env = Env::start("", ROUTES);
    assert_eq!(
        env.status_and_reached(&with_method("POST", "/api/users"))
            .await,
        (403, false),
        "control: POST is denied"
    );
    assert_eq!(
        env.status_and_reached(&with_method("GET", "/api/users"))
            .await,
        (200, true),
        "control: GET falls through to the public route"
    );
    for m in [
        "post", "Post", "pOST", "delete", "Delete", "put", "patch", "get", "Get", "head",
    ] {
        assert_eq!(
            env.status_and_reached(&with_method(m, "/api/users")).await,
            (400, false),
            "HTTP/1.1 {m}"
        );
    }
    // HTTP/2: the same spellings in :method.
    for m in ["post", "Post", "delete", "get"] {
        let before = env.up.hits();
        let ok = env
            .h2(&[
                (b":method", m.as_bytes()),
                (b":scheme", b"https"),
                (b":path", b"/api/users"),
                (b":authority", b"localhost"),
            ])
            .await;
        assert_eq!(ok, Some(false), "HTTP/2 {m}");
        assert_eq!(env.up.hits(), before, "HTTP/2 {m} reached the app");
    }
    let before = env.up.hits();
    let ok = env
        .h2(&[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/api/users"),
            (b":authority", b"localhost"),
        ])
        .await;
    assert_eq!(ok, Some(true), "control: HTTP/2 GET");
    assert_eq!(env.up.hits(), before + 1);
}

/// Finding 1: `GET` covers `HEAD`, as the app serves HEAD from the GET view.
#[tokio::test]
async fn head_is_judged_by_the_get_rule() {
    let env = Env::start("", ROUTES);
    for m in ["GET", "HEAD"] {
        assert_eq!(
            env.status_and_reached(&with_method(m, "/reports/q3")).await,
            (403, false),
            "{m} /reports"
        );
    }
    assert_eq!(
        env.status_and_reached(&with_method("POST", "/reports/q3"))
            .await,
        (200, true),
        "POST is not in the rule's methods: the public route"
    );
}

/// Finding 1: method-override headers are removed, in any spelling, unless
/// the route opts in; a route that opts in must match the overriding method.
#[tokio::test]
async fn method_override_headers_are_removed_unless_the_route_opts_in() {
    let env = Env::start("", ROUTES);
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X_HTTP_Method_Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let req = format!(
            "POST /things HTTP/1.1\r\nHost: localhost\r\n{name}: DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(env.raw(req.as_bytes()).await.status, 200, "{name}");
        let seen = env.up.last_request().expect("forwarded");
        assert!(
            !seen.headers.iter().any(|(n, _)| {
                let n = n.replace('_', "-");
                n.contains("method")
            }),
            "{name} reached the app: {:?}",
            seen.headers
        );
    }
    // /forms opts in: the overriding method must match /forms too.
    let req = |method: &str| {
        format!(
            "POST /forms HTTP/1.1\r\nHost: localhost\r\nX-HTTP-Method-Override: {method}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    assert_eq!(env.status_and_reached(&req("POST")).await, (200, true));
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(seen.header("x-http-method-override"), Some("POST"));
    // DELETE would be the public route's business, not /forms': refused.
    for m in ["DELETE", "delete", "PUT", ""] {
        assert_eq!(
            env.status_and_reached(&req(m)).await,
            (400, false),
            "override {m:?}"
        );
    }
    let two = b"POST /forms HTTP/1.1\r\nHost: localhost\r\nX-HTTP-Method-Override: POST\r\nX-Method-Override: DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(
        env.status_and_reached(two).await,
        (400, false),
        "two overrides"
    );
}

/// Finding 2: a Host the gateway could not parse skipped the host rule and
/// was forwarded; Starlette read it as `admin.test`.
#[tokio::test]
async fn hosts_are_one_strict_value() {
    let env = Env::start("", ROUTES);
    assert_eq!(
        env.status_and_reached(&get("/", "admin.test")).await,
        (403, false),
        "control"
    );
    for host in [
        "ADMIN.test",
        "admin.test.",
        "Admin.Test:443",
        "admin.test:8443",
    ] {
        assert_eq!(
            env.status_and_reached(&get("/", host)).await,
            (403, false),
            "{host}"
        );
    }
    for host in [
        "admin.test:abc",
        "admin.test:99999",
        "admin.test:443x",
        "admin.test:-1",
        "admin.test:1:2",
        "admin.test:",
        "admin.test..",
        "admin.test/x",
        "admin.test?x",
        "admin.test#x",
        "a.test,evil.example",
        "admin%2etest",
        "admin.test\\",
        "user@admin.test",
        "[::1",
        "",
    ] {
        assert_eq!(
            env.status_and_reached(&get("/", host)).await,
            (400, false),
            "Host: {host:?}"
        );
    }
    // Non-ASCII bytes in Host.
    let req = b"GET / HTTP/1.1\r\nHost: admin.t\xc3\xa9st\r\nConnection: close\r\n\r\n";
    assert_eq!(
        env.status_and_reached(req).await,
        (400, false),
        "UTF-8 host"
    );
    // Absolute form: its authority is parsed the same way and must agree.
    for (target, host) in [
        ("https://admin.test:abc/", "admin.test"),
        ("https://admin.test../", "admin.test"),
        ("https://localhost/", "admin.test"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            env.status_and_reached(req.as_bytes()).await,
            (400, false),
            "{target} with Host {host}"
        );
    }
    // No Host at all: HTTP/1.1 and HTTP/1.0 alike; two Hosts.
    for req in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: admin.test\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(
            env.status_and_reached(req).await,
            (400, false),
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    // HTTP/2 :authority.
    for authority in [&b"admin.test:abc"[..], b"admin.test..", b"admin.test:99999"] {
        let before = env.up.hits();
        let ok = env
            .h2(&[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":path", b"/"),
                (b":authority", authority),
            ])
            .await;
        assert_eq!(ok, Some(false), "{}", String::from_utf8_lossy(authority));
        assert_eq!(
            env.up.hits(),
            before,
            "{}",
            String::from_utf8_lossy(authority)
        );
    }
    // The app receives the canonical host the routes matched.
    let resp = env.raw(&get("/", "LocalHost.:8443")).await;
    assert_eq!(resp.status, 200);
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(seen.header("host"), Some("localhost:8443"));
    assert_eq!(seen.header("x-forwarded-host"), Some("localhost:8443"));
}

/// Finding 2 on the plain listener: the redirect is built from a valid host only.
#[tokio::test]
async fn the_http_listener_refuses_bad_hosts_too() {
    let env = Env::start("", ROUTES);
    let port = env.gw.http_port;
    let resp = raw_tcp(port, &get("/x", "localhost")).await;
    assert_eq!(resp.status, 301, "control");
    for host in ["admin.test:abc", "evil.example/x", "a,b", ""] {
        let resp = raw_tcp(port, &get("/x", host)).await;
        assert_eq!(resp.status, 400, "{host:?}");
        assert_eq!(resp.header("location"), None, "{host:?}");
    }
}

/// Finding 3: one non-ASCII byte in the Cookie header used to hide the
/// gateway's cookies from the strip, so they reached the app.
#[tokio::test]
async fn gateway_cookies_never_reach_the_app_whatever_bytes_surround_them() {
    let env = Env::start("", "");
    let cases: [(&[u8], &[u8]); 5] = [
        (
            b"Cookie: __Host-portcullis=tok; name=Jos\xc3\xa9\r\n",
            b"name=Jos\xc3\xa9",
        ),
        (
            b"Cookie: name=Jos\xc3\xa9\r\nCookie: app=1; __Host-portcullis-csrf=c\r\n",
            b"name=Jos\xc3\xa9; app=1",
        ),
        (
            b"Cookie: __Host-portcullis-emergency=e\xff; __host-portcullis=x; keep=\xfe\r\n",
            b"keep=\xfe",
        ),
        (b"Cookie: app=1\r\nCookie: name=Jos\xc3\xa9\r\n", b"app=1"),
        (b"Cookie: __Host-portcullis=a\r\n", b""),
    ];
    for (i, (cookie, kept)) in cases.iter().enumerate() {
        let mut req = b"GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
        req.extend_from_slice(cookie);
        req.extend_from_slice(b"\r\n");
        assert_eq!(env.raw(&req).await.status, 200, "case {i}");
        let seen = env.up.last_request().expect("forwarded");
        let cookies = seen.header_all("cookie").join("; ");
        assert!(
            !cookies.to_ascii_lowercase().contains("portcullis"),
            "case {i}: {cookies:?}"
        );
        let kept = String::from_utf8_lossy(kept);
        if kept.is_empty() {
            assert!(cookies.is_empty(), "case {i}: {cookies:?}");
        } else {
            assert!(
                cookies.contains(kept.as_ref()),
                "case {i}: {cookies:?} lacks {kept:?}"
            );
        }
    }
    // The app's own cookies pass byte for byte when there is nothing to strip.
    let raw_value: &[u8] = b"name=Jos\xc3\xa9; x=\"a b\"";
    let client = https_client(&env.pki.ca_pem, env.gw.https_port, true);
    let resp = client
        .get(env.gw.url("/c"))
        .header("cookie", HeaderValue::from_bytes(raw_value).expect("value"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "HTTP/2");
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(
        seen.header("cookie"),
        Some(String::from_utf8_lossy(raw_value).as_ref())
    );
}

/// Finding 6: client-IP headers of other proxies and user headers of other
/// products are removed unless the operator keeps one.
#[tokio::test]
async fn foreign_client_ip_and_user_headers_are_removed() {
    let names = [
        "True-Client-IP",
        "X-Client-IP",
        "Client-IP",
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "X-Cluster-Client-IP",
        "X-Remote-User",
        "Remote-User",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Original-URL",
        "X-Rewrite-URL",
        "Cf_Connecting_Ip",
        "REMOTE_USER",
    ];
    let mut req = String::from("GET /h HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for n in names {
        req.push_str(&format!("{n}: 6.6.6.6\r\n"));
    }
    req.push_str("X-App-Header: kept\r\n\r\n");

    let env = Env::start("", "");
    assert_eq!(env.raw(req.as_bytes()).await.status, 200);
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(seen.header("x-app-header"), Some("kept"), "control");
    for n in names {
        let spelled = n.to_ascii_lowercase();
        assert_eq!(seen.header(&spelled), None, "{n} reached the app");
    }

    let env = Env::start("pass_client_headers = [\"CF-Connecting-IP\"]", "");
    assert_eq!(env.raw(req.as_bytes()).await.status, 200);
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(
        seen.header("cf-connecting-ip"),
        Some("6.6.6.6"),
        "kept by name"
    );
    assert_eq!(seen.header("true-client-ip"), None);
    assert_eq!(seen.header("x-remote-user"), None);
}

/// Finding 6: with `case_insensitive_paths`, reserved paths are reserved in
/// any case, and non-ASCII paths (which Unicode case folding could map onto
/// a denied ASCII path) are refused.
#[tokio::test]
async fn case_insensitive_mode_reserves_and_refuses() {
    let routes = "[[route]]\npath = \"/keys\"\naccess = \"deny\"\n[[route]]\npath = \"/settings\"\naccess = \"deny\"\n";
    let env = Env::start("case_insensitive_paths = true", routes);
    assert_eq!(
        env.status_and_reached(&get("/KEYS", "localhost")).await,
        (403, false),
        "control: ASCII folding"
    );
    for path in [
        "/.PORTCULLIS/login",
        "/.Portcullis/health",
        "/.portcullis/HEALTH",
        "/.PORTCULLIS",
    ] {
        let (status, reached) = env.status_and_reached(&get(path, "localhost")).await;
        assert!(!reached, "{path} reached the app ({status})");
    }
    let resp = env.raw(&get("/.PORTCULLIS/HEALTH", "localhost")).await;
    assert_eq!(resp.status, 200, "answered as the reserved path");
    for path in ["/CAF%C3%89", "/%E2%84%AAeys", "/%C5%BFettings", "/a/%c3%a9"] {
        assert_eq!(
            env.status_and_reached(&get(path, "localhost")).await,
            (400, false),
            "{path}"
        );
    }
    // Without the mode, a non-ASCII path is an ordinary path.
    let env = Env::start("", routes);
    assert_eq!(
        env.status_and_reached(&get("/CAF%C3%89", "localhost"))
            .await,
        (200, true)
    );
}

/// Finding 6: with `[cors]`, the app's own CORS headers never reach the
/// client; the gateway's policy answers alone.
#[tokio::test]
async fn with_cors_the_gateway_owns_the_cors_headers() {
    let cors = "[cors]\nallow_origins = [\"https://good.example\"]\nallow_credentials = true\n";
    let env = Env::start("", cors);
    let target = "/with-headers?access-control-allow-origin=https%3A%2F%2Fevil.example&access-control-allow-credentials=true&access-control-expose-headers=x-secret";
    for (origin, want) in [
        ("https://evil.example", None),
        ("https://good.example", Some("https://good.example")),
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        );
        let resp = env.raw(req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{origin}");
        assert_eq!(
            resp.header_all("access-control-allow-origin").len(),
            usize::from(want.is_some()),
            "{origin}: {:?}",
            resp.headers
        );
        assert_eq!(resp.header("access-control-allow-origin"), want, "{origin}");
        assert_eq!(
            resp.header("access-control-expose-headers"),
            None,
            "{origin}"
        );
        if want.is_none() {
            assert_eq!(
                resp.header("access-control-allow-credentials"),
                None,
                "{origin}"
            );
        }
    }
    // Without [cors], the app's headers are the app's business.
    let env = Env::start("", "");
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n");
    let resp = env.raw(req.as_bytes()).await;
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://evil.example")
    );
}

/// Finding 6: `rate_key = "header:X-Api-Key"` keyed on the first of two
/// copies; two keys in any spelling are now refused.
#[tokio::test]
async fn a_duplicated_rate_key_header_is_refused() {
    let routes = "[[route]]\npath = \"/api\"\nrate_limit = \"100/minute\"\nrate_key = \"header:X-Api-Key\"\n";
    let env = Env::start("", routes);
    let req = |headers: &str| {
        format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes()
    };
    assert_eq!(
        env.status_and_reached(&req("X-Api-Key: a\r\n")).await,
        (200, true)
    );
    assert_eq!(
        env.status_and_reached(&req("")).await,
        (200, true),
        "no key: per IP"
    );
    for dup in [
        "X-Api-Key: a\r\nX-Api-Key: b\r\n",
        "X-Api-Key: a\r\nx-api-key: a\r\n",
        "X-Api-Key: a\r\nX_Api_Key: b\r\n",
    ] {
        assert_eq!(
            env.status_and_reached(&req(dup)).await,
            (400, false),
            "{dup:?}"
        );
    }
}

/// A one-shot raw upstream: answers every request on each connection with
/// `response`, then keeps the connection open a moment and records whether
/// bytes after the response head arrived (a tunnel would forward them).
fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(response);
                let _ = stream.read(&mut buf);
            });
        }
    });
    addr
}

/// Finding 6: an upstream 101 without a matching upgrade turned the client
/// connection into a raw tunnel.
#[tokio::test]
async fn an_unrequested_101_is_a_bad_gateway() {
    let pki = TestPki::new();
    for response in [
        &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ] {
        let up = raw_upstream(response);
        let gw = Gateway::start(&basic(&pki, &[up], ""));
        // A plain GET (no Upgrade asked for).
        let head = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut s = open_with(gw.https_port, &pki.ca_pem, head, b"").await;
        let got = read_head(&mut s, Duration::from_secs(5)).await;
        let head = String::from_utf8_lossy(&got);
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    }
    // The client asked for websocket; the app switched to something else.
    let up = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    );
    let gw = Gateway::start(&basic(&pki, &[up], ""));
    let resp = raw_tls(
        gw.https_port,
        &pki.ca_pem,
        "localhost",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 502);
}

/// The control for the 101 rule: a real WebSocket upgrade still works.
#[tokio::test]
async fn a_requested_websocket_upgrade_still_works() {
    let env = Env::start("", "");
    let mut ws = websocket_tls(env.gw.https_port, &env.pki.ca_pem, "/ws").await;
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
        .await
        .expect("send");
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(msg.into_text().expect("text").as_str(), "ping");
}

/// Finding 5: a client declaring a body and sending part of it used to hold
/// an upstream request (and a sync worker) until `read_timeout`. Small bodies
/// are now read whole before the upstream is contacted, within `body_timeout`.
#[tokio::test]
async fn a_slow_small_body_never_reaches_the_app() {
    let env = Env::start("body_timeout = \"2s\"", "");
    // Control: a whole body is forwarded intact.
    let body = "x".repeat(1000);
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{body}"
    );
    assert_eq!(env.raw(req.as_bytes()).await.status, 200);
    assert_eq!(env.up.last_request().expect("forwarded").body.len(), 1000);

    let before = env.up.hits();
    let head = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n";
    let mut s = open_with(env.gw.https_port, &env.pki.ca_pem, head, &[b'x'; 100]).await;
    // While it stalls, the app has seen nothing and others are served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.up.hits(),
        before,
        "the app was contacted for a partial body"
    );
    assert_eq!(env.raw(&get("/other", "localhost")).await.status, 200);
    let started = std::time::Instant::now();
    let resp = support::client::read_response(&mut s, false).await;
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        env.up.hits(),
        before + 1,
        "only the other request reached the app"
    );

    // HTTP/2: the same through a stream that never ends.
    let before = env.up.hits();
    let mut c = H2Conn::open(env.gw.https_port, &env.pki.ca_pem).await;
    let mut block = Vec::new();
    for (name, value) in [
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"https"),
        (b":path", b"/echo"),
        (b":authority", b"localhost"),
        (b"content-length", b"1000"),
    ] {
        block.extend(hpack_literal(name, value));
    }
    c.send(&frame(HEADERS, END_HEADERS, 1, &block))
        .await
        .expect("headers");
    c.send(&frame(h2raw::DATA, 0, 1, &[b'x'; 100]))
        .await
        .expect("data");
    let answered = c
        .wait_for(Duration::from_secs(8), |f| match f.ty {
            HEADERS if f.stream == 1 => Some(f.payload.first() != Some(&0x88)),
            h2raw::RST_STREAM if f.stream == 1 => Some(true),
            _ => None,
        })
        .await;
    assert_eq!(answered, Some(true), "HTTP/2 slow body answered (not 200)");
    assert_eq!(env.up.hits(), before, "HTTP/2: the app was contacted");
}

/// Finding 5, large or streaming bodies: they still stream (no buffering
/// past 64 KiB), but a stall ends the request after `body_timeout`, not the
/// upstream's 60 s `read_timeout`.
#[tokio::test]
async fn a_stalled_large_body_is_cut_off_after_body_timeout() {
    let routes = "[[route]]\npath = \"/upload\"\nbuffer_body = \"0\"\n";
    let env = Env::start("body_timeout = \"2s\"", routes);
    for (path, length) in [("/big", 1_000_000), ("/upload", 1000)] {
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n");
        let mut s = open_with(
            env.gw.https_port,
            &env.pki.ca_pem,
            head.as_bytes(),
            &[b'x'; 100],
        )
        .await;
        let started = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "{path}: still open after 20 s");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: ended after {:?}",
            started.elapsed()
        );
        let head = String::from_utf8_lossy(&got);
        assert!(!head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    }
    // A whole large body still streams through.
    let body = "y".repeat(200_000);
    let req = format!(
        "POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(env.raw(req.as_bytes()).await.status, 200);
    assert_eq!(
        env.up.last_request().expect("forwarded").body.len(),
        200_000
    );
}

/// Buffering must not stall clients that wait for `100 Continue` before
/// sending a body (curl does above 1 KiB): the gateway answers 100 itself
/// and the app sees the body without `Expect`.
#[tokio::test]
async fn expect_continue_is_answered_while_buffering() {
    let env = Env::start("", "");
    let head = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let mut s = open_with(env.gw.https_port, &env.pki.ca_pem, head, b"").await;
    let got = read_head(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(&[b'z'; 2000]).await.expect("body");
    let resp = support::client::read_response(&mut s, false).await;
    assert_eq!(resp.status, 200);
    let seen = env.up.last_request().expect("forwarded");
    assert_eq!(seen.body.len(), 2000);
    assert_eq!(seen.header("expect"), None);
}

/// Finding 5, slow but steady: a streamed body that keeps trickling (never
/// pausing `body_timeout`) must still average `body_min_rate` once
/// `body_timeout` has passed, or the request ends with 408.
#[tokio::test]
async fn a_trickled_streamed_body_is_cut_off_below_the_minimum_rate() {
    let routes = "[[route]]\npath = \"/upload\"\nbuffer_body = \"0\"\n";
    let env = Env::start("body_timeout = \"2s\"\nbody_min_rate = \"1KB\"", routes);
    let head = b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n";
    let mut s = open_with(env.gw.https_port, &env.pki.ca_pem, head, b"").await;
    let started = std::time::Instant::now();
    // 100 bytes every 250 ms: 400 B/s, never a 2 s pause.
    let mut cut_off = None;
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(&[b't'; 100]).await.is_err() || s.flush().await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                let head = String::from_utf8_lossy(&buf[..n]);
                assert!(head.starts_with("HTTP/1.1 408"), "{head}");
                cut_off = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let cut_off = cut_off.expect("the trickle was never cut off");
    assert!(
        cut_off < Duration::from_secs(8),
        "cut off after {cut_off:?}"
    );
}
