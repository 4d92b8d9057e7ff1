//! panva's `oidc-provider` (npm, a certified OpenID Provider) on a free
//! loopback port with TLS from the test PKI: static clients, test accounts
//! with a `groups` claim, its own login and consent pages. See
//! `tests/support/oidc/provider.mjs`; `scripts/test` installs the package
//! into `target/oidc-provider` (`$PORTCULLIS_OIDC_PROVIDER_DIR`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::pki::TestPki;
use super::ports::free_port;

/// The client every test gateway is registered as.
pub const CLIENT_ID: &str = "portcullis-test";
/// Its secret (the gateway reads it through `env:`).
pub const CLIENT_SECRET: &str = "oidc-test-client-secret-0123456789abcdef";

/// A running provider; killed on drop.
pub struct OidcProvider {
    child: Option<Child>,
    pub port: u16,
    config: Value,
}

fn modules_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/oidc-provider")
        })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support/oidc/provider.mjs")
}

impl OidcProvider {
    /// Starts a provider whose client accepts `redirect_uris`, with
    /// `accounts` (`{"name": {"email": …, "email_verified": …, "groups": […]}}`;
    /// any other name typed at its login page is `NAME@example.com`, verified).
    pub fn start(pki: &TestPki, redirect_uris: &[String], accounts: Value) -> OidcProvider {
        let modules = modules_dir();
        assert!(
            modules.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {} (scripts/test installs it)",
            modules.display()
        );
        for _ in 0..5 {
            let port = free_port();
            let config = json!({
                "modules": modules,
                "issuer": format!("https://127.0.0.1:{port}"),
                "port": port,
                "cert": pki.cert_path,
                "key": pki.key_path,
                "clients": [{
                    "id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "redirect_uris": redirect_uris,
                }],
                "accounts": accounts,
            });
            let mut child = Command::new("node")
                .arg(script())
                .arg(config.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn node (scripts/test installs nodejs)");
            let stdout = child.stdout.take().expect("stdout");
            let mut lines = BufReader::new(stdout).lines();
            let listening = lines
                .next()
                .and_then(Result::ok)
                .is_some_and(|l| l.starts_with("listening"));
            if listening {
                // Keep draining its stdout so it never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return OidcProvider {
                    child: Some(child),
                    port,
                    config,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("oidc-provider did not start (node {})", script().display());
    }

    pub fn issuer(&self) -> String {
        self.config["issuer"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Makes the token endpoint's next answer misbehave (`provider.mjs`).
    pub async fn tamper(&self, client: &reqwest::Client, mode: &str) {
        let resp = client
            .post(format!("{}/__test/tamper?mode={mode}", self.issuer()))
            .send()
            .await
            .expect("tamper");
        assert!(resp.status().is_success(), "tamper {mode}");
    }

    /// How often discovery, JWKS and token were asked for.
    pub async fn counts(&self, client: &reqwest::Client) -> Value {
        client
            .get(format!("{}/__test/counts", self.issuer()))
            .send()
            .await
            .expect("counts")
            .json()
            .await
            .expect("counts json")
    }

    /// Stops it (the provider is "down" from now on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
