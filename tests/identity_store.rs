//! The identity store end to end (issue 17): real gateways on a private
//! PostgreSQL cluster (with Redis for the limits) and on SQLite files.
//!
//! * Two instances on one PostgreSQL behave as one: a change made through
//!   either (CLI, login, logout) is seen by the other within a second, and
//!   restarting Redis and both instances brings no ended session back.
//! * One instance on SQLite: sessions survive a restart, logouts stay out.
//! * Seed 000's first-admin flow through the emergency dashboard on both.
//! * Faults: unreachable at start (503 where an account is needed, public
//!   routes served, `/readyz` 503, recovery without restart), lost mid-run,
//!   foreign, corrupt and newer stores refused with a sentence.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE};
use support::config::basic_with;
use support::gateway::stderr_of;
use support::postgres::Postgres;
use support::*;

const KEYS: &str = "identity-test-key-0123456789abcdefghijklmnop";
const EMERGENCY: &str = "identity-emergency-secret-0123456789-abcdef";
const PW: &str = "alice's password 123";

fn alice_toml() -> String {
    static HASH: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| policies::users::hash_password(PW).expect("hash"));
    // `generation` as version 1 wrote it: read and ignored.
    format!(
        "[users.alice]\npassword = \"{}\"\nroles = [\"staff\"]\ngeneration = 4\n",
        HASH.as_str()
    )
}

/// Sessions, `/private` (login), `/admin` (role admin), the emergency gate,
/// and `store` as the `[store]` table's body.
fn config(pki: &TestPki, up: &Upstream, store: &str, extra: &str) -> String {
    let body = format!(
        "{extra}[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         emergency = \"env:PORTCULLIS_EMERGENCY_SECRET\"\n\
         [emergency]\nenabled = true\n\
         [store]\n{store}\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n\
         [[route]]\npath = \"/admin\"\naccess = \"role:admin\"\n"
    );
    let ops = format!("ops = \"127.0.0.1:{}\"", free_port());
    basic_with(pki, &[up.addr()], &ops, &body)
}

fn builder(cfg: &str, db_url: Option<&str>) -> GatewayBuilder {
    let b = GatewayBuilder::new(cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("PORTCULLIS_EMERGENCY_SECRET", EMERGENCY);
    match db_url {
        Some(url) => b.env("PORTCULLIS_DATABASE_URL", url),
        None => b,
    }
}

async fn status(c: &reqwest::Client, gw: &Gateway, path: &str, cookie: Option<&str>) -> u16 {
    let mut req = c.get(gw.url(path)).header(ACCEPT, "application/json");
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.expect("request").status().as_u16()
}

/// Polls until `path` answers `want` for `cookie`; false after 1 s (the
/// store's contract for changes made through any instance).
async fn within_a_second(
    c: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    cookie: &str,
    want: u16,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if status(c, gw, path, Some(cookie)).await == want {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login_status(c: &reqwest::Client, gw: &Gateway, user: &str, pw: &str) -> u16 {
    let form = support::login::login_form(c, &gw.base()).await;
    support::login::post_login(c, &gw.base(), &form, user, pw, "/", None)
        .await
        .status()
        .as_u16()
}

/// Signs in once a change made elsewhere has arrived (within a second).
async fn login_within_a_second(c: &reqwest::Client, gw: &Gateway, user: &str, pw: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(1);
    while login_status(c, gw, user, pw).await != 303 {
        assert!(Instant::now() < deadline, "{user} signs in within 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    login(c, gw, user, pw).await
}

/// Signs in; the `Cookie` header value of the new session.
async fn login(c: &reqwest::Client, gw: &Gateway, user: &str, pw: &str) -> String {
    support::login::login(c, &gw.base(), user, pw).await
}

async fn readyz(gw: &Gateway) -> u16 {
    reqwest::get(gw.ops_url("/readyz"))
        .await
        .expect("ops")
        .status()
        .as_u16()
}

/// Waits until `/readyz` says the store is open (what a load balancer
/// waits for before sending traffic).
async fn until_ready(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(gw).await != 200 {
        assert!(Instant::now() < deadline, "ready: {}", gw.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PG_STORE: &str = "url = \"env:PORTCULLIS_DATABASE_URL\"";

#[tokio::test]
async fn two_instances_on_one_postgres_behave_as_one() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let pg = Postgres::start();
    let mut redis = RedisServer::start();
    let limits = format!(
        "[rate_limit]\nstore = \"redis\"\nredis = \"{}\"\nlogin = \"100/hour\"\n",
        redis.url()
    );
    let cfg = config(&pki, &up, PG_STORE, &limits);
    let url = pg.url();
    let a = builder(&cfg, Some(&url)).users(&alice_toml()).start();
    let b = builder(&cfg, Some(&url)).start();
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);

    // An account added through A's CLI signs in through B within a second.
    a.user_ok(
        &["add", "carol", "--role", "staff"],
        Some("carol's password 1\n"),
    );
    let carol = login_within_a_second(&cb, &b, "carol", "carol's password 1").await;
    assert_eq!(
        status(&ca, &a, "/private", Some(&carol)).await,
        200,
        "B's session on A"
    );

    // passwd on A ends carol's sessions on B within a second.
    a.user_ok(&["passwd", "carol"], Some("carol's password 2\n"));
    assert!(within_a_second(&cb, &b, "/private", &carol, 401).await);
    let before_passwd = carol;
    let carol = login_within_a_second(&ca, &a, "carol", "carol's password 2").await;

    // disable on B: A refuses the sign-in and ends the session.
    b.user_ok(&["disable", "carol"], None);
    assert!(within_a_second(&ca, &a, "/private", &carol, 401).await);
    let deadline = Instant::now() + Duration::from_secs(1);
    while login_status(&ca, &a, "carol", "carol's password 2").await != 401 {
        assert!(
            Instant::now() < deadline,
            "A refuses the sign-in within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.user_ok(&["enable", "carol"], None);

    // A promotion through A's CLI reaches a live session on B.
    let alice = login(&ca, &a, "alice", PW).await;
    assert_eq!(status(&cb, &b, "/admin", Some(&alice)).await, 403);
    a.user_ok(&["roles", "alice", "staff", "admin"], None);
    assert!(within_a_second(&cb, &b, "/admin", &alice, 200).await);

    // Logout on A is 401 on B.
    let ended = login(&cb, &b, "alice", PW).await;
    assert_eq!(status(&ca, &a, "/private", Some(&ended)).await, 200);
    support::login::logout(&ca, &a.base(), &ended).await;
    assert!(within_a_second(&cb, &b, "/private", &ended, 401).await);

    // Redis and both instances restart: nothing ended comes back, the live
    // session (alice's first) goes on.
    let (cfg_a, cfg_b) = (
        std::fs::read_to_string(a.config_path()).expect("config"),
        std::fs::read_to_string(b.config_path()).expect("config"),
    );
    drop((a, b));
    redis.stop();
    redis.restart();
    let a = builder(&cfg_a, Some(&url)).start();
    let b = builder(&cfg_b, Some(&url)).start();
    // Until its first read of the store an instance answers 503 where an
    // account is needed (fail closed); a load balancer waits for /readyz,
    // and so do these checks (a CI run once saw the 503).
    until_ready(&a).await;
    until_ready(&b).await;
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);
    for gw_c in [(&a, &ca), (&b, &cb)] {
        let (gw, c) = gw_c;
        assert_eq!(
            status(c, gw, "/private", Some(&ended)).await,
            401,
            "logged out"
        );
        assert_eq!(
            status(c, gw, "/private", Some(&carol)).await,
            401,
            "disabled"
        );
        assert_eq!(
            status(c, gw, "/private", Some(&before_passwd)).await,
            401,
            "password changed"
        );
        assert_eq!(status(c, gw, "/admin", Some(&alice)).await, 200, "live");
    }
}

#[tokio::test]
async fn sqlite_sessions_survive_a_restart_and_logouts_stay_out() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let dir = tempfile::tempdir().expect("dir");
    let store = format!(
        "url = \"sqlite:{}\"",
        dir.path().join("identity.db").display()
    );
    let cfg = config(&pki, &up, &store, "");
    let gw = builder(&cfg, None).users(&alice_toml()).start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    // An imported account signs in with the password it had.
    let kept = login(&c, &gw, "alice", PW).await;
    let ended = login(&c, &gw, "alice", PW).await;
    support::login::logout(&c, &gw.base(), &ended).await;
    assert_eq!(status(&c, &gw, "/private", Some(&ended)).await, 401);
    let cfg = std::fs::read_to_string(gw.config_path()).expect("config");
    drop(gw);

    let gw = builder(&cfg, None).start();
    until_ready(&gw).await;
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(
        status(&c, &gw, "/private", Some(&kept)).await,
        200,
        "survives"
    );
    assert_eq!(
        status(&c, &gw, "/private", Some(&ended)).await,
        401,
        "stays out"
    );
    gw.user_ok(&["passwd", "alice"], Some("a new password 123\n"));
    assert!(within_a_second(&c, &gw, "/private", &kept, 401).await);
    let cfg = std::fs::read_to_string(gw.config_path()).expect("config");
    drop(gw);
    let gw = builder(&cfg, None).start();
    until_ready(&gw).await;
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(status(&c, &gw, "/private", Some(&kept)).await, 401);
    assert_eq!(
        login_status(&c, &gw, "alice", PW).await,
        401,
        "the old password"
    );
    assert_eq!(
        login_status(&c, &gw, "alice", "a new password 123").await,
        303
    );
}

/// Seed 000: the first admin through the emergency dashboard, then a
/// normal sign-in and `/admin`; on the given store.
async fn first_admin_through_the_emergency_gate(store: &str, db_url: Option<&str>) {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = builder(&config(&pki, &up, store, ""), db_url).start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let listing = gw.user_ok(&["list"], None);
    assert_eq!(
        listing.trim(),
        "NAME\tROLES\tSTATE\tEMAIL\tLINKED",
        "no accounts yet"
    );
    let grant = support::login::emergency_grant(&c, &gw.base(), EMERGENCY).await;
    let resp = support::login::emergency_action(
        &c,
        &gw.base(),
        &grant,
        "create-user",
        &[
            ("username", "root@example.com"),
            ("password", "a brand new admin password"),
            ("roles", "admin"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.expect("html");
    assert!(
        page.contains("User created.") && page.contains("root@example.com"),
        "{page}"
    );
    let root = login(&c, &gw, "root@example.com", "a brand new admin password").await;
    assert_eq!(status(&c, &gw, "/admin", Some(&root)).await, 200);
    assert!(gw
        .user_ok(&["list"], None)
        .contains("root@example.com\tadmin\tactive"));
}

#[tokio::test]
async fn seed_000_first_admin_on_sqlite() {
    first_admin_through_the_emergency_gate("url = \"sqlite:identity.db\"", None).await;
}

#[tokio::test]
async fn seed_000_first_admin_on_postgres() {
    let pg = Postgres::start();
    first_admin_through_the_emergency_gate(PG_STORE, Some(&pg.url())).await;
}

/// PostgreSQL down at start: `run` serves public routes and retries; what
/// needs an account is 503 (never an anonymous pass), `/readyz` is 503;
/// when it comes up everything works without a restart. Then lost mid-run:
/// the same, and back again.
#[tokio::test]
async fn an_unreachable_store_is_retried_and_never_signs_anyone_in() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let pg = Postgres::start();
    let url = pg.url();
    // One account, made while the database is up.
    let seed = builder(&config(&pki, &up, PG_STORE, ""), Some(&url))
        .users(&alice_toml())
        .start();
    drop(seed);
    pg.stop();

    let gw = builder(&config(&pki, &up, PG_STORE, ""), Some(&url)).start();
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert!(gw.wait_for_log(
        "identity store unreachable at start",
        Duration::from_secs(5)
    ));
    assert!(
        !gw.stderr().contains(support::postgres::PASSWORD),
        "no password in logs"
    );
    assert_eq!(
        status(&c, &gw, "/public", None).await,
        200,
        "public routes work"
    );
    assert_eq!(readyz(&gw).await, 503);
    assert_eq!(login_status(&c, &gw, "alice", PW).await, 503);
    let forged_cookie = "__Host-portcullis=v3|00112233445566778899aabbccddeeff|1|1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        status(&c, &gw, "/private", Some(forged_cookie)).await,
        401,
        "a bad cookie is no session, store or not"
    );

    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&gw).await != 200 {
        assert!(Instant::now() < deadline, "ready once the store answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = login(&c, &gw, "alice", PW).await;
    assert_eq!(status(&c, &gw, "/private", Some(&session)).await, 200);

    // Lost mid-run: within a second the session is 503 (not 200 on stale
    // data, not 401 with the cookie cleared), sign-ins are 503, public
    // routes work; back without a restart.
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let resp = c
            .get(gw.url("/private"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, &session)
            .send()
            .await
            .expect("request");
        if resp.status() == 503 {
            assert!(
                resp.headers().get("set-cookie").is_none(),
                "the cookie is kept for when the store is back"
            );
            break;
        }
        assert_eq!(resp.status(), 200);
        assert!(Instant::now() < deadline, "503 once the cache is stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(login_status(&c, &gw, "alice", PW).await, 503);
    assert_eq!(status(&c, &gw, "/public", None).await, 200);
    assert_eq!(readyz(&gw).await, 503);
    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&c, &gw, "/private", Some(&session)).await != 200 {
        assert!(Instant::now() < deadline, "the session works again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.wait_for_log("identity store reachable again", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    let mut gw = gw;
    assert!(gw.try_wait().is_none(), "never restarted");
}

/// What `run`, `check --online` and `user` say about a store they must not
/// use: one sentence naming the file and what is wrong, exit 1, and the
/// file left as it was.
#[test]
fn foreign_corrupt_and_newer_stores_are_refused_with_a_sentence() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("identity.db");
    let cfg_path = dir.path().join("portcullis.toml");
    let store = format!("url = \"sqlite:{}\"", file.display());
    std::fs::write(&cfg_path, config(&pki, &up, &store, "")).expect("config");
    let c = cfg_path.to_str().expect("utf8");
    let env = [
        ("PORTCULLIS_SESSION_KEYS", KEYS),
        ("PORTCULLIS_EMERGENCY_SECRET", EMERGENCY),
    ];
    let refused = |says: &str| {
        let before = std::fs::read(&file).expect("file");
        for args in [
            vec!["check", "--online", "-c", c],
            vec!["user", "list", "-c", c],
        ] {
            let out = run_cli(&args, &env, None);
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains(&file.display().to_string()) && err.contains(says),
                "{args:?}: {err}"
            );
        }
        let run = run_cli_timeout_run(c, &env);
        assert!(run.contains(says), "run: {run}");
        assert_eq!(std::fs::read(&file).expect("file"), before, "untouched");
    };

    std::fs::write(
        &file,
        "this is not a database, it is a text file\n".repeat(200),
    )
    .expect("write");
    refused("not a SQLite database");

    std::fs::remove_file(&file).expect("rm");
    sqlite(
        &file,
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);",
    );
    refused("not a portcullis identity store");

    std::fs::remove_file(&file).expect("rm");
    let out = run_cli(&["user", "list", "-c", c], &env, None);
    assert!(out.status.success(), "a fresh store: {}", stderr_of(&out));
    sqlite(
        &file,
        "INSERT INTO portcullis_schema (version) VALUES (99);",
    );
    refused("written by a newer portcullis (schema 99");

    // check --online on a good store reports its version.
    std::fs::remove_file(&file).expect("rm");
    let fresh = run_cli(&["check", "--online", "-c", c], &env, None);
    assert!(fresh.status.success(), "{}", stderr_of(&fresh));
    assert!(
        support::gateway::stdout_of(&fresh).contains("not created yet"),
        "check writes nothing"
    );
    assert!(!file.exists());
    run_cli(&["user", "list", "-c", c], &env, None);
    let ok = run_cli(&["check", "--online", "-c", c], &env, None);
    let out = support::gateway::stdout_of(&ok);
    assert!(
        out.contains(&format!("schema version {}", identity::schema::LATEST)),
        "{out}"
    );
}

/// `portcullis run` on a refused store: exits 1 with the sentence.
fn run_cli_timeout_run(config: &str, env: &[(&str, &str)]) -> String {
    let out = run_cli(&["run", "-c", config], env, None);
    assert_eq!(out.status.code(), Some(1), "run must refuse, not serve");
    stderr_of(&out)
}

/// Runs SQL on a SQLite file with Python's sqlite3: a writer that is not
/// portcullis, as a foreign program or an old backup would be.
fn sqlite(file: &Path, sql: &str) {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
        .arg(file)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
