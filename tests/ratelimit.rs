//! Rate limits in process (stages `limits` and `route_limit`): per-route rules with 429,
//! `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers; keys
//! by IP (spoofing-proof), user and header; the global per-IP default.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::header::ACCEPT;
use support::config::basic_with;
use support::*;

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn five_per_minute_then_429_with_headers_then_recovery() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let routes = "[[route]]\npath = \"/login\"\nmethods = [\"POST\"]\nrate_limit = \"5/minute\"\n\
                  [[route]]\npath = \"/fast\"\nrate_limit = \"2/6s\"\n";
    let gw = Gateway::start(&basic_with(&pki, &[up.addr()], "", routes));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    for i in 0..5 {
        let resp = c
            .post(gw.url("/login"))
            .body("user=x")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 200, "attempt {}", i + 1);
        assert_eq!(header(&resp, "ratelimit-policy"), "\"route-1\";q=5;w=60");
        let rl = header(&resp, "ratelimit");
        assert!(
            rl.starts_with(&format!("\"route-1\";r={};t=", 4 - i)),
            "{rl}"
        );
    }
    let sixth = c
        .post(gw.url("/login"))
        .header(ACCEPT, "application/json")
        .body("user=x")
        .send()
        .await
        .expect("post");
    assert_eq!(sixth.status(), 429);
    let retry: u64 = header(&sixth, "retry-after")
        .parse()
        .expect("whole seconds");
    assert!((1..=12).contains(&retry), "{retry}");
    assert_eq!(header(&sixth, "ratelimit-policy"), "\"route-1\";q=5;w=60");
    assert_eq!(
        header(&sixth, "ratelimit"),
        format!("\"route-1\";r=0;t={retry}")
    );
    assert_eq!(
        sixth.json::<serde_json::Value>().await.expect("json")["status"],
        429
    );
    assert_eq!(up.hits(), 5, "the sixth never reached the app");
    // GET on /login is another route (methods), unlimited here.
    assert_eq!(
        c.get(gw.url("/login")).send().await.expect("get").status(),
        200
    );

    // After Retry-After the next request passes. ("2/6s": the third request
    // is refused unless 3 s pass between the first and the third.)
    for _ in 0..2 {
        assert_eq!(
            c.get(gw.url("/fast")).send().await.expect("fast").status(),
            200
        );
    }
    let limited = c.get(gw.url("/fast")).send().await.expect("fast");
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").parse().expect("seconds");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        c.get(gw.url("/fast"))
            .send()
            .await
            .expect("after wait")
            .status(),
        200
    );
}

#[tokio::test]
async fn forwarded_for_cannot_escape_a_per_ip_limit() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let routes = "[[route]]\npath = \"/api\"\nrate_limit = \"3/minute\"\n";
    // Untrusted peer: rotating X-Forwarded-For changes nothing.
    let gw = Gateway::start(&basic_with(&pki, &[up.addr()], "", routes));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let resp = c
            .get(gw.url("/api"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("x-real-ip", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("request");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    drop(gw);

    // Behind a trusted proxy: two real clients have separate budgets.
    let gw = Gateway::start(&basic_with(
        &pki,
        &[up.addr()],
        "trusted_proxies = [\"127.0.0.1\"]",
        routes,
    ));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    for client in ["203.0.113.1", "203.0.113.2"] {
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                let resp = c
                    .get(gw.url("/api"))
                    .header("x-forwarded-for", client)
                    .send()
                    .await
                    .expect("request");
                v.push(resp.status().as_u16());
            }
            v
        };
        assert_eq!(statuses, vec![200, 200, 200, 429], "{client}");
    }
}

#[tokio::test]
async fn header_keys_fall_back_to_the_ip_never_to_unlimited() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let routes =
        "[[route]]\npath = \"/api\"\nrate_limit = \"2/minute\"\nrate_key = \"header:X-Api-Key\"\n";
    let gw = Gateway::start(&basic_with(&pki, &[up.addr()], "", routes));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let status = |key: Option<&'static str>| {
        let mut req = c.get(gw.url("/api"));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        async move { req.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(
        (
            status(Some("a")).await,
            status(Some("a")).await,
            status(Some("a")).await
        ),
        (200, 200, 429)
    );
    assert_eq!(
        (status(Some("b")).await, status(Some("b")).await),
        (200, 200),
        "another key, another budget"
    );
    assert_eq!(
        (status(None).await, status(None).await, status(None).await),
        (200, 200, 429),
        "no key: by IP"
    );
}

#[tokio::test]
async fn the_global_default_limits_all_traffic_per_ip() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic_with(
        &pki,
        &[up.addr()],
        "",
        "[rate_limit]\ndefault = \"4/minute\"\n",
    ));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let mut statuses = Vec::new();
    for p in [
        "/a",
        "/b",
        "/.portcullis/health",
        "/c",
        "/d",
        "/.portcullis/health",
    ] {
        statuses.push(
            c.get(gw.url(p))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
}

#[test]
fn rate_limit_config_is_validated() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("p.toml");
    let check = |extra: &str| {
        std::fs::write(&path, basic_with(&pki, &[up.addr()], "", extra)).expect("write");
        run_cli(&["check", "-c", path.to_str().expect("utf8")], &[], None)
    };
    let cases = [
        ("[rate_limit]\ndefault = \"lots\"", "rate_limit.default"),
        (
            "[rate_limit]\nstore = \"redis\"",
            "rate_limit.redis: required with store = \"redis\"",
        ),
        (
            "[[route]]\npath = \"/x\"\nrate_limit = \"0/m\"",
            "route[0].rate_limit",
        ),
        (
            "[[route]]\npath = \"/x\"\nrate_limit = \"5/m\"\nrate_key = \"cookie\"",
            "route[0].rate_key",
        ),
        (
            "[[route]]\npath = \"/x\"\nrate_key = \"ip\"",
            "route[0].rate_key: needs rate_limit",
        ),
    ];
    for (extra, needle) in cases {
        let out = check(extra);
        assert_eq!(out.status.code(), Some(1), "{extra}");
        assert!(
            support::gateway::stderr_of(&out).contains(needle),
            "{needle}: {}",
            support::gateway::stderr_of(&out)
        );
    }
    let out = check("[rate_limit]\nlogin = \"off\"\ndefault = \"off\"");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        support::gateway::stderr_of(&out).contains("warning:")
            && support::gateway::stderr_of(&out).contains("rate_limit.login")
    );
}
