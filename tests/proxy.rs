//! End-to-end proxying: HTTP/1.1 and HTTP/2 over TLS, the http → https
//! redirect, load balancing past a dead address, WebSocket, Range, streaming,
//! body limits and the gateway's own error pages.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::config::basic;
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn echo(body: &str) -> SeenRequest {
    SeenRequest::from_json(&serde_json::from_str(body).expect("echo JSON"))
}

#[tokio::test]
async fn https_proxying_over_http1_and_http2() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    for (http2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let client = https_client(&pki.ca_pem, gw.https_port, http2);
        let resp = client
            .get(gw.url("/hello/world?x=1&y=%2F"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_string();
        let seen = echo(&resp.text().await.expect("body"));
        assert_eq!(
            seen.target, "/hello/world?x=1&y=%2F",
            "query forwarded unchanged"
        );
        assert_eq!(
            seen.version, "HTTP/1.1",
            "upstream is spoken to in HTTP/1.1"
        );
        assert_eq!(
            seen.header("host"),
            Some(format!("localhost:{}", gw.https_port).as_str())
        );
        assert_eq!(seen.header("x-request-id"), Some(id.as_str()));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

        // A request body arrives whole.
        let resp = client
            .post(gw.url("/upload"))
            .body(vec![7u8; 100_000])
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["body_len"], 100_000);
    }
}

#[tokio::test]
async fn http_listener_redirects_to_https() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let client = http_client(gw.http_port);
    let url = |p: &str| format!("http://localhost:{}{p}", gw.http_port);
    let resp = client.get(url("/a/b?c=d")).send().await.expect("get");
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        format!("https://localhost:{}/a/b?c=d", gw.https_port).as_str()
    );
    let resp = client.head(url("/x")).send().await.expect("head");
    assert_eq!(resp.status(), 301);
    let resp = client
        .post(url("/form"))
        .body("a=1")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 308, "non-GET keeps its method and body");
    assert_eq!(
        resp.headers()["location"],
        format!("https://localhost:{}/form", gw.https_port).as_str()
    );
    // The redirect carries the normalised path: `//evil.example` cannot
    // become a protocol-relative location.
    let raw = raw_tcp(
        gw.http_port,
        b"GET //evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 301);
    assert_eq!(
        raw.header("location"),
        Some(format!("https://localhost:{}/evil.example/x", gw.https_port).as_str())
    );
    // Unsafe targets are refused before any redirect.
    let raw = raw_tcp(
        gw.http_port,
        b"GET /a/../b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 400);
    assert_eq!(up.hits(), 0, "the plain listener never proxies");
}

#[tokio::test]
async fn a_dead_upstream_address_causes_no_client_error() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[dead_addr(), up.addr(), dead_addr()], ""));
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    for i in 0..12 {
        let resp = client
            .get(gw.url(&format!("/n/{i}")))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "request {i}");
    }
    assert_eq!(up.hits(), 12);
}

#[tokio::test]
async fn upstream_down_is_502_without_leaking_the_address() {
    let pki = TestPki::new();
    let dead = dead_addr();
    let gw = Gateway::start(&basic(&pki, &[dead], ""));
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/x"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("json");
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.text().await.expect("body");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["status"], 502);
    assert!(
        !body.contains(&dead.port().to_string()) && !body.contains("127.0.0.1"),
        "{body}"
    );

    let resp = client
        .get(gw.url("/x"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("html");
    assert_eq!(resp.status(), 502);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("502") && !body.contains(&dead.port().to_string()),
        "{body}"
    );
}

#[tokio::test]
async fn upstream_read_timeout_is_504() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg =
        basic(&pki, &[up.addr()], "").replace("read_timeout = \"5s\"", "read_timeout = \"1s\"");
    let gw = Gateway::start(&cfg);
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/slow?ms=3000"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 504);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 504);
    let resp = client
        .get(gw.url("/slow?ms=10"))
        .send()
        .await
        .expect("fast enough");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let mut ws = websocket_tls(gw.https_port, &pki.ca_pem, "/ws").await;
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("message");
        assert_eq!(
            msg.into_text().expect("text").as_str(),
            format!("hello {i}")
        );
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let msg = ws.next().await.expect("open").expect("message");
    assert_eq!(msg.into_data().as_ref(), &[0u8, 1, 2, 255]);
}

#[tokio::test]
async fn range_requests_pass_through() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let all = support::upstream::range_body();
    for http2 in [false, true] {
        let client = https_client(&pki.ca_pem, gw.https_port, http2);
        let resp = client
            .get(gw.url("/range"))
            .header("range", "bytes=100-199")
            .send()
            .await
            .expect("range");
        assert_eq!(resp.status(), 206);
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes 100-199/{}", all.len()).as_str()
        );
        assert_eq!(resp.bytes().await.expect("body").as_ref(), &all[100..200]);
        let resp = client
            .get(gw.url("/range"))
            .header("range", "bytes=5000-")
            .send()
            .await
            .expect("416");
        assert_eq!(resp.status(), 416);
    }
}

#[tokio::test]
async fn responses_stream_without_buffering() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let start = Instant::now();
    let mut resp = client
        .get(gw.url("/stream?chunks=4&ms=400"))
        .send()
        .await
        .expect("stream");
    let first = resp.chunk().await.expect("chunk").expect("some");
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("chunk 0"));
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.expect("chunk") {
        rest.extend_from_slice(&c);
    }
    let total = start.elapsed();
    // The whole body takes >= 1.2 s upstream; the first chunk must not wait for it.
    assert!(total >= Duration::from_millis(1200), "{total:?}");
    assert!(
        first_at < total - Duration::from_millis(600),
        "first chunk {first_at:?}, total {total:?}"
    );
    assert!(String::from_utf8_lossy(&rest).contains("chunk 3"));
}

#[tokio::test]
async fn request_bodies_over_max_body_are_413() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let extra = "[[route]]\npath = \"/small\"\nmax_body = \"1KB\"\n";
    let cfg =
        basic(&pki, &[up.addr()], extra).replace("threads = 1", "threads = 1\nmax_body = \"64KB\"");
    let gw = Gateway::start(&cfg);
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let post = |path: &str, n: usize| client.post(gw.url(path)).body(vec![b'x'; n]).send();
    assert_eq!(post("/small", 1024).await.expect("ok").status(), 200);
    assert_eq!(post("/small", 1025).await.expect("413").status(), 413);
    assert_eq!(post("/big", 64 * 1024).await.expect("ok").status(), 200);
    assert_eq!(
        post("/big", 64 * 1024 + 1).await.expect("413").status(),
        413
    );
    let hits = up.hits();

    // A chunked body declares no length: it is counted as it streams.
    let body = "a".repeat(2000);
    let req = format!(
        "POST /small HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let raw = raw_tls(gw.https_port, &pki.ca_pem, "localhost", req.as_bytes()).await;
    assert_eq!(raw.status, 413, "{}", raw.body_text());
    let v = raw.json();
    assert_eq!(v["status"], 413);
    assert!(up.hits() <= hits + 1);
}

/// An early answer (413 on a declared length, 403, 404) to a request whose
/// body the client is still sending must reach the client: closing with
/// unread data would reset the connection and can destroy the answer.
#[tokio::test]
async fn early_answers_reach_clients_still_sending_a_body() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let extra = "[[route]]\npath = \"/small\"\nmax_body = \"1KB\"\n\n[[route]]\npath = \"/closed\"\naccess = \"deny\"\n";
    let gw = Gateway::start(&basic(&pki, &[up.addr()], extra));
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    // Far more than the kernel's socket buffers hold, far less than the drain cap.
    let big = vec![b'x'; 600 * 1024];
    for round in 0..5 {
        for (path, want) in [("/small", 413), ("/closed", 403)] {
            let resp = client
                .post(gw.url(path))
                .body(big.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round} {path}: {e:?}"));
            assert_eq!(resp.status(), want, "round {round} {path}");
            assert_eq!(
                resp.headers().get("connection").map(|v| v.as_bytes()),
                Some(&b"close"[..]),
                "{path}"
            );
        }
    }
    // Many times the route's limit (and more than a 1 MiB drain would take).
    let huge = client
        .post(gw.url("/small"))
        .body(vec![b'x'; 8 << 20])
        .send()
        .await
        .expect("8 MiB upload");
    assert_eq!(huge.status(), 413);
    assert_eq!(up.hits(), 0, "nothing was forwarded");

    // A chunked body is refused while it streams (the proxy's error path).
    let chunk = "a".repeat(600 * 1024);
    let req = format!(
        "POST /small HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    for round in 0..3 {
        let raw = raw_tls(gw.https_port, &pki.ca_pem, "localhost", req.as_bytes()).await;
        assert_eq!(raw.status, 413, "round {round}: {}", raw.body_text());
    }
}

#[tokio::test]
async fn reserved_paths_are_answered_by_the_gateway() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/.portcullis/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "ok\n");

    let mut bodies = Vec::new();
    for (method, path) in [
        ("GET", "/.portcullis/nope"),
        ("POST", "/.portcullis/secret-admin-thing"),
        ("DELETE", "/.portcullis/health"),
        ("GET", "/.portcullis/"),
        ("GET", "/.portcullis"),
        ("GET", "/.portcullis/%3Cscript%3E"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = client
            .request(m, gw.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 404, "{method} {path}");
        let body = resp.text().await.expect("body");
        assert!(
            !body.contains("portcullis/") && !body.contains("script"),
            "{body}"
        );
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one generic 404: {bodies:?}"
    );
    assert_eq!(up.hits(), 0, "reserved paths are never forwarded");
}

#[tokio::test]
async fn deny_routes_and_unmatched_paths_follow_the_table() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let extra = "[[route]]\npath = \"/admin\"\naccess = \"deny\"\n\n\
                 [[route]]\npath = \"/api\"\nmethods = [\"GET\"]\naccess = \"public\"\n\n\
                 [[route]]\npath = \"/api\"\naccess = \"deny\"\n";
    let cfg =
        basic(&pki, &[up.addr()], extra).replace("default = \"public\"", "default = \"deny\"");
    let gw = Gateway::start(&cfg);
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let status = |m: reqwest::Method, p: &str| {
        let req = client
            .request(m, gw.url(p))
            .header("accept", "application/json");
        async move { req.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(status(reqwest::Method::GET, "/admin").await, 403);
    assert_eq!(status(reqwest::Method::GET, "/admin/users").await, 403);
    assert_eq!(status(reqwest::Method::GET, "/api/items").await, 200);
    assert_eq!(
        status(reqwest::Method::POST, "/api/items").await,
        403,
        "method falls through to the deny route"
    );
    assert_eq!(
        status(reqwest::Method::GET, "/other").await,
        403,
        "unmatched → [access] default"
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn self_signed_mode_writes_and_serves_its_certificate() {
    let up = Upstream::start();
    let https = free_port();
    let builder = GatewayBuilder::new("");
    let storage = builder.dir().join("state");
    let cfg = format!(
        "[server]\nhttps = \"127.0.0.1:{https}\"\nthreads = 1\n[tls]\nmode = \"self-signed\"\nstorage = \"{}\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        storage.display(),
        up.addr()
    );
    let gw = builder.config(&cfg).start();
    let cert = std::fs::read_to_string(storage.join("self-signed/cert.pem")).expect("cert written");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(storage.join("self-signed/key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The served certificate is the stored one: a client trusting exactly it connects.
    let client = https_client(&cert, gw.https_port, true);
    let resp = client
        .get(gw.url("/"))
        .send()
        .await
        .expect("trusted self-signed");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn tls_upstreams_are_verified() {
    let pki = TestPki::new();
    let up = Upstream::start_tls(&pki);
    let cfg = basic(&pki, &[up.addr()], "").replace(
        "connect_timeout = \"1s\"",
        "connect_timeout = \"1s\"\ntls = true\nsni = \"localhost\"",
    );
    // Trusting the test CA (as an operator would for a private CA) works.
    let gw = GatewayBuilder::new(&cfg)
        .env("SSL_CERT_FILE", &pki.ca_path.display().to_string())
        .start();
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/over-tls"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(echo(&resp.text().await.expect("body")).target, "/over-tls");
    drop(gw);

    // Without that trust the upstream's certificate is refused: 502, not a
    // silently unverified connection.
    let other = TestPki::new();
    let gw = GatewayBuilder::new(&cfg)
        .env("SSL_CERT_FILE", &other.ca_path.display().to_string())
        .start();
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/over-tls"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn active_health_checks_keep_requests_off_a_dead_address() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let retries = |gw: &Gateway| gw.stderr().matches("retry: true").count();
    let send_ten = |gw: &Gateway| {
        let client = https_client(&pki.ca_pem, gw.https_port, false);
        let urls: Vec<String> = (0..10).map(|i| gw.url(&format!("/h/{i}"))).collect();
        async move {
            for url in urls {
                assert_eq!(client.get(url).send().await.expect("request").status(), 200);
            }
        }
    };

    // Control: without a health check, round robin keeps trying the dead
    // address and recovers by retrying (pingora logs each retry).
    let plain = Gateway::start(&basic(&pki, &[dead_addr(), up.addr()], ""));
    send_ten(&plain).await;
    assert!(
        retries(&plain) > 0,
        "control should retry: {}",
        plain.stderr()
    );

    // With one, the first check (at start) marks it down: no request tries it.
    // (A 5 s timeout: the live backend must not fail its check on a slow
    // machine; the dead one refuses at once.)
    let cfg = basic(&pki, &[dead_addr(), up.addr()], "").replace(
        "connect_timeout = \"1s\"",
        "connect_timeout = \"5s\"\nhealth = \"/health\"",
    );
    let checked = Gateway::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(20), || checked
            .stderr()
            .contains("becomes unhealthy")),
        "the first check never marked the dead address down: {}",
        checked.stderr()
    );
    send_ten(&checked).await;
    assert_eq!(retries(&checked), 0, "{}", checked.stderr());
}
