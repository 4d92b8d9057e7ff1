//! Sign-in with an OpenID Connect provider, against a real one: panva's
//! `oidc-provider` on loopback with TLS from the test CA, its own login and
//! consent pages (tests/support/oidc.rs). Seed 002's story in Chromium, and
//! every bad input the callback must refuse, each with its audit reason,
//! nothing forwarded.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::header::LOCATION;
use serde_json::json;
use support::config::basic;
use support::gateway::ListenerPorts;
use support::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
use support::*;

const KEYS: &str = "oidc-test-session-key-0123456789abcdefghijkl";
const ISSUER_MARK: &str = "ISSUER_GOES_HERE";

struct Env {
    pki: TestPki,
    up: Upstream,
    provider: OidcProvider,
    gw: Gateway,
}

/// A gateway with one OIDC provider `corp`; `login` is extra `[login]`
/// lines, `provider` extra lines for the provider table.
fn start(login: &str, provider: &str, accounts: serde_json::Value) -> Env {
    let scopes = ["openid", "email", "profile", "groups"];
    start_kind("oidc", login, provider, accounts, &scopes)
}

/// [`start`] with another `kind` and `scopes`.
fn start_kind(
    kind: &str,
    login: &str,
    provider: &str,
    accounts: serde_json::Value,
    scopes: &[&str],
) -> Env {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let (pki, up) = (TestPki::new(), Upstream::start());
    let cfg = basic(
        &pki,
        &[up.addr()],
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [login]\n{login}\n\
             [[login.provider]]\nid = \"corp\"\nkind = \"{kind}\"\nname = \"Corp SSO\"\n\
             issuer = \"{ISSUER_MARK}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"env:CORP_SECRET\"\n\
             scopes = [{scopes}]\n\
             role_map = {{ \"platform-admins\" = [\"admin\"] }}\nca = \"{ca}\"\n{provider}\n\
             [[route]]\npath = \"/api/users\"\naccess = \"role:admin\"\n\
             [[route]]\npath = \"/secure\"\naccess = \"login\"\nmfa = true\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n",
            ca = pki.ca_path.display(),
            scopes = scopes.join(", ")
        ),
    );
    let port = ListenerPorts::parse(&cfg).https;
    let redirects = vec![
        format!("https://localhost:{port}/.portcullis/oauth2/callback"),
        format!("https://127.0.0.1:{port}/.portcullis/oauth2/callback"),
    ];
    let provider = OidcProvider::start(&pki, &redirects, accounts);
    let cfg = cfg.replace(ISSUER_MARK, &provider.issuer());
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("CORP_SECRET", CLIENT_SECRET)
        .start();
    Env {
        pki,
        up,
        provider,
        gw,
    }
}

fn accounts() -> serde_json::Value {
    json!({
        "grace": { "email": "grace@example.com", "groups": ["staff"] },
        "root": { "email": "root@example.com", "groups": ["platform-admins"] },
        "unverified": { "email": "unverified@example.com", "email_verified": false },
        "eve": { "email": "eve@evil.example" },
    })
}

/// A browser-like client: a cookie jar, no redirects followed, trusting the
/// test CA for the gateway (`localhost`) and the provider (`127.0.0.1`).
fn browser_client(env: &Env) -> reqwest::Client {
    browser_client_jar(env).0
}

/// [`browser_client`] and its cookie jar.
fn browser_client_jar(env: &Env) -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    support::install_crypto_provider();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let ca = reqwest::Certificate::from_pem(env.pki.ca_pem.as_bytes()).unwrap();
    let port = ListenerPorts::parse(&std::fs::read_to_string(env.gw.config_path()).unwrap()).https;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (client, jar)
}

fn location(resp: &reqwest::Response) -> String {
    let loc = resp.headers()[LOCATION].to_str().unwrap().to_string();
    let base = url::Url::parse(resp.url().as_str()).unwrap();
    base.join(&loc).unwrap().to_string()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/.portcullis/oauth2/start` with `next`: the provider's authorization URL.
async fn start_flow(c: &reqwest::Client, env: &Env, next: &str) -> String {
    let resp = c
        .get(env.gw.url(&format!(
            "/.portcullis/oauth2/start?provider=corp&next={}",
            enc(next)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "start");
    location(&resp)
}

/// Through the provider's own login and consent pages as `login`, until
/// it sends the browser back: the callback URL (not followed).
async fn at_provider(c: &reqwest::Client, env: &Env, mut url: String, login: &str) -> String {
    let callback = env.gw.url("/.portcullis/oauth2/callback");
    for _ in 0..12 {
        if url.starts_with(&callback) {
            return url;
        }
        let resp = c.get(&url).send().await.unwrap();
        if resp.status().is_redirection() {
            url = location(&resp);
            continue;
        }
        let page = resp.text().await.unwrap();
        let form: &[(&str, &str)] = if page.contains("value=\"login\"") {
            &[("prompt", "login"), ("login", login), ("password", "any")]
        } else if page.contains("value=\"consent\"") {
            &[("prompt", "consent")]
        } else {
            panic!("unexpected provider page at {url}: {page}");
        };
        let resp = c.post(&url).form(form).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{url}: {}", resp.status());
        url = location(&resp);
    }
    panic!("the provider never sent the browser back");
}

async fn callback_url(c: &reqwest::Client, env: &Env, next: &str, login: &str) -> String {
    let auth = start_flow(c, env, next).await;
    at_provider(c, env, auth, login).await
}

/// A fresh browser signs in as `login` (next `/app`): the client and the
/// gateway's answer to the callback.
async fn sign_in(env: &Env, login: &str) -> (reqwest::Client, reqwest::Response) {
    let c = browser_client(env);
    let back = callback_url(&c, env, "/app", login).await;
    let resp = c.get(&back).send().await.unwrap();
    (c, resp)
}

/// [`sign_in`]'s status.
async fn sign_in_status(env: &Env, login: &str) -> u16 {
    sign_in(env, login).await.1.status().as_u16()
}

/// `portcullis user add NAME --role staff --email EMAIL` on the gateway's store.
fn add_staff(env: &Env, name: &str, email: &str) {
    let args = ["add", name, "--role", "staff", "--email", email];
    env.gw.user_ok(&args, Some("a long enough password\n"));
}

/// The audit lines with `event`, as `reason` values.
fn reasons(gw: &Gateway, event: &str) -> Vec<String> {
    gw.log_lines()
        .iter()
        .filter(|l| l["audit"] == true && l["event"] == event)
        .map(|l| l["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits (2 s) until a refusal with `reason` is in the audit log.
fn refused_with(gw: &Gateway, reason: &str) -> bool {
    wait_until(Duration::from_secs(2), || {
        reasons(gw, "oauth2_refused").iter().any(|r| r == reason)
    })
}

fn app_hits(up: &Upstream, prefix: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.path().starts_with(prefix))
        .count()
}

#[tokio::test]
async fn seed_002_story_in_chromium() {
    let env = start(
        "signup = \"open\"\ndefault_roles = [\"guest\"]",
        "",
        accounts(),
    );
    let browser = Browser::start_trusting(&env.pki).await;

    // A protected page → the login page: the password form and the button.
    browser.goto(&env.gw.url("/app/home")).await;
    assert!(
        browser
            .wait_for("#provider-corp", Duration::from_secs(10))
            .await
    );
    assert!(browser.wait_for("#username", Duration::from_secs(1)).await);
    assert_eq!(
        browser.text("#provider-corp").await,
        "Sign in with Corp SSO"
    );
    browser.save_screenshot("login-providers").await;

    // → the provider's own login page → its consent page → back.
    browser.click("#provider-corp").await;
    assert!(
        browser
            .wait_for("input[name=login]", Duration::from_secs(10))
            .await,
        "provider login page: {}",
        browser.current_url().await
    );
    assert!(browser
        .current_url()
        .await
        .starts_with(&env.provider.issuer()));
    browser.fill("input[name=login]", "grace").await;
    browser.fill("input[name=password]", "any").await;
    browser.submit_and_wait("button.login-submit").await;
    assert!(
        browser
            .wait_for("input[value=consent]", Duration::from_secs(10))
            .await
    );
    browser.submit_and_wait("button.login-submit").await;
    assert!(
        wait_for_url(&browser, &env.gw.url("/app/home")).await,
        "back on the page: {}",
        browser.current_url().await
    );
    let seen = SeenRequest::from_json(&serde_json::from_str(&browser.body_text().await).unwrap());
    assert_eq!(seen.header("x-forwarded-user"), Some("grace@example.com"));
    assert_eq!(seen.header("x-forwarded-roles"), Some("guest"));
    assert_eq!(seen.header("x-forwarded-email"), Some("grace@example.com"));

    // The account exists, with its linked identity.
    let listing = env.gw.user_ok(&["list"], None);
    assert!(
        listing.contains("grace@example.com\tguest\tactive\tgrace@example.com\tcorp:grace"),
        "{listing}"
    );

    // A guest is refused the admin API; nothing reaches the app.
    browser.goto(&env.gw.url("/api/users")).await;
    assert!(
        browser.body_text().await.contains("403"),
        "{}",
        browser.body_text().await
    );
    assert_eq!(app_hits(&env.up, "/api/users"), 0);

    // An admin gives the account `admin`: its very next request gets in.
    env.gw
        .user_ok(&["roles", "grace@example.com", "admin", "guest"], None);
    assert!(
        wait_for_async(Duration::from_secs(2), || async {
            browser.goto(&env.gw.url("/api/users")).await;
            app_hits(&env.up, "/api/users") > 0
        })
        .await,
        "the promotion applies to the live session"
    );
    let seen = SeenRequest::from_json(&serde_json::from_str(&browser.body_text().await).unwrap());
    assert_eq!(seen.header("x-forwarded-roles"), Some("admin,guest"));
    assert_eq!(seen.header("x-forwarded-email"), Some("grace@example.com"));
    let ok = reasons(&env.gw, "oauth2_ok");
    assert_eq!(ok.len(), 1, "one audited sign-in");
    assert_eq!(reasons(&env.gw, "oauth2_link").len(), 1, "one audited link");

    // A provider failure is a fixed sentence on a page with the way back.
    browser
        .goto(&env.gw.url("/.portcullis/oauth2/callback?state=x&code=y"))
        .await;
    assert!(browser
        .body_text()
        .await
        .contains("The sign-in could not be completed."));
    browser.save_screenshot("sign-in-failed").await;
}

async fn wait_for_url(browser: &Browser, want: &str) -> bool {
    for _ in 0..100 {
        if browser.current_url().await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn wait_for_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn provider_groups_map_to_roles_and_next_survives_the_round_trip() {
    let env = start(
        "signup = \"open\"\ndefault_roles = [\"guest\"]",
        "",
        accounts(),
    );
    let c = browser_client(&env);
    let back = callback_url(&c, &env, "/api/users?page=2", "root").await;
    let resp = c.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/api/users?page=2");
    let resp = c.get(env.gw.url("/api/users?page=2")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "platform-admins → admin");
    let seen = SeenRequest::from_json(&resp.json().await.unwrap());
    assert_eq!(seen.header("x-forwarded-roles"), Some("guest,admin"));
    // Stored roles and mapped roles are kept apart.
    let listing = env.gw.user_ok(&["list"], None);
    assert!(
        listing.contains("root@example.com\tguest,+admin\t"),
        "{listing}"
    );
}

#[tokio::test]
async fn open_redirects_never_survive_the_round_trip() {
    let env = start("signup = \"open\"", "", accounts());
    for next in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "javascript:alert(1)",
        "/ok\r\nLocation: https://evil.example",
    ] {
        let c = browser_client(&env);
        let back = callback_url(&c, &env, next, "grace").await;
        let resp = c.get(&back).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{next:?}");
        let to = resp.headers()[LOCATION].to_str().unwrap();
        assert!(
            to == "/" || (to.starts_with('/') && !to.starts_with("//") && !to.contains('\\')),
            "{next:?} → {to}"
        );
        assert!(
            !to.contains("evil.example") || to.starts_with("/%2F"),
            "{next:?} → {to}"
        );
    }
}

#[tokio::test]
async fn bad_states_and_replays_are_refused() {
    let env = start("signup = \"open\"", "", accounts());
    let gw = &env.gw;
    let c = browser_client(&env);

    // No state at all.
    let resp = c
        .get(gw.url("/.portcullis/oauth2/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("The sign-in could not be completed."),
        "{page}"
    );
    assert!(refused_with(gw, "state_missing"));

    // A state from another browser (login CSRF: the attacker's own flow,
    // delivered to the victim), with and without a binding of its own.
    let (attacker, attacker_jar) = browser_client_jar(&env);
    let stolen = callback_url(&attacker, &env, "/app", "eve").await;
    let victim = browser_client(&env);
    assert_eq!(victim.get(&stolen).send().await.unwrap().status(), 403);
    let _ = start_flow(&victim, &env, "/").await; // the victim has a binding now
    assert_eq!(victim.get(&stolen).send().await.unwrap().status(), 403);
    assert_eq!(
        reasons(gw, "oauth2_refused")
            .iter()
            .filter(|r| *r == "state_other_browser")
            .count(),
        2
    );
    // Still nobody: 401 (not a browser navigation, so no redirect).
    assert_eq!(
        victim.get(gw.url("/app")).send().await.unwrap().status(),
        401
    );

    // Duplicated parameters.
    let dup = format!("{stolen}&state=x");
    assert_eq!(attacker.get(&dup).send().await.unwrap().status(), 403);
    assert!(refused_with(gw, "duplicate_parameter"));

    // The real browser finishes; the same callback again is a replay.
    let ok = attacker.get(&stolen).send().await.unwrap();
    assert_eq!(ok.status(), 303);
    let again = attacker.get(&stolen).send().await.unwrap();
    assert_eq!(again.status(), 403);
    assert!(refused_with(gw, "state_reused"));

    // The used code with a fresh state of the same browser: the provider
    // refuses it (used once already, and the PKCE verifier is another).
    let code = url::Url::parse(&stolen)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let fresh = start_flow(&attacker, &env, "/").await;
    let state = url::Url::parse(&fresh)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let replay = gw.url(&format!(
        "/.portcullis/oauth2/callback?code={}&state={}",
        enc(&code),
        enc(&state)
    ));
    assert_eq!(attacker.get(&replay).send().await.unwrap().status(), 403);
    assert!(refused_with(gw, "code_refused"));

    // A state older than ten minutes, made with the gateway's own key for
    // this very browser: expired (the key is derived as the gateway does).
    let keys = policies::session::SessionKeys::new(vec![KEYS.as_bytes().to_vec()]).unwrap();
    let key = policies::csrf::derive_key(keys.signing(), "oauth2 state");
    let binding = cookie_value(&attacker_jar, &env, "__Host-portcullis-oauth");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = policies::oauth_state::state(&key, &binding, "corp", "/", now - 601);
    let resp = attacker
        .get(gw.url(&format!(
            "/.portcullis/oauth2/callback?code=x&state={}",
            enc(&old)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("took too long"));
    assert!(refused_with(gw, "state_expired"));
    // The same made 599 s ago passes the state checks (and fails later, at
    // the provider, for its made-up code).
    let young = policies::oauth_state::state(&key, &binding, "corp", "/", now - 599);
    let resp = attacker
        .get(gw.url(&format!(
            "/.portcullis/oauth2/callback?code=x&state={}",
            enc(&young)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        reasons(gw, "oauth2_refused").last().map(String::as_str),
        Some("code_refused")
    );

    // A provider error is refused without its text.
    let resp = attacker
        .get(gw.url(&format!(
            "/.portcullis/oauth2/callback?error=access_denied&error_description=%3Cscript%3E&state={}",
            enc(&state)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().await.unwrap().contains("<script>"));
    assert!(refused_with(gw, "provider_error"));

    // RFC 9207: an `iss` that is not this provider's.
    let fresh = start_flow(&attacker, &env, "/").await;
    let back = at_provider(&attacker, &env, fresh, "grace").await;
    let mixed = back.replace(&enc(&env.provider.issuer()), &enc("https://evil.example"));
    assert_ne!(mixed, back);
    assert_eq!(attacker.get(&mixed).send().await.unwrap().status(), 403);
    assert!(refused_with(gw, "issuer_mismatch"));
    assert_eq!(app_hits(&env.up, "/"), 0, "nothing was forwarded");
}

/// The value of cookie `name` the jar holds for the gateway.
fn cookie_value(jar: &reqwest::cookie::Jar, env: &Env, name: &str) -> String {
    use reqwest::cookie::CookieStore;
    let url = url::Url::parse(&env.gw.url("/")).unwrap();
    let header = jar.cookies(&url).expect("cookies for the gateway");
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

#[tokio::test]
async fn forged_and_broken_id_tokens_are_refused() {
    let env = start("signup = \"open\"", "", accounts());
    let plain = support::https_client(&env.pki.ca_pem, env.provider.port, false);
    let cases = [
        ("wrong_signature", "id_token_signature"),
        ("alg_none", "id_token_signature"),
        ("hs256_client_secret", "id_token_algorithm"),
        ("wrong_iss", "id_token_issuer"),
        ("wrong_aud", "id_token_audience"),
        ("expired", "id_token_expired"),
        ("future", "id_token_iat_future"),
        ("wrong_nonce", "id_token_nonce"),
        ("unverified_email", "email_unverified"),
    ];
    for (mode, reason) in cases {
        let c = browser_client(&env);
        let back = callback_url(&c, &env, "/app", "grace").await;
        env.provider.tamper(&plain, mode).await;
        let resp = c.get(&back).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{mode}");
        assert!(
            refused_with(&env.gw, reason),
            "{mode}: {:?}",
            reasons(&env.gw, "oauth2_refused")
        );
        assert_eq!(
            c.get(env.gw.url("/app")).send().await.unwrap().status(),
            401,
            "{mode}"
        );
    }

    // A key the provider never published: one JWKS refetch, then refused;
    // a second such token within the minute costs no refetch at all.
    let before = env.provider.counts(&plain).await["jwks"].as_u64().unwrap();
    for _ in 0..2 {
        let c = browser_client(&env);
        let back = callback_url(&c, &env, "/app", "grace").await;
        env.provider.tamper(&plain, "unknown_kid").await;
        assert_eq!(c.get(&back).send().await.unwrap().status(), 403);
    }
    assert!(refused_with(&env.gw, "id_token_unknown_key"));
    let after = env.provider.counts(&plain).await["jwks"].as_u64().unwrap();
    assert_eq!(after - before, 1, "bounded refetch");

    // An unverified address as claimed by the account itself too.
    assert_eq!(sign_in_status(&env, "unverified").await, 403);

    // The token endpoint answering garbage: 502, the gateway unaffected.
    let c = browser_client(&env);
    let back = callback_url(&c, &env, "/app", "grace").await;
    env.provider.tamper(&plain, "garbage").await;
    let resp = c.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("could not be reached or gave an unusable answer"),
        "{page}"
    );
    assert!(!page.contains("upstream hiccup") && !page.contains("alert(1)"));
    assert_eq!(app_hits(&env.up, "/app"), 0, "nothing was forwarded");
    let public = c.get(env.gw.url("/public")).send().await.unwrap();
    assert_eq!(
        public.status(),
        200,
        "the rest of the gateway is unaffected"
    );

    // An answer larger than the gateway reads (1 MiB): unusable, 502.
    let c = browser_client(&env);
    let back = callback_url(&c, &env, "/app", "grace").await;
    env.provider.tamper(&plain, "huge").await;
    assert_eq!(c.get(&back).send().await.unwrap().status(), 502);
    assert!(wait_until(Duration::from_secs(2), || reasons(
        &env.gw,
        "oauth2_unreachable"
    )
    .iter()
    .any(|r| r == "token_endpoint")));
}

#[tokio::test]
async fn rules_and_signup_policy_refuse_with_reasons() {
    // Domains: eve@evil.example is outside them.
    let env = start(
        "signup = \"open\"",
        "allowed_domains = [\"example.com\"]",
        accounts(),
    );
    let (_, resp) = sign_in(&env, "eve").await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("not allowed to sign in here"));
    assert!(refused_with(&env.gw, "email_not_allowed"));
    assert_eq!(sign_in_status(&env, "grace").await, 303);

    // Invite-only: no account is created without an invitation; an
    // existing account with the address is linked only with link_by_email.
    let env = start("signup = \"invite\"", "", accounts());
    let (_, resp) = sign_in(&env, "grace").await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("An invitation is needed"));
    assert!(refused_with(&env.gw, "invitation_required"));
    assert!(!env.gw.user_ok(&["list"], None).contains("grace"));
    add_staff(&env, "grace", "grace@example.com");
    assert_eq!(
        sign_in_status(&env, "grace").await,
        403,
        "not linked by e-mail unless configured"
    );

    let env = start(
        "signup = \"existing\"\nlink_by_email = true",
        "",
        accounts(),
    );
    add_staff(&env, "grace", "Grace@Example.com");
    let (c, resp) = sign_in(&env, "grace").await;
    assert_eq!(resp.status(), 303);
    let seen = SeenRequest::from_json(
        &c.get(env.gw.url("/app"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        seen.header("x-forwarded-user"),
        Some("grace"),
        "the existing account"
    );
    assert_eq!(seen.header("x-forwarded-roles"), Some("staff"));
    assert!(wait_until(Duration::from_secs(2), || env
        .gw
        .log_lines()
        .iter()
        .any(
            |l| l["event"] == "oauth2_link" && l["how"] == "linked_by_email"
        )));
    // A disabled account is refused at the provider door too.
    env.gw.user_ok(&["disable", "grace"], None);
    assert_eq!(sign_in_status(&env, "grace").await, 403);
    assert!(refused_with(&env.gw, "account_disabled"));
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_502_and_nothing_else_breaks() {
    let mut env = start("signup = \"open\"", "", accounts());
    // `check --online` reaches the provider and says what it found.
    let config = env.gw.config_path();
    let args = ["check", "--online", "-c", config.to_str().unwrap()];
    let cli_env = [
        ("PORTCULLIS_SESSION_KEYS", KEYS),
        ("CORP_SECRET", CLIENT_SECRET),
    ];
    let out = run_cli_in(env.gw.dir(), &args, &cli_env, None);
    let said = support::gateway::stdout_of(&out);
    assert!(
        out.status.success(),
        "{said}{}",
        support::gateway::stderr_of(&out)
    );
    assert!(
        said.contains(&format!(
            "provider corp (Corp SSO): issuer {}",
            env.provider.issuer()
        )) && said.contains("1 signing key(s)"),
        "{said}"
    );
    let c = browser_client(&env);
    let back = callback_url(&c, &env, "/app", "grace").await;
    env.provider.stop();
    let out = run_cli_in(env.gw.dir(), &args, &cli_env, None);
    let err = support::gateway::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("login.provider \"corp\": discovery failed"),
        "{err}"
    );
    let resp = c.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(wait_until(Duration::from_secs(2), || reasons(
        &env.gw,
        "oauth2_unreachable"
    )
    .iter()
    .any(|r| r == "token_endpoint")));
    // Starting a sign-in while it is down: the cached metadata still makes
    // the redirect (the provider's own page then fails, not ours).
    let start = c
        .get(env.gw.url("/.portcullis/oauth2/start?provider=corp"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    // Passwords and public routes are unaffected.
    assert_eq!(
        c.get(env.gw.url("/public")).send().await.unwrap().status(),
        200
    );
    let login = c
        .get(env.gw.url("/.portcullis/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // Unknown providers are the generic 404.
    let unknown = c
        .get(env.gw.url("/.portcullis/oauth2/start?provider=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn password_false_hides_the_form_and_refuses_its_post() {
    let env = start("password = false\nsignup = \"open\"", "", accounts());
    let c = browser_client(&env);
    let page = c
        .get(env.gw.url("/.portcullis/login?next=/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<form") && !html.contains("type=\"password\""),
        "{html}"
    );
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(
        html.contains("/.portcullis/oauth2/start?provider=corp&amp;next=%2Fapp"),
        "{html}"
    );
    let post = c
        .post(env.gw.url("/.portcullis/login"))
        .form(&[
            ("username", "grace"),
            ("password", "whatever"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404, "no password sign-in at all");
    // Providers still work.
    let back = callback_url(&c, &env, "/app", "grace").await;
    assert_eq!(c.get(&back).send().await.unwrap().status(), 303);
    assert_eq!(
        c.get(env.gw.url("/app")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn google_kind_checks_the_hosted_domain() {
    // `kind = "google"` is the OIDC preset with the `hd` check; its issuer
    // is overridden to reach the test provider.
    let mut accounts = accounts();
    accounts["worker"] = json!({ "email": "worker@example.com", "hd": "example.com" });
    accounts["gmail"] = json!({ "email": "someone@example.com" });
    accounts["other-hd"] = json!({ "email": "x@example.com", "hd": "evil.example" });
    let env = start_kind(
        "google",
        "signup = \"open\"",
        "allowed_domains = [\"example.com\"]",
        accounts,
        &["openid", "email", "profile", "hd"],
    );
    for (login, status, reason) in [
        ("worker", 303, None),
        ("gmail", 403, Some("hosted_domain_not_allowed")),
        ("other-hd", 403, Some("hosted_domain_not_allowed")),
    ] {
        assert_eq!(sign_in_status(&env, login).await, status, "{login}");
        if let Some(reason) = reason {
            assert!(refused_with(&env.gw, reason), "{login}");
        }
    }
    assert_eq!(
        reasons(&env.gw, "oauth2_refused").len(),
        2,
        "the address alone (in an allowed domain) is not enough without hd"
    );
}

#[tokio::test]
async fn invitation_links_let_one_identity_in() {
    let env = start("signup = \"invite\"", "", accounts());
    let base = env.gw.base();
    let invite = |extra: &[&str]| {
        let mut args = vec!["invite", "--base", base.as_str()];
        args.extend_from_slice(extra);
        let out = env.gw.user_ok(&args, None);
        out.lines().last().unwrap().to_string()
    };
    let link = invite(&["--role", "staff", "--role", "editor"]);
    assert!(
        link.starts_with(&format!("{base}/.portcullis/invite?token=")),
        "{link}"
    );

    // Without opening it: nobody new.
    assert_eq!(sign_in_status(&env, "grace").await, 403);
    assert!(refused_with(&env.gw, "invitation_required"));

    // Opened, then signed in: an account with the invitation's roles.
    let c = browser_client(&env);
    let page = c.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("You are invited"));
    let back = callback_url(&c, &env, "/app", "grace").await;
    assert_eq!(c.get(&back).send().await.unwrap().status(), 303);
    let seen = SeenRequest::from_json(
        &c.get(env.gw.url("/app"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(seen.header("x-forwarded-user"), Some("grace@example.com"));
    assert_eq!(seen.header("x-forwarded-roles"), Some("staff,editor"));

    // Used: another browser is refused at the link and at the sign-in.
    let other = browser_client(&env);
    assert_eq!(other.get(&link).send().await.unwrap().status(), 403);
    assert!(refused_with(&env.gw, "invitation_used"));
    // A made-up or mangled token.
    for bad in [
        format!("{base}/.portcullis/invite?token=xyz"),
        format!("{base}/.portcullis/invite?token={}", "A".repeat(43)),
        format!("{base}/.portcullis/invite"),
    ] {
        assert_eq!(other.get(&bad).send().await.unwrap().status(), 403, "{bad}");
    }
    assert!(refused_with(&env.gw, "invitation_unknown"));

    // Bound to an address: someone else who opens it is refused at the
    // sign-in, and the link stays usable for its person.
    let bound = invite(&["--email", "ROOT@example.com"]);
    let eve = browser_client(&env);
    assert_eq!(eve.get(&bound).send().await.unwrap().status(), 200);
    let back = callback_url(&eve, &env, "/app", "eve").await;
    assert_eq!(eve.get(&back).send().await.unwrap().status(), 403);
    assert!(refused_with(&env.gw, "invitation_other_email"));
    let root = browser_client(&env);
    assert_eq!(root.get(&bound).send().await.unwrap().status(), 200);
    let back = callback_url(&root, &env, "/app", "root").await;
    assert_eq!(root.get(&back).send().await.unwrap().status(), 303);

    // The CLI checks what it is given.
    for args in [
        vec!["invite", "--days", "0"],
        vec!["invite", "--role", "a b"],
        vec!["invite", "--email", "not-an-address"],
    ] {
        assert!(!env.gw.user(&args, None).status.success(), "{args:?}");
    }
    // With signup "open" the page stays for password sign-ups (invitations
    // from the admin console), and a made-up token is refused there too.
    let open = start("signup = \"open\"", "", accounts());
    let c = browser_client(&open);
    let resp = c
        .get(open.gw.url("/.portcullis/invite?token=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn the_providers_amr_decides_whether_its_sign_in_is_a_second_factor() {
    let env = start("signup = \"open\"", "", accounts());
    let plain = support::https_client(&env.pki.ca_pem, env.provider.port, false);
    let nav = |c: &reqwest::Client, path: &str| {
        c.get(env.gw.url(path))
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
    };
    // pwd + otp: the provider's sign-in counts as two factors.
    let c = browser_client(&env);
    let back = callback_url(&c, &env, "/secure", "grace").await;
    env.provider.tamper(&plain, "amr_mfa").await;
    let r = c.get(&back).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, env.gw.url("/secure"))
    );
    assert_eq!(nav(&c, "/secure").await.unwrap().status(), 200);
    // pwd alone, or no amr: like a password — an mfa route wants a factor.
    for (mode, who) in [(Some("amr_pwd"), "heidi"), (None, "ivan")] {
        let c = browser_client(&env);
        let back = callback_url(&c, &env, "/secure", who).await;
        if let Some(mode) = mode {
            env.provider.tamper(&plain, mode).await;
        }
        assert_eq!(c.get(&back).send().await.unwrap().status(), 303);
        let r = nav(&c, "/secure").await.unwrap();
        assert_eq!(r.status(), 303, "{who}");
        assert_eq!(
            location(&r),
            env.gw.url("/.portcullis/account/totp?next=%2Fsecure")
        );
        assert_eq!(
            c.get(env.gw.url("/secure")).send().await.unwrap().status(),
            401
        );
        assert_eq!(nav(&c, "/app").await.unwrap().status(), 200, "{who}");
    }
    let methods: Vec<String> = env
        .gw
        .log_lines()
        .iter()
        .filter(|l| l["event"] == "oauth2_ok")
        .map(|l| l["method"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(methods, ["corp+amr", "corp", "corp"]);
}

#[tokio::test]
async fn an_invitation_from_the_admin_console_lets_a_provider_identity_in() {
    let env = start("signup = \"invite\"", "", accounts());
    env.gw.user_ok(
        &["add", "boss", "--role", "admin"],
        Some("boss password 123\n"),
    );
    let boss = support::agent::Agent::new(&env.pki.ca_pem, env.gw.https_port);
    // The gateway sees the new account within a second.
    let mut status = 0;
    for _ in 0..20 {
        status = boss.sign_in("boss", "boss password 123", "/").await.status;
        if status == 303 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 303);
    let page = boss.get("/.portcullis/admin").await;
    let made = boss
        .post(
            "/.portcullis/admin/invite",
            &[("csrf", &page.csrf()), ("roles", "editor"), ("days", "7")],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let link = made
        .body
        .split("id=\"new-link\"")
        .nth(1)
        .and_then(|rest| rest.split("value=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_string();
    // The invitee: the link, then the provider.
    let c = browser_client(&env);
    let page = c.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign up with Corp SSO"));
    let back = callback_url(&c, &env, "/app", "grace").await;
    assert_eq!(c.get(&back).send().await.unwrap().status(), 303);
    let seen = SeenRequest::from_json(
        &c.get(env.gw.url("/app"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(seen.header("x-forwarded-roles"), Some("editor"));
    // The console shows it used.
    let listed = boss.get("/.portcullis/admin").await.body;
    assert!(listed.contains("<td>used</td>"), "{listed}");
}
