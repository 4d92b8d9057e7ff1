//! A browser without a browser: one cookie jar, navigation requests
//! (`Accept: text/html`), forms posted with the CSRF token of the page they
//! came from. For the HTML flows' refusals, which a real browser would not
//! even try; the flows themselves run in Chromium.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};

/// What came back.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of hidden input `name` (the first one).
    pub fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&marker).unwrap_or_else(|| {
            panic!("no field {name} in {}", self.body);
        }) + marker.len();
        self.body[at..].split('"').next().unwrap().to_string()
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        self.hidden("csrf")
    }
}

/// One cookie jar against one gateway.
pub struct Agent {
    pub client: reqwest::Client,
    pub base: String,
}

impl Agent {
    pub fn new(ca_pem: &str, port: u16) -> Agent {
        super::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Agent {
            client,
            base: format!("https://localhost:{port}"),
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    /// A navigation: `GET` with `Accept: text/html`.
    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .expect("get");
        Agent::page(resp).await
    }

    /// A script's request: `GET` without `text/html`.
    pub async fn fetch(&self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("fetch");
        Agent::page(resp).await
    }

    /// POSTs `fields` as a form.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "text/html")
            .body(body)
            .send()
            .await
            .expect("post");
        Agent::page(resp).await
    }

    /// Signs in with a password through the login form; the answer to the POST.
    pub async fn sign_in(&self, user: &str, password: &str, next: &str) -> Page {
        let form = self.get("/.portcullis/login").await;
        assert_eq!(form.status, 200, "login form: {}", form.body);
        self.post(
            "/.portcullis/login",
            &[
                ("csrf", &form.csrf()),
                ("username", user),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }
}

/// A TOTP code for base32 `secret`, `offset` seconds from now, computed by
/// Python's pyotp (an implementation other than the gateway's).
pub fn otp(secret: &str, offset: i64) -> String {
    let python =
        std::env::var("PORTCULLIS_EXAMPLE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))",
            secret,
            &offset.to_string(),
        ])
        .output()
        .expect("python with pyotp (scripts/test installs it)");
    assert!(
        out.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
