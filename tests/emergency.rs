//! The emergency gate (docs/configuration.md `[emergency]`): hidden while disabled (the
//! generic 404, byte for byte), the break-glass flow in headless Chromium,
//! attempt limits and the global lockout, what voids an emergency cookie,
//! `allow_from`, and the audit trail (never a secret or a password).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use support::config::basic_with;
use support::login::set_cookie;
use support::*;

const KEYS: &str = "emergency-test-key-0123456789abcdefghijklmn";
const SECRET: &str = "the-emergency-secret-0123456789-abcdefghij";
const OTHER_SECRET: &str = "another-emergency-secret-0123456789-abcdef";
const ALICE_PW: &str = "alice's old password";

/// Sessions on, `/admin` for the admin role, `/app` for any login.
fn config(pki: &TestPki, up: &Upstream, server_extra: &str, emergency: &str) -> String {
    basic_with(
        pki,
        &[up.addr()],
        server_extra,
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\nemergency = \"env:PORTCULLIS_EMERGENCY_SECRET\"\n\
             [emergency]\n{emergency}\n\
             [[route]]\npath = \"/admin\"\naccess = \"role:admin\"\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n"
        ),
    )
}

fn alice() -> String {
    let hash = policies::users::hash_password(ALICE_PW).expect("hash");
    format!("[users.alice]\npassword = \"{hash}\"\nroles = [\"staff\"]\n")
}

fn start(cfg: &str, secret: &str, users: &str, env: &[(&str, &str)]) -> Gateway {
    let mut b = GatewayBuilder::new(cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("PORTCULLIS_EMERGENCY_SECRET", secret)
        .users(users);
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.start()
}

/// Status, headers (without the per-request id and date) and body.
async fn shape(resp: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

const GATE_PATHS: [&str; 8] = [
    "/.portcullis/emergency",
    "/.portcullis/emergency/",
    "/.portcullis/emergency/dashboard",
    "/.portcullis/emergency/create-user",
    "/.portcullis/emergency/reset-password",
    "/.portcullis/emergency/logout",
    "/.portcullis/Emergency",
    "/.portcullis/emergency?x=1",
];

/// Every gate path, GET and POST, HTML and JSON, looks like the 404 of an
/// unknown reserved path.
async fn assert_hidden(c: &reqwest::Client, gw: &Gateway, headers: &[(&str, &str)]) {
    for accept in ["text/html", "application/json"] {
        let send = |method: reqwest::Method, path: &str| {
            let mut req = c.request(method, gw.url(path)).header(ACCEPT, accept);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("secret=x&csrf=y")
                .send()
        };
        let reference = shape(
            send(reqwest::Method::GET, "/.portcullis/no-such-page")
                .await
                .expect("ref"),
        )
        .await;
        assert_eq!(reference.0, 404);
        for path in GATE_PATHS {
            for method in [reqwest::Method::GET, reqwest::Method::POST] {
                let got = shape(send(method.clone(), path).await.expect("request")).await;
                assert_eq!(got, reference, "{method} {path} ({accept})");
            }
        }
    }
}

#[tokio::test]
async fn a_disabled_gate_is_the_generic_404_byte_for_byte() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    // Disabled in the file (the default).
    let gw = start(&config(&pki, &up, "", "enabled = false"), SECRET, "", &[]);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_hidden(&c, &gw, &[]).await;
    drop(gw);
    // Enabled in the file, disabled by the environment, which wins.
    let gw = start(
        &config(&pki, &up, "", "enabled = true"),
        SECRET,
        "",
        &[("PORTCULLIS_EMERGENCY_ENABLED", "false")],
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_hidden(&c, &gw, &[]).await;
    assert_eq!(up.hits(), 0, "never forwarded");
    // Disabled in the file, enabled by the environment.
    let gw = start(
        &config(&pki, &up, "", "enabled = false"),
        SECRET,
        "",
        &[("PORTCULLIS_EMERGENCY_ENABLED", "true")],
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = c
        .get(gw.url("/.portcullis/emergency"))
        .send()
        .await
        .expect("form");
    assert_eq!(resp.status(), 200);
}

/// An emergency grant through the API: the form's binding and token, then
/// the secret. Returns the response of the POST.
async fn submit_secret(
    c: &reqwest::Client,
    gw: &Gateway,
    secret: &str,
    xff: Option<&str>,
) -> reqwest::Response {
    support::login::emergency_attempt(c, &gw.base(), secret, xff).await
}

async fn grant(c: &reqwest::Client, gw: &Gateway) -> String {
    let resp = submit_secret(c, gw, SECRET, None).await;
    assert_eq!(resp.status(), 303, "granted");
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/.portcullis/emergency/dashboard")
    );
    let line =
        support::login::set_cookie_line(&resp, "__Host-portcullis-emergency").expect("cookie");
    for attr in [
        "Secure",
        "HttpOnly",
        "Path=/",
        "SameSite=Strict",
        "Max-Age=",
    ] {
        assert!(line.contains(attr), "{attr}: {line}");
    }
    format!(
        "__Host-portcullis-emergency={}",
        set_cookie(&resp, "__Host-portcullis-emergency").expect("value")
    )
}

async fn dashboard_status(c: &reqwest::Client, gw: &Gateway, cookie: &str) -> u16 {
    c.get(gw.url("/.portcullis/emergency/dashboard"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("dashboard")
        .status()
        .as_u16()
}

/// POSTs a dashboard form (`create-user`, `reset-password`, `logout`) with a fresh token.
async fn action(
    c: &reqwest::Client,
    gw: &Gateway,
    cookie: &str,
    name: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    support::login::emergency_action(c, &gw.base(), cookie, name, fields).await
}

fn audit_events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.log_lines()
        .into_iter()
        .filter(|l| l["audit"] == true)
        .collect()
}

fn assert_no_secrets(gw: &Gateway, secrets: &[&str]) {
    let all = format!("{}{}", gw.stdout(), gw.stderr());
    for s in secrets {
        assert!(!all.contains(s), "{s:?} appears in the logs");
    }
}

#[tokio::test]
async fn break_glass_in_a_real_browser_then_sign_in_as_the_new_admin() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(&config(&pki, &up, "", "enabled = true"), SECRET, "", &[]);
    let browser = Browser::start_trusting(&pki).await;

    browser.goto(&gw.url("/.portcullis/emergency")).await;
    assert!(browser.wait_for("#secret", Duration::from_secs(10)).await);
    assert_eq!(browser.title().await, "Emergency access");
    browser
        .fill("#secret", "not the secret at all, but long enough")
        .await;
    browser.submit_and_wait("#grant").await;
    assert!(browser
        .body_text()
        .await
        .contains("That is not the emergency secret."));
    browser.save_screenshot("emergency-wrong-secret").await;
    assert!(browser
        .cookie("__Host-portcullis-emergency")
        .await
        .is_none());

    browser.fill("#secret", SECRET).await;
    browser.submit_and_wait("#grant").await;
    assert_eq!(
        browser.current_url().await,
        gw.url("/.portcullis/emergency/dashboard")
    );
    assert!(browser
        .body_text()
        .await
        .contains("The identity store has no accounts yet."));
    browser.save_screenshot("emergency-dashboard-empty").await;

    browser.fill("#new-name", "root@example.com").await;
    browser
        .fill("#new-password", "a brand new admin password")
        .await;
    browser.submit_and_wait("#create-user").await;
    let text = browser.body_text().await;
    assert!(text.contains("User created."), "{text}");
    assert!(text.contains("root@example.com"), "{text}");
    browser.save_screenshot("emergency-dashboard-created").await;
    let users = gw.user_ok(&["export"], None);
    assert!(
        users.contains("root@example.com") && users.contains("$argon2id$"),
        "{users}"
    );

    browser.submit_and_wait("#end-emergency").await;
    assert!(browser
        .current_url()
        .await
        .contains("/.portcullis/emergency?ended=1"));
    assert!(browser
        .cookie("__Host-portcullis-emergency")
        .await
        .is_none());

    // A normal sign-in as the new admin reaches the role:admin route.
    browser.goto(&gw.url("/admin/panel")).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    browser.fill("#username", "root@example.com").await;
    browser
        .fill("#password", "a brand new admin password")
        .await;
    browser.submit_and_wait("#sign-in").await;
    assert_eq!(browser.current_url().await, gw.url("/admin/panel"));
    let seen =
        SeenRequest::from_json(&serde_json::from_str(&browser.body_text().await).expect("echo"));
    assert_eq!(seen.header("x-forwarded-user"), Some("root@example.com"));
    assert_eq!(seen.header("x-forwarded-roles"), Some("admin"));

    let events: Vec<String> = audit_events(&gw)
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["event"].as_str().unwrap_or(""),
                e["outcome"].as_str().or(e["action"].as_str()).unwrap_or("")
            )
        })
        .collect();
    for want in [
        "emergency_attempt:wrong_secret",
        "emergency_grant:",
        "emergency_action:create_user",
        "emergency_logout:",
        "login_ok:",
    ] {
        assert!(events.iter().any(|e| e == want), "{want} in {events:?}");
    }
    assert_no_secrets(
        &gw,
        &[
            SECRET,
            "a brand new admin password",
            "not the secret at all",
        ],
    );
}

#[tokio::test]
async fn attempts_are_limited_per_ip_and_globally() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(
        &config(
            &pki,
            &up,
            "trusted_proxies = [\"127.0.0.1\"]",
            "enabled = true",
        ),
        SECRET,
        "",
        &[],
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    // Per IP: 5 attempts per 15 minutes, then 429 (even with the right secret).
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            submit_secret(
                &c,
                &gw,
                "wrong wrong wrong wrong wrong wrong",
                Some("198.51.100.1"),
            )
            .await
            .status()
            .as_u16(),
        );
    }
    let sixth = submit_secret(&c, &gw, SECRET, Some("198.51.100.1")).await;
    statuses.push(sixth.status().as_u16());
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let retry: u64 = sixth.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=180).contains(&retry),
        "one attempt back per 3 minutes: {retry}"
    );
    // Spoofing the (untrusted) header from elsewhere changes nothing: only
    // the trusted proxy's view counts, and it names one client.

    // Globally: 20 attempts from all clients per 15 minutes, then a lockout.
    for i in 2..17 {
        let s = submit_secret(
            &c,
            &gw,
            "still wrong, still wrong, still wrong",
            Some(&format!("198.51.100.{i}")),
        )
        .await;
        assert_eq!(s.status(), 401, "attempt from client {i}");
    }
    // 5 + 15 = 20 attempts so far; the next one, from a fresh IP, is refused
    // even with the right secret, and so is every later one.
    let locked = submit_secret(&c, &gw, SECRET, Some("198.51.100.200")).await;
    assert_eq!(locked.status(), 429);
    let wait: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(wait > 800, "the whole window: {wait}");
    let again = submit_secret(&c, &gw, SECRET, Some("198.51.100.201")).await;
    assert_eq!(again.status(), 429);
    let events = audit_events(&gw);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "emergency_lockout")
            .count(),
        1,
        "one lockout entry"
    );
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "emergency_attempt")
            .count()
            >= 22
    );
    assert_no_secrets(&gw, &[SECRET]);
}

#[tokio::test]
async fn reset_password_ends_the_victims_sessions() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(
        &config(&pki, &up, "", "enabled = true"),
        SECRET,
        &alice(),
        &[],
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let alice_cookie = support::login::login(&c, &gw.base(), "alice", ALICE_PW).await;
    let app = |cookie: String| {
        c.get(gw.url("/app"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, cookie)
            .send()
    };
    assert_eq!(app(alice_cookie.clone()).await.expect("app").status(), 200);

    let em = grant(&c, &gw).await;
    // Wrong CSRF token: refused, nothing changes.
    let forged = c
        .post(gw.url("/.portcullis/emergency/reset-password"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, &em)
        .body("csrf=forged&username=alice&password=hijacked-password")
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 403);
    assert_eq!(app(alice_cookie.clone()).await.expect("app").status(), 200);

    let short = action(
        &c,
        &gw,
        &em,
        "reset-password",
        &[("username", "alice"), ("password", "short")],
    )
    .await;
    assert_eq!(short.status(), 400);
    let reset = action(
        &c,
        &gw,
        &em,
        "reset-password",
        &[("username", "alice"), ("password", "alice's new password")],
    )
    .await;
    assert_eq!(reset.status(), 200);
    assert!(reset
        .text()
        .await
        .expect("html")
        .contains("Password reset."));
    assert_eq!(
        app(alice_cookie).await.expect("app").status(),
        401,
        "the old session is void"
    );
    let fresh = support::login::login(&c, &gw.base(), "alice", "alice's new password").await;
    assert_eq!(app(fresh).await.expect("app").status(), 200);

    // Creating a user that exists (any case) is refused.
    let dup = action(
        &c,
        &gw,
        &em,
        "create-user",
        &[
            ("username", "ALICE"),
            ("password", "whatever password"),
            ("roles", "admin"),
        ],
    )
    .await;
    assert_eq!(dup.status(), 400);
    assert!(dup.text().await.expect("html").contains("exists already"));
    let actions: Vec<_> = audit_events(&gw)
        .into_iter()
        .filter(|e| e["event"] == "emergency_action")
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        actions.contains(&"reset_password".to_string()),
        "{actions:?}"
    );
    assert_no_secrets(&gw, &[SECRET, "alice's new password", "hijacked-password"]);
}

#[tokio::test]
async fn what_voids_an_emergency_cookie() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    // Each instance needs its own ports: a fresh config for each.
    // The ttl bounds a grant to whole seconds (valid while now < issued + ttl),
    // so a "6s" grant is good for 5 to 6 s: room for a loaded machine.
    let cfg = || config(&pki, &up, "", "enabled = true\nttl = \"6s\"");
    let gw = start(&cfg(), SECRET, "", &[]);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let em = grant(&c, &gw).await;
    assert_eq!(dashboard_status(&c, &gw, &em).await, 200);
    // The emergency session carries the configured roles on app routes too.
    let admin = c
        .get(gw.url("/admin"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, &em)
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 200);
    let seen = SeenRequest::from_json(&admin.json().await.expect("echo"));
    assert_eq!(seen.header("x-forwarded-user"), Some("(emergency)"));
    assert_eq!(seen.header("x-forwarded-roles"), Some("admin"));
    assert!(
        seen.header("cookie")
            .is_none_or(|c| !c.contains("portcullis")),
        "never forwarded"
    );

    // Tampered: refused and cleared.
    let value = em.trim_start_matches("__Host-portcullis-emergency=");
    for bad in [
        value.replacen("|1", "|2", 1),
        format!("{value}x"),
        value.to_uppercase(),
        format!(
            "{}.{}",
            value.rsplit_once('.').expect("tag").0,
            "A".repeat(43)
        ),
    ] {
        let cookie = format!("__Host-portcullis-emergency={bad}");
        assert_eq!(dashboard_status(&c, &gw, &cookie).await, 401, "{bad}");
    }
    // Two emergency cookies: believe neither.
    assert_eq!(dashboard_status(&c, &gw, &format!("{em}; {em}")).await, 401);

    // Another secret, and the gate disabled: both started before a fresh
    // grant, so the grant is checked well inside its ttl (and the 200s on
    // `gw` around the checks prove it was still good there).
    let other = start(&cfg(), OTHER_SECRET, "", &[]);
    let co = https_client(&pki.ca_pem, other.https_port, false);
    let off = start(
        &cfg(),
        SECRET,
        "",
        &[("PORTCULLIS_EMERGENCY_ENABLED", "false")],
    );
    let cf = https_client(&pki.ca_pem, off.https_port, false);
    let em = grant(&c, &gw).await;
    assert_eq!(dashboard_status(&c, &gw, &em).await, 200);
    // Another secret: every cookie from the old one is void.
    assert_eq!(dashboard_status(&co, &other, &em).await, 401);
    // The gate disabled: the paths are gone and the cookie grants nothing.
    assert_eq!(dashboard_status(&cf, &off, &em).await, 404);
    let admin = cf
        .get(off.url("/admin"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, &em)
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 401);
    // Same secret, gate on: still good; after the ttl, void.
    assert_eq!(dashboard_status(&c, &gw, &em).await, 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(dashboard_status(&c, &gw, &em).await, 401, "after ttl");

    // Logout revokes the grant even though the cookie itself is still signed.
    let em = grant(&c, &gw).await;
    let out = action(&c, &gw, &em, "logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(dashboard_status(&c, &gw, &em).await, 401);
}

#[tokio::test]
async fn allow_from_hides_the_gate_from_other_clients() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(
        &config(
            &pki,
            &up,
            "trusted_proxies = [\"127.0.0.1\"]",
            "enabled = true\nallow_from = [\"203.0.113.0/24\"]",
        ),
        SECRET,
        "",
        &[],
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_hidden(&c, &gw, &[("x-forwarded-for", "198.51.100.7")]).await;
    // The proxy itself (no X-Forwarded-For) is not in the list either.
    assert_hidden(&c, &gw, &[]).await;
    let resp = c
        .get(gw.url("/.portcullis/emergency"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("allowed");
    assert_eq!(resp.status(), 200);
    let granted = submit_secret(&c, &gw, SECRET, Some("203.0.113.9")).await;
    assert_eq!(granted.status(), 303);
    let cookie = format!(
        "__Host-portcullis-emergency={}",
        set_cookie(&granted, "__Host-portcullis-emergency").expect("cookie")
    );
    // The grant does not travel to an address outside the list.
    let elsewhere = c
        .get(gw.url("/.portcullis/emergency/dashboard"))
        .header("x-forwarded-for", "198.51.100.7")
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("elsewhere");
    assert_eq!(elsewhere.status(), 404);
}

#[tokio::test]
async fn disabling_the_gate_by_reload_voids_its_cookies_at_once() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let text = config(&pki, &up, "", "enabled = true");
    let gw = start(&text, SECRET, "", &[]);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let em = grant(&c, &gw).await;
    let admin = |cookie: String| {
        c.get(gw.url("/admin"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, cookie)
            .send()
    };
    assert_eq!(admin(em.clone()).await.expect("admin").status(), 200);
    gw.reload(&text.replace("enabled = true", "enabled = false"));
    assert!(
        wait_until(Duration::from_secs(15), || audit_events(&gw)
            .iter()
            .any(|e| e["event"] == "config_reload" && e["ok"] == true)),
        "reloaded: {}",
        gw.stderr()
    );
    assert_eq!(dashboard_status(&c, &gw, &em).await, 404);
    assert_eq!(admin(em.clone()).await.expect("admin").status(), 401);
    assert_hidden(&c, &gw, &[]).await;
    // Enabled again by reload: the same cookie, still inside its ttl and
    // signed with the same secret, is good again. (Change the secret to void
    // it for good.)
    gw.reload(&text);
    assert!(wait_until(Duration::from_secs(15), || audit_events(&gw)
        .iter()
        .filter(|e| e["event"] == "config_reload" && e["ok"] == true)
        .count()
        == 2));
    assert_eq!(dashboard_status(&c, &gw, &em).await, 200);
}
