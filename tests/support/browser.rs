//! Headless Chromium driven over the W3C WebDriver protocol, for HTML-flow
//! tests (login forms, redirects, cookies) over HTTPS.
//!
//! [`Browser::start_trusting`] starts a `chromedriver` on a free loopback
//! port (its own temp dir: Chromium profile, `HOME`, driver log) and opens one
//! WebDriver session with a fresh headless Chromium. The WebDriver protocol
//! is spoken with reqwest + serde_json; no WebDriver crate.
//!
//! Certificates: Chromium is told to accept the test PKI's *leaf* by the
//! SHA-256 of its SubjectPublicKeyInfo (`--ignore-certificate-errors-spki-list`,
//! honoured because `--user-data-dir` is set). Nothing is installed into an
//! NSS database, and every other certificate is still verified normally.
//! `BrowserOptions::ignore_tls_errors` instead accepts any certificate (the
//! WebDriver `acceptInsecureCerts` capability).
//!
//! Cleanup: on drop the session is deleted (Chromium quits), chromedriver is
//! asked to shut down and then killed, and any process still naming the
//! profile dir on its command line is killed by pid. `Browser::leftovers()`
//! lists such processes, for tests that check nothing leaked.
//!
//! Failures are loud: helpers panic with the WebDriver error and the page's
//! current URL.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::pki::TestPki;

/// The Chromium launcher Debian's `chromium` package installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// One WebDriver command (a page load included) may take this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const PAGE_LOAD_TIMEOUT_MS: u64 = 30_000;
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// How to start the browser.
#[derive(Clone, Debug, Default)]
pub struct BrowserOptions {
    /// base64 SHA-256 hashes of SubjectPublicKeyInfos whose certificates
    /// Chromium accepts although they chain to no trusted root (see
    /// [`spki_hashes`]).
    pub trusted_spki: Vec<String>,
    /// Accept any certificate (`acceptInsecureCerts`): for tests of sites
    /// whose key is not known up front.
    pub ignore_tls_errors: bool,
    /// More Chromium command-line switches.
    pub extra_args: Vec<String>,
}

impl BrowserOptions {
    /// Trusts the leaf certificate of `pki` (the one gateways and TLS
    /// upstreams of the harness present).
    pub fn trusting(pki: &TestPki) -> BrowserOptions {
        BrowserOptions {
            trusted_spki: spki_hashes(&pki.cert_pem),
            ..BrowserOptions::default()
        }
    }
}

/// A WebDriver error response (or a transport failure, as `error` =
/// `"transport"`).
#[derive(Clone, Debug)]
pub struct WebDriverError {
    /// HTTP status of the response (0 for transport failures).
    pub status: u16,
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.error, self.status, self.message)
    }
}

/// One chromedriver and one WebDriver session with a headless Chromium.
pub struct Browser {
    driver: Child,
    driver_port: u16,
    session: String,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    base: String,
    /// Holds `profile/` (Chromium's `--user-data-dir`), `home/` and
    /// `chromedriver.log`; removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Browser {
    /// A browser that verifies certificates against the system roots only
    /// (plain-HTTP pages, or pages whose errors a test wants to see).
    /// Panics with a clear message if chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        Browser::start_with(BrowserOptions::default()).await
    }

    /// A browser that accepts `pki`'s leaf certificate: the usual choice for
    /// `https://localhost:PORT/` pages of a gateway or TLS upstream.
    pub async fn start_trusting(pki: &TestPki) -> Browser {
        Browser::start_with(BrowserOptions::trusting(pki)).await
    }

    pub async fn start_with(options: BrowserOptions) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: browser tests need Debian's `chromium` and `chromium-driver` \
                 packages (`apt-get install -y {package}`; scripts/test installs them)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-browser-")
            .tempdir()
            .expect("temp dir for the browser");
        let profile = dir.path().join("profile");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let log_path = dir.path().join("chromedriver.log");

        let driver_port = super::free_port();
        let output = std::fs::File::create(dir.path().join("chromedriver.out")).unwrap();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log_path.display()))
            // Chromium inherits this environment: keep it out of the real
            // home (NSS DB, caches) and away from any desktop session.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            // Its own process group, so Chromium's processes are easy to
            // tell apart from the test's.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("build reqwest client for chromedriver");
        let driver_url = format!("http://127.0.0.1:{driver_port}");

        // Wait until chromedriver says it is ready.
        let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!(
                    "chromedriver exited at startup ({status}); its log:\n{}",
                    tail_of(dir.path())
                );
            }
            let ready = async {
                let resp = http.get(format!("{driver_url}/status")).send().await.ok()?;
                let body: Value = resp.json().await.ok()?;
                body["value"]["ready"].as_bool()
            };
            if ready.await == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "chromedriver on port {driver_port} not ready within {DRIVER_READY_TIMEOUT:?}; \
                     its log:\n{}",
                    tail_of(dir.path())
                );
            }
            tokio::time::sleep(POLL).await;
        }

        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--password-store=basic",
            "--no-proxy-server",
            "--window-size=1280,800",
            // Test servers listen on 127.0.0.1 only; never try ::1. (Other
            // names: pass a complete `--host-resolver-rules=...` of your own
            // in `extra_args`; the last one wins.)
            "--host-resolver-rules=MAP localhost 127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        if !options.trusted_spki.is_empty() {
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                options.trusted_spki.join(",")
            ));
        }
        args.extend(options.extra_args.iter().cloned());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": options.ignore_tls_errors,
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": args,
                    },
                }
            }
        });
        let created = send(
            &http,
            Method::POST,
            &format!("{driver_url}/session"),
            Some(capabilities),
        )
        .await;
        let session = match created {
            Ok(value) => value["sessionId"]
                .as_str()
                .expect("new session response has a sessionId")
                .to_string(),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                kill_leftovers(&profile);
                panic!(
                    "chromedriver could not start Chromium: {e}\nchromedriver log:\n{}",
                    tail_of(dir.path())
                );
            }
        };
        let browser = Browser {
            driver,
            driver_port,
            base: format!("{driver_url}/session/{session}"),
            session,
            http,
            dir,
        };
        browser
            .call(
                Method::POST,
                "/timeouts",
                json!({"implicit": 0, "pageLoad": PAGE_LOAD_TIMEOUT_MS, "script": 10_000}),
            )
            .await;
        browser
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        string(self.call(Method::GET, "/url", Value::Null).await)
    }

    pub async fn title(&self) -> String {
        string(self.call(Method::GET, "/title", Value::Null).await)
    }

    /// The current DOM serialised as HTML (not the bytes the server sent).
    pub async fn page_source(&self) -> String {
        string(self.call(Method::GET, "/source", Value::Null).await)
    }

    /// `document.body.innerText` (empty when there is no body).
    pub async fn body_text(&self) -> String {
        let script = "return document.body ? document.body.innerText : '';";
        string(self.execute(script, Vec::new()).await)
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let path = format!("/element/{element}/text");
        string(self.call(Method::GET, &path, Value::Null).await)
    }

    /// Clears the element found by `css` and types `value` into it.
    pub async fn fill(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        )
        .await;
        let path = format!("/element/{element}/value");
        self.call(Method::POST, &path, json!({ "text": value }))
            .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let path = format!("/element/{element}/click");
        self.call(Method::POST, &path, json!({})).await;
    }

    /// Clicks `css_button`, then waits (at most 10 s, else panics) until a
    /// new document has loaded completely or the URL changed: a form POST,
    /// a redirect after it, or a script navigation.
    pub async fn submit_and_wait(&self, css_button: &str) {
        let before = self.current_url().await;
        // A marker on the old document's window: gone once a new one loaded.
        static MARKERS: AtomicU64 = AtomicU64::new(0);
        let marker = format!("{}-{}", std::process::id(), MARKERS.fetch_add(1, Relaxed));
        self.execute(
            "window.__portcullisMarker = arguments[0];",
            vec![json!(marker)],
        )
        .await;
        self.click(css_button).await;
        let probe = "return [document.readyState, location.href, \
                     window.__portcullisMarker === arguments[0]];";
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        loop {
            // Scripts may fail while the old page unloads: just poll again.
            let body = json!({ "script": probe, "args": [marker] });
            if let Ok(state) = self.command(Method::POST, "/execute/sync", body).await {
                let complete = state[0] == "complete";
                let new_document = state[2] == false;
                let moved = state[1].as_str() != Some(before.as_str());
                if complete && (new_document || moved) {
                    return;
                }
            }
            if Instant::now() > deadline {
                self.fail(
                    &format!("clicked {css_button:?} on {before}"),
                    &format!("no new page within {SUBMIT_TIMEOUT:?}"),
                )
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every cookie visible to the current page (HttpOnly ones included), as
    /// WebDriver cookie objects: `name`, `value`, `path`, `domain`, `secure`,
    /// `httpOnly`, `sameSite`, optionally `expiry`.
    pub async fn cookies(&self) -> Vec<Value> {
        match self.call(Method::GET, "/cookie", Value::Null).await {
            Value::Array(cookies) => cookies,
            other => panic!("cookie list is not an array: {other}"),
        }
    }

    pub async fn cookie(&self, name: &str) -> Option<Value> {
        self.cookies()
            .await
            .into_iter()
            .find(|cookie| cookie["name"] == name)
    }

    /// Deletes the cookies visible to the current page.
    pub async fn delete_cookies(&self) {
        self.call(Method::DELETE, "/cookie", Value::Null).await;
    }

    /// Runs `script` (a function body: `return ...;`, `arguments[i]`) in the
    /// page and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({ "script": script, "args": args });
        self.call(Method::POST, "/execute/sync", body).await
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        let encoded = string(self.call(Method::GET, "/screenshot", Value::Null).await);
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("screenshot is base64")
    }

    /// Saves the page as `target/screenshots/NAME.png`; the pictures under
    /// docs/screenshots/ are copies of these, taken by the tests that check
    /// the pages.
    pub async fn save_screenshot(&self, name: &str) {
        let png = self.screenshot_png().await;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot");
    }

    /// Waits until an element matches `css`; `false` after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let body = json!({ "using": "css selector", "value": css });
            // Errors (e.g. mid-navigation) count as "not yet".
            if let Ok(Value::Array(found)) = self.command(Method::POST, "/elements", body).await {
                if !found.is_empty() {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Any WebDriver command of this session, errors returned: `path` is
    /// relative to `/session/ID` (e.g. `/back`), `body` is the JSON body
    /// (`Value::Null` sends none). Returns the response's `value`.
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Value, WebDriverError> {
        let body = (!body.is_null()).then_some(body);
        send(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// The WebDriver session id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// Chromium's `--user-data-dir`; every Chromium process of this browser
    /// names it on its command line.
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Processes (other than this one) whose command line names
    /// `profile_dir`: after the `Browser` is dropped there must be none.
    pub fn leftovers(profile_dir: &Path) -> Vec<u32> {
        processes_mentioning(&profile_dir.display().to_string())
    }

    /// chromedriver's log so far (for diagnosing a failing test).
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// `command`, panicking on errors with the current URL.
    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let what = format!("{method} {path} {body}");
        match self.command(method, path, body).await {
            Ok(value) => value,
            Err(e) => self.fail(&what, &e.to_string()).await,
        }
    }

    async fn find(&self, css: &str) -> String {
        let body = json!({ "using": "css selector", "value": css });
        match self.command(Method::POST, "/element", body).await {
            Ok(element) => string(element[ELEMENT_KEY].clone()),
            Err(e) => {
                self.fail(&format!("find element {css:?}"), &e.to_string())
                    .await
            }
        }
    }

    async fn fail(&self, what: &str, error: &str) -> ! {
        let url = match self.command(Method::GET, "/url", Value::Null).await {
            Ok(Value::String(url)) => url,
            Ok(other) => other.to_string(),
            Err(e) => format!("<unknown: {e}>"),
        };
        panic!("WebDriver: {what}: {error}\n  current URL: {url}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Deleting the session makes chromedriver quit Chromium. Drop cannot
        // await, so these two requests go over a blocking socket.
        let session_path = format!("/session/{}", self.session);
        blocking_request(self.driver_port, "DELETE", &session_path);
        blocking_request(self.driver_port, "GET", "/shutdown");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                break;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        kill_leftovers(&self.profile_dir());
    }
}

/// Kills (by pid) whatever still names `profile` on its command line: a
/// Chromium that outlived its chromedriver.
fn kill_leftovers(profile: &Path) {
    for _ in 0..50 {
        let left = Browser::leftovers(profile);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(POLL);
    }
}

/// base64 SHA-256 of the SubjectPublicKeyInfo of each certificate in `pem`,
/// the format of Chromium's `--ignore-certificate-errors-spki-list`.
pub fn spki_hashes(pem: &str) -> Vec<String> {
    let sha256 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|cert| {
            let cert = cert.expect("certificate PEM");
            let spki =
                subject_public_key_info(&cert).expect("certificate DER has a SubjectPublicKeyInfo");
            base64::engine::general_purpose::STANDARD.encode(sha256.hash(spki).as_ref())
        })
        .collect()
}

/// The DER of a certificate's SubjectPublicKeyInfo (tag and length
/// included): the 7th element of tbsCertificate when the explicit version
/// `[0]` is present, the 6th otherwise (RFC 5280 §4.1).
pub fn subject_public_key_info(cert_der: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = der_element(cert_der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_element(certificate)?;
    if tag != 0x30 {
        return None;
    }
    // version [0] (optional), serial, signature, issuer, validity, subject, spki
    let mut elements = Vec::new();
    while !tbs.is_empty() && elements.len() < 7 {
        let (tag, _, rest) = der_element(tbs)?;
        elements.push((tag, &tbs[..tbs.len() - rest.len()]));
        tbs = rest;
    }
    let skip = usize::from(elements.first()?.0 == 0xa0);
    let &(tag, spki) = elements.get(skip + 5)?;
    (tag == 0x30).then_some(spki)
}

/// Splits one DER element off `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, 2 + count)
    };
    let contents = input.get(header..header + len)?;
    Some((tag, contents, &input[header + len..]))
}

/// Pids (other than ours) whose `/proc/PID/cmdline` contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

/// Sends one WebDriver request; the response's `value` or its error.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WebDriverError> {
    let transport = |e: reqwest::Error| WebDriverError {
        status: 0,
        error: "transport".to_string(),
        message: format!("{url}: {e}"),
    };
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(transport)?;
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(WebDriverError {
        status,
        error: value["error"].as_str().unwrap_or("unknown").to_string(),
        message: value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string()),
    })
}

/// One bodiless HTTP/1.1 request to chromedriver over a blocking socket
/// (used from `Drop`); errors are ignored.
fn blocking_request(port: u16, method: &str, path: &str) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return;
    }
    // chromedriver may keep the connection open: read one response (it
    // answers after the command finished), not up to EOF.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !response_complete(&raw) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether `raw` holds a response head and its Content-Length body (a
/// response without Content-Length ends at EOF).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|len| raw.len() >= end + 4 + len)
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("WebDriver answered {other}, not a string"),
    }
}

/// The last part of chromedriver's log and output.
fn tail_of(dir: &Path) -> String {
    let mut text = String::new();
    for name in ["chromedriver.out", "chromedriver.log"] {
        let content = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let start = content.len().saturating_sub(4000);
        let start = (start..content.len())
            .find(|&i| content.is_char_boundary(i))
            .unwrap_or(content.len());
        text.push_str(&format!("--- {name}\n{}\n", &content[start..]));
    }
    text
}
