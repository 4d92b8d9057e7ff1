//! The public-key assertion (`[identity] assertion = "es256" | "eddsa"`),
//! black-box: keys made and kept in the identity store, published at
//! `/.portcullis/jwks.json`, the claims, and `portcullis keys rotate` —
//! tokens signed before and after a rotation verify during the grace, and
//! once the old key is no longer published its tokens fail. Verification is
//! PyJWT's, as docs/configuration.md tells an app to do it, which also
//! refuses an HS256 token "signed" with the public key.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::COOKIE;
use serde_json::Value;
use support::config::basic_with;
use support::login::login;
use support::*;

const KEYS: &str = "assertion-keys-session-key-0123456789abcdef";
const ISSUER: &str = "https://app.example.com";

fn config(pki: &TestPki, up: &Upstream, alg: &str, grace: &str, old: &str) -> String {
    basic_with(
        pki,
        &[up.addr()],
        "",
        &format!(
            "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             [identity]\nassertion = \"{alg}\"\nissuer = \"{ISSUER}\"\n\
             key_grace = \"{grace}\"\nold_key_published = \"{old}\"\n\
             [[route]]\npath = \"/private\"\naccess = \"login\"\n"
        ),
    )
}

fn start(cfg: &str) -> Gateway {
    let hash = policies::users::hash_password("alice-password-1").unwrap();
    GatewayBuilder::new(cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&format!(
            "[users.alice]\npassword = \"{hash}\"\nroles = [\"staff\"]\nemail = \"alice@example.com\"\n"
        ))
        .start()
}

async fn jwks(c: &reqwest::Client, gw: &Gateway) -> Value {
    let r = c
        .get(gw.url("/.portcullis/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    r.json().await.unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut k: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

/// Polls until the JWKS satisfies `ok`.
async fn wait_jwks(c: &reqwest::Client, gw: &Gateway, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = jwks(c, gw).await;
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "JWKS never got there: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The assertion the app receives for `cookie`.
async fn assertion(c: &reqwest::Client, gw: &Gateway, cookie: &str) -> String {
    let r = c
        .get(gw.url("/private"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = SeenRequest::from_json(&r.json().await.unwrap());
    seen.header("x-forwarded-assertion")
        .expect("an assertion")
        .to_string()
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// PyJWT's verdict on each token against `jwks`.
fn verdicts(
    dir: &Path,
    jwks: &Value,
    tokens: &[(&str, &str)],
    alg: &str,
) -> BTreeMap<String, String> {
    let jwks_file = dir.join("jwks.json");
    let tokens_file = dir.join("tokens.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let map: BTreeMap<&str, &str> = tokens.iter().copied().collect();
    std::fs::write(&tokens_file, serde_json::to_string(&map).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/jwks_verify.py");
    let out = std::process::Command::new(support::flask::python())
        .arg(script)
        .args([&jwks_file, &tokens_file])
        .args([alg, "app", ISSUER])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "jwks_verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn es256_claims_and_a_rotation_with_its_grace() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(&config(&pki, &up, "es256", "3s", "6s"));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let first = wait_jwks(&c, &gw, |v| kids(v).len() == 1).await;
    let key = &first["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "never the private part");
    let k1 = kids(&first)[0].clone();

    let alice = login(&c, &gw.base(), "alice", "alice-password-1").await;
    let a = assertion(&c, &gw, &alice).await;
    assert_eq!(
        part(&a, 0),
        serde_json::json!({"alg": "ES256", "kid": k1, "typ": "JWT"})
    );
    let claims = part(&a, 1);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["roles"], serde_json::json!(["staff"]));
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    let jti = claims["jti"].as_str().unwrap().to_string();
    assert_eq!(jti.len(), 32);
    let again = assertion(&c, &gw, &alice).await;
    assert_ne!(part(&again, 1)["jti"], jti.as_str(), "a new jti each time");

    // Rotation: the new key is published at once, the old one still signs.
    let rotate = run_cli_in(
        gw.dir(),
        &["keys", "rotate", "-c", gw.config_path().to_str().unwrap()],
        &[("PORTCULLIS_SESSION_KEYS", KEYS)],
        None,
    );
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let said = String::from_utf8_lossy(&rotate.stdout).to_string();
    assert!(
        said.contains("signs from") && said.contains("(in 3s)"),
        "{said}"
    );
    let rotated_at = Instant::now();
    let both = wait_jwks(&c, &gw, |v| kids(v).len() == 2).await;
    let k2 = kids(&both).into_iter().find(|k| *k != k1).unwrap();
    let b = assertion(&c, &gw, &alice).await;
    if rotated_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            part(&b, 0)["kid"],
            k1.as_str(),
            "the old key signs during the grace"
        );
    }
    let list = run_cli_in(
        gw.dir(),
        &["keys", "list", "-c", gw.config_path().to_str().unwrap()],
        &[("PORTCULLIS_SESSION_KEYS", KEYS)],
        None,
    );
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listed.contains(&k1) && listed.contains(&k2), "{listed}");

    // After the grace (and the gateway's next read of the store) the new
    // key signs; both verify while the old one is published.
    let deadline = Instant::now() + Duration::from_secs(15);
    let c_tok = loop {
        let t = assertion(&c, &gw, &alice).await;
        if part(&t, 0)["kid"] == k2.as_str() {
            break t;
        }
        assert!(Instant::now() < deadline, "the new key never signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let now_published = jwks(&c, &gw).await;
    let v = verdicts(
        gw.dir(),
        &now_published,
        &[("before", &a), ("during", &b), ("after", &c_tok)],
        "ES256",
    );
    if kids(&now_published).len() == 2 {
        assert_eq!(v["before"], "ok", "{v:?}");
        assert_eq!(v["during"], "ok", "{v:?}");
    }
    assert_eq!(v["after"], "ok", "{v:?}");
    assert_eq!(v["alg-confusion"], "InvalidAlgorithmError", "{v:?}");
    assert_ne!(v["alg-none"], "ok", "{v:?}");

    // The old key leaves the JWKS 6 s after the new one started signing:
    // its tokens fail from then on, the new key's still verify.
    let only_new = wait_jwks(&c, &gw, |v| kids(v) == vec![k2.clone()]).await;
    let v = verdicts(
        gw.dir(),
        &only_new,
        &[("before", &a), ("after", &c_tok)],
        "ES256",
    );
    assert_eq!(v["before"], "PyJWKClientError", "{v:?}");
    assert_eq!(v["after"], "ok", "{v:?}");
}

#[tokio::test]
async fn eddsa_keys_verify_and_hs256_publishes_nothing() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = start(&config(&pki, &up, "eddsa", "10m", "1d"));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let keys = wait_jwks(&c, &gw, |v| kids(v).len() == 1).await;
    assert_eq!(keys["keys"][0]["kty"], "OKP");
    assert_eq!(keys["keys"][0]["crv"], "Ed25519");
    let alice = login(&c, &gw.base(), "alice", "alice-password-1").await;
    let t = assertion(&c, &gw, &alice).await;
    assert_eq!(part(&t, 0)["alg"], "EdDSA");
    let v = verdicts(gw.dir(), &keys, &[("t", &t)], "EdDSA");
    assert_eq!(v["t"], "ok", "{v:?}");
    // A recipe that expects ES256 refuses an EdDSA token: the app fixes the algorithm.
    let v = verdicts(gw.dir(), &keys, &[("t", &t)], "ES256");
    assert_ne!(v["t"], "ok", "{v:?}");
    drop(c);

    // HS256 (version 1): no JWKS.
    let hs = basic_with(
        &pki,
        &[up.addr()],
        "",
        "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         assertion_key = \"env:PORTCULLIS_ASSERTION_KEY\"\n",
    );
    let gw = GatewayBuilder::new(&hs)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env(
            "PORTCULLIS_ASSERTION_KEY",
            "assertion-key-0123456789abcdefghijklmnop",
        )
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let r = c
        .get(gw.url("/.portcullis/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn config_mistakes_name_the_key() {
    let pki = TestPki::new();
    let up = Upstream::start();
    let check = |extra: &str, env: &[(&str, &str)]| {
        let cfg = basic_with(&pki, &[up.addr()], "", extra);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = run_cli_in(
            dir.path(),
            &["check", "-c", path.to_str().unwrap()],
            env,
            None,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let keys = [
        ("PORTCULLIS_SESSION_KEYS", KEYS),
        (
            "PORTCULLIS_ASSERTION_KEY",
            "assertion-key-0123456789abcdefghijklmnop",
        ),
    ];
    let secrets = "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n";
    let (ok, err) = check(
        &format!("{secrets}[identity]\nassertion = \"rs256\"\n"),
        &keys,
    );
    assert!(!ok && err.contains("identity.assertion"), "{err}");
    let (ok, err) = check(
        &format!("{secrets}[identity]\nassertion = \"hs256\"\n"),
        &keys,
    );
    assert!(
        !ok && err.contains("identity.assertion") && err.contains("assertion_key"),
        "{err}"
    );
    let (ok, err) = check(
        &format!("{secrets}assertion_key = \"env:PORTCULLIS_ASSERTION_KEY\"\n[identity]\nassertion = \"es256\"\nissuer = \"https://a.example\"\n"),
        &keys,
    );
    assert!(!ok && err.contains("secrets.assertion_key"), "{err}");
    let (ok, err) = check(
        &format!("{secrets}[identity]\nassertion = \"es256\"\n"),
        &keys,
    );
    assert!(!ok && err.contains("identity.issuer"), "{err}");
    let (ok, err) = check(
        &format!("{secrets}[identity]\nassertion = \"es256\"\nissuer = \"https://a.example\"\nkey_grace = \"soon\"\n"),
        &keys,
    );
    assert!(!ok && err.contains("identity.key_grace"), "{err}");
    let (ok, err) = check(
        &format!("{secrets}[identity]\nassertion = \"es256\"\nissuer = \"https://a.example\"\n"),
        &keys,
    );
    assert!(ok, "{err}");
}
