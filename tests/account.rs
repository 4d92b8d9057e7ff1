//! `/.portcullis/account` (issue 19, first part): the own sessions with
//! "sign out" each and "sign out everywhere", and a password change that
//! needs the current password — in Chromium as a person uses it, and with
//! a plain client for what a person should not be able to do.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use support::config::basic;
use support::login::{csrf_field, login};
use support::*;

const KEYS: &str = "account-test-session-key-0123456789abcdefghij";
const OLD: &str = "old password 1";
const NEW: &str = "new password 2";

/// A gateway with alice (staff, an address) and bob; `extra` config lines.
fn start(extra: &str) -> (TestPki, Upstream, Gateway) {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic(
        &pki,
        &[up.addr()],
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n{extra}"
        ),
    );
    let alice = policies::users::hash_password(OLD).unwrap();
    let bob = policies::users::hash_password("bob password 3").unwrap();
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&format!(
            "[users.alice]\npassword = \"{alice}\"\nroles = [\"staff\"]\nemail = \"alice@example.com\"\n\
             [users.bob]\npassword = \"{bob}\"\n"
        ))
        .start();
    (pki, up, gw)
}

async fn status_with(c: &reqwest::Client, gw: &Gateway, cookie: &str) -> u16 {
    c.get(gw.url("/app"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_account_page_in_chromium() {
    // Six sign-ins of alice's within the minute: more than the default limit.
    let (pki, _up, gw) = start("[rate_limit]\nlogin = \"100/minute\"\n");
    let c = https_client(&pki.ca_pem, https_port(&gw), false);
    // Another device of alice's.
    let phone = login(&c, &gw.base(), "alice", OLD).await;
    assert_eq!(status_with(&c, &gw, &phone).await, 200);

    let browser = Browser::start_trusting(&pki).await;
    browser.goto(&gw.url("/.portcullis/account")).await;
    assert!(
        browser.wait_for("#username", Duration::from_secs(10)).await,
        "to the login page first"
    );
    browser.fill("#username", "alice").await;
    browser.fill("#password", OLD).await;
    browser.submit_and_wait("#sign-in").await;
    assert_eq!(browser.current_url().await, gw.url("/.portcullis/account"));
    let text = browser.body_text().await;
    assert!(
        text.contains("Signed in as alice (alice@example.com), roles: staff."),
        "{text}"
    );
    assert!(text.contains("(this browser)"), "{text}");
    let rows = browser
        .execute(
            "return document.querySelectorAll('tbody tr').length",
            vec![],
        )
        .await;
    assert_eq!(rows, 2, "two sessions: {text}");
    browser.save_screenshot("account").await;

    // Sign the phone out from here.
    let other = browser
        .execute(
            "return [...document.querySelectorAll('tbody tr')].find(r => !r.textContent.includes('this browser')).querySelector('button').id",
            vec![],
        )
        .await;
    browser
        .submit_and_wait(&format!("#{}", other.as_str().unwrap()))
        .await;
    assert!(browser
        .body_text()
        .await
        .contains("That session has ended."));
    assert_eq!(
        status_with(&c, &gw, &phone).await,
        401,
        "the phone is signed out"
    );

    // A wrong current password changes nothing.
    browser.fill("#current", "not it").await;
    browser.fill("#new", NEW).await;
    browser.fill("#confirm", NEW).await;
    browser.submit_and_wait("#change-password").await;
    assert!(browser
        .body_text()
        .await
        .contains("The current password is not right."));
    // The right one: other sessions end, this browser stays signed in.
    let laptop = login(&c, &gw.base(), "alice", OLD).await;
    browser.fill("#current", OLD).await;
    browser.fill("#new", NEW).await;
    browser.fill("#confirm", NEW).await;
    browser.submit_and_wait("#change-password").await;
    let text = browser.body_text().await;
    assert!(
        text.contains("Password changed. Your other sessions have ended."),
        "{text}"
    );
    browser.save_screenshot("account-password-changed").await;
    assert_eq!(status_with(&c, &gw, &laptop).await, 401);
    browser.goto(&gw.url("/app")).await;
    assert!(
        browser.body_text().await.contains("\"x-forwarded-user\""),
        "still signed in"
    );
    let _ = login(&c, &gw.base(), "alice", NEW).await;

    // Sign out everywhere: this browser too.
    browser.goto(&gw.url("/.portcullis/account")).await;
    browser.submit_and_wait("#sign-out-everywhere").await;
    assert!(browser
        .current_url()
        .await
        .contains("/.portcullis/login?signed_out=1"));
    browser.goto(&gw.url("/app")).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    assert!(wait_until(Duration::from_secs(2), || gw
        .log_lines()
        .iter()
        .any(
            |l| l["event"] == "account_sign_out_everywhere" && l["user"] == "alice"
        )));
    assert!(
        !gw.stdout().contains(NEW) && !gw.stdout().contains(OLD),
        "no password logged"
    );
}

fn https_port(gw: &Gateway) -> u16 {
    let cfg = std::fs::read_to_string(gw.config_path()).unwrap();
    support::gateway::ListenerPorts::parse(&cfg).https
}

async fn account_form(c: &reqwest::Client, gw: &Gateway, cookie: &str) -> (String, String) {
    // The page's CSRF token is bound to the browser's binding cookie.
    let page = c
        .get(gw.url("/.portcullis/account"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let binding = support::login::set_cookie(&page, "__Host-portcullis-csrf").unwrap();
    let html = page.text().await.unwrap();
    (
        csrf_field(&html),
        format!("{cookie}; __Host-portcullis-csrf={binding}"),
    )
}

async fn post(
    c: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    c.post(gw.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn what_the_account_page_refuses() {
    let (pki, _up, gw) = start("");
    let c = https_client(&pki.ca_pem, https_port(&gw), false);
    let alice = login(&c, &gw.base(), "alice", OLD).await;
    let bob = login(&c, &gw.base(), "bob", "bob password 3").await;

    // No session: to the login page, back here afterwards.
    let resp = c.get(gw.url("/.portcullis/account")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        "/.portcullis/login?next=%2F.portcullis%2Faccount"
    );

    let (token, cookies) = account_form(&c, &gw, &alice).await;
    // Without CSRF, or with bob's token: nothing happens.
    let (bob_token, _) = account_form(&c, &gw, &bob).await;
    for bad in ["", "x", bob_token.as_str()] {
        let resp = post(
            &c,
            &gw,
            "/.portcullis/account/sign-out-everywhere",
            &cookies,
            &[("csrf", bad)],
        )
        .await;
        assert_eq!(resp.status(), 403, "csrf {bad:?}");
    }
    assert_eq!(status_with(&c, &gw, &alice).await, 200);

    // Bob's session id in alice's form: refused, bob stays signed in.
    let bob_id = bob_session_id(&gw).await;
    let resp = post(
        &c,
        &gw,
        "/.portcullis/account/sign-out",
        &cookies,
        &[("csrf", &token), ("session", &bob_id)],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(status_with(&c, &gw, &bob).await, 200);

    // The current-password check counts against the login limit.
    let mut limited = false;
    for _ in 0..8 {
        let resp = post(
            &c,
            &gw,
            "/.portcullis/account/password",
            &cookies,
            &[
                ("csrf", &token),
                ("current", "guess"),
                ("new", NEW),
                ("confirm", NEW),
            ],
        )
        .await;
        if resp.status() == 429 {
            limited = true;
            break;
        }
        assert_eq!(resp.status(), 403);
    }
    assert!(limited, "guessing the current password is rate limited");
    assert_eq!(status_with(&c, &gw, &alice).await, 200, "nothing changed");

    // GET on a form path, POST on the page: the generic 404.
    let resp = c
        .get(gw.url("/.portcullis/account/sign-out"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Bob's session record id, from the store.
async fn bob_session_id(gw: &Gateway) -> String {
    let db = gw.dir().join("portcullis.db");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute(\"SELECT s.id FROM sessions s JOIN accounts a ON a.id=s.account_id WHERE a.name='bob'\").fetchone()[0])",
        )
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
