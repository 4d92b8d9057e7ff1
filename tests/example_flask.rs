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
const ASSERTION_KEY: &str = "flask-example-assertion-key-0123456789abc";

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/flask")
}

fn start_flask(port: u16, key: &str) -> support::flask::Flask {
    let env = [("PORTCULLIS_ASSERTION_KEY", key)];
    support::flask::start(&example_dir(), "app", port, &env, "flask, jwt")
}

#[tokio::test]
async fn the_flask_example_trusts_only_the_gateway_assertion() {
    let pki = TestPki::new();
    let (https, http, app) = (free_port(), free_port(), free_port());
    let example =
        std::fs::read_to_string(example_dir().join("portcullis.toml")).expect("example config");
    // The example as shipped, with test ports and the test PKI.
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
        cfg.contains(&format!("127.0.0.1:{app}")) && cfg.contains("mode = \"files\""),
        "example config changed shape:\n{cfg}"
    );
    let users = format!(
        "[users.alice]\npassword = \"{}\"\nroles = [\"admin\"]\n[users.bob]\npassword = \"{}\"\nroles = []\n",
        policies::users::hash_password("alice-password").expect("hash"),
        policies::users::hash_password("bob-password").expect("hash"),
    );
    let start_gateway = || {
        GatewayBuilder::new(&cfg)
            .env("PORTCULLIS_SESSION_KEYS", SESSION_KEYS)
            .env("PORTCULLIS_ASSERTION_KEY", ASSERTION_KEY)
            .users(&users)
            .start()
    };
    let _flask = start_flask(app, ASSERTION_KEY);
    let gw = start_gateway();
    let client = https_client(&pki.ca_pem, gw.https_port, false);
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

    // The same app with another key refuses the gateway's assertion: the
    // signature, not the header, is what it trusts.
    drop(gw);
    drop(_flask);
    let _other = start_flask(app, "some-other-key-0123456789abcdefghijkl");
    let gw = start_gateway();
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let alice = login(&client, &gw.base(), "alice", "alice-password").await;
    let resp = client
        .get(gw.url("/dashboard"))
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
