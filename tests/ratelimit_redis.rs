//! `[rate_limit] store = "redis"` against a real `redis-server`: one budget
//! across instances, the same answers as the in-process store, outages that
//! follow `on_store_error` and end by themselves, and logouts and login
//! attempts shared across instances.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE};
use support::config::basic_with;
use support::*;

const KEYS: &str = "rs-test-key-0123456789abcdefghijklmnopqrstuvwxyz";
const PW: &str = "correct horse battery staple";

fn store(redis: &RedisServer, on_error: &str) -> String {
    format!(
        "[rate_limit]\nstore = \"redis\"\nredis = \"env:PORTCULLIS_REDIS_URL\"\non_store_error = \"{on_error}\"\ndefault = \"off\"\n",
    )
    .replace("env:PORTCULLIS_REDIS_URL", &redis.url())
}

/// A gateway on the shared store with `routes`.
fn gateway(
    pki: &TestPki,
    up: &Upstream,
    redis: &RedisServer,
    on_error: &str,
    routes: &str,
) -> Gateway {
    Gateway::start(&basic_with(
        pki,
        &[up.addr()],
        "",
        &format!("{}{routes}", store(redis, on_error)),
    ))
}

async fn status(c: &reqwest::Client, url: String) -> u16 {
    c.get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn two_instances_together_allow_the_configured_rate() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    let routes = "[[route]]\npath = \"/api\"\nrate_limit = \"10/minute\"\n";
    let a = gateway(&pki, &up, &redis, "deny", routes);
    let b = gateway(&pki, &up, &redis, "deny", routes);
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for i in 0..16 {
        let (c, gw) = if i % 2 == 0 { (&ca, &a) } else { (&cb, &b) };
        let resp = c.get(gw.url("/api")).send().await.expect("request");
        statuses.push(resp.status().as_u16());
        remaining.push(header(&resp, "ratelimit"));
    }
    assert_eq!(
        statuses,
        [vec![200; 10], vec![429; 6]].concat(),
        "10 across both, not 10 each"
    );
    assert_eq!(up.hits(), 10);
    // One budget: the remaining count falls across instances, 9 down to 0.
    for (i, rl) in remaining.iter().take(10).enumerate() {
        assert!(
            rl.starts_with(&format!("\"route-1\";r={};t=", 9 - i)),
            "request {}: {rl}",
            i + 1
        );
    }
}

/// `EVALSHA` calls Redis has run so far (INFO commandstats).
async fn script_calls(redis: &RedisServer) -> u64 {
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .expect("info");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The script counts several requests at once (a lease) exactly as many
/// single calls would, and its one-request form is the earlier one.
#[tokio::test]
async fn the_script_counts_leases_against_the_same_budget() {
    use policies::ratelimit::{Grant, Rate, SharedGcra, REDIS_GCRA_SCRIPT};
    let redis = RedisServer::start();
    let client = ::redis::Client::open(redis.url()).expect("url");
    let c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let script = ::redis::Script::new(REDIS_GCRA_SCRIPT);
    let g = SharedGcra::new(Rate::parse("25/minute").unwrap()).unwrap();
    let [interval, burst] = g.args();
    let call = |key: &'static str, want: Option<u32>| {
        let mut inv = script.key(key);
        inv.arg(interval).arg(burst);
        if let Some(w) = want {
            inv.arg(w);
        }
        let mut c = c.clone();
        async move {
            let reply: Vec<i64> = inv.invoke_async(&mut c).await.expect("script");
            g.grant(&reply, want.unwrap_or(1)).expect("a reply")
        }
    };
    let counted = |g: Grant| match g {
        Grant::Counted {
            count, remaining, ..
        } => (count, remaining),
        Grant::Limited { .. } => (0, 0),
    };
    assert_eq!(counted(call("lease", Some(10)).await), (10, 15));
    // More than is left: what fits.
    assert_eq!(counted(call("lease", Some(20)).await), (15, 0));
    // Then nothing, in either form, with the wait for one more.
    for want in [Some(4), Some(1), None] {
        match call("lease", want).await {
            Grant::Limited { retry_after } => assert!(
                retry_after > Duration::from_secs(1) && retry_after <= Duration::from_millis(2400),
                "{retry_after:?}"
            ),
            other => panic!("{want:?}: {other:?}"),
        }
    }
    // The one-request form without ARGV[3] on a fresh key: {1, burst - 1, …}.
    assert_eq!(counted(call("single", None).await), (1, 24));
}

/// Leases spare most round trips for a fast client, and two instances
/// leasing on one key together never allow more than the budget, nor
/// refuse more than one lease each early.
#[tokio::test]
async fn leases_spare_round_trips_and_never_exceed_the_budget() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    // A burst of 640: leases of up to 640 / 32 = 20 requests.
    let routes = "[[route]]\npath = \"/api\"\nrate_limit = \"640/hour\"\n";
    let a = gateway(&pki, &up, &redis, "deny", routes);
    let b = gateway(&pki, &up, &redis, "deny", routes);
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);
    let before = script_calls(&redis).await;
    let total = 800;
    let mut allowed = 0;
    for i in 0..total {
        let (c, gw) = if i % 2 == 0 { (&ca, &a) } else { (&cb, &b) };
        // Near the end one instance may still serve its lease while the
        // other is refused: the budget is what both together allow.
        match status(c, gw.url("/api")).await {
            200 => allowed += 1,
            429 => {}
            other => panic!("request {i}: {other}"),
        }
    }
    let calls = script_calls(&redis).await - before;
    eprintln!("{allowed} of {total} allowed, {calls} script calls");
    assert!(allowed <= 640, "{allowed} allowed: more than the budget");
    assert!(
        allowed >= 640 - 2 * 19,
        "{allowed} allowed: more than a lease each lost"
    );
    assert_eq!(up.hits(), allowed);
    assert!(
        calls < total / 3,
        "{calls} script calls for {total} requests: leases did not spare round trips"
    );
}

#[tokio::test]
async fn five_per_minute_with_retry_after_and_no_escape_by_forwarded_for() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    let routes = "[[route]]\npath = \"/login\"\nmethods = [\"POST\"]\nrate_limit = \"5/minute\"\n\
                  [[route]]\npath = \"/fast\"\nrate_limit = \"1/2s\"\n";
    let gw = gateway(&pki, &up, &redis, "deny", routes);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let resp = c
            .post(gw.url("/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("x-real-ip", format!("198.51.100.{i}"))
            .header(ACCEPT, "application/json")
            .body("user=x")
            .send()
            .await
            .expect("post");
        statuses.push(resp.status().as_u16());
        if i == 5 {
            let retry: u64 = header(&resp, "retry-after").parse().expect("whole seconds");
            assert!((1..=12).contains(&retry), "{retry}");
            assert_eq!(header(&resp, "ratelimit-policy"), "\"route-1\";q=5;w=60");
            assert_eq!(
                header(&resp, "ratelimit"),
                format!("\"route-1\";r=0;t={retry}")
            );
        }
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "spoofed XFF changes nothing"
    );

    // After Retry-After, the next request passes.
    assert_eq!(status(&c, gw.url("/fast")).await, 200);
    let limited = c.get(gw.url("/fast")).send().await.expect("fast");
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").parse().expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(status(&c, gw.url("/fast")).await, 200);
}

#[tokio::test]
async fn outage_with_allow_serves_everything_then_limiting_resumes() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start();
    let routes = "[[route]]\npath = \"/api\"\nrate_limit = \"3/minute\"\n";
    let gw = gateway(&pki, &up, &redis, "allow", routes);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    let mut before = Vec::new();
    for _ in 0..4 {
        before.push(status(&c, gw.url("/api")).await);
    }
    assert_eq!(before, [200, 200, 200, 429]);

    redis.stop();
    // The refusal Redis gave stands until the gateway notices the outage
    // (its keep-alive ping, within about a second, or any other request's
    // call): the client was over its limit (policies::lease). Then
    // `on_store_error` decides.
    assert!(gw.wait_for_log("shared store unreachable", Duration::from_secs(5)));
    let mut during = Vec::new();
    for _ in 0..30 {
        during.push(status(&c, gw.url("/api")).await);
    }
    assert!(
        during.iter().all(|s| *s == 200),
        "allow: served, no 5xx: {during:?}"
    );
    let logged = gw.stderr().matches("shared store unreachable").count();
    assert_eq!(logged, 1, "one log line per outage, not per request");

    redis.restart();
    // Past the circuit's retry delay, the next request reconnects and counts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(status(&c, gw.url("/api")).await);
    }
    assert_eq!(
        after,
        [200, 200, 200, 429],
        "shared limiting resumed (empty Redis)"
    );
    assert!(gw.wait_for_log("shared store reachable again", Duration::from_secs(5)));
}

#[tokio::test]
async fn outage_with_deny_answers_503_promptly_then_recovers() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start();
    let gw = gateway(
        &pki,
        &up,
        &redis,
        "deny",
        "[[route]]\npath = \"/api\"\nrate_limit = \"100/minute\"\n",
    );
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(status(&c, gw.url("/api")).await, 200);
    redis.stop();
    for _ in 0..10 {
        let started = Instant::now();
        let resp = c
            .get(gw.url("/api"))
            .header(ACCEPT, "application/json")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("an answer, not a hang");
        assert_eq!(resp.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!header(&resp, "x-request-id").is_empty());
        let body = resp.text().await.expect("body");
        assert!(
            !body.contains(&redis.port.to_string()),
            "no store address: {body}"
        );
    }
    // Paths without a limit are not affected by the store.
    assert_eq!(status(&c, gw.url("/other")).await, 200);
    assert_eq!(up.hits(), 2, "no denied request reached the app");
    redis.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(&c, gw.url("/api")).await,
        200,
        "recovered without a restart"
    );
}

/// Alice, imported by the first instance into the store both share.
fn users_toml() -> String {
    static HASH: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| policies::users::hash_password(PW).expect("hash"));
    let hash = HASH.as_str();
    format!("[users.alice]\npassword = \"{hash}\"\nroles = [\"staff\"]\n")
}

/// A gateway with its login limits in Redis; instances share keys and one
/// identity store (a SQLite file both open: `identity_store.rs` does the
/// same on PostgreSQL, as separate machines would).
fn session_gateway(pki: &TestPki, up: &Upstream, redis: &RedisServer, db: &Path) -> Gateway {
    let extra = format!(
        "{}login = \"5/hour\"\n[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
         [store]\nurl = \"sqlite:{}\"\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n",
        store(redis, "deny"),
        db.display()
    );
    let b = GatewayBuilder::new(&basic_with(pki, &[up.addr()], "", &extra))
        .env("PORTCULLIS_SESSION_KEYS", KEYS);
    let b = if db.exists() {
        b
    } else {
        b.users(&users_toml())
    };
    b.start()
}

#[tokio::test]
async fn logouts_and_login_attempts_are_shared_across_instances() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("identity.db");
    let a = session_gateway(&pki, &up, &redis, &db);
    let b = session_gateway(&pki, &up, &redis, &db);
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);

    let cookie = support::login::login(&ca, &a.base(), "alice", PW).await;
    let private = |c: &reqwest::Client, gw: &Gateway| {
        c.get(gw.url("/private"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, &cookie)
            .send()
    };
    assert_eq!(
        private(&cb, &b).await.expect("b").status(),
        200,
        "the session works on B"
    );
    support::login::logout(&ca, &a.base(), &cookie).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while private(&cb, &b).await.expect("b").status() != 401 {
        assert!(
            Instant::now() < deadline,
            "a logout on A ends the session on B within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Login attempts on one name: 1 success above + 4 failures across A and
    // B spend the 5/hour budget; the next is refused on either instance
    // before any password is checked.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (c, gw) = if i % 2 == 0 { (&cb, &b) } else { (&ca, &a) };
        let form = support::login::login_form(c, &gw.base()).await;
        let resp =
            support::login::post_login(c, &gw.base(), &form, "alice", "wrong", "/", None).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    let form = support::login::login_form(&ca, &a.base()).await;
    let resp = support::login::post_login(&ca, &a.base(), &form, "alice", PW, "/", None).await;
    assert_eq!(resp.status(), 429, "even the right password waits");
}

#[test]
fn check_online_pings_the_store() {
    let pki = TestPki::new();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = basic_with(&pki, &[dead_addr()], "", &store(&redis, "allow"));
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("write");
    let p = path.to_str().expect("utf8");
    let ok = run_cli(&["check", "-c", p, "--online"], &[], None);
    assert!(ok.status.success(), "{}", support::gateway::stderr_of(&ok));
    let out = support::gateway::stdout_of(&ok);
    assert!(
        out.contains(&format!("shared in Redis at 127.0.0.1:{}", redis.port))
            && out.contains("reachable"),
        "{out}"
    );
    redis.stop();
    let offline = run_cli(&["check", "-c", p], &[], None);
    assert!(
        offline.status.success(),
        "without --online nothing connects"
    );
    let down = run_cli(&["check", "-c", p, "--online"], &[], None);
    assert_eq!(down.status.code(), Some(1));
    let err = support::gateway::stderr_of(&down);
    assert!(
        err.contains("portcullis.toml: rate_limit.redis: cannot reach the store"),
        "{err}"
    );
}
