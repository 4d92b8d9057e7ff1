//! Second factors (issue 19): TOTP enrolment and sign-in, recovery codes,
//! `mfa = true` routes and `[login] mfa`; codes from pyotp, not from the
//! code under test. The person's flow runs in Chromium; the refusals a
//! browser would not even try run through a cookie-keeping client.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::agent::{otp, Agent, Page};
use support::config::basic;
use support::*;

const KEYS: &str = "mfa-test-session-key-0123456789abcdefghijklmn";
const PW: &str = "alice password 1";
const ROOT_PW: &str = "root password 2";
const TOTP: &str = "/.portcullis/account/totp";
const SECOND: &str = "/.portcullis/login/second-factor";

/// alice (staff), root (admin); `/app` needs a session, `/secure` a second
/// factor too; `extra` config lines.
fn start(extra: &str) -> (TestPki, Upstream, Gateway) {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic(
        &pki,
        &[up.addr()],
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [[route]]\npath = \"/secure\"\naccess = \"login\"\nmfa = true\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n{extra}"
        ),
    );
    let alice = policies::users::hash_password(PW).unwrap();
    let root = policies::users::hash_password(ROOT_PW).unwrap();
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&format!(
            "[users.alice]\npassword = \"{alice}\"\nroles = [\"staff\"]\n\
             [users.root]\npassword = \"{root}\"\nroles = [\"admin\"]\n"
        ))
        .start();
    (pki, up, gw)
}

fn agent(pki: &TestPki, gw: &Gateway) -> Agent {
    let cfg = std::fs::read_to_string(gw.config_path()).unwrap();
    Agent::new(
        &pki.ca_pem,
        support::gateway::ListenerPorts::parse(&cfg).https,
    )
}

fn next_of(path: &str) -> String {
    format!(
        "?next={}",
        form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
    )
}

/// Adds an authenticator app with a code from pyotp; returns its secret
/// and the recovery codes shown.
async fn enrol(a: &Agent) -> (String, Vec<String>) {
    let form = a.get(TOTP).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let secret = form.hidden("secret");
    let done = a
        .post(
            TOTP,
            &[
                ("csrf", &form.csrf()),
                ("secret", &secret),
                ("next", "/"),
                ("label", "phone"),
                ("code", &otp(&secret, 0)),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    (secret, recovery_codes(&done))
}

fn recovery_codes(page: &Page) -> Vec<String> {
    let list = page
        .body
        .split("id=\"recovery-codes\"")
        .nth(1)
        .expect("codes");
    let codes: Vec<String> = list
        .split("<code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{}", page.body);
    codes
}

/// Posts a code on the second-factor form.
async fn second(a: &Agent, code: &str) -> Page {
    let form = a.get(&format!("{SECOND}?next=/app")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    a.post(
        SECOND,
        &[("csrf", &form.csrf()), ("next", "/app"), ("code", code)],
    )
    .await
}

#[tokio::test]
async fn totp_enrolment_step_up_and_what_is_refused() {
    let (pki, up, gw) = start("[rate_limit]\nlogin = \"100/minute\"\n");
    let a = agent(&pki, &gw);
    assert_eq!(
        a.sign_in("alice", PW, "/app").await.location.as_deref(),
        Some("/app")
    );
    assert_eq!(a.get("/app").await.status, 200);
    // No factor yet: the mfa route sends a person to get one, a script gets 401.
    assert_eq!(
        a.get("/secure/x?y=1").await.location,
        Some(format!("{TOTP}{}", next_of("/secure/x?y=1")))
    );
    assert_eq!(a.fetch("/secure").await.status, 401);

    // Enrolment: a wrong code, a swapped secret and a missing token store nothing.
    let form = a.get(TOTP).await;
    let secret = form.hidden("secret");
    assert!(form.body.contains("<svg"), "a QR code: {}", form.body);
    let post = |csrf: String, secret: String, code: String| {
        let a = &a;
        async move {
            a.post(
                TOTP,
                &[
                    ("csrf", &csrf),
                    ("secret", &secret),
                    ("next", "/"),
                    ("code", &code),
                ],
            )
            .await
        }
    };
    let wrong = post(form.csrf(), secret.clone(), "000000".into()).await;
    assert_eq!(wrong.status, 400);
    assert!(
        wrong.body.contains("That code is not right"),
        "{}",
        wrong.body
    );
    let other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_string();
    let swapped = post(form.csrf(), other.clone(), otp(&other, 0)).await;
    assert_eq!(swapped.status, 403, "a token is issued for one secret");
    let bare = post(String::new(), secret.clone(), otp(&secret, 0)).await;
    assert_eq!(bare.status, 403);
    let short = post(form.csrf(), "JBSWY3DPEHPK3PXP".into(), "123456".into()).await;
    assert_eq!(short.status, 400, "an 80-bit secret is not ours");
    assert_eq!(a.get("/secure").await.status, 303, "nothing stored yet");

    let ok = post(form.csrf(), secret.clone(), otp(&secret, 0)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let codes = recovery_codes(&ok);
    // This browser's session used the factor just now.
    assert_eq!(a.get("/secure").await.status, 200);
    assert!(a
        .get("/.portcullis/account")
        .await
        .body
        .contains("<td>Authenticator app</td>"));

    // A new sign-in: password alone is no session yet.
    let b = agent(&pki, &gw);
    assert_eq!(
        b.sign_in("alice", PW, "/app").await.location,
        Some(format!("{SECOND}{}", next_of("/app")))
    );
    let seen = up.requests().len();
    assert_eq!(
        b.get("/app").await.location,
        Some(format!("{SECOND}{}", next_of("/app")))
    );
    assert_eq!(b.fetch("/app").await.status, 401);
    assert_eq!(up.requests().len(), seen, "nothing reached the app");
    // Nor can it add a factor of its own, or see the account page.
    assert_eq!(
        b.get(TOTP).await.location,
        Some(format!("{SECOND}{}", next_of(TOTP)))
    );
    let sneaky = b
        .post(
            TOTP,
            &[("csrf", "x"), ("secret", &other), ("code", &otp(&other, 0))],
        )
        .await;
    assert_eq!(sneaky.status, 303);
    assert!(b
        .get("/.portcullis/account")
        .await
        .location
        .unwrap()
        .starts_with(SECOND));

    // The code used at enrolment is used; one from 90 s ago is out of the
    // window; a wrong one is wrong; a form without its token is refused.
    for code in [
        otp(&secret, 0),
        otp(&secret, -90),
        "123456".into(),
        "12345".into(),
    ] {
        let r = second(&b, &code).await;
        assert_eq!(r.status, 401, "{code}: {}", r.body);
        assert!(r.body.contains("not right, or was used"), "{}", r.body);
    }
    let no_token = b
        .post(SECOND, &[("next", "/app"), ("code", &otp(&secret, 30))])
        .await;
    assert_eq!(no_token.status, 403);
    // The next code works, once: the same code from another browser fails.
    let next_code = otp(&secret, 30);
    let r = second(&b, &next_code).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/app")));
    assert_eq!(b.get("/secure").await.status, 200);
    let c = agent(&pki, &gw);
    c.sign_in("alice", PW, "/app").await;
    assert_eq!(
        second(&c, &next_code).await.status,
        401,
        "a code is used once"
    );

    // A recovery code, typed loosely, works once.
    let loose = codes[0].to_uppercase().replace('-', " ");
    assert_eq!(second(&c, &loose).await.status, 303);
    assert_eq!(c.get("/secure").await.status, 200);
    let d = agent(&pki, &gw);
    d.sign_in("alice", PW, "/app").await;
    assert_eq!(second(&d, &codes[0]).await.status, 401, "used already");
    assert_eq!(second(&d, &codes[1]).await.status, 303);

    // New recovery codes void the old ones.
    let account = a.get("/.portcullis/account").await;
    assert!(
        account.body.contains("8 unused recovery codes"),
        "{}",
        account.body
    );
    let fresh = a
        .post(
            "/.portcullis/account/recovery-codes",
            &[("csrf", &account.csrf())],
        )
        .await;
    let fresh = recovery_codes(&fresh);
    let e = agent(&pki, &gw);
    e.sign_in("alice", PW, "/app").await;
    assert_eq!(second(&e, &codes[2]).await.status, 401);
    assert_eq!(second(&e, &fresh[0]).await.status, 303);

    // An unfinished sign-in signs out like any other.
    let f = agent(&pki, &gw);
    f.sign_in("alice", PW, "/").await;
    let out = f.get("/.portcullis/logout").await;
    let r = f
        .post("/.portcullis/logout", &[("csrf", &out.csrf())])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        f.get("/app").await.location.unwrap(),
        format!("/.portcullis/login{}", next_of("/app"))
    );
}

#[tokio::test]
async fn second_factor_attempts_are_limited_per_account() {
    let (pki, _up, gw) = start("[rate_limit]\nlogin = \"4/minute\"\n");
    let a = agent(&pki, &gw);
    a.sign_in("alice", PW, "/").await; // 1
    enrol(&a).await; // 2 (the enrolment code counts too)
    let b = agent(&pki, &gw);
    b.sign_in("alice", PW, "/").await; // 3
    assert_eq!(second(&b, "000000").await.status, 401); // 4
    let limited = second(&b, "000001").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
}

#[tokio::test]
async fn roles_that_need_a_factor_enrol_first_and_keep_it() {
    let (pki, _up, gw) = start("[login]\nmfa = \"roles\"\nmfa_roles = [\"admin\"]\n");
    let root = agent(&pki, &gw);
    assert_eq!(
        root.sign_in("root", ROOT_PW, "/app").await.location,
        Some(format!("{TOTP}{}", next_of("/app")))
    );
    // Before anything else: the app, the account page.
    assert_eq!(
        root.get("/app").await.location,
        Some(format!("{TOTP}{}", next_of("/app")))
    );
    assert_eq!(root.fetch("/app").await.status, 401);
    assert!(root
        .get("/.portcullis/account")
        .await
        .location
        .unwrap()
        .starts_with(TOTP));
    let forced = root.get(TOTP).await;
    assert!(
        forced.body.contains("needs a second factor"),
        "{}",
        forced.body
    );
    enrol(&root).await;
    assert_eq!(root.get("/app").await.status, 200);
    // Its only factor cannot be removed.
    let account = root.get("/.portcullis/account").await;
    let factor = account.hidden("factor");
    let r = root
        .post(
            "/.portcullis/account/remove-factor",
            &[("csrf", &account.csrf()), ("factor", &factor)],
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("must keep a second factor"), "{}", r.body);
    // Another account's factor id is not found for alice, who needs none.
    let alice = agent(&pki, &gw);
    assert_eq!(
        alice.sign_in("alice", PW, "/app").await.location.as_deref(),
        Some("/app")
    );
    let page = alice.get("/.portcullis/account").await;
    let r = alice
        .post(
            "/.portcullis/account/remove-factor",
            &[("csrf", &page.csrf()), ("factor", &factor)],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(root.get("/app").await.status, 200, "root's factor stayed");
}

#[tokio::test]
async fn totp_in_chromium_and_a_lost_phone() {
    let (pki, _up, gw) = start("[rate_limit]\nlogin = \"100/minute\"\n");
    let browser = Browser::start_trusting(&pki).await;
    browser.goto(&gw.url("/app")).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    browser.fill("#username", "alice").await;
    browser.fill("#password", PW).await;
    browser.submit_and_wait("#sign-in").await;
    browser.goto(&gw.url("/.portcullis/account")).await;
    assert!(browser.body_text().await.contains("None yet"));
    browser.click("#add-totp").await;
    assert!(
        browser
            .wait_for("#confirm-totp", Duration::from_secs(10))
            .await
    );
    let secret = browser
        .execute(
            "return document.querySelector('input[name=secret]').value",
            vec![],
        )
        .await;
    let secret = secret.as_str().unwrap().to_string();
    // The key as shown (grouped) is the key in the QR code.
    let shown = browser.text("#secret").await.replace(' ', "");
    assert_eq!(shown, secret);
    browser.save_screenshot("totp-enrol").await;
    browser.fill("#code", &otp(&secret, 0)).await;
    browser.submit_and_wait("#confirm-totp").await;
    let text = browser.body_text().await;
    assert!(text.contains("Authenticator app added."), "{text}");
    let codes: Vec<String> = browser
        .execute(
            "return [...document.querySelectorAll('#recovery-codes code')].map(c => c.textContent)",
            vec![],
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    browser.save_screenshot("recovery-codes").await;
    browser.click("#continue").await;

    // Sign out, sign in with password + code.
    browser.goto(&gw.url("/.portcullis/logout")).await;
    browser.submit_and_wait("button[type=submit]").await;
    browser.goto(&gw.url("/app")).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    browser.fill("#username", "alice").await;
    browser.fill("#password", PW).await;
    browser.submit_and_wait("#sign-in").await;
    assert!(browser.current_url().await.starts_with(&gw.url(SECOND)));
    browser.save_screenshot("second-factor").await;
    browser.fill("#code", &otp(&secret, 30)).await;
    browser.submit_and_wait("#verify").await;
    assert_eq!(browser.current_url().await, gw.url("/app"));

    // The phone is lost: a recovery code signs in, the old app goes, a new one comes.
    browser.goto(&gw.url("/.portcullis/logout")).await;
    browser.submit_and_wait("button[type=submit]").await;
    browser
        .goto(&gw.url("/.portcullis/login?next=/.portcullis/account"))
        .await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PW).await;
    browser.submit_and_wait("#sign-in").await;
    browser.fill("#code", &codes[3]).await;
    browser.submit_and_wait("#verify").await;
    assert_eq!(browser.current_url().await, gw.url("/.portcullis/account"));
    let text = browser.body_text().await;
    assert!(text.contains("password+recovery"), "{text}");
    assert!(text.contains("9 unused recovery codes"), "{text}");
    let remove = browser
        .execute(
            "return document.querySelector('[id^=remove-factor-]').id",
            vec![],
        )
        .await;
    browser
        .submit_and_wait(&format!("#{}", remove.as_str().unwrap()))
        .await;
    assert!(browser.body_text().await.contains("Second factor removed."));
    browser.click("#add-totp").await;
    assert!(
        browser
            .wait_for("#confirm-totp", Duration::from_secs(10))
            .await
    );
    let secret2 = browser
        .execute(
            "return document.querySelector('input[name=secret]').value",
            vec![],
        )
        .await;
    let secret2 = secret2.as_str().unwrap().to_string();
    assert_ne!(secret2, secret);
    browser.fill("#code", &otp(&secret2, 0)).await;
    browser.submit_and_wait("#confirm-totp").await;
    // The codes went with the last factor: a new set comes with the new one.
    assert!(browser
        .body_text()
        .await
        .contains("Authenticator app added."));
    browser.goto(&gw.url("/.portcullis/account")).await;
    let text = browser.body_text().await;
    assert!(text.contains("10 unused recovery codes"), "{text}");
    browser.save_screenshot("account-factors").await;
}

#[tokio::test]
async fn an_admin_without_a_factor_is_sent_to_enrol_in_chromium() {
    let (pki, _up, gw) = start("[login]\nmfa = \"roles\"\nmfa_roles = [\"admin\"]\n");
    let browser = Browser::start_trusting(&pki).await;
    browser.goto(&gw.url("/app")).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    browser.fill("#username", "root").await;
    browser.fill("#password", ROOT_PW).await;
    browser.submit_and_wait("#sign-in").await;
    assert_eq!(
        browser.current_url().await,
        gw.url(&format!("{TOTP}{}", next_of("/app")))
    );
    assert!(browser
        .body_text()
        .await
        .contains("Your account needs a second factor before you go on."));
    browser.execute("window.scrollTo(0, 0)", vec![]).await;
    browser.save_screenshot("enrol-forced").await;
    // Anything else first sends it back here.
    browser.goto(&gw.url("/.portcullis/account")).await;
    assert!(browser.current_url().await.starts_with(&gw.url(TOTP)));
    let secret = browser
        .execute(
            "return document.querySelector('input[name=secret]').value",
            vec![],
        )
        .await;
    browser
        .fill("#code", &otp(secret.as_str().unwrap(), 0))
        .await;
    browser.submit_and_wait("#confirm-totp").await;
    // On to where it was going (the account page sent it here last).
    browser.click("#continue").await;
    assert_eq!(browser.current_url().await, gw.url("/.portcullis/account"));
    browser.goto(&gw.url("/app")).await;
    assert_eq!(browser.current_url().await, gw.url("/app"));
}
