//! The lean HTTP/1.1 path against pingora-proxy (issue 22): the gateway
//! serves a simple bodiless `GET`/`HEAD` through its own short loop
//! (`proxy::lean`) and everything else through pingora-proxy. Each request
//! here is sent twice over raw TLS: as it is (the lean path) and with a
//! `Content-Length: 0`, which changes nothing about its meaning but sends it
//! through pingora-proxy. The client must get the same answer and the app
//! the same request either way — statuses, every header in order, bodies,
//! interim responses, closes — for proxied answers, the gateway's own
//! answers, the app's close-delimited and `101` answers and an unreachable
//! app.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread;

use support::config::basic;
use support::*;

/// Headers that differ on purpose between any two requests.
const VARYING: [&str; 3] = ["x-request-id", "date", "content-length"];

fn stable(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| !VARYING.contains(&n.as_str()))
        .collect()
}

/// `request` with `Content-Length: 0` added after the request line.
fn through_pingora(request: &str) -> String {
    let (line, rest) = request.split_once("\r\n").expect("request line");
    format!("{line}\r\nContent-Length: 0\r\n{rest}")
}

/// What the client and the app saw of one request.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Interim responses before the final one.
    interim: usize,
    /// The app's view, without what varies per request.
    app: Option<Vec<(String, String)>>,
}

async fn send(port: u16, pki: &TestPki, up: Option<&Upstream>, request: &str) -> Seen {
    let before = up.map_or(0, Upstream::hits);
    let resp = raw_tls(port, &pki.ca_pem, "localhost", request.as_bytes()).await;
    let app = up
        .filter(|u| u.hits() > before)
        .and_then(Upstream::last_request)
        .map(|r| stable(&r.headers));
    let text = String::from_utf8_lossy(&resp.raw);
    let body = if resp.header("content-type") == Some("application/json") && app.is_some() {
        // The echo's JSON names the request's own id and length: compare
        // what the app saw through `app` instead.
        Vec::new()
    } else {
        resp.body.clone()
    };
    Seen {
        status: resp.status,
        headers: stable(&resp.headers),
        body,
        interim: text.matches("HTTP/1.1 1").count() - usize::from(resp.status / 100 == 1),
        app,
    }
}

/// Both paths, and the answer they agree on.
async fn same_both_ways(port: u16, pki: &TestPki, up: Option<&Upstream>, request: &str) -> Seen {
    let lean = send(port, pki, up, request).await;
    let full = send(port, pki, up, &through_pingora(request)).await;
    assert_eq!(
        lean, full,
        "lean and pingora-proxy paths differ for:\n{request}"
    );
    lean
}

fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

const PASSWORD: &str = "alice-password-1";

#[tokio::test]
async fn proxied_answers_are_the_same_on_both_paths() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let routes = "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
                  [[route]]\npath = \"/private\"\naccess = \"login\"\n\
                  [[route]]\npath = \"/limited\"\nrate_limit = \"2/minute\"\n";
    let hash = policies::users::hash_password(PASSWORD).expect("hash");
    let gw = GatewayBuilder::new(&basic(&pki, &[up.addr()], routes))
        .env(
            "PORTCULLIS_SESSION_KEYS",
            "key-A-0123456789abcdefghijklmnopqrstuvwxyz",
        )
        .users(&format!(
            "[users.alice]\npassword = \"{hash}\"\nroles = [\"staff\"]\n"
        ))
        .start();
    let port = gw.https_port;
    let u = Some(&up);
    let client = https_client(&pki.ca_pem, port, false);
    let cookie = login::login(&client, &gw.url(""), "alice", PASSWORD).await;

    // Signed in: the identity headers the app gets, the session cookie it
    // never sees.
    let seen = same_both_ways(
        port,
        &pki,
        u,
        &get(
            "/private/page",
            &format!("Cookie: {cookie}; theme=dark\r\n"),
        ),
    )
    .await;
    assert_eq!(seen.status, 200);
    let app = seen.app.expect("the app saw the request");
    assert!(
        app.contains(&("x-forwarded-user".into(), "alice".into())),
        "{app:?}"
    );
    assert!(
        app.contains(&("cookie".into(), "theme=dark".into())),
        "{app:?}"
    );

    // What the app receives: spoofed forwarding headers replaced, the
    // gateway's cookie never passed, the client's own kept.
    let seen = same_both_ways(
        port,
        &pki,
        u,
        &get(
            "/hello?x=1&y=%2F",
            "Accept: text/html\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
             Cookie: theme=dark; __Host-portcullis=forged\r\nX-Forwarded-User: admin\r\nx_forwarded_user: admin\r\n",
        ),
    )
    .await;
    assert_eq!(seen.status, 200);
    let app = seen.app.expect("the app saw the request");
    assert!(
        app.contains(&("x-forwarded-for".into(), "127.0.0.1".into())),
        "{app:?}"
    );
    assert!(
        app.contains(&("cookie".into(), "theme=dark".into())),
        "{app:?}"
    );
    assert!(!app
        .iter()
        .any(|(n, _)| n == "x-forwarded-user" || n == "x_forwarded_user" || n == "connection"));

    for request in [
        get("/plain", "Connection: keep-alive\r\n"),
        get("/plain", "Connection: close\r\n"),
        "HEAD /plain HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        get("/status/204", ""),
        get("/status/304", ""),
        get("/status/404", ""),
        get("/status/503", ""),
        // The app's leaky headers go, its own security headers stay.
        get("/leaky", ""),
        get(
            "/with-headers?Content-Security-Policy=default-src%20%27none%27&Set-Cookie=a%3D1",
            "",
        ),
        // Streamed, chunked.
        get("/stream?chunks=3&ms=20", ""),
        get("/range", "Range: bytes=10-19\r\n"),
        // Bodies many reads and TLS records long, with a length and
        // chunked: relayed piece by piece, each piece its own task.
        get("/bytes?n=1000003", ""),
        get("/bytes?n=1000003&chunked", ""),
        // The gateway's own answers: a login redirect, a refused path,
        // an unknown host.
        get("/private", "Accept: text/html\r\n"),
        get("/private", "Accept: application/json\r\n"),
        get("/a/../../etc/passwd", ""),
        "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_string(),
    ] {
        same_both_ways(port, &pki, u, &request).await;
    }

    // Both paths agreeing is not enough for the long bodies: they arrive whole.
    let expected: Vec<u8> = (0..1_000_003usize).map(|i| (i * 7 % 251) as u8).collect();
    for query in ["n=1000003", "n=1000003&chunked"] {
        let seen = send(port, &pki, u, &get(&format!("/bytes?{query}"), "")).await;
        assert_eq!(seen.status, 200);
        assert!(seen.body == expected, "{query}: {} bytes", seen.body.len());
    }

    // A rate limit counts requests on both paths alike: 2 allowed, then 429.
    let first = send(port, &pki, u, &get("/limited", "")).await;
    let second = send(port, &pki, u, &through_pingora(&get("/limited", ""))).await;
    let third = send(port, &pki, u, &get("/limited", "")).await;
    let fourth = send(port, &pki, u, &through_pingora(&get("/limited", ""))).await;
    assert_eq!(
        [first.status, second.status, third.status, fourth.status],
        [200, 200, 429, 429]
    );
}

/// A one-connection-at-a-time app that answers every request with `answer`
/// and closes: close-delimited bodies, interim responses, stray `101`s.
fn raw_app(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = conn.write_all(answer);
        }
    });
    addr
}

#[tokio::test]
async fn odd_app_answers_are_the_same_on_both_paths() {
    let pki = TestPki::new();
    let cases: [(&'static [u8], u16); 4] = [
        // HTTP/1.0, no length: sent on chunked so the client's connection lives.
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
            200,
        ),
        // An early hint, then the answer.
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            200,
        ),
        // A 101 nobody asked for is the app's fault.
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            502,
        ),
        // Garbage.
        (b"NOT HTTP AT ALL\r\n\r\n", 502),
    ];
    for (answer, status) in cases {
        let gw = Gateway::start(&basic(&pki, &[raw_app(answer)], ""));
        let seen = same_both_ways(gw.https_port, &pki, None, &get("/x", "")).await;
        assert_eq!(seen.status, status, "{}", String::from_utf8_lossy(answer));
        if status == 200 {
            assert!(!seen.body.is_empty());
        }
    }
    // Nothing listening: 502 both ways.
    let gw = Gateway::start(&basic(&pki, &[dead_addr()], ""));
    let seen = same_both_ways(gw.https_port, &pki, None, &get("/x", "")).await;
    assert_eq!(seen.status, 502);
}

/// An app that answers the first request on each connection and closes the
/// connection, unanswered, when a second one arrives on it: a pooled
/// connection that the app's idle timeout closed just as the gateway
/// reused it.
fn one_answer_per_connection() -> SocketAddr {
    fn read_head(conn: &mut std::net::TcpStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                if read_head(&mut conn) {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    // The next request on this connection is never answered.
                    read_head(&mut conn);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_pooled_connection_the_app_closed_is_retried_on_a_new_one() {
    let pki = TestPki::new();
    let gw = Gateway::start(&basic(&pki, &[one_answer_per_connection()], ""));
    // Each path keeps its own pool: from the second request on, each finds
    // the connection of the one before, which the app then closes.
    for request in [get("/x", ""), through_pingora(&get("/x", ""))] {
        for i in 0..3 {
            let seen = send(gw.https_port, &pki, None, &request).await;
            assert_eq!(seen.status, 200, "request {i}:\n{request}\n{}", gw.stderr());
        }
    }
    // And each of those retries was logged.
    assert_eq!(
        gw.stderr().matches("retry: true").count(),
        4,
        "{}",
        gw.stderr()
    );
}
