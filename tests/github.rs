//! Sign-in with GitHub through a stand-in that follows GitHub's documented
//! OAuth app endpoints and REST API (tests/support/github.rs), reached
//! through `auth_url`, `token_url` and `api_url` as GitHub Enterprise is:
//! org membership required, a team mapped to a role, only a verified
//! primary address counts, and a bad code refused.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::header::LOCATION;
use support::config::basic;
use support::github::{GhUser, GithubStandIn, CLIENT_SECRET};
use support::*;

const KEYS: &str = "github-test-session-key-0123456789abcdefghij";

fn users() -> Vec<GhUser> {
    let user = |id,
                login: &str,
                emails: Vec<(&str, bool, bool)>,
                orgs: &[&str],
                teams: &[(&str, &str)]| GhUser {
        id,
        login: login.to_string(),
        emails: emails
            .into_iter()
            .map(|(e, p, v)| (e.to_string(), p, v))
            .collect(),
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        teams: teams
            .iter()
            .map(|(o, t)| (o.to_string(), t.to_string()))
            .collect(),
    };
    vec![
        user(
            583231,
            "octocat",
            vec![
                ("octo@personal.example", false, true),
                ("octocat@example.com", true, true),
            ],
            &["Acme"],
            &[("Acme", "platform")],
        ),
        user(
            1001,
            "outsider",
            vec![("out@example.com", true, true)],
            &["other"],
            &[],
        ),
        user(
            1002,
            "unverified",
            vec![
                ("unverified@example.com", true, false),
                ("claimed@example.com", false, false),
            ],
            &["acme"],
            &[],
        ),
    ]
}

struct Env {
    pki: TestPki,
    up: Upstream,
    github: GithubStandIn,
    gw: Gateway,
}

fn start() -> Env {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let github = GithubStandIn::start(&pki, users());
    let cfg = basic(
        &pki,
        &[up.addr()],
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [login]\nsignup = \"open\"\ndefault_roles = [\"guest\"]\n\
             [[login.provider]]\nid = \"github\"\nkind = \"github\"\nclient_secret = \"env:GH_SECRET\"\n\
             github_orgs = [\"acme\"]\nrole_map = {{ \"acme/platform\" = [\"admin\"] }}\n{}\n\
             [[route]]\npath = \"/api/users\"\naccess = \"role:admin\"\n\
             [[route]]\npath = \"/app\"\naccess = \"login\"\n",
            github.provider_config(&pki.ca_path)
        ),
    );
    let gw = GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("GH_SECRET", CLIENT_SECRET)
        .start();
    Env {
        pki,
        up,
        github,
        gw,
    }
}

fn refused_with(gw: &Gateway, reason: &str) -> bool {
    wait_until(Duration::from_secs(2), || {
        gw.log_lines()
            .iter()
            .any(|l| l["event"] == "oauth2_refused" && l["reason"] == reason)
    })
}

#[tokio::test]
async fn github_sign_in_with_org_and_team_roles_in_chromium() {
    let env = start();
    env.github.approve_as("octocat");
    let browser = Browser::start_trusting(&env.pki).await;
    browser.goto(&env.gw.url("/api/users")).await;
    assert!(
        browser
            .wait_for("#provider-github", Duration::from_secs(10))
            .await
    );
    assert_eq!(
        browser.text("#provider-github").await,
        "Sign in with GitHub"
    );
    browser.click("#provider-github").await;
    let want = env.gw.url("/api/users");
    let mut url = String::new();
    for _ in 0..100 {
        url = browser.current_url().await;
        if url == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(url, want, "{}", browser.body_text().await);
    let seen = SeenRequest::from_json(&serde_json::from_str(&browser.body_text().await).unwrap());
    // Named by the verified primary address; the team gives `admin`.
    assert_eq!(seen.header("x-forwarded-user"), Some("octocat@example.com"));
    assert_eq!(seen.header("x-forwarded-roles"), Some("guest,admin"));
    assert_eq!(
        seen.header("x-forwarded-email"),
        Some("octocat@example.com")
    );
    let listing = env.gw.user_ok(&["list"], None);
    assert!(
        listing.contains("\tgithub:583231"),
        "linked by the numeric id: {listing}"
    );
    let api_hits = env
        .up
        .requests()
        .iter()
        .filter(|r| r.path().starts_with("/api/users"))
        .count();
    assert_eq!(api_hits, 1);
    browser.save_screenshot("login-github").await;
}

#[tokio::test]
async fn github_rules_refuse_outsiders_unverified_addresses_and_bad_codes() {
    let env = start();
    let gw_port = {
        let cfg = std::fs::read_to_string(env.gw.config_path()).unwrap();
        support::gateway::ListenerPorts::parse(&cfg).https
    };
    support::install_crypto_provider();
    let c = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(env.pki.ca_pem.as_bytes()).unwrap())
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], gw_port)),
        )
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let round_trip = |login: &'static str| {
        let c = c.clone();
        let env = &env;
        async move {
            env.github.approve_as(login);
            let start = c
                .get(
                    env.gw
                        .url("/.portcullis/oauth2/start?provider=github&next=/app"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(start.status(), 303);
            let authorize = start.headers()[LOCATION].to_str().unwrap().to_string();
            assert!(
                authorize.contains("code_challenge_method=S256"),
                "{authorize}"
            );
            assert!(
                authorize.contains("scope=read%3Auser+user%3Aemail+read%3Aorg"),
                "{authorize}"
            );
            let back = c.get(&authorize).send().await.unwrap();
            assert_eq!(back.status(), 302);
            back.headers()[LOCATION].to_str().unwrap().to_string()
        }
    };

    // Not a member of a required org.
    let back = round_trip("outsider").await;
    assert_eq!(c.get(&back).send().await.unwrap().status(), 403);
    assert!(refused_with(&env.gw, "org_not_allowed"));

    // An unverified primary address is not used: the account is named by
    // the login and carries no address.
    let back = round_trip("unverified").await;
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
    assert_eq!(seen.header("x-forwarded-user"), Some("unverified"));
    assert_eq!(seen.header("x-forwarded-email"), None);
    assert_eq!(seen.header("x-forwarded-roles"), Some("guest"));

    // A made-up code: GitHub answers 200 with an error; refused.
    let back = round_trip("octocat").await;
    let url = url::Url::parse(&back).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let forged = env.gw.url(&format!(
        "/.portcullis/oauth2/callback?code=not-a-code&state={}",
        form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
    ));
    assert_eq!(c.get(&forged).send().await.unwrap().status(), 403);
    assert!(refused_with(&env.gw, "code_refused"));
    // The state was taken by that attempt: the real code cannot use it now.
    assert_eq!(c.get(&back).send().await.unwrap().status(), 403);
    assert!(refused_with(&env.gw, "state_reused"));
    assert!(!env
        .up
        .requests()
        .iter()
        .any(|r| r.path().starts_with("/api")));
}
