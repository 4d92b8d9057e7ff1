//! Forwarding headers on the upstream request (docs/behaviour.md "Pipeline"
//! stage `client_ip` and the upstream request), black-box.
//!
//! What the upstream sees is the contract: a client that is not a trusted
//! proxy can never choose any `X-Forwarded-*`, `X-Real-IP`, `Forwarded` or
//! `X-Request-Id` value the app reads, in any spelling (case, `_` for `-`,
//! duplicates, `Connection` nomination); a trusted proxy's chain is believed
//! and extended. Failures are collected per case and reported together.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;

use support::{Gateway, RawResponse, SeenRequest, TestPki, Upstream};

/// `name` compared case-insensitively with `_` read as `-` (the upstream request).
fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Header names the gateway owns on the upstream request, in folded form:
/// any `x-forwarded` / `x-forwarded-*`, `x-real-ip`, `forwarded`,
/// `x-request-id`.
fn is_owned(name: &str) -> bool {
    let n = fold(name);
    n == "x-forwarded"
        || n.starts_with("x-forwarded-")
        || n == "x-real-ip"
        || n == "forwarded"
        || n == "x-request-id"
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A gateway in front of an echo upstream, with the PKI its clients trust.
struct Env {
    pki: TestPki,
    up: Upstream,
    gw: Gateway,
}

impl Env {
    fn start(server_extra: &str) -> Env {
        let pki = TestPki::new();
        let up = Upstream::start();
        let config = support::config::basic_with(&pki, &[up.addr()], server_extra, "");
        let gw = Gateway::start(&config);
        Env { pki, up, gw }
    }

    fn host(&self) -> String {
        format!("localhost:{}", self.gw.https_port)
    }

    /// `GET path` with `headers` (each `Name: value`) and `Connection: close`
    /// unless `connection` replaces that line. `None` when the connection
    /// ended without a complete response.
    async fn get(&self, path: &str, headers: &[&str], connection: Option<&str>) -> Option<Sent> {
        let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host());
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str(connection.unwrap_or("Connection: close"));
        raw.push_str("\r\n\r\n");
        let before = self.up.hits();
        let port = self.gw.https_port;
        let ca = self.pki.ca_pem.clone();
        let resp =
            tokio::spawn(
                async move { support::raw_tls(port, &ca, "localhost", raw.as_bytes()).await },
            )
            .await
            .ok()?;
        let hits = self.up.hits() - before;
        let seen = (resp.status == 200)
            .then(|| serde_json::from_slice::<serde_json::Value>(&resp.body).ok())
            .flatten()
            .map(|j| SeenRequest::from_json(&j));
        Some(Sent { resp, seen, hits })
    }
}

/// One request's outcome: the response, what the upstream saw (when the
/// echo app answered), and how many upstream hits it caused.
struct Sent {
    resp: RawResponse,
    seen: Option<SeenRequest>,
    hits: usize,
}

/// What the gateway must have set, for comparison with what the app saw.
struct Want<'a> {
    xff: &'a str,
    real_ip: &'a str,
    proto: &'a str,
    host: &'a str,
    /// `None`: any fresh 32-hex id.
    request_id: Option<&'a str>,
}

/// Compares every gateway-owned header the upstream saw (in any spelling)
/// with `want`: each exactly once, exactly these values, nothing else; and
/// the response's `x-request-id` equals the upstream's.
fn check_forwarding(label: &str, sent: &Sent, want: &Want<'_>, failures: &mut Vec<String>) {
    let Some(seen) = sent.seen.as_ref() else {
        failures.push(format!(
            "{label}: status {} (want 200 from the app), body {:?}",
            sent.resp.status,
            sent.resp.body_text()
        ));
        return;
    };
    let mut owned: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| is_owned(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    owned.sort();
    let id = seen.header("x-request-id").unwrap_or_default().to_string();
    let mut expected = vec![
        ("x-forwarded-for".to_string(), want.xff.to_string()),
        ("x-forwarded-host".to_string(), want.host.to_string()),
        ("x-forwarded-proto".to_string(), want.proto.to_string()),
        ("x-real-ip".to_string(), want.real_ip.to_string()),
        (
            "x-request-id".to_string(),
            want.request_id.map_or(id.clone(), str::to_string),
        ),
    ];
    expected.sort();
    if owned != expected {
        failures.push(format!(
            "{label}: upstream forwarding headers {owned:?}, want {expected:?}"
        ));
    }
    if want.request_id.is_none() && !is_request_id(&id) {
        failures.push(format!(
            "{label}: upstream x-request-id {id:?} is not 32 hex"
        ));
    }
    if sent.resp.header_all("x-request-id") != [id.as_str()] {
        failures.push(format!(
            "{label}: response x-request-id {:?} != upstream {id:?}",
            sent.resp.header_all("x-request-id")
        ));
    }
    if sent.hits != 1 {
        failures.push(format!("{label}: upstream hits +{} (want +1)", sent.hits));
    }
}

fn report(what: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Spoofed headers from an untrusted client; each is sent alone, then all
/// together. Values carry the marker `SPOOF` or the address `6.6.6.6`.
const SPOOFS: &[&str] = &[
    "X-Forwarded-For: 6.6.6.6",
    "x-forwarded-for: 6.6.6.6, 10.0.0.1",
    "X-FORWARDED-FOR: 6.6.6.6",
    "X_Forwarded_For: 6.6.6.6",
    "x_forwarded_for: 6.6.6.6",
    "X-Forwarded_For: 6.6.6.6",
    "X-Forwarded-Host: SPOOF.example",
    "X_Forwarded_Host: SPOOF.example",
    "X-Forwarded-Proto: http-SPOOF",
    "x_forwarded_proto: http-SPOOF",
    "X-Forwarded-Anything: SPOOF",
    "X-Forwarded-Port: 6666",
    "X-Forwarded-Prefix: /SPOOF",
    "X-Forwarded-Ssl: SPOOF",
    "X_FORWARDED_SCHEME: SPOOF",
    "X-Forwarded: for=6.6.6.6",
    "x_forwarded: for=6.6.6.6",
    "X-Real-IP: 6.6.6.6",
    "x-real-ip: 6.6.6.6",
    "X_Real_IP: 6.6.6.6",
    "x_real_ip: 6.6.6.6",
    "Forwarded: for=6.6.6.6;proto=http;host=SPOOF.example",
    "FORWARDED: for=6.6.6.6",
    "X-Request-Id: SPOOF-id-1",
    "x_request_id: SPOOF-id-2",
    "X-REQUEST-ID: SPOOF",
];

/// `Connection` lines naming the gateway's own headers.
const NOMINATIONS: &[&str] = &[
    "Connection: X-Forwarded-For",
    "Connection: x-real-ip",
    "Connection: close, X-Forwarded-For",
    "Connection: keep-alive, X-Real-IP, X-Forwarded-Proto",
    "Connection: X-Forwarded-Host, X-Request-Id",
    "Connection: X_Forwarded_For, x_real_ip",
    "Connection: close, x-forwarded-for, x-forwarded-proto, x-forwarded-host, x-real-ip, x-request-id",
];

#[tokio::test]
async fn untrusted_client_cannot_choose_any_forwarding_header() {
    let env = Env::start("");
    let host = env.host();
    let want = Want {
        xff: "127.0.0.1",
        real_ip: "127.0.0.1",
        proto: "https",
        host: &host,
        request_id: None,
    };
    let mut failures = Vec::new();
    let mut total = 0;

    // A control: nothing spoofed, and an unrelated header passes through.
    total += 1;
    match env.get("/fwd/control", &["X-Custom: keep"], None).await {
        Some(sent) => {
            check_forwarding("control", &sent, &want, &mut failures);
            if let Some(seen) = &sent.seen {
                if seen.header_all("x-custom") != ["keep"] {
                    failures.push("control: X-Custom not forwarded".to_string());
                }
                if seen.header_all("host") != [host.as_str()] {
                    failures.push(format!(
                        "control: upstream host {:?}",
                        seen.header_all("host")
                    ));
                }
                if seen.target != "/fwd/control" {
                    failures.push(format!("control: upstream target {:?}", seen.target));
                }
            }
        }
        None => failures.push("control: no response".to_string()),
    }

    // Each spoof alone, then all of them at once (duplicates included).
    let mut sets: Vec<(String, Vec<&str>)> =
        SPOOFS.iter().map(|h| (h.to_string(), vec![*h])).collect();
    sets.push(("all spoofs together".to_string(), SPOOFS.to_vec()));
    sets.push((
        "all spoofs twice".to_string(),
        SPOOFS.iter().chain(SPOOFS).copied().collect(),
    ));
    for (label, headers) in &sets {
        total += 1;
        let Some(sent) = env.get("/fwd/spoof?x=1", headers, None).await else {
            failures.push(format!("{label}: no response"));
            continue;
        };
        check_forwarding(label, &sent, &want, &mut failures);
        if let Some(seen) = &sent.seen {
            let leaked: Vec<_> = seen
                .headers
                .iter()
                .filter(|(_, v)| v.contains("6.6.6.6") || v.contains("SPOOF") || v == "6666")
                .collect();
            if !leaked.is_empty() {
                failures.push(format!(
                    "{label}: spoofed values reached the app: {leaked:?}"
                ));
            }
        }
    }

    // Connection nomination never removes a header the gateway sets: either
    // the request is refused before the app, or the app gets our values.
    for line in NOMINATIONS {
        total += 1;
        let Some(sent) = env
            .get("/fwd/nominated", &["X-Forwarded-For: 6.6.6.6"], Some(line))
            .await
        else {
            failures.push(format!("{line}: no response"));
            continue;
        };
        if (400..500).contains(&sent.resp.status) {
            if sent.hits != 0 {
                failures.push(format!(
                    "{line}: refused with {} but the upstream was hit",
                    sent.resp.status
                ));
            }
        } else {
            check_forwarding(line, &sent, &want, &mut failures);
        }
    }
    report("untrusted-client", total, &failures);
}

/// (label, request headers, upstream x-forwarded-for, x-real-ip, the
/// client's x-request-id when it must be kept)
type TrustedCase<'a> = (&'a str, Vec<&'a str>, &'a str, &'a str, Option<&'a str>);

#[tokio::test]
async fn trusted_proxy_chain_is_believed_and_extended() {
    let env = Env::start("trusted_proxies = [\"127.0.0.1\"]");
    let mut failures = Vec::new();
    let a200 = "a".repeat(200);
    let a128 = "a".repeat(128);
    let a129 = "a".repeat(129);
    let id_200 = format!("X-Request-Id: {a200}");
    let id_128 = format!("X-Request-Id: {a128}");
    let id_129 = format!("X-Request-Id: {a129}");

    let cases: Vec<TrustedCase<'_>> = vec![
        ("no X-Forwarded-For", vec![], "127.0.0.1", "127.0.0.1", None),
        (
            "one client address",
            vec!["X-Forwarded-For: 203.0.113.7"],
            "203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "a chain: rightmost untrusted wins",
            vec!["X-Forwarded-For: 198.51.100.1, 203.0.113.7"],
            "198.51.100.1, 203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "trusted hops on the right are skipped",
            vec!["X-Forwarded-For: 198.51.100.1, 203.0.113.7, 127.0.0.1"],
            "198.51.100.1, 203.0.113.7, 127.0.0.1, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "two X-Forwarded-For headers form one list",
            vec![
                "X-Forwarded-For: 198.51.100.1",
                "X-Forwarded-For: 203.0.113.7",
            ],
            "198.51.100.1, 203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "valid X-Request-Id is kept",
            vec!["X-Forwarded-For: 203.0.113.7", "X-Request-Id: abc-123"],
            "203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            Some("abc-123"),
        ),
        (
            "128-char X-Request-Id is kept",
            vec![id_128.as_str()],
            "127.0.0.1",
            "127.0.0.1",
            Some(a128.as_str()),
        ),
        (
            "X-Request-Id with . and _ is kept",
            vec!["X-Request-Id: trace.id_01-X"],
            "127.0.0.1",
            "127.0.0.1",
            Some("trace.id_01-X"),
        ),
        (
            "200-char X-Request-Id is replaced",
            vec![id_200.as_str()],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "129-char X-Request-Id is replaced",
            vec![id_129.as_str()],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "X-Request-Id with a space is replaced",
            vec!["X-Request-Id: a b"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "X-Request-Id with a slash is replaced",
            vec!["X-Request-Id: a/b"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "X-Request-Id with a colon is replaced",
            vec!["X-Request-Id: a:b"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "underscore X_Request_Id is not believed",
            vec!["X_Request_Id: abc-123"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "underscore X_Forwarded_For alongside the real one",
            vec![
                "X-Forwarded-For: 203.0.113.7",
                "X_Forwarded_For: 192.0.2.99",
            ],
            "203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "underscore X_Forwarded_For alone is not believed",
            vec!["X_Forwarded_For: 192.0.2.99"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "underscore x_real_ip is not believed",
            vec!["x_real_ip: 192.0.2.99"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "client X-Real-IP is replaced",
            vec!["X-Forwarded-For: 203.0.113.7", "X-Real-IP: 192.0.2.99"],
            "203.0.113.7, 127.0.0.1",
            "203.0.113.7",
            None,
        ),
        (
            "X-Forwarded-Proto: https over TLS",
            vec!["X-Forwarded-Proto: https"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
        (
            "X-Forwarded-Proto: http cannot downgrade a TLS request",
            vec!["X-Forwarded-Proto: http"],
            "127.0.0.1",
            "127.0.0.1",
            None,
        ),
    ];
    let total = cases.len() + 2;
    for (label, headers, xff, real_ip, request_id) in &cases {
        let Some(sent) = env.get("/fwd/trusted", headers, None).await else {
            failures.push(format!("{label}: no response"));
            continue;
        };
        let Some(seen) = sent.seen.as_ref() else {
            failures.push(format!("{label}: status {}", sent.resp.status));
            continue;
        };
        // Exactly one of each, with these values (X-Forwarded-Host from a
        // trusted proxy may be its own: only its uniqueness is checked).
        let once = |name: &str| seen.header_all(name);
        let mut problems = Vec::new();
        if once("x-forwarded-for") != [*xff] {
            problems.push(format!(
                "x-forwarded-for {:?} (want {xff:?})",
                once("x-forwarded-for")
            ));
        }
        if once("x-real-ip") != [*real_ip] {
            problems.push(format!(
                "x-real-ip {:?} (want {real_ip:?})",
                once("x-real-ip")
            ));
        }
        if once("x-forwarded-proto") != ["https"] {
            problems.push(format!("x-forwarded-proto {:?}", once("x-forwarded-proto")));
        }
        if once("x-forwarded-host").len() != 1 {
            problems.push(format!("x-forwarded-host {:?}", once("x-forwarded-host")));
        }
        let ids = once("x-request-id");
        match (request_id, ids.as_slice()) {
            (Some(want), [got]) if got == want => {}
            (None, [got]) if is_request_id(got) => {}
            _ => problems.push(format!("x-request-id {ids:?} (want {request_id:?})")),
        }
        if sent.resp.header_all("x-request-id") != ids {
            problems.push(format!(
                "response x-request-id {:?} != upstream {ids:?}",
                sent.resp.header_all("x-request-id")
            ));
        }
        let underscored: Vec<_> = seen
            .headers
            .iter()
            .filter(|(n, _)| n.contains('_') && is_owned(n))
            .collect();
        if !underscored.is_empty() {
            problems.push(format!(
                "underscore spellings reached the app: {underscored:?}"
            ));
        }
        if seen.headers.iter().any(|(_, v)| v.contains("192.0.2.99")) {
            problems.push("a disbelieved address reached the app".to_string());
        }
        if !problems.is_empty() {
            failures.push(format!("{label}: {}", problems.join("; ")));
        }
    }

    // Garbage in the chain never becomes the client IP.
    match env
        .get(
            "/fwd/garbage",
            &["X-Forwarded-For: not-an-ip, <script>"],
            None,
        )
        .await
    {
        Some(Sent {
            seen: Some(seen), ..
        }) => {
            let real = seen.header_all("x-real-ip");
            if real.len() != 1 || real[0].parse::<IpAddr>().is_err() {
                failures.push(format!("garbage chain: x-real-ip {real:?}"));
            }
            if seen.headers.iter().any(|(_, v)| v.contains("<script>")) {
                failures.push("garbage chain: <script> reached the app".to_string());
            }
        }
        Some(sent) => {
            // Refusing it outright is fine too, as long as the app is spared.
            if sent.hits != 0 || sent.resp.status < 400 {
                failures.push(format!("garbage chain: status {}", sent.resp.status));
            }
        }
        None => failures.push("garbage chain: no response".to_string()),
    }

    // Identity headers (`[identity]` defaults) are removed from every
    // client request, a trusted proxy's included.
    match env
        .get(
            "/fwd/identity",
            &[
                "X-Forwarded-User: admin",
                "X_Forwarded_User: admin",
                "X-Forwarded-Roles: admin",
                "x_forwarded_roles: admin",
                "X-Forwarded-Email: admin@evil.example",
                "x_forwarded_EMAIL: admin@evil.example",
                "X-Forwarded-Assertion: eyJhbGciOiJub25lIn0.e30.",
            ],
            None,
        )
        .await
    {
        Some(Sent {
            seen: Some(seen), ..
        }) => {
            let leaked: Vec<_> = seen
                .headers
                .iter()
                .filter(|(n, _)| {
                    let n = fold(n);
                    n == "x-forwarded-user"
                        || n == "x-forwarded-roles"
                        || n == "x-forwarded-email"
                        || n == "x-forwarded-assertion"
                })
                .collect();
            if !leaked.is_empty() {
                failures.push(format!(
                    "identity headers from a trusted proxy reached the app: {leaked:?}"
                ));
            }
        }
        Some(sent) => failures.push(format!("identity: status {}", sent.resp.status)),
        None => failures.push("identity: no response".to_string()),
    }
    report("trusted-proxy", total, &failures);
}

#[tokio::test]
async fn http2_requests_get_the_same_forwarding_headers() {
    let env = Env::start("");
    let host = env.host();
    let client = support::https_client(&env.pki.ca_pem, env.gw.https_port, true);
    let want = Want {
        xff: "127.0.0.1",
        real_ip: "127.0.0.1",
        proto: "https",
        host: &host,
        request_id: None,
    };
    let mut failures = Vec::new();

    // (label, spoofed headers)
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("h2 control", &[]),
        ("h2 x-forwarded-for", &[("x-forwarded-for", "6.6.6.6")]),
        (
            "h2 underscore spellings",
            &[
                ("x_forwarded_for", "6.6.6.6"),
                ("x_real_ip", "6.6.6.6"),
                ("x_forwarded_host", "SPOOF.example"),
            ],
        ),
        (
            "h2 every forwarding header",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "6.6.6.7"),
                ("x-forwarded-host", "SPOOF.example"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-anything", "SPOOF"),
                ("x-real-ip", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
                ("x-request-id", "SPOOF-id"),
            ],
        ),
    ];
    for (label, headers) in cases {
        let before = env.up.hits();
        let mut req = client.get(env.gw.url("/h2/fwd?q=1"));
        for (name, value) in *headers {
            req = req.header(*name, *value);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{label}: request failed: {e}"));
                continue;
            }
        };
        if resp.version() != reqwest::Version::HTTP_2 {
            failures.push(format!("{label}: spoke {:?}, not h2", resp.version()));
        }
        let status = resp.status().as_u16();
        let resp_ids: Vec<String> = resp
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect();
        let body = resp.bytes().await.unwrap_or_default();
        let seen = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .filter(|_| status == 200)
            .map(|j| SeenRequest::from_json(&j));
        let raw = RawResponse {
            status,
            headers: resp_ids
                .iter()
                .map(|v| ("x-request-id".to_string(), v.clone()))
                .collect(),
            body: body.to_vec(),
            raw: Vec::new(),
        };
        let sent = Sent {
            resp: raw,
            seen,
            hits: env.up.hits() - before,
        };
        check_forwarding(label, &sent, &want, &mut failures);
        if let Some(seen) = &sent.seen {
            if seen.header_all("host") != [host.as_str()] {
                failures.push(format!(
                    "{label}: upstream host {:?}",
                    seen.header_all("host")
                ));
            }
            if seen.target != "/h2/fwd?q=1" {
                failures.push(format!("{label}: upstream target {:?}", seen.target));
            }
            if seen
                .headers
                .iter()
                .any(|(_, v)| v.contains("6.6.6.") || v.contains("SPOOF"))
            {
                failures.push(format!("{label}: spoofed values reached the app"));
            }
        }
    }
    report("http2", cases.len(), &failures);
}
