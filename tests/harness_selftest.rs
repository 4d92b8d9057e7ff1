//! Tests of the test harness itself (tests/support), mostly without the
//! gateway: if these fail, gateway test failures mean nothing.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::client::parse_response;
use support::gateway::ListenerPorts;
use support::upstream::{range_body, RANGE_LEN};
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn echo_reports_method_target_headers_and_body_length() {
    let upstream = Upstream::start();
    let request = b"POST /echo/x?b=2&a=1 HTTP/1.1\r\nHost: localhost\r\n\
        X-Dup: one\r\nX-Other: o\r\nX-Dup: two\r\nContent-Length: 5\r\n\r\nhello";
    let resp = raw_tcp(upstream.port(), request).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));

    let json = resp.json();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["target"], "/echo/x?b=2&a=1");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["body_len"], 5);

    let seen = SeenRequest::from_json(&json);
    assert_eq!(seen.header_all("x-dup"), vec!["one", "two"]);
    assert_eq!(seen.header("X-OTHER"), Some("o"));
    assert_eq!(seen.header("host"), Some("localhost"));
    assert_eq!(seen.path(), "/echo/x");

    let last = upstream.last_request().expect("request recorded");
    assert_eq!(last.body, b"hello");
    assert_eq!(last.target, seen.target);
    assert_eq!(last.headers, seen.headers);
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn echo_keeps_connections_alive_and_counts_hits() {
    let upstream = Upstream::start();
    let client = http_client(upstream.port());
    for i in 0..3 {
        let url = format!("http://localhost:{}/n/{i}", upstream.port());
        let json: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(json["target"], format!("/n/{i}"));
    }
    assert_eq!(upstream.hits(), 3);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn range_requests_get_206_or_416() {
    let upstream = Upstream::start();
    let body = range_body();
    let port = upstream.port();

    let full = raw_tcp(port, &get("/range", "")).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, body);
    assert_eq!(full.header("accept-ranges"), Some("bytes"));

    let cases = [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=995-5000", 995, 999),
    ];
    for (range, first, last) in cases {
        let resp = raw_tcp(port, &get("/range?x=1", &format!("Range: {range}\r\n"))).await;
        assert_eq!(resp.status, 206, "{range}");
        let expected = format!("bytes {first}-{last}/{RANGE_LEN}");
        assert_eq!(resp.header("content-range"), Some(expected.as_str()));
        assert_eq!(resp.body, body[first..=last]);
    }

    for range in ["bytes=1000-", "bytes=-0"] {
        let resp = raw_tcp(port, &get("/range", &format!("Range: {range}\r\n"))).await;
        assert_eq!(resp.status, 416, "{range}");
        assert_eq!(resp.header("content-range"), Some("bytes */1000"));
    }
}

#[tokio::test]
async fn websocket_echoes_text_and_binary() {
    let upstream = Upstream::start();
    let mut ws = websocket_tcp(upstream.port(), "/ws").await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 255])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 255])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn stream_arrives_in_pieces() {
    let upstream = Upstream::start();
    let client = http_client(upstream.port());
    let url = format!(
        "http://localhost:{}/stream?chunks=3&ms=300",
        upstream.port()
    );
    let started = Instant::now();
    let mut resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.content_length().is_none(), "streamed, not sized");

    let first = resp.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let done_at = started.elapsed();
    assert_eq!(text, "chunk 0\nchunk 1\nchunk 2\n");
    // Relative, not absolute: a loaded machine may stall either read, but the
    // two later chunks are 600 ms of upstream sleeps after the first.
    assert!(
        first_at + Duration::from_millis(400) < done_at,
        "first chunk at {first_at:?}, done at {done_at:?}"
    );
    assert!(done_at >= Duration::from_millis(600), "done at {done_at:?}");
}

#[tokio::test]
async fn status_slow_leaky_and_with_headers() {
    let upstream = Upstream::start();
    let port = upstream.port();

    let resp = raw_tcp(port, &get("/status/503", "")).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body_text(), "status 503\n");
    assert_eq!(raw_tcp(port, &get("/status/204", "")).await.status, 204);

    let started = Instant::now();
    let resp = raw_tcp(port, &get("/slow?ms=300", "")).await;
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let resp = raw_tcp(port, &get("/leaky", "")).await;
    assert_eq!(resp.header("server"), Some("leaky-app/1.0"));
    assert_eq!(resp.header("x-powered-by"), Some("PHP/5.0"));

    let path = "/with-headers?Content-Security-Policy=default-src%20%27none%27&Set-Cookie=a%3D1";
    let resp = raw_tcp(port, &get(path, "")).await;
    assert_eq!(
        resp.header("content-security-policy"),
        Some("default-src 'none'")
    );
    assert_eq!(resp.header("set-cookie"), Some("a=1"));
    assert_eq!(upstream.hits(), 5);
}

#[test]
fn upstream_stops_on_drop_and_can_restart_on_its_port() {
    let upstream = Upstream::start();
    let addr = upstream.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(upstream);
    let err = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    let again = Upstream::start_on(addr.port());
    assert_eq!(again.addr(), addr);
    assert!(std::net::TcpStream::connect(addr).is_ok());
}

#[test]
fn free_ports_are_unique_and_bindable() {
    let threads: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
        .collect();
    let ports: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
    for port in ports.iter().take(20) {
        std::net::TcpListener::bind(("127.0.0.1", *port)).expect("free port is bindable");
    }
}

#[test]
fn dead_addr_refuses_connections() {
    let err = std::net::TcpStream::connect(dead_addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// The PKI leaf verifies against its CA, and `https_client` negotiates the
/// protocol it is asked for against an h1+h2 server.
#[tokio::test]
async fn pki_leaf_verifies_over_http1_and_http2() {
    let pki = TestPki::new();
    let server = Upstream::start_tls(&pki);
    let url = format!("https://localhost:{}/tls?q=1", server.port());

    let h1 = https_client(&pki.ca_pem, server.port(), false);
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["version"], "HTTP/1.1");

    let h2 = https_client(&pki.ca_pem, server.port(), true);
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["version"], "HTTP/2.0");
    assert_eq!(json["target"], "/tls?q=1");

    let raw = raw_tls(server.port(), &pki.ca_pem, "localhost", &get("/raw", "")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.json()["target"], "/raw");
    let by_ip = raw_tls(server.port(), &pki.ca_pem, "127.0.0.1", &get("/ip", "")).await;
    assert_eq!(by_ip.status, 200);
}

#[tokio::test]
async fn a_different_ca_is_not_trusted() {
    let pki = TestPki::with_names(&["app.test"]);
    let other = TestPki::new();
    let server = Upstream::start_tls(&pki);
    let client = https_client(&other.ca_pem, server.port(), false);
    let url = format!("https://localhost:{}/", server.port());
    assert!(client.get(url).send().await.is_err());

    // The extra name is in the leaf.
    let resp = support::client::tls_connect(server.port(), &pki.ca_pem, "app.test", &[]).await;
    assert!(resp.is_ok());
    for path in [&pki.ca_path, &pki.cert_path, &pki.key_path] {
        assert!(std::fs::read_to_string(path)
            .unwrap()
            .starts_with("-----BEGIN"));
    }
}

/// Another process may bind a port between `free_port()` and the gateway's
/// start: `Gateway::start` must then move to fresh ports, not fail, and
/// report the ports it really uses.
#[tokio::test]
async fn gateway_start_moves_off_a_port_another_process_took() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = support::config::basic(&pki, &[up.addr()], "");
    let taken = ListenerPorts::parse(&cfg).https;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("take the port");
    let gw = Gateway::start(&cfg);
    assert_ne!(gw.https_port, taken);
    let written = std::fs::read_to_string(gw.config_path()).expect("config");
    assert_eq!(ListenerPorts::parse(&written).https, gw.https_port);
    let resp = https_client(&pki.ca_pem, gw.https_port, false)
        .get(gw.url("/x"))
        .send()
        .await
        .expect("the gateway answers on its new port");
    assert_eq!(resp.status(), 200);
    drop(squatter);
}

#[test]
fn listener_ports_are_read_from_the_server_table() {
    let config = r#"
[server]
https = "127.0.0.1:20443"   # comment
http  = "127.0.0.1:20080"

[upstreams.app]
addrs = ["127.0.0.1:8000"]
"#;
    let ports = ListenerPorts::parse(config);
    assert_eq!(
        ports,
        ListenerPorts {
            https: 20443,
            http: 20080,
            ops: 0,
            auth: 0
        }
    );
}

#[test]
fn raw_responses_parse_lengths_chunks_and_interim_responses() {
    let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
    assert_eq!(parse_response(sized, false, false).unwrap().body, b"abc");
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab",
        false,
        false
    )
    .is_none());

    let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    let resp = parse_response(chunked, false, false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"abcde");
    assert!(parse_response(&chunked[..chunked.len() - 2], false, false).is_none());

    let unframed = b"HTTP/1.0 200 OK\r\n\r\nto the end";
    assert!(parse_response(unframed, false, false).is_none());
    assert_eq!(
        parse_response(unframed, false, true).unwrap().body,
        b"to the end"
    );

    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert!(parse_response(head, true, false).unwrap().body.is_empty());
}
