//! `examples/flask` runs as documented: the real Flask app, verifying the
//! assertion with PyJWT, behind the real example config.
//!
//! Needs a Python with flask and pyjwt: `PORTCULLIS_EXAMPLE_PYTHON`, else
//! `python3`. `scripts/test` makes a venv with both and sets the variable.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use reqwest::header::{ACCEPT, COOKIE};
use support::login::login;
use support::*;

const SESSION_KEYS: &str = "flask-example-session-key-0123456789abcdef";

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/flask")
}

/// The example as shipped, with test ports and the test PKI.
fn example_config(pki: &TestPki, app: u16) -> String {
    let (https, http) = (free_port(), free_port());
    let example =
        std::fs::read_to_string(example_dir().join("portcullis.toml")).expect("example config");
    let cfg = example
        .replace(
            "https = \"127.0.0.1:8443\"",
            &format!("https = \"127.0.0.1:{https}\""),
        )
        .replace(
            "http = \"127.0.0.1:8080\"",
            &format!("http = \"127.0.0.1:{http}\""),
        )
        .replace(
            "addrs = [\"127.0.0.1:8000\"]",
            &format!("addrs = [\"127.0.0.1:{app}\"]"),
        )
        .replace(
            "mode = \"self-signed\"\nstorage = \"state\"",
            &format!(
                "mode = \"files\"\ncert = \"{}\"\nkey = \"{}\"",
                pki.cert_path.display(),
                pki.key_path.display()
            ),
        );
    assert!(
        cfg.contains(&format!("127.0.0.1:{app}"))
            && cfg.contains("mode = \"files\"")
            && cfg.contains("assertion = \"es256\""),
        "example config changed shape:\n{cfg}"
    );
    cfg
}

fn users() -> String {
    format!(
        "[users.alice]\npassword = \"{}\"\nroles = [\"admin\"]\n[users.bob]\npassword = \"{}\"\nroles = []\n",
        policies::users::hash_password("alice-password").expect("hash"),
        policies::users::hash_password("bob-password").expect("hash"),
    )
}

fn start_gateway(cfg: &str) -> Gateway {
    GatewayBuilder::new(cfg)
        .env("PORTCULLIS_SESSION_KEYS", SESSION_KEYS)
        .users(&users())
        .start()
}

/// Waits until the gateway publishes a key (it makes the first one when it
/// has read the store).
async fn wait_for_keys(client: &reqwest::Client, gw: &Gateway) {
    for _ in 0..100 {
        let r = client.get(gw.url("/.portcullis/jwks.json")).send().await;
        if let Ok(r) = r {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if v["keys"].as_array().is_some_and(|k| !k.is_empty()) {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no key in the JWKS");
}

#[tokio::test]
async fn the_flask_example_trusts_only_the_gateway_assertion() {
    let pki = TestPki::new();
    let app = free_port();
    let cfg = example_config(&pki, app);
    let gw = start_gateway(&cfg);
    let jwks = gw.url("/.portcullis/jwks.json");
    let ca = pki.ca_path.display().to_string();
    let env = [
        ("PORTCULLIS_JWKS_URL", jwks.as_str()),
        ("PORTCULLIS_CA_FILE", ca.as_str()),
    ];
    let _flask =
        support::flask::start(&example_dir(), "app", app, &env, "flask, jwt, cryptography");
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    wait_for_keys(&client, &gw).await;
    let get = |path: &str, cookie: Option<&str>| {
        let mut req = client.get(gw.url(path)).header(ACCEPT, "application/json");
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send()
    };

    let anon = get("/", None).await.expect("public");
    assert_eq!(anon.status(), 200);
    assert_eq!(
        anon.json::<serde_json::Value>().await.expect("json")["user"],
        serde_json::Value::Null
    );
    assert_eq!(
        get("/dashboard", None).await.expect("dash").status(),
        401,
        "the gateway asks for a login"
    );

    let alice = login(&client, &gw.base(), "alice", "alice-password").await;
    let dash = get("/dashboard", Some(&alice)).await.expect("dashboard");
    assert_eq!(dash.status(), 200);
    let v: serde_json::Value = dash.json().await.expect("json");
    assert_eq!(v["message"], "hello alice", "PyJWT verified the assertion");
    assert_eq!(
        get("/admin", Some(&alice)).await.expect("admin").status(),
        200
    );

    let bob = login(&client, &gw.base(), "bob", "bob-password").await;
    assert_eq!(
        get("/admin", Some(&bob)).await.expect("admin").status(),
        403
    );

    // Another gateway (its own store, so its own key) in front of the same
    // app: the app, verifying against the first gateway's keys, refuses
    // its assertions. The signature, not the header, is what it trusts.
    let other = start_gateway(&example_config(&pki, app));
    let other_client = https_client(&pki.ca_pem, other.https_port, false);
    wait_for_keys(&other_client, &other).await;
    let alice = login(&other_client, &other.base(), "alice", "alice-password").await;
    let resp = other_client
        .get(other.url("/dashboard"))
        .header(COOKIE, &alice)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(
        resp.status(),
        401,
        "the app rejects an assertion signed with another key"
    );
}
