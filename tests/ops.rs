//! The `ops` listener: `/metrics` parses as Prometheus text and its counters
//! move exactly as the traffic sent predicts; `/healthz`; `/readyz` follows
//! the shared store when `on_store_error = "deny"`.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::ACCEPT;
use support::config::basic_with;
use support::*;

/// `name{labels}` → value, from the text exposition format. Panics on a
/// line that is not a comment, a blank or `series value`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "bad name: {line}"
        );
        out.insert(series.to_string(), value);
    }
    out
}

async fn metrics(gw: &Gateway) -> HashMap<String, f64> {
    let resp = reqwest::get(gw.ops_url("/metrics")).await.expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    parse(&resp.text().await.expect("text"))
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let ops = free_port();
    let hash = policies::users::hash_password("right password").expect("hash");
    let cfg = basic_with(
        &pki,
        &[up.addr()],
        &format!("ops = \"127.0.0.1:{ops}\""),
        "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         [[route]]\npath = \"/deny\"\naccess = \"deny\"\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n\
         [[route]]\npath = \"/tight\"\nrate_limit = \"1/minute\"\n",
    );
    let gw = GatewayBuilder::new(&cfg)
        .env(
            "PORTCULLIS_SESSION_KEYS",
            "ops-test-key-0123456789abcdefghijklmnopq",
        )
        .users(&format!("[users.alice]\npassword = \"{hash}\"\n"))
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let json = |path: &str| {
        c.get(gw.url(path))
            .header(ACCEPT, "application/json")
            .send()
    };

    for _ in 0..3 {
        assert_eq!(json("/open").await.expect("open").status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(json("/deny").await.expect("deny").status(), 403);
    }
    assert_eq!(json("/private").await.expect("private").status(), 401);
    assert_eq!(json("/tight").await.expect("tight").status(), 200);
    assert_eq!(json("/tight").await.expect("tight").status(), 429);
    let form = support::login::login_form(&c, &gw.base()).await;
    let failed =
        support::login::post_login(&c, &gw.base(), &form, "alice", "wrong", "/", None).await;
    assert_eq!(failed.status(), 401);

    let m = metrics(&gw).await;
    assert_eq!(
        get(
            &m,
            r#"portcullis_requests_total{route="(default)",status="200"}"#
        ),
        3.0,
        "{m:#?}"
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_requests_total{route="/deny",status="403"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_requests_total{route="/private",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_requests_total{route="/tight",status="429"}"#
        ),
        1.0
    );
    assert_eq!(
        get(&m, r#"portcullis_rate_limited_total{route="/tight"}"#),
        1.0
    );
    assert_eq!(
        get(&m, r#"portcullis_auth_failures_total{reason="forbidden"}"#),
        2.0
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_auth_failures_total{reason="unauthorized"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_auth_failures_total{reason="login_failed"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"portcullis_request_duration_seconds_count{route="/deny"}"#
        ),
        2.0
    );
    let expiry = get(&m, r#"portcullis_cert_expiry_seconds{name="localhost"}"#);
    assert!(
        expiry > 86_400.0,
        "the test certificate is valid for a while: {expiry}"
    );

    // A reload is counted by result.
    gw.reload(&cfg);
    assert!(wait_until(Duration::from_secs(15), || gw
        .stdout()
        .contains("\"config_reload\"")));
    gw.reload("not toml [");
    assert!(wait_until(Duration::from_secs(15), || gw
        .stdout()
        .matches("\"config_reload\"")
        .count()
        == 2));
    let m = metrics(&gw).await;
    assert_eq!(
        get(&m, r#"portcullis_config_reloads_total{result="ok"}"#),
        1.0
    );
    assert_eq!(
        get(&m, r#"portcullis_config_reloads_total{result="failed"}"#),
        1.0
    );

    assert_eq!(
        reqwest::get(gw.ops_url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(gw.ops_url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(gw.ops_url("/other"))
            .await
            .expect("other")
            .status(),
        404
    );
    // The ops paths are not on the public listener.
    assert_eq!(
        json("/metrics").await.expect("public").status(),
        200,
        "proxied to the app, not served"
    );
    assert!(up.requests().iter().any(|r| r.path() == "/metrics"));
}

#[tokio::test]
async fn readyz_follows_the_store_when_it_must_deny() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start();
    let ops = free_port();
    let cfg = basic_with(
        &pki,
        &[up.addr()],
        &format!("ops = \"127.0.0.1:{ops}\""),
        &format!(
            "[rate_limit]\nstore = \"redis\"\nredis = \"{}\"\non_store_error = \"deny\"\n",
            redis.url()
        ),
    );
    let gw = Gateway::start(&cfg);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(c.get(gw.url("/")).send().await.expect("req").status(), 200);
    assert_eq!(
        reqwest::get(gw.ops_url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
    redis.stop();
    assert_eq!(c.get(gw.url("/")).send().await.expect("req").status(), 503);
    assert_eq!(
        reqwest::get(gw.ops_url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        503
    );
    assert_eq!(
        reqwest::get(gw.ops_url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
    let m = metrics(&gw).await;
    assert_eq!(get(&m, "portcullis_store_outages_total"), 1.0);
    assert!(get(&m, "portcullis_store_failed_operations_total") >= 1.0);
    redis.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.get(gw.url("/")).send().await.expect("req").status(), 200);
    assert_eq!(
        reqwest::get(gw.ops_url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
}
