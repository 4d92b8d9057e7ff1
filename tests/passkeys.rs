//! Passkeys (issue 19) through a real WebAuthn ceremony: headless Chromium
//! with chromedriver's virtual authenticator (user verification on, resident
//! keys). Added on the account page, used as the second step of a password
//! sign-in and, with `[login] passkeys = true`, alone; and what the gateway
//! refuses: a replayed assertion, another account's credential, another
//! origin, a ceremony it did not start.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use support::agent::Agent;
use support::config::basic;
use support::*;

const KEYS: &str = "passkey-test-session-key-0123456789abcdefghijk";
const ALICE_PW: &str = "alice password 1";
const BOB_PW: &str = "bob password 2";

fn start() -> (TestPki, Upstream, Gateway) {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic(
        &pki,
        &[up.addr()],
        "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         [login]\npasskeys = true\n\
         [rate_limit]\nlogin = \"100/minute\"\n\
         [[route]]\npath = \"/secure\"\naccess = \"login\"\nmfa = true\n\
         [[route]]\npath = \"/app\"\naccess = \"login\"\n",
    );
    let alice = policies::users::hash_password(ALICE_PW).unwrap();
    let bob = policies::users::hash_password(BOB_PW).unwrap();
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&format!(
            "[users.alice]\npassword = \"{alice}\"\nroles = [\"staff\"]\n\
             [users.bob]\npassword = \"{bob}\"\n"
        ))
        .start();
    (pki, up, gw)
}

/// A browser with a virtual platform authenticator (resident keys, user
/// verification that always succeeds).
async fn browser(pki: &TestPki) -> (Browser, String) {
    let b = Browser::start_trusting(pki).await;
    let id = b
        .command(
            Method::POST,
            "/webauthn/authenticator",
            json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
            }),
        )
        .await
        .expect("virtual authenticator");
    (b, id.as_str().unwrap().to_string())
}

async fn credentials(b: &Browser, authenticator: &str) -> Vec<Value> {
    b.command(
        Method::GET,
        &format!("/webauthn/authenticator/{authenticator}/credentials"),
        Value::Null,
    )
    .await
    .unwrap()
    .as_array()
    .unwrap()
    .clone()
}

async fn sign_in_with_password(b: &Browser, gw: &Gateway, user: &str, pw: &str, next: &str) {
    b.goto(&gw.url(&format!("/.portcullis/login?next={next}")))
        .await;
    assert!(b.wait_for("#username", Duration::from_secs(10)).await);
    b.fill("#username", user).await;
    b.fill("#password", pw).await;
    b.submit_and_wait("#sign-in").await;
}

async fn sign_out(b: &Browser, gw: &Gateway) {
    b.goto(&gw.url("/.portcullis/logout")).await;
    b.submit_and_wait("button[type=submit]").await;
}

/// Clicks the passkey button and waits for the page the form posts to.
async fn ceremony(b: &Browser) {
    b.submit_and_wait("#passkey-button").await;
}

/// Runs the page's ceremony but keeps the answer instead of posting it.
async fn capture(b: &Browser) -> String {
    b.execute(
        "const f = document.getElementById('passkey-form'); \
         f.submit = function () { window.__credential = this.elements.credential.value; }; \
         document.getElementById('passkey-button').click();",
        vec![],
    )
    .await;
    for _ in 0..100 {
        let v = b.execute("return window.__credential || ''", vec![]).await;
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            return s.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no credential: {}", b.body_text().await);
}

/// Adds a passkey to the signed-in account from its account page.
async fn add_passkey(b: &Browser, gw: &Gateway) {
    b.goto(&gw.url("/.portcullis/account")).await;
    b.click("#add-passkey").await;
    assert!(b.wait_for("#passkey-button", Duration::from_secs(10)).await);
    ceremony(b).await;
}

#[tokio::test]
async fn a_passkey_added_then_used_alone_and_as_a_second_factor() {
    let (pki, _up, gw) = start();
    let (b, auth) = browser(&pki).await;
    sign_in_with_password(&b, &gw, "alice", ALICE_PW, "/app").await;
    assert_eq!(b.current_url().await, gw.url("/app"));
    b.goto(&gw.url("/.portcullis/account")).await;
    b.click("#add-passkey").await;
    assert!(b.wait_for("#passkey-button", Duration::from_secs(10)).await);
    b.save_screenshot("passkey-add").await;
    ceremony(&b).await;
    let text = b.body_text().await;
    assert!(text.contains("Passkey added."), "{text}");
    assert_eq!(
        b.execute(
            "return document.querySelectorAll('#recovery-codes code').length",
            vec![]
        )
        .await,
        10
    );
    let creds = credentials(&b, &auth).await;
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["isResidentCredential"], true);
    assert_eq!(creds[0]["rpId"], "localhost");
    // The session that added it used it.
    b.goto(&gw.url("/secure")).await;
    assert!(
        !b.current_url().await.contains("/.portcullis/"),
        "{}",
        b.current_url().await
    );

    // Alone: no name, no password.
    sign_out(&b, &gw).await;
    b.goto(&gw.url("/.portcullis/login?next=/secure")).await;
    b.click("#passkey-sign-in").await;
    assert!(b.wait_for("#passkey-button", Duration::from_secs(10)).await);
    b.save_screenshot("passkey-sign-in").await;
    ceremony(&b).await;
    assert_eq!(b.current_url().await, gw.url("/secure"));
    b.goto(&gw.url("/.portcullis/account")).await;
    let text = b.body_text().await;
    assert!(
        text.contains("Chrome on Linux · passkey (this browser)"),
        "{text}"
    );
    // The signature counter moved on (a cloned key would be caught).
    assert!(
        credentials(&b, &auth).await[0]["signCount"]
            .as_u64()
            .unwrap()
            >= 2
    );

    // After a password, the passkey is the second step.
    sign_out(&b, &gw).await;
    sign_in_with_password(&b, &gw, "alice", ALICE_PW, "/secure").await;
    assert!(b
        .current_url()
        .await
        .contains("/.portcullis/login/second-factor"));
    assert!(b.wait_for("#passkey-button", Duration::from_secs(10)).await);
    ceremony(&b).await;
    assert_eq!(b.current_url().await, gw.url("/secure"));
    b.goto(&gw.url("/.portcullis/account")).await;
    assert!(b
        .body_text()
        .await
        .contains("password+passkey (this browser)"));
}

#[tokio::test]
async fn what_a_passkey_sign_in_refuses() {
    let (pki, _up, gw) = start();
    let (b, auth) = browser(&pki).await;
    sign_in_with_password(&b, &gw, "alice", ALICE_PW, "/app").await;
    add_passkey(&b, &gw).await;
    let alice_cred = credentials(&b, &auth).await[0]["credentialId"]
        .as_str()
        .unwrap()
        .to_string();
    sign_out(&b, &gw).await;

    // A real assertion, kept: posted once it signs in, twice it does not.
    b.goto(&gw.url("/.portcullis/login/passkey?next=/app"))
        .await;
    let assertion = capture(&b).await;
    b.execute(
        "const f = document.getElementById('passkey-form'); \
         f.elements.credential.value = arguments[0]; \
         HTMLFormElement.prototype.submit.call(f);",
        vec![json!(assertion)],
    )
    .await;
    for _ in 0..100 {
        if b.current_url().await == gw.url("/app") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        b.current_url().await,
        gw.url("/app"),
        "the first use signs in"
    );
    let replay = |credential: String| {
        let gw = &gw;
        let pki = &pki;
        async move {
            let a = Agent::new(&pki.ca_pem, gw.https_port);
            let page = a.get("/.portcullis/login/passkey?next=/app").await;
            assert_eq!(page.status, 200);
            let r = a
                .post(
                    "/.portcullis/login/passkey",
                    &[
                        ("csrf", &page.csrf()),
                        ("next", "/app"),
                        ("credential", &credential),
                    ],
                )
                .await;
            (r.status, a.get("/app").await.status)
        }
    };
    assert_eq!(replay(assertion.clone()).await, (401, 303), "replayed");
    // Its origin changed: refused too.
    let mut v: Value = serde_json::from_str(&assertion).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let client = b64
        .decode(v["response"]["clientDataJSON"].as_str().unwrap())
        .unwrap();
    let client = String::from_utf8(client)
        .unwrap()
        .replace(&gw.base(), "https://evil.example");
    v["response"]["clientDataJSON"] = b64.encode(client).into();
    assert_eq!(replay(v.to_string()).await, (401, 303), "another origin");
    // Garbage and nothing.
    for junk in [
        "",
        "{}",
        "not json",
        "{\"id\":\"AAAA\",\"type\":\"public-key\"}",
    ] {
        assert_eq!(replay(junk.to_string()).await, (401, 303), "{junk:?}");
    }
    // Without the ceremony's cookie (another browser): nothing to check against.
    let a = Agent::new(&pki.ca_pem, gw.https_port);
    let page = a.get("/.portcullis/login").await;
    let r = a
        .post(
            "/.portcullis/login/passkey",
            &[
                ("csrf", &page.csrf()),
                ("next", "/app"),
                ("credential", &assertion),
            ],
        )
        .await;
    assert_ne!(r.status, 303);

    // bob's second step with alice's passkey: the browser signs bob's
    // challenge with alice's credential; the gateway refuses it.
    sign_out(&b, &gw).await;
    sign_in_with_password(&b, &gw, "bob", BOB_PW, "/app").await;
    add_passkey(&b, &gw).await;
    sign_out(&b, &gw).await;
    sign_in_with_password(&b, &gw, "bob", BOB_PW, "/app").await;
    assert!(b.wait_for("#passkey-button", Duration::from_secs(10)).await);
    b.execute(
        "const el = document.getElementById('passkey-options'); \
         const o = JSON.parse(el.textContent); \
         o.publicKey.allowCredentials = [{ type: 'public-key', id: arguments[0] }]; \
         el.textContent = JSON.stringify(o);",
        vec![json!(alice_cred)],
    )
    .await;
    ceremony(&b).await;
    assert!(
        b.current_url()
            .await
            .contains("/.portcullis/login/second-factor"),
        "{}",
        b.current_url().await
    );
    b.goto(&gw.url("/app")).await;
    assert!(
        b.current_url().await.contains("second-factor"),
        "not signed in as bob"
    );
    let log = gw.stdout();
    assert!(log.contains("\"second_factor_failed\""), "audited");
}
