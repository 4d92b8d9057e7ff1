//! Fault injection against real processes (issue #10): an upstream killed
//! and restarted on its port, Redis killed and restarted under both
//! `on_store_error` settings (the login-limiter path; `ratelimit_redis.rs`
//! covers route limits), certificate files replaced with garbage then
//! `SIGHUP`, and the identity store on a full disk (a small tmpfs). Each
//! fault must give a clear error (status and a log line naming what
//! failed), no crash, no lost data, and recovery without a restart. The
//! identity store's own faults (unreachable, lost mid-run, foreign or newer
//! files) are in `identity_store.rs`.
//!
//! The tmpfs tests need `mount` (root, or CAP_SYS_ADMIN); without it they
//! say so and pass.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE};
use sha2::{Digest, Sha256};
use support::config::{basic, basic_with};
use support::gateway::{stderr_of, stdout_of};
use support::login::set_cookie;
use support::*;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

const KEYS: &str = "faults-test-key-0123456789abcdefghijklmnopqrstuvwxyz";
const EMERGENCY: &str = "faults-emergency-secret-0123456789-abcdefghij";
const PW: &str = "correct horse battery staple";
const BOB_PW: &str = "bob's password 12345";

/// One users-file entry (imported into a gateway's store); the hash is made
/// once per password for the whole binary (argon2id is slow).
fn user_toml(name: &str, pw: &str, roles: &str) -> String {
    static HASHES: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let hash = {
        let mut known = HASHES.lock().expect("hashes");
        match known.iter().find(|(p, _)| p == pw) {
            Some((_, h)) => h.clone(),
            None => {
                let h = policies::users::hash_password(pw).expect("hash");
                known.push((pw.to_string(), h.clone()));
                h
            }
        }
    };
    format!("[users.{name}]\npassword = \"{hash}\"\nroles = [{roles}]\n")
}

async fn get_json(c: &reqwest::Client, url: String, cookie: Option<&str>) -> reqwest::Response {
    let mut req = c
        .get(url)
        .header(ACCEPT, "application/json")
        .timeout(Duration::from_secs(10));
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.expect("an answer, not a hang")
}

async fn status(c: &reqwest::Client, url: String, cookie: Option<&str>) -> u16 {
    get_json(c, url, cookie).await.status().as_u16()
}

/// A gateway error body: `{"error": "...", "status": N}` and a request id.
async fn assert_error_body(resp: reqwest::Response, want: u16, must_not_contain: &[&str]) {
    assert_eq!(resp.status().as_u16(), want);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.text().await.expect("body");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["status"], want, "{body}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    for s in must_not_contain {
        assert!(!body.contains(s), "{s:?} leaked: {body}");
    }
}

/// A login (form + POST) answering `want`; the session cookie on success.
async fn try_login(
    c: &reqwest::Client,
    gw: &Gateway,
    user: &str,
    pw: &str,
    want: u16,
) -> Option<String> {
    let form = support::login::login_form(c, &gw.base()).await;
    let resp = support::login::post_login(c, &gw.base(), &form, user, pw, "/", None).await;
    assert_eq!(resp.status().as_u16(), want, "login as {user}");
    set_cookie(&resp, "__Host-portcullis").map(|v| format!("__Host-portcullis={v}"))
}

// ---------------------------------------------------------------- upstream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_and_restarted_on_the_same_port() {
    let pki = TestPki::new();
    let up = Upstream::start();
    let port = up.port();
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(status(&c, gw.url("/before"), None).await, 200);

    // A request in flight when the app dies gets a 502, not a hang.
    let slow = {
        let (c, url) = (c.clone(), gw.url("/slow?ms=4000"));
        tokio::spawn(async move { get_json(&c, url, None).await })
    };
    assert!(
        wait_until(Duration::from_secs(5), || up.hits() >= 2),
        "the slow request reached the app"
    );
    drop(up); // closes the listener and every connection, like a crash
    let started = Instant::now();
    let in_flight = slow.await.expect("task");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    assert_error_body(in_flight, 502, &[&port.to_string(), "127.0.0.1"]).await;

    // While it is down: the documented 502 every time, the gateway's own
    // endpoints unaffected.
    for i in 0..5 {
        let resp = get_json(&c, gw.url(&format!("/down/{i}")), None).await;
        assert_error_body(resp, 502, &[&port.to_string(), "127.0.0.1"]).await;
    }
    assert_eq!(
        status(&c, gw.url("/.portcullis/health"), None).await,
        200,
        "the gateway itself serves"
    );
    assert!(
        gw.wait_for_log("request failed", Duration::from_secs(5)),
        "a log line says why"
    );
    assert!(
        gw.stderr().contains("ConnectRefused") || gw.stderr().contains("onnection refused"),
        "the log line names the failure: {}",
        gw.stderr()
    );
    let logged_502 = gw
        .log_lines()
        .into_iter()
        .filter(|l| l["status"] == 502 && l["upstream"] == "app")
        .count();
    assert!(
        logged_502 >= 6,
        "access log: status 502, upstream app ({logged_502})"
    );

    // Back on the same port: the very next request is served, no restart.
    let up = Upstream::start_on(port);
    assert_eq!(status(&c, gw.url("/after"), None).await, 200);
    let mut ws = websocket_tls(gw.https_port, &pki.ca_pem, "/ws").await;
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text("back"))
        .await
        .expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("message");
    assert_eq!(echo.into_text().expect("text").as_str(), "back");
    assert!(up.hits() >= 2);
    let mut gw = gw;
    assert!(gw.try_wait().is_none(), "never restarted");
}

// ------------------------------------------------------------------- redis

/// A gateway with its login limiter in Redis; instances given the same
/// `store` share one identity store (a SQLite file both open, as two
/// processes on one machine may), the first one importing Alice.
fn redis_session_gateway(
    pki: &TestPki,
    up: &Upstream,
    redis: &RedisServer,
    on_error: &str,
    store: &Path,
) -> Gateway {
    let extra = format!(
        "[rate_limit]\nstore = \"redis\"\nredis = \"{}\"\non_store_error = \"{on_error}\"\n\
         default = \"off\"\nlogin = \"5/hour\"\n\
         [secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         [store]\nurl = \"sqlite:{}\"\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n\
         [[route]]\npath = \"/limited\"\nrate_limit = \"100000/minute\"\n",
        redis.url(),
        store.display()
    );
    let b = GatewayBuilder::new(&basic_with(pki, &[up.addr()], "", &extra))
        .env("PORTCULLIS_SESSION_KEYS", KEYS);
    let b = if store.exists() {
        b
    } else {
        b.users(&user_toml("alice", PW, "\"staff\""))
    };
    b.start()
}

/// `allow`: during the outage sessions keep working (they never needed
/// Redis: they are records in the identity store), a logout ends the
/// session on both instances at once, logins work uncounted; afterwards the
/// login limiter counts in Redis again.
#[tokio::test]
async fn redis_outage_with_allow_keeps_sessions_and_loses_no_logout() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("identity.db");
    let a = redis_session_gateway(&pki, &up, &redis, "allow", &store);
    let b = redis_session_gateway(&pki, &up, &redis, "allow", &store);
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);
    let kept = try_login(&ca, &a, "alice", PW, 303).await.expect("cookie");
    let ended = try_login(&ca, &a, "alice", PW, 303).await.expect("cookie");
    assert_eq!(status(&cb, b.url("/private"), Some(&ended)).await, 200);

    redis.stop();
    assert_eq!(
        status(&ca, a.url("/private"), Some(&kept)).await,
        200,
        "allow: sessions still work"
    );
    // A logout during the outage: both instances honour it within a second.
    support::login::logout(&ca, &a.base(), &ended).await;
    assert_eq!(status(&ca, a.url("/private"), Some(&ended)).await, 401);
    let deadline = Instant::now() + Duration::from_secs(1);
    while status(&cb, b.url("/private"), Some(&ended)).await != 401 {
        assert!(Instant::now() < deadline, "the logout reaches B within 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A login during the outage works (uncounted: on_store_error = allow);
    // its limiter is what notices the outage.
    assert!(try_login(&ca, &a, "alice", PW, 303).await.is_some());
    assert!(a.wait_for_log("shared store unreachable", Duration::from_secs(5)));
    assert!(
        a.stderr().contains("on_store_error") && a.stderr().contains("allow"),
        "{}",
        a.stderr()
    );

    redis.restart();
    assert_eq!(status(&cb, b.url("/private"), Some(&ended)).await, 401);
    assert_eq!(status(&cb, b.url("/private"), Some(&kept)).await, 200);
    // Sessions no longer touch Redis: a rate-limited route's requests are
    // what makes each instance use it again (B's connection from before the
    // restart fails once, which counts as an outage of its own), until
    // every outage it logged has ended.
    for (c, gw) in [(&ca, &a), (&cb, &b)] {
        let back = async {
            for i in 0..100 {
                status(c, gw.url("/limited"), None).await;
                let log = gw.stderr();
                let (down, up) = (
                    log.matches("shared store unreachable").count(),
                    log.matches("shared store reachable again").count(),
                );
                if i >= 3 && down == up {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(back.await, "{}", gw.stderr());
    }
    assert!(a.stderr().contains("shared store reachable again"));

    // The login limiter counts in Redis again: 5/hour per name over both.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (c, gw) = if i % 2 == 0 { (&ca, &a) } else { (&cb, &b) };
        let form = support::login::login_form(c, &gw.base()).await;
        let resp =
            support::login::post_login(c, &gw.base(), &form, "alice", "wrong", "/", None).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let (mut a, mut b) = (a, b);
    assert!(a.try_wait().is_none() && b.try_wait().is_none());
}

/// `deny`: while Redis is down every login attempt gets a prompt 503 (no
/// password is checked uncounted); sessions (records in the identity store)
/// and pages without one are unaffected; all recovers without a restart.
#[tokio::test]
async fn redis_outage_with_deny_refuses_sessions_and_logins_then_recovers() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let gw = redis_session_gateway(&pki, &up, &redis, "deny", &dir.path().join("identity.db"));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let cookie = try_login(&c, &gw, "alice", PW, 303).await.expect("cookie");
    assert_eq!(status(&c, gw.url("/private"), Some(&cookie)).await, 200);

    redis.stop();
    assert_eq!(
        status(&c, gw.url("/private"), Some(&cookie)).await,
        200,
        "sessions do not need Redis"
    );
    for _ in 0..3 {
        let started = Instant::now();
        let form = support::login::login_form(&c, &gw.base()).await;
        let resp = support::login::post_login(&c, &gw.base(), &form, "alice", PW, "/", None).await;
        assert!(started.elapsed() < Duration::from_secs(3), "prompt");
        assert_eq!(
            resp.status(),
            503,
            "login refused: attempts cannot be counted"
        );
        assert!(set_cookie(&resp, "__Host-portcullis").is_none());
    }
    assert_eq!(
        status(&c, gw.url("/public-page"), None).await,
        200,
        "no session, no store needed"
    );
    assert!(gw.wait_for_log("shared store unreachable", Duration::from_secs(5)));
    assert!(gw.stderr().contains("deny"), "{}", gw.stderr());

    redis.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(&c, gw.url("/private"), Some(&cookie)).await,
        200,
        "the old session works again"
    );
    assert!(try_login(&c, &gw, "alice", PW, 303).await.is_some());
    assert!(gw.wait_for_log("shared store reachable again", Duration::from_secs(5)));
    let mut gw = gw;
    assert!(gw.try_wait().is_none());
}

// ------------------------------------------------------------ certificates

/// SHA-256 of the leaf certificate the gateway presents in a new handshake
/// validated against `ca_pem`; `None` when that CA does not verify it.
async fn served_fingerprint(port: u16, ca_pem: &str) -> Option<String> {
    let tls = support::client::tls_connect(port, ca_pem, "localhost", &[b"http/1.1"])
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    Some(hex(&Sha256::digest(leaf.as_ref())))
}

fn fingerprint_of(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM cert");
    hex(&Sha256::digest(der.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn reload_events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.log_lines()
        .into_iter()
        .filter(|l| l["event"] == "config_reload")
        .collect()
}

fn wait_reload(gw: &Gateway, n: usize) -> serde_json::Value {
    assert!(
        wait_until(Duration::from_secs(15), || reload_events(gw).len() >= n),
        "reload #{n} never finished: {}",
        gw.stderr()
    );
    reload_events(gw)[n - 1].clone()
}

#[tokio::test]
async fn certificate_files_replaced_with_garbage_then_sighup() {
    let (old, new, up) = (TestPki::new(), TestPki::new(), Upstream::start());
    let builder = GatewayBuilder::new("");
    let (cert, key) = (
        builder.dir().join("tls/cert.pem"),
        builder.dir().join("tls/key.pem"),
    );
    let config = basic(&old, &[up.addr()], "")
        .replace(
            &old.cert_path.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &old.key_path.display().to_string(),
            &key.display().to_string(),
        );
    let gw = builder
        .file("tls/cert.pem", &old.cert_pem)
        .file("tls/key.pem", &old.key_pem)
        .config(&config)
        .start();
    let old_fp = fingerprint_of(&old.cert_pem);
    assert_eq!(
        served_fingerprint(gw.https_port, &old.ca_pem).await,
        Some(old_fp.clone())
    );
    let c = https_client(&old.ca_pem, gw.https_port, false);

    // 1. Garbage in the certificate file.
    std::fs::write(&cert, "this is not a certificate\n").expect("write");
    gw.signal("HUP");
    let r = wait_reload(&gw, 1);
    assert_eq!(r["ok"], false, "{r}");
    let err = r["errors"][0].as_str().unwrap_or("");
    assert!(
        err.contains("tls.cert") && err.contains(&cert.display().to_string()),
        "names the key and the file: {err}"
    );
    assert!(gw.stderr().contains("config reload refused"));
    assert_eq!(
        served_fingerprint(gw.https_port, &old.ca_pem).await,
        Some(old_fp.clone()),
        "the old certificate still serves new handshakes"
    );
    assert_eq!(status(&c, gw.url("/x"), None).await, 200);

    // 2. A valid certificate with a key that is not its own (a half-done copy).
    std::fs::write(&cert, &new.cert_pem).expect("write");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    gw.signal("HUP");
    let r = wait_reload(&gw, 2);
    assert_eq!(r["ok"], false, "{r}");
    let err = r["errors"][0].as_str().unwrap_or("");
    assert!(
        err.contains("tls.key") && err.contains(&key.display().to_string()),
        "{err}"
    );
    std::fs::write(&key, &old.key_pem).expect("write");
    gw.signal("HUP");
    let r = wait_reload(&gw, 3);
    assert_eq!(r["ok"], false, "{r}");
    let err = r["errors"][0].as_str().unwrap_or("");
    assert!(err.contains("private key does not match"), "{err}");
    assert_eq!(
        served_fingerprint(gw.https_port, &old.ca_pem).await,
        Some(old_fp.clone())
    );

    // 3. A valid new pair: served from the next handshake, no restart.
    std::fs::write(&key, &new.key_pem).expect("write");
    gw.signal("HUP");
    let r = wait_reload(&gw, 4);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        served_fingerprint(gw.https_port, &new.ca_pem).await,
        Some(fingerprint_of(&new.cert_pem))
    );
    assert_eq!(served_fingerprint(gw.https_port, &old.ca_pem).await, None);
    let c = https_client(&new.ca_pem, gw.https_port, false);
    assert_eq!(status(&c, gw.url("/x"), None).await, 200);
    let mut gw = gw;
    assert!(gw.try_wait().is_none());
}

// ------------------------------------------------------------ identity store

fn session_config(pki: &TestPki, up: &Upstream, store: &str, emergency: bool) -> String {
    let mut extra = format!(
        "[rate_limit]\ndefault = \"off\"\nlogin = \"100/minute\"\n\
         [secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         emergency = \"env:PORTCULLIS_EMERGENCY_SECRET\"\n\
         [store]\nurl = \"sqlite:{store}\"\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n"
    );
    if emergency {
        extra.push_str("[emergency]\nenabled = true\n");
    }
    basic_with(pki, &[up.addr()], "", &extra)
}

/// `portcullis user add NAME --role staff -c CONFIG`, password on stdin.
fn user_add(gw: &Gateway, name: &str, pw: &str) -> std::process::Output {
    gw.user(&["add", name, "--role", "staff"], Some(&format!("{pw}\n")))
}

// ------------------------------------------------------------ storage full

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None` (with a message) when this process may not mount.
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("dir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({}); run as root to test a full disk",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem: writes a filler file until ENOSPC.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = [0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        path
    }

    fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path().join(sub))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The identity store on a full filesystem: `portcullis user add` and the
/// emergency dashboard's "create user" fail with a clear error, nothing is
/// half-written (each write is one transaction), existing sessions go on,
/// a new sign-in is a 503 (its session record cannot be stored), and once
/// there is room everything works without a restart.
#[tokio::test]
async fn identity_store_on_a_full_disk() {
    let Some(fs) = SmallFs::mount("2m") else {
        return;
    };
    let (pki, up) = (TestPki::new(), Upstream::start());
    let store = fs.path().join("identity.db");
    let gw = GatewayBuilder::new(&session_config(
        &pki,
        &up,
        &store.display().to_string(),
        true,
    ))
    .env("PORTCULLIS_SESSION_KEYS", KEYS)
    .env("PORTCULLIS_EMERGENCY_SECRET", EMERGENCY)
    .users(&user_toml("alice", PW, "\"staff\""))
    .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let cookie = try_login(&c, &gw, "alice", PW, 303).await.expect("cookie");
    assert_eq!(status(&c, gw.url("/private"), Some(&cookie)).await, 200);
    assert!(user_add(&gw, "carol", "carol's password 1")
        .status
        .success());
    let before = gw.user_ok(&["export"], None);
    let filler = fs.fill();

    // `portcullis user add`.
    let out = user_add(&gw, "bob", BOB_PW);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("the disk is full; nothing was written")
            && err.contains(&store.display().to_string()),
        "names the file and the reason: {err}"
    );

    // The emergency dashboard's "create user".
    let emergency = emergency_grant(&c, &gw).await;
    let resp = dashboard_action(
        &c,
        &gw,
        &emergency,
        "create-user",
        &[
            ("username", "dave"),
            ("password", "dave's password 1"),
            ("roles", "admin"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.expect("html");
    assert!(
        page.contains("The identity store could not be written"),
        "{page}"
    );
    assert!(
        gw.wait_for_log(
            "emergency: the identity store could not be updated",
            Duration::from_secs(5)
        ),
        "{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("the disk is full"), "{}", gw.stderr());
    // Reads go on; a sign-in, which writes a session, cannot.
    assert_eq!(status(&c, gw.url("/private"), Some(&cookie)).await, 200);
    assert!(try_login(&c, &gw, "alice", PW, 503).await.is_none());
    assert!(gw.stderr().contains("the session could not be stored"));
    assert_eq!(
        gw.user_ok(&["export"], None),
        before,
        "nothing half-written"
    );

    // Room again: both writers work, the running gateway sees the accounts.
    std::fs::remove_file(filler).expect("rm filler");
    assert!(user_add(&gw, "bob", BOB_PW).status.success());
    let resp = dashboard_action(
        &c,
        &gw,
        &emergency,
        "create-user",
        &[
            ("username", "dave"),
            ("password", "dave's password 1"),
            ("roles", "admin"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(try_login(&c, &gw, "dave", "dave's password 1", 303)
        .await
        .is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(try_login(&c, &gw, "bob", BOB_PW, 303).await.is_some());
    let text = gw.user_ok(&["export"], None);
    for name in ["alice", "carol", "bob", "dave"] {
        assert!(text.contains(&format!("[users.{name}]")), "{name}: {text}");
    }
    let mut gw = gw;
    assert!(gw.try_wait().is_none());
}

async fn emergency_grant(c: &reqwest::Client, gw: &Gateway) -> String {
    support::login::emergency_grant(c, &gw.base(), EMERGENCY).await
}

async fn dashboard_action(
    c: &reqwest::Client,
    gw: &Gateway,
    cookie: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    support::login::emergency_action(c, &gw.base(), cookie, action, fields).await
}

/// `[tls] mode = "self-signed"` keeps its certificate in `storage`. A reload
/// that needs a new one (a name added) on a full disk is refused naming the
/// file and the reason; the stored pair and the served certificate stay as
/// they were; with room again the same reload applies.
#[tokio::test]
async fn tls_storage_on_a_full_disk() {
    let Some(fs) = SmallFs::mount("64k") else {
        return;
    };
    let up = Upstream::start();
    let storage = fs.path().join("state");
    let https = free_port();
    let config = |domains: &str| {
        format!(
            "[server]\nhttps = \"127.0.0.1:{https}\"\nthreads = 1\n\
             [tls]\nmode = \"self-signed\"\nstorage = \"{}\"\ndomains = [{domains}]\n\
             [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
            storage.display(),
            up.addr()
        )
    };
    let gw = Gateway::start(&config("\"localhost\""));
    let cert_file = storage.join("self-signed/cert.pem");
    let stored =
        |name: &str| std::fs::read(storage.join("self-signed").join(name)).expect("stored");
    let (cert0, key0) = (stored("cert.pem"), stored("key.pem"));
    let cert0_pem = String::from_utf8(cert0.clone()).expect("pem");
    let fp0 = fingerprint_of(&cert0_pem);
    // The self-signed certificate is its own CA.
    assert_eq!(
        served_fingerprint(https, &cert0_pem).await,
        Some(fp0.clone())
    );

    let filler = fs.fill();
    gw.reload(&config("\"localhost\", \"faults.test\""));
    let r = wait_reload(&gw, 1);
    assert_eq!(r["ok"], false, "{r}");
    let err = r["errors"][0].as_str().unwrap_or("");
    assert!(
        err.contains("tls.storage")
            && err.contains("No space left on device")
            && err.contains(&storage.join("self-signed").display().to_string()),
        "names the key, the file and the reason: {err}"
    );
    assert!(gw.stderr().contains("config reload refused"));
    assert_eq!(
        (stored("cert.pem"), stored("key.pem")),
        (cert0.clone(), key0),
        "stored pair intact"
    );
    assert_eq!(
        fs.entries("state/self-signed"),
        ["cert.pem", "key.pem"],
        "no temp file left"
    );
    assert_eq!(
        served_fingerprint(https, &cert0_pem).await,
        Some(fp0.clone())
    );
    let c = https_client(&cert0_pem, https, false);
    assert_eq!(
        status(&c, format!("https://localhost:{https}/x"), None).await,
        200
    );

    std::fs::remove_file(filler).expect("rm filler");
    gw.signal("HUP");
    let r = wait_reload(&gw, 2);
    assert_eq!(r["ok"], true, "{r}");
    let cert1 = String::from_utf8(std::fs::read(&cert_file).expect("cert")).expect("pem");
    assert_ne!(
        fingerprint_of(&cert1),
        fp0,
        "a new certificate with the new name"
    );
    assert_eq!(
        served_fingerprint(https, &cert1).await,
        Some(fingerprint_of(&cert1))
    );
    let mut gw = gw;
    assert!(gw.try_wait().is_none());
}

// ------------------------------------------------------------------ memory

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Found by the soak (see docs/soak-and-faults.md): every argon2id
/// verification takes ~19 MiB on a tokio blocking thread, and concurrent
/// failed logins grew the gateway's RSS by about that much apiece, kept after
/// the burst (release build: 8 at once +156 MB, 32 at once +450 MB). Fixed by
/// queueing argon2id work behind one permit per core (`gateway::passwords`)
/// and mimalloc as the allocator, which returns freed memory to the OS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_logins_does_not_grow_memory_without_bound() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = GatewayBuilder::new(&session_config(&pki, &up, "identity.db", false))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("PORTCULLIS_EMERGENCY_SECRET", EMERGENCY)
        .users(&user_toml("alice", PW, "\"staff\""))
        .start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    // One login first: the baseline includes one verification's memory.
    try_login(&c, &gw, "alice", PW, 303).await.expect("cookie");
    let before = rss_kb(gw.pid());
    let mut burst = Vec::new();
    for i in 0..16 {
        let (c, base) = (c.clone(), gw.base());
        burst.push(tokio::spawn(async move {
            let form = support::login::login_form(&c, &base).await;
            let user = if i % 2 == 0 { "alice" } else { "nobody" };
            support::login::post_login(&c, &base, &form, user, "wrong password", "/", None)
                .await
                .status()
                .as_u16()
        }));
    }
    for t in burst {
        assert_eq!(t.await.expect("task"), 401);
    }
    let grown_mb = rss_kb(gw.pid()).saturating_sub(before) / 1024;
    eprintln!("RSS grew by {grown_mb} MB for 16 concurrent logins");
    // 16 verifications at once kept ~300 MB; one per core, well under 100.
    assert!(
        grown_mb < 100,
        "RSS grew by {grown_mb} MB for 16 concurrent logins"
    );
    assert_eq!(status(&c, gw.url("/private"), None).await, 401);
}
