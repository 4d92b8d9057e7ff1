//! Security headers and CORS (docs/configuration.md `[headers]`, `[cors]`, the response) on every
//! kind of response, the gateway's own included.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use reqwest::header::{ACCEPT, COOKIE};
use support::config::basic_with;
use support::*;

const KEYS: &str = "headers-test-key-0123456789abcdefghijklmnop";

/// The documented defaults (HSTS only over https).
const DEFAULTS: [(&str, &str); 7] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
];

fn missing_defaults(headers: &reqwest::header::HeaderMap, https: bool) -> Vec<String> {
    DEFAULTS
        .iter()
        .filter(|(n, _)| https || *n != "strict-transport-security")
        .filter(|(n, v)| headers.get(*n).and_then(|h| h.to_str().ok()) != Some(*v))
        .map(|(n, _)| format!("{n} = {:?}", headers.get(*n)))
        .collect()
}

fn raw_missing(resp: &RawResponse) -> Vec<String> {
    DEFAULTS
        .iter()
        .filter(|(n, v)| resp.header(n) != Some(*v))
        .map(|(n, _)| n.to_string())
        .collect()
}

const ROUTES: &str = "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
    [[route]]\npath = \"/private\"\naccess = \"login\"\n\
    [[route]]\npath = \"/blocked\"\naccess = \"deny\"\n\
    [[route]]\npath = \"/small\"\nmax_body = \"10B\"\n\
    [[route]]\npath = \"/embed\"\nheaders = { csp = \"default-src 'self'; frame-ancestors https://partner.example\", frame_options = \"\" }\n";

#[tokio::test]
async fn every_response_kind_carries_the_default_set() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = GatewayBuilder::new(&basic_with(&pki, &[up.addr()], "", ROUTES))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .start();
    let json =
        |c: &reqwest::Client, url: String| c.get(url).header(ACCEPT, "application/json").send();
    for http2 in [false, true] {
        let c = https_client(&pki.ca_pem, gw.https_port, http2);
        let cases: Vec<(&str, u16, reqwest::Response)> = vec![
            (
                "proxied 200",
                200,
                json(&c, gw.url("/hello")).await.expect("200"),
            ),
            (
                "app 500",
                500,
                json(&c, gw.url("/status/500")).await.expect("500"),
            ),
            (
                "app leaky",
                200,
                json(&c, gw.url("/leaky")).await.expect("leaky"),
            ),
            (
                "gateway 401",
                401,
                json(&c, gw.url("/private")).await.expect("401"),
            ),
            (
                "gateway 403",
                403,
                json(&c, gw.url("/blocked")).await.expect("403"),
            ),
            (
                "gateway 404",
                404,
                json(&c, gw.url("/.portcullis/nope")).await.expect("404"),
            ),
            (
                "gateway 413",
                413,
                c.post(gw.url("/small"))
                    .body("more than ten bytes")
                    .send()
                    .await
                    .expect("413"),
            ),
            (
                "login page",
                200,
                c.get(gw.url("/.portcullis/login"))
                    .send()
                    .await
                    .expect("login"),
            ),
            (
                "303 to login",
                303,
                c.get(gw.url("/private"))
                    .header(ACCEPT, "text/html")
                    .send()
                    .await
                    .expect("303"),
            ),
            (
                "health",
                200,
                c.get(gw.url("/.portcullis/health"))
                    .send()
                    .await
                    .expect("health"),
            ),
        ];
        for (what, status, resp) in cases {
            assert_eq!(resp.status(), status, "{what} (h2 {http2})");
            let missing = missing_defaults(resp.headers(), true);
            assert!(missing.is_empty(), "{what} (h2 {http2}) lacks {missing:?}");
            assert!(
                resp.headers().get("server").is_none(),
                "{what}: Server removed"
            );
            assert!(
                resp.headers().get("x-powered-by").is_none(),
                "{what}: X-Powered-By removed"
            );
            assert!(resp.headers().get("x-request-id").is_some(), "{what}");
        }
    }
    // A 400 the gateway writes for an unsafe path.
    let raw = raw_tls(
        gw.https_port,
        &pki.ca_pem,
        "localhost",
        b"GET /a/../b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 400);
    assert!(
        raw_missing(&raw).is_empty(),
        "400 lacks {:?}",
        raw_missing(&raw)
    );
    // The plain listener's redirect: everything but HSTS (not over http).
    let resp = http_client(gw.http_port)
        .get(format!("http://localhost:{}/x", gw.http_port))
        .send()
        .await
        .expect("301");
    assert_eq!(resp.status(), 301);
    assert!(
        missing_defaults(resp.headers(), false).is_empty(),
        "{:?}",
        missing_defaults(resp.headers(), false)
    );
    assert!(
        resp.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain http"
    );

    // A 502 and a 429.
    drop(gw);
    let gw = GatewayBuilder::new(&basic_with(&pki, &[dead_addr()], "", ROUTES))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = json(&c, gw.url("/x")).await.expect("502");
    assert_eq!(resp.status(), 502);
    assert!(missing_defaults(resp.headers(), true).is_empty());
    let form = support::login::login_form(&c, &gw.base()).await;
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            support::login::post_login(&c, &gw.base(), &form, "x", "wrong-password", "/", None)
                .await,
        );
    }
    let resp = last.expect("sixth");
    assert_eq!(resp.status(), 429);
    assert!(
        missing_defaults(resp.headers(), true).is_empty(),
        "429 lacks {:?}",
        missing_defaults(resp.headers(), true)
    );
}

#[tokio::test]
async fn route_overrides_change_only_their_headers() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = GatewayBuilder::new(&basic_with(&pki, &[up.addr()], "", ROUTES))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = c.get(gw.url("/embed/widget")).send().await.expect("embed");
    let h = resp.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; frame-ancestors https://partner.example"
    );
    assert!(
        h.get("x-frame-options").is_none(),
        "\"\" removes that one default"
    );
    // Everything else is inherited: no nginx add_header trap.
    for (n, v) in DEFAULTS
        .iter()
        .filter(|(n, _)| *n != "content-security-policy" && *n != "x-frame-options")
    {
        assert_eq!(
            h.get(*n).and_then(|x| x.to_str().ok()),
            Some(*v),
            "{n} inherited"
        );
    }
}

#[tokio::test]
async fn app_may_override_works_both_ways() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic_with(
        &pki,
        &[up.addr()],
        "",
        "[headers]\napp_may_override = [\"csp\", \"referrer_policy\"]\n",
    );
    let gw = Gateway::start(&cfg);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = c
        .get(gw.url("/with-headers?content-security-policy=default-src%20'none'&x-frame-options=SAMEORIGIN&referrer-policy=no-referrer"))
        .send()
        .await
        .expect("app headers");
    let h = resp.headers();
    assert_eq!(
        h["content-security-policy"], "default-src 'none'",
        "listed: the app's value wins"
    );
    assert_eq!(
        h["referrer-policy"], "no-referrer",
        "listed: the app's value wins"
    );
    assert_eq!(
        h["x-frame-options"], "DENY",
        "not listed: the gateway's value replaces the app's"
    );
    assert_eq!(
        h.get_all("x-frame-options").iter().count(),
        1,
        "replaced, not duplicated"
    );
    // Where the app sets nothing, the gateway's default applies.
    let resp = c.get(gw.url("/plain")).send().await.expect("plain");
    assert_eq!(resp.headers()["content-security-policy"], DEFAULTS[1].1);

    // With an empty list the gateway always wins.
    drop(gw);
    let gw = Gateway::start(&basic_with(
        &pki,
        &[up.addr()],
        "",
        "[headers]\napp_may_override = []\nremove = [\"Server\", \"X-Powered-By\", \"X-Debug\"]\n",
    ));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = c
        .get(gw.url("/with-headers?content-security-policy=default-src%20*&x-debug=1"))
        .send()
        .await
        .expect("app headers");
    assert_eq!(resp.headers()["content-security-policy"], DEFAULTS[1].1);
    assert!(resp.headers().get("x-debug").is_none(), "remove list");
}

#[tokio::test]
async fn cors_allows_exactly_the_configured_origins() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let extra = format!(
        "{ROUTES}[cors]\nallow_origins = [\"https://app.example.com\", \"https://admin.example.com:8443\"]\n\
         allow_methods = [\"GET\", \"POST\"]\nallow_headers = [\"Content-Type\", \"X-Api-Key\"]\nallow_credentials = true\nmax_age = \"10m\"\n"
    );
    let gw = GatewayBuilder::new(&basic_with(&pki, &[up.addr()], "", &extra))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let get = |origin: &str| c.get(gw.url("/data")).header("origin", origin).send();

    let resp = get("https://app.example.com").await.expect("allowed");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    assert!(resp.headers()["vary"]
        .to_str()
        .expect("vary")
        .contains("Origin"));
    assert_eq!(
        get("https://admin.example.com:8443")
            .await
            .expect("port")
            .headers()["access-control-allow-origin"],
        "https://admin.example.com:8443"
    );

    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.com:8443",
        "http://app.example.com",
        "https://app.example.com.evil",
        "https://evilapp.example.com",
        "https://app.example.com/",
        "https://admin.example.com",
    ] {
        let resp = get(origin).await.expect("request");
        assert_eq!(
            resp.status(),
            200,
            "{origin}: the request itself is not blocked"
        );
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{origin} must get no CORS headers"
        );
        assert!(
            resp.headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "{origin}"
        );
        assert!(
            resp.headers()["vary"]
                .to_str()
                .expect("vary")
                .contains("Origin"),
            "{origin}"
        );
    }

    // A preflight on a protected route: answered by the gateway, no login, app not reached.
    let hits = up.hits();
    let pre = c
        .request(reqwest::Method::OPTIONS, gw.url("/private/items"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, X-API-KEY")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .expect("m")
        .contains("POST"));
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        missing_defaults(h, true).is_empty(),
        "a preflight carries the security headers too"
    );
    // Disallowed method, header or origin: answered, without CORS headers.
    for (origin, method, headers) in [
        ("https://app.example.com", "DELETE", "content-type"),
        ("https://app.example.com", "POST", "x-other"),
        ("https://evil.example", "POST", "content-type"),
    ] {
        let pre = c
            .request(reqwest::Method::OPTIONS, gw.url("/private/items"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .expect("preflight");
        assert_eq!(pre.status(), 204, "{origin} {method} {headers}");
        assert!(
            pre.headers().get("access-control-allow-origin").is_none(),
            "{origin} {method} {headers}"
        );
    }
    assert_eq!(up.hits(), hits, "no preflight reached the app");

    // Credentialed request from an allowed origin still needs the session.
    let resp = c
        .get(gw.url("/private/items"))
        .header("origin", "https://app.example.com")
        .header(ACCEPT, "application/json")
        .header(COOKIE, "__Host-portcullis=forged")
        .send()
        .await
        .expect("actual");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com",
        "the 401 is readable by the allowed origin"
    );
}

#[test]
fn star_with_credentials_is_refused_at_load() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic_with(
        &pki,
        &[up.addr()],
        "",
        "[cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, cfg).expect("write");
    let out = run_cli(&["check", "-c", path.to_str().expect("utf8")], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        support::gateway::stderr_of(&out).contains("cors"),
        "{}",
        support::gateway::stderr_of(&out)
    );
}
