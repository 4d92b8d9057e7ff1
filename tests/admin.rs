//! The admin console (issue 19): accounts, invitations, reset links and
//! recent events — as a person uses it in Chromium (seed 000: the first
//! admin makes the second without the emergency gate), what it refuses,
//! and its changes reaching another instance on the same PostgreSQL.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::agent::{otp, Agent, Page};
use support::config::basic;
use support::postgres::Postgres;
use support::*;

const KEYS: &str = "admin-test-session-key-0123456789abcdefghijklm";
const ROOT_PW: &str = "root password 1";
const ALICE_PW: &str = "alice password 2";
const ADMIN: &str = "/.portcullis/admin";

fn users() -> String {
    let root = policies::users::hash_password(ROOT_PW).unwrap();
    let alice = policies::users::hash_password(ALICE_PW).unwrap();
    format!(
        "[users.root]\npassword = \"{root}\"\nroles = [\"admin\"]\n\
         [users.alice]\npassword = \"{alice}\"\nroles = [\"staff\"]\nemail = \"alice@example.com\"\n"
    )
}

fn config(pki: &TestPki, up: &Upstream, extra: &str) -> String {
    basic(
        pki,
        &[up.addr()],
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [rate_limit]\nlogin = \"100/minute\"\n\
             [[route]]\npath = \"/staff\"\naccess = \"role:staff\"\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n{extra}"
        ),
    )
}

fn start(extra: &str) -> (TestPki, Upstream, Gateway) {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = GatewayBuilder::new(&config(&pki, &up, extra))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&users())
        .start();
    (pki, up, gw)
}

fn agent(pki: &TestPki, gw: &Gateway) -> Agent {
    Agent::new(&pki.ca_pem, gw.https_port)
}

async fn signed_in(pki: &TestPki, gw: &Gateway, user: &str, pw: &str) -> Agent {
    let a = agent(pki, gw);
    let r = a.sign_in(user, pw, "/app").await;
    assert_eq!(r.status, 303, "{user}: {}", r.body);
    a
}

/// One account action from the console, with its token.
async fn act(a: &Agent, account: &str, action: &str, extra: &[(&str, &str)]) -> Page {
    let page = a.get(ADMIN).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("account", account),
        ("action", action),
    ];
    fields.extend_from_slice(extra);
    a.post("/.portcullis/admin/account", &fields).await
}

/// The one-time link a console page shows.
fn shown_link(page: &Page) -> String {
    let at = page.body.find("id=\"new-link\"").expect("a link");
    let rest = &page.body[at..];
    let v = rest.find("value=\"").unwrap() + 7;
    rest[v..].split('"').next().unwrap().replace("&amp;", "&")
}

fn path_of(link: &str) -> String {
    let at = link.find("/.portcullis/").unwrap();
    link[at..].to_string()
}

async fn invite(a: &Agent, roles: &str) -> String {
    let page = a.get(ADMIN).await;
    let r = a
        .post(
            "/.portcullis/admin/invite",
            &[("csrf", &page.csrf()), ("roles", roles), ("days", "7")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    path_of(&shown_link(&r))
}

async fn sign_up(a: &Agent, invite_path: &str, name: &str, pw: &str) -> Page {
    let form = a.get(invite_path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    a.post(
        "/.portcullis/invite",
        &[
            ("csrf", &form.csrf()),
            ("token", &form.hidden("token")),
            ("username", name),
            ("password", pw),
            ("confirm", pw),
        ],
    )
    .await
}

#[tokio::test]
async fn the_console_in_chromium_and_seed_000_without_the_gate() {
    let (pki, _up, gw) = start("");
    let browser = Browser::start_trusting(&pki).await;
    browser.goto(&gw.url(ADMIN)).await;
    assert!(browser.wait_for("#username", Duration::from_secs(10)).await);
    browser.fill("#username", "root").await;
    browser.fill("#password", ROOT_PW).await;
    browser.submit_and_wait("#sign-in").await;
    assert_eq!(browser.current_url().await, gw.url(ADMIN));
    assert!(browser.body_text().await.contains("Signed in as root."));

    // The first admin invites the second; the invitee picks a password.
    browser.fill("#invite-roles", "admin").await;
    browser.submit_and_wait("#invite").await;
    let link = browser
        .execute("return document.querySelector('#new-link').value", vec![])
        .await;
    let link = link.as_str().unwrap().to_string();
    assert!(
        link.starts_with(&gw.url("/.portcullis/invite?token=")),
        "{link}"
    );
    browser.save_screenshot("admin-invitation").await;
    let second = agent(&pki, &gw);
    let r = sign_up(&second, &path_of(&link), "second", "second admin password").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(second.get(ADMIN).await.status, 200, "second is an admin");

    // alice, signed in elsewhere, sees each change at her next request.
    let alice = signed_in(&pki, &gw, "alice", ALICE_PW).await;
    assert_eq!(alice.get("/staff").await.status, 200);
    let manage = |name: &str| {
        format!("document.querySelector('tr[data-name=\"{name}\"] details').open = true")
    };
    browser.goto(&gw.url(ADMIN)).await;
    browser.execute(&manage("alice"), vec![]).await;
    browser.fill("#roles-alice", "guest").await;
    browser.submit_and_wait("#save-roles-alice").await;
    assert!(browser
        .body_text()
        .await
        .contains("Roles of alice are now: guest."));
    assert_eq!(alice.get("/staff").await.status, 403, "demoted");
    assert_eq!(alice.get("/app").await.status, 200);
    browser.execute(&manage("alice"), vec![]).await;
    browser.submit_and_wait("#sign-out-alice").await;
    assert_eq!(alice.get("/app").await.status, 303, "signed out everywhere");
    browser.execute(&manage("alice"), vec![]).await;
    browser.submit_and_wait("#disable-alice").await;
    assert_eq!(
        agent(&pki, &gw)
            .sign_in("alice", ALICE_PW, "/")
            .await
            .status,
        401
    );
    browser.execute(&manage("alice"), vec![]).await;
    browser.submit_and_wait("#enable-alice").await;

    // A reset link: alice sets a new password once.
    browser.execute(&manage("alice"), vec![]).await;
    browser.submit_and_wait("#reset-link-alice").await;
    let reset = browser
        .execute("return document.querySelector('#new-link').value", vec![])
        .await;
    let reset = path_of(reset.as_str().unwrap());
    let page = alice.get(&reset).await;
    assert_eq!(page.status, 200);
    let new_pw = "alice's new password";
    let fields = |csrf: String| {
        vec![
            ("csrf".to_string(), csrf),
            ("token".to_string(), page.hidden("token")),
            ("new".to_string(), new_pw.to_string()),
            ("confirm".to_string(), new_pw.to_string()),
        ]
    };
    let f = fields(page.csrf());
    let f: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let done = alice.post("/.portcullis/reset", &f).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Password set"));
    assert_eq!(alice.sign_in("alice", new_pw, "/app").await.status, 303);
    assert_eq!(
        alice.get(&reset).await.status,
        403,
        "a reset link works once"
    );
    assert_eq!(alice.post("/.portcullis/reset", &f).await.status, 403);

    // The events, with who did what.
    browser.goto(&gw.url(ADMIN)).await;
    let events = browser.text("#events").await;
    for e in [
        "admin_roles",
        "admin_sign_out",
        "admin_disable",
        "admin_reset_link",
        "password_reset_used",
        "invitation_used",
    ] {
        assert!(events.contains(e), "{e}: {events}");
    }
    assert!(
        !browser
            .page_source()
            .await
            .contains(&reset[reset.find("token=").unwrap() + 6..]),
        "a link is never listed"
    );
    browser.save_screenshot("admin").await;
}

#[tokio::test]
async fn what_the_console_refuses() {
    let (pki, _up, gw) = start("");
    // No session: to sign in and back. No role: 403.
    assert_eq!(
        agent(&pki, &gw).get(ADMIN).await.location.as_deref(),
        Some("/.portcullis/login?next=%2F.portcullis%2Fadmin")
    );
    let alice = signed_in(&pki, &gw, "alice", ALICE_PW).await;
    assert_eq!(alice.get(ADMIN).await.status, 403);
    let account = alice.get("/.portcullis/account").await;
    let r = alice
        .post(
            "/.portcullis/admin/account",
            &[
                ("csrf", &account.csrf()),
                ("account", "root"),
                ("action", "disable"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "no role, whatever the token");

    let root = signed_in(&pki, &gw, "root", ROOT_PW).await;
    // Without a token, or with another form's token.
    for csrf in ["", "x", &root.get("/.portcullis/account").await.csrf()] {
        let r = root
            .post(
                "/.portcullis/admin/account",
                &[("csrf", csrf), ("account", "alice"), ("action", "disable")],
            )
            .await;
        assert_eq!(r.status, 403, "{csrf}");
    }
    assert_eq!(alice.get("/app").await.status, 200, "nothing happened");

    // The last admin stays, with a sentence.
    for (action, extra) in [
        ("roles", vec![("roles", "staff")]),
        ("disable", vec![]),
        ("delete", vec![("confirm", "yes")]),
    ] {
        let r = act(&root, "root", action, &extra).await;
        assert_eq!(r.status, 409, "{action}: {}", r.body);
        assert!(
            r.body.contains("is the last enabled account with role") && r.body.contains("admin"),
            "{}",
            r.body
        );
    }
    assert_eq!(root.get(ADMIN).await.status, 200, "still an admin");
    // Delete needs its box ticked; bad roles and unknown accounts are named.
    assert_eq!(act(&root, "alice", "delete", &[]).await.status, 400);
    let r = act(&root, "alice", "roles", &[("roles", "a,b c;d")]).await;
    assert!(r.body.contains("is not a role name"), "{}", r.body);
    let r = act(&root, "nobody", "disable", &[]).await;
    assert!(r.body.contains("no account named"), "{}", r.body);
    assert_eq!(act(&root, "alice", "promote", &[]).await.status, 400);

    // Invitation links: tampered, revoked, used — each refused.
    let link = invite(&root, "staff").await;
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let guest = agent(&pki, &gw);
    assert_eq!(guest.get(&tampered).await.status, 403);
    assert_eq!(
        guest.get("/.portcullis/invite?token=short").await.status,
        403
    );
    assert_eq!(
        sign_up(&guest, &link, "carol", "carol password 3")
            .await
            .status,
        303
    );
    assert_eq!(guest.get("/staff").await.status, 200, "invited roles");
    assert_eq!(agent(&pki, &gw).get(&link).await.status, 403, "used");
    let revoked = invite(&root, "staff").await;
    let page = root.get(ADMIN).await;
    let id = page
        .body
        .split("name=\"invitation\" value=\"")
        .nth(1)
        .unwrap();
    let id = id.split('"').next().unwrap().to_string();
    let r = root
        .post(
            "/.portcullis/admin/revoke-invitation",
            &[("csrf", &page.csrf()), ("invitation", &id)],
        )
        .await;
    assert!(r.body.contains("The invitation is revoked."), "{}", r.body);
    assert_eq!(agent(&pki, &gw).get(&revoked).await.status, 403);
    // A taken name leaves the invitation usable.
    let again = invite(&root, "").await;
    let d = agent(&pki, &gw);
    assert_eq!(
        sign_up(&d, &again, "ALICE", "dave password 4").await.status,
        409
    );
    assert_eq!(
        sign_up(&d, &again, "dave", "dave password 4").await.status,
        303
    );

    // A reset link, tampered.
    let r = act(&root, "alice", "reset-link", &[]).await;
    let reset = path_of(&shown_link(&r));
    let bad = reset.replace("token=", "token=x");
    assert_eq!(agent(&pki, &gw).get(&bad).await.status, 403);
    assert_eq!(agent(&pki, &gw).get(&reset).await.status, 200);
}

#[tokio::test]
async fn the_console_needs_a_second_factor_when_mfa_is_on() {
    let (pki, _up, gw) = start("[login]\nmfa = \"roles\"\nmfa_roles = [\"admin\"]\n");
    let root = agent(&pki, &gw);
    root.sign_in("root", ROOT_PW, "/").await;
    let r = root.get(ADMIN).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/.portcullis/account/totp?next=%2F.portcullis%2Fadmin")
    );
    // An action without the factor changes nothing.
    let r = root
        .post(
            "/.portcullis/admin/account",
            &[("csrf", "x"), ("account", "alice"), ("action", "disable")],
        )
        .await;
    assert_eq!(r.status, 303);
    let alice = signed_in(&pki, &gw, "alice", ALICE_PW).await;
    assert_eq!(alice.get("/app").await.status, 200);
    // With one, the console opens.
    let form = root.get("/.portcullis/account/totp").await;
    let secret = form.hidden("secret");
    let r = root
        .post(
            "/.portcullis/account/totp",
            &[
                ("csrf", &form.csrf()),
                ("secret", &secret),
                ("next", ADMIN),
                ("code", &otp(&secret, 0)),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(root.get(ADMIN).await.status, 200);

    // alice lost her phone and her codes: the admin removes her factors.
    let form = alice.get("/.portcullis/account/totp").await;
    let secret = form.hidden("secret");
    let r = alice
        .post(
            "/.portcullis/account/totp",
            &[
                ("csrf", &form.csrf()),
                ("secret", &secret),
                ("next", "/"),
                ("code", &otp(&secret, 0)),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let locked = agent(&pki, &gw);
    assert!(locked
        .sign_in("alice", ALICE_PW, "/app")
        .await
        .location
        .unwrap()
        .contains("second-factor"));
    let r = act(&root, "alice", "clear-factors", &[]).await;
    assert!(
        r.body
            .contains("alice has no second factor now (1 removed)"),
        "{}",
        r.body
    );
    assert_eq!(alice.get("/app").await.status, 303, "her sessions ended");
    assert_eq!(
        agent(&pki, &gw)
            .sign_in("alice", ALICE_PW, "/app")
            .await
            .location
            .as_deref(),
        Some("/app"),
        "a password alone again"
    );
}

/// `within` of trying, the request's status.
async fn status_within(a: &Agent, path: &str, want: u16, within: Duration) -> u16 {
    let end = Instant::now() + within;
    loop {
        let got = a.get(path).await.status;
        if got == want || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn changes_reach_every_instance_on_the_store() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let pg = Postgres::start();
    let cfg = config(
        &pki,
        &up,
        "[store]\nurl = \"env:PORTCULLIS_DATABASE_URL\"\n",
    );
    let start = |with_users: bool| {
        let b = GatewayBuilder::new(&cfg)
            .env("PORTCULLIS_SESSION_KEYS", KEYS)
            .env("PORTCULLIS_DATABASE_URL", &pg.url());
        if with_users {
            b.users(&users()).start()
        } else {
            b.start()
        }
    };
    let a = start(true);
    let b = start(false);
    let root = signed_in(&pki, &a, "root", ROOT_PW).await;
    let alice = signed_in(&pki, &b, "alice", ALICE_PW).await;
    assert_eq!(alice.get("/staff").await.status, 200);
    act(&root, "alice", "roles", &[("roles", "guest")]).await;
    assert_eq!(
        status_within(&alice, "/staff", 403, Duration::from_secs(1)).await,
        403
    );
    act(&root, "alice", "sign-out", &[]).await;
    assert_eq!(
        status_within(&alice, "/app", 303, Duration::from_secs(1)).await,
        303
    );
    act(&root, "alice", "disable", &[]).await;
    let end = Instant::now() + Duration::from_secs(1);
    let mut got = 0;
    while Instant::now() <= end {
        got = agent(&pki, &b).sign_in("alice", ALICE_PW, "/").await.status;
        if got == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, 401, "disabled on every instance within a second");
}
