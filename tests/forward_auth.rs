//! Forward auth (`GET /.portcullis/auth`, docs/forward-auth.md), black-box:
//! the endpoint asked directly (who may ask, which headers describe the
//! original request, the answers, the original request judged exactly like
//! a proxied one), then real nginx and Caddy in front of the echo app,
//! configured from `examples/forward-auth/`, with a person signing in
//! through them in Chromium.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::LazyLock;
use std::time::Duration;

use reqwest::header::{ACCEPT, COOKIE};
use support::config::basic_with;
use support::front::{self, Front, Targets};
use support::login::{login, login_form, post_login};
use support::*;

const KEYS: &str = "forward-auth-key-0123456789abcdefghijklmnop";
const ALICE_PW: &str = "alice-password-1";
const BOB_PW: &str = "bob-password-2";

static ALICE_HASH: LazyLock<String> =
    LazyLock::new(|| policies::users::hash_password(ALICE_PW).expect("hash"));
static BOB_HASH: LazyLock<String> =
    LazyLock::new(|| policies::users::hash_password(BOB_PW).expect("hash"));

/// Bob (admin, staff) and Alice (staff, with an address).
fn users_toml() -> String {
    format!(
        "[users.bob]\npassword = \"{}\"\nroles = [\"admin\", \"staff\"]\n\
         [users.Alice]\npassword = \"{}\"\nroles = [\"staff\"]\nemail = \"alice@example.com\"\n",
        BOB_HASH.as_str(),
        ALICE_HASH.as_str()
    )
}

const ROUTES: &str = "[secrets]
session_keys = \"env:PORTCULLIS_SESSION_KEYS\"
[[route]]
path = \"/private\"
access = \"login\"
[[route]]
path = \"/admin\"
access = \"role:admin\"
[[route]]
path = \"/limited\"
rate_limit = \"2/minute\"
";

/// A gateway with an https listener and an auth listener; `trusted` is the
/// `trusted_proxies` list.
fn direct(pki: &TestPki, up: &Upstream, trusted: &str) -> Gateway {
    let cfg = basic_with(
        pki,
        &[up.addr()],
        &format!(
            "auth = \"127.0.0.1:{}\"\ntrusted_proxies = [{trusted}]",
            free_port()
        ),
        ROUTES,
    );
    GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&users_toml())
        .start()
}

/// A raw auth request on the auth listener: `headers` are whole lines.
async fn ask(gw: &Gateway, headers: &[&str]) -> RawResponse {
    let mut req = String::from("GET /.portcullis/auth HTTP/1.1\r\nHost: portcullis\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_tcp(gw.auth_port, req.as_bytes()).await
}

/// The nginx spelling of an original request.
fn original(method: &str, url: &str) -> [String; 2] {
    [
        format!("X-Original-Method: {method}"),
        format!("X-Original-URL: {url}"),
    ]
}

async fn ask_about(gw: &Gateway, method: &str, url: &str, more: &[&str]) -> RawResponse {
    let o = original(method, url);
    let mut headers: Vec<&str> = o.iter().map(String::as_str).collect();
    headers.extend_from_slice(more);
    ask(gw, &headers).await
}

#[tokio::test]
async fn only_a_trusted_proxy_may_ask() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = direct(&pki, &up, "\"10.0.0.0/8\"");
    // Every header a proxy would send, from a peer that is not one.
    let all = [
        "X-Original-Method: GET",
        "X-Original-URL: https://localhost/public",
        "X-Forwarded-For: 10.1.2.3",
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: localhost",
        "X-Forwarded-Uri: /public",
    ];
    let r = ask(&gw, &all).await;
    assert_eq!(r.status, 403, "auth listener");
    let mut req = String::from("GET /.portcullis/auth HTTP/1.1\r\nHost: localhost\r\n");
    for h in all {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let r = raw_tls(gw.https_port, &pki.ca_pem, "localhost", req.as_bytes()).await;
    assert_eq!(r.status, 403, "https listener");
    // The plain listener that redirects knows no auth endpoint.
    let r = http_client(gw.http_port)
        .get(gw.http_url("/.portcullis/auth"))
        .header("x-original-method", "GET")
        .header("x-original-url", "https://localhost/public")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn the_answers_a_front_proxy_gets() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = direct(&pki, &up, "\"127.0.0.1/32\"");
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let alice = login(&c, &gw.base(), "alice", ALICE_PW).await;
    let bob = login(&c, &gw.base(), "bob", BOB_PW).await;
    let html = "Accept: text/html";

    // Public: 200, the route's security headers, no identity, whatever
    // identity headers the client slipped through the proxy.
    let r = ask_about(
        &gw,
        "GET",
        "https://app.example.com/public",
        &["X-Forwarded-User: admin", "X-Forwarded-Roles: admin"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-security-policy").is_some());
    assert!(r.header("x-frame-options").is_some());
    assert_eq!(r.header("x-forwarded-user"), None);
    assert_eq!(r.header("x-forwarded-roles"), None);

    // Login needed: a navigation goes to the login page on the original
    // host with `next`; nginx gets 401 and the URL; a script gets 401.
    let url = "https://app.example.com:8443/private/page?x=1";
    let r = ask_about(&gw, "GET", url, &[html]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://app.example.com:8443/.portcullis/login?next=%2Fprivate%2Fpage%3Fx%3D1")
    );
    let r = ask_about(&gw, "GET", url, &[html, "X-Portcullis-Auth-Mode: nginx"]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("x-portcullis-login"),
        Some("https://app.example.com:8443/.portcullis/login?next=%2Fprivate%2Fpage%3Fx%3D1")
    );
    let r = ask_about(&gw, "GET", url, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-portcullis-login"), None);
    assert!(r.body_text().contains("\"status\":401"));
    // The scheme the proxy names is the one the login URL gets.
    let r = ask_about(&gw, "GET", "http://app.example.com/private", &[html]).await;
    assert_eq!(
        r.header("location"),
        Some("http://app.example.com/.portcullis/login?next=%2Fprivate")
    );

    // A session: 200 with the identity headers to copy; roles count.
    let with = |cookie: &str| format!("Cookie: {cookie}");
    let r = ask_about(
        &gw,
        "GET",
        "https://app.example.com/admin/x",
        &[&with(&bob), "X-Forwarded-User: mallory"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("x-forwarded-user"), vec!["bob"]);
    assert_eq!(r.header("x-forwarded-roles"), Some("admin,staff"));
    let r = ask_about(
        &gw,
        "GET",
        "https://app.example.com/admin/x",
        &[&with(&alice)],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = ask_about(
        &gw,
        "GET",
        "https://app.example.com/private",
        &[&with(&alice)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-forwarded-user"), Some("Alice"));
    assert_eq!(r.header("x-forwarded-email"), Some("alice@example.com"));
    // The method is the original one: a POST is judged as a POST.
    let r = ask_about(
        &gw,
        "POST",
        "https://app.example.com/private",
        &[&with(&alice)],
    )
    .await;
    assert_eq!(r.status, 200);

    // Limits: 429 with the rate-limit headers; nginx gets 403 + the status.
    for _ in 0..2 {
        let r = ask_about(&gw, "GET", "https://app.example.com/limited", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").is_some());
    }
    let r = ask_about(&gw, "GET", "https://app.example.com/limited", &[]).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("ratelimit-policy").is_some());
    let r = ask_about(
        &gw,
        "GET",
        "https://app.example.com/limited",
        &["X-Portcullis-Auth-Mode: nginx"],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-portcullis-status"), Some("429"));
    assert!(r.header("retry-after").is_some());

    // The gateway's own pages are reached through the proxy, never
    // authorised for the app.
    let r = ask_about(&gw, "GET", "https://app.example.com/.portcullis/login", &[]).await;
    assert_eq!(r.status, 403);

    // The auth listener answers nothing else.
    let r = raw_tcp(
        gw.auth_port,
        b"GET /private HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(up.hits(), 0, "forward auth never reaches the app");
}

#[tokio::test]
async fn missing_repeated_or_conflicting_descriptions_are_refused() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = direct(&pki, &up, "\"127.0.0.1/32\"");
    let traefik = [
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: app.example.com",
        "X-Forwarded-Uri: /public",
    ];
    assert_eq!(ask(&gw, &traefik).await.status, 200);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("nothing", vec![]),
        ("proto and host only", traefik[1..3].to_vec()),
        ("no method", traefik[1..].to_vec()),
        ("no uri", traefik[..3].to_vec()),
        ("no host", vec![traefik[0], traefik[1], traefik[3]]),
        ("no proto", vec![traefik[0], traefik[2], traefik[3]]),
        (
            "uri twice",
            [&traefik[..], &["X-Forwarded-Uri: /admin"]].concat(),
        ),
        (
            "host twice",
            [&traefik[..], &["X-Forwarded-Host: evil.example"]].concat(),
        ),
        (
            "a host list",
            vec![
                traefik[0],
                traefik[1],
                "X-Forwarded-Host: app.example.com, evil.example",
                traefik[3],
            ],
        ),
        (
            "a proto list",
            vec![
                traefik[0],
                "X-Forwarded-Proto: https, http",
                traefik[2],
                traefik[3],
            ],
        ),
        ("nginx: no url", vec!["X-Original-Method: GET"]),
        (
            "nginx: a relative url",
            vec!["X-Original-Method: GET", "X-Original-URL: /public"],
        ),
        (
            "nginx: user info",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://admin@app.example.com/public",
            ],
        ),
        (
            "families disagree on the target",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://app.example.com/admin",
                "X-Forwarded-Uri: /public",
            ],
        ),
        (
            "families disagree on the host",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://app.example.com/public",
                "X-Forwarded-Host: other.example",
            ],
        ),
        (
            "families disagree on the method",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://app.example.com/public",
                "X-Forwarded-Method: POST",
            ],
        ),
        (
            "families disagree on the scheme",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://app.example.com/public",
                "X-Forwarded-Proto: http",
            ],
        ),
        (
            "a lowercase method",
            vec![
                "X-Original-Method: get",
                "X-Original-URL: https://a.example/public",
            ],
        ),
        (
            "a bad host",
            vec![
                "X-Original-Method: GET",
                "X-Original-URL: https://a_b..example/public",
            ],
        ),
        (
            "an absolute-form uri",
            vec![
                traefik[0],
                traefik[1],
                traefik[2],
                "X-Forwarded-Uri: https://other.example/admin",
            ],
        ),
        (
            "an asterisk",
            vec![
                "X-Forwarded-Method: OPTIONS",
                traefik[1],
                traefik[2],
                "X-Forwarded-Uri: *",
            ],
        ),
    ];
    let mut failed = Vec::new();
    for (what, headers) in &cases {
        let r = ask(&gw, headers).await;
        if r.status != 400 {
            failed.push(format!("{what}: {}", r.status));
        }
        let mut nginx = headers.clone();
        nginx.push("X-Portcullis-Auth-Mode: nginx");
        let r = ask(&gw, &nginx).await;
        if r.status != 403 || r.header("x-portcullis-status") != Some("400") {
            failed.push(format!("{what} (nginx): {}", r.status));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Every path-safety rule applies to the original target: for tricky
/// targets the auth answer is exactly what the same request sent to the
/// gateway itself gets (200 there meaning: the app was reached).
#[tokio::test]
async fn the_original_target_is_judged_as_a_proxied_one() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = direct(&pki, &up, "\"127.0.0.1/32\"");
    let targets: &[&str] = &[
        "/admin",
        "/%61dmin",
        "//admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E%2Fadmin",
        "/public%2fadmin",
        "/admin%2f",
        "/./admin",
        "/public/..;/admin",
        "/admin;x=1",
        "/ADMIN",
        "/admin%00",
        "/admin%5c..%5cpublic",
        "/public\\..\\admin",
        "/privat%65",
        "/private/",
        "/limited/../private",
        "/caf%c3%a9",
        "/a%ZZ",
    ];
    let mut differ = Vec::new();
    for t in targets {
        let direct = raw_tls(
            gw.https_port,
            &pki.ca_pem,
            "localhost",
            format!("GET {t} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let asked = ask(
            &gw,
            &[
                "X-Forwarded-Method: GET",
                "X-Forwarded-Proto: https",
                "X-Forwarded-Host: localhost",
                &format!("X-Forwarded-Uri: {t}"),
            ],
        )
        .await;
        if direct.status != asked.status {
            differ.push(format!(
                "{t}: direct {} auth {}",
                direct.status, asked.status
            ));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
}

/// The example config with the test's ports, a public `/public` and a
/// limited `/limited` route added.
fn example_gateway(up: &Upstream) -> (Gateway, Targets) {
    let (pages, auth) = (free_port(), free_port());
    let t = Targets {
        pages,
        auth,
        app: up.port(),
    };
    let cfg = front::retarget(&front::example("portcullis.toml"), t);
    let cfg = format!(
        "{cfg}\n[[route]]\npath = \"/public\"\naccess = \"public\"\n\
         [[route]]\npath = \"/limited\"\naccess = \"public\"\nrate_limit = \"2/minute\"\n"
    );
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&users_toml())
        .start();
    // The builder may have moved a taken port: read them back.
    let t = Targets {
        pages: gw.http_port,
        auth: gw.auth_port,
        app: up.port(),
    };
    (gw, t)
}

/// A person signs in through the front proxy and reaches the app with
/// their identity; roles, the login limit, the security headers and
/// spoofed identity headers, all through the real proxy.
async fn through(front: &Front, pki: &TestPki, up: &Upstream, name: &str, gateway_headers: bool) {
    let browser = Browser::start_trusting(pki).await;
    browser.goto(&front.url("/private/page?tab=2")).await;
    assert!(
        browser.wait_for("#username", Duration::from_secs(10)).await,
        "no login form at {}\n{}",
        browser.current_url().await,
        front.logs()
    );
    let url = browser.current_url().await;
    assert_eq!(
        url,
        front.url("/.portcullis/login?next=%2Fprivate%2Fpage%3Ftab%3D2")
    );
    browser
        .save_screenshot(&format!("forward-auth-{name}-login"))
        .await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", ALICE_PW).await;
    browser.submit_and_wait("#sign-in").await;
    assert_eq!(
        browser.current_url().await,
        front.url("/private/page?tab=2")
    );
    let seen: serde_json::Value =
        serde_json::from_str(&browser.body_text().await).expect("echo JSON");
    let seen = SeenRequest::from_json(&seen);
    assert_eq!(seen.target, "/private/page?tab=2");
    assert_eq!(seen.header_all("x-forwarded-user"), vec!["Alice"]);
    assert_eq!(seen.header("x-forwarded-roles"), Some("staff"));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert!(
        seen.header("cookie")
            .is_some_and(|c| c.contains("__Host-portcullis")),
        "(the front proxy forwards cookies as they are)"
    );
    browser
        .save_screenshot(&format!("forward-auth-{name}-app"))
        .await;
    // Alice is no admin: the proxy's 403.
    browser.goto(&front.url("/admin")).await;
    assert!(browser.body_text().await.contains("403"), "{name}: /admin");
    let admin_hits = up
        .requests()
        .iter()
        .filter(|r| r.path().starts_with("/admin"))
        .count();
    assert_eq!(admin_hits, 0);

    let c = https_client(&pki.ca_pem, front.port, false);
    // Spoofed identity headers on a public page, signed out.
    let r = c
        .get(front.url("/public"))
        .header("X-Forwarded-User", "admin")
        .header("x-forwarded-roles", "admin")
        .header("X-Forwarded-Email", "admin@example.com")
        .header("X-Forwarded-Assertion", "admin")
        .header("X_Forwarded_User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let seen = SeenRequest::from_json(&r.json().await.unwrap());
    let leaked: Vec<_> = seen
        .headers
        .iter()
        .filter(|(_, v)| v.contains("admin"))
        .collect();
    assert!(leaked.is_empty(), "{name}: {leaked:?}");
    // The security headers reach the browser.
    for h in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
    ] {
        assert!(headers.get(h).is_some(), "{name}: {h} missing: {headers:?}");
    }
    // The route's limit: 429 through the proxy (nginx maps it back from
    // 403 + X-Portcullis-Status).
    let r = c.get(front.url("/limited")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    if gateway_headers {
        // nginx copies the answer's headers: the route's rate limit shows.
        assert!(r.headers().get("ratelimit").is_some(), "{name}");
    }
    let r = c.get(front.url("/limited")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(front.url("/limited")).send().await.unwrap();
    assert_eq!(r.status(), 429, "{name}: /limited");
    assert!(r.headers().get("retry-after").is_some(), "{name}");
    // Anonymous scripts get 401, not a redirect.
    let r = c
        .get(front.url("/private"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{name}");
    // The login limit (5/minute), counted by portcullis behind the proxy.
    let form = login_form(&c, &front.url("")).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = post_login(&c, &front.url(""), &form, "bob", "wrong", "/", None).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{name}: {statuses:?}");
    // A signed-in script's request carries the identity.
    let cookie = browser
        .cookie("__Host-portcullis")
        .await
        .expect("session cookie");
    let r = c
        .get(front.url("/private/x"))
        .header(
            COOKIE,
            format!("__Host-portcullis={}", cookie["value"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn nginx_auth_request_in_front() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let (_gw, t) = example_gateway(&up);
    let front = Front::nginx(&pki, t);
    through(&front, &pki, &up, "nginx", true).await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let (_gw, t) = example_gateway(&up);
    let front = Front::caddy(&pki, t);
    through(&front, &pki, &up, "caddy", false).await;
}
