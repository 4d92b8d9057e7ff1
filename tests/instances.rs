//! Several instances behave as one (SPEC "Several instances"; docs/deployment.md
//! "Running several instances"), each against a real `redis-server` and, where
//! accounts are involved, one PostgreSQL:
//! * the emergency lockout holds on every instance, for the right secret too,
//!   also after the global budget has started to refill;
//! * a Redis connection closed by the server's idle `timeout` or by a restart
//!   costs no request (zero 5xx with `deny`) and loses no logout (`allow`);
//! * a rolling session-key rotation across instances keeps sign-in, forms and
//!   sessions working at every step;
//! * rate-limit counters follow the rule, not its position, and instances
//!   with different policies are reported by `check --online` and the metric.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE};
use support::config::basic_with;
use support::login::emergency_attempt;
use support::postgres::Postgres;
use support::*;

const KEYS: &str = "instances-test-key-0123456789abcdefghijklmnop";
const SECRET: &str = "the-emergency-secret-0123456789-abcdefghij";
const OLD: &str = "old-session-key-0123456789abcdefghijklmnopqr";
const NEW: &str = "new-session-key-0123456789abcdefghijklmnopqr";
const PW: &str = "correct horse battery staple";

fn redis_store(redis: &RedisServer, on_error: &str) -> String {
    format!(
        "[rate_limit]\nstore = \"redis\"\nredis = \"{}\"\non_store_error = \"{on_error}\"\ndefault = \"off\"\n",
        redis.url()
    )
}

/// Sessions, the emergency gate and an ops listener on `redis`; `extra`
/// adds tables and routes.
fn emergency_config(
    pki: &TestPki,
    up: &Upstream,
    redis: &RedisServer,
    on_error: &str,
    extra: &str,
) -> String {
    let server = format!(
        "trusted_proxies = [\"127.0.0.1\"]\nops = \"127.0.0.1:{}\"",
        free_port()
    );
    basic_with(
        pki,
        &[up.addr()],
        &server,
        &format!(
            "{}[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
             emergency = \"env:PORTCULLIS_EMERGENCY_SECRET\"\n\
             [emergency]\nenabled = true\n{extra}",
            redis_store(redis, on_error)
        ),
    )
}

fn start(cfg: &str) -> Gateway {
    GatewayBuilder::new(cfg)
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .env("PORTCULLIS_EMERGENCY_SECRET", SECRET)
        .start()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn an_emergency_lockout_holds_on_every_instance() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    let gws: Vec<Gateway> = (0..3)
        .map(|_| start(&emergency_config(&pki, &up, &redis, "deny", "")))
        .collect();
    let clients: Vec<reqwest::Client> = gws
        .iter()
        .map(|g| https_client(&pki.ca_pem, g.https_port, false))
        .collect();
    // 20 wrong guesses spread over the three instances, four per client IP
    // (under the per-IP 5/15m): the global budget is spent.
    for i in 0..20 {
        let n = i % 3;
        let ip = format!("198.51.100.{}", i / 4 + 1);
        let resp =
            emergency_attempt(&clients[n], &gws[n].base(), "wrong wrong wrong", Some(&ip)).await;
        assert_eq!(resp.status(), 401, "attempt {i} on instance {n}");
    }
    // The 21st locks the gate; every instance then refuses every attempt,
    // the right secret included, for the rest of the same window.
    let first = emergency_attempt(&clients[2], &gws[2].base(), SECRET, Some("203.0.113.1")).await;
    assert_eq!(first.status(), 429);
    let window_end = Instant::now() + Duration::from_secs(retry_after(&first));
    assert!(retry_after(&first) > 890, "{}", retry_after(&first));
    let check_everywhere = |tag: &'static str| {
        let (clients, gws) = (&clients, &gws);
        async move {
            for (n, (c, g)) in clients.iter().zip(gws).enumerate() {
                let ip = format!("203.0.113.{}", 10 + n);
                let resp = emergency_attempt(c, &g.base(), SECRET, Some(&ip)).await;
                assert_eq!(
                    resp.status(),
                    429,
                    "{tag}: the right secret on instance {n}"
                );
                let left = window_end
                    .saturating_duration_since(Instant::now())
                    .as_secs();
                let said = retry_after(&resp);
                assert!(
                    said.abs_diff(left) <= 3,
                    "{tag}: instance {n} waits for the same window ({said} s, {left} s left)"
                );
            }
        }
    };
    check_everywhere("at once").await;
    // A global token comes back every 45 s (20 per 15 minutes): the lockout,
    // not the refilling budget, decides.
    tokio::time::sleep(Duration::from_secs(46)).await;
    check_everywhere("46 s later").await;
    let locks: usize = gws
        .iter()
        .map(|g| {
            g.log_lines()
                .iter()
                .filter(|l| l["event"] == "emergency_lockout")
                .count()
        })
        .sum();
    assert_eq!(locks, 1, "one instance tripped it, once");
}

/// Requests through every gateway until `n` answered; the statuses.
async fn statuses(clients: &[reqwest::Client], gws: &[Gateway], path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % gws.len();
        let resp = clients[k]
            .get(gws[k].url(path))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .expect("request");
        out.push(resp.status().as_u16());
    }
    out
}

#[tokio::test]
async fn an_idle_timeout_or_a_restart_of_redis_costs_no_request() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start_with(&["--timeout", "2"]);
    // Requests to /api are Redis operations (a few at a time: leases).
    let route = "[[route]]\npath = \"/api\"\nrate_limit = \"100000/minute\"\n";
    let gws: Vec<Gateway> = (0..2)
        .map(|_| start(&emergency_config(&pki, &up, &redis, "deny", route)))
        .collect();
    let clients: Vec<reqwest::Client> = gws
        .iter()
        .map(|g| https_client(&pki.ca_pem, g.https_port, false))
        .collect();
    assert_eq!(statuses(&clients, &gws, "/api", 4).await, [200; 4]);
    // Longer than the server's idle timeout.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        statuses(&clients, &gws, "/api", 20).await,
        [200; 20],
        "after idling"
    );

    // Restarted while idle (an empty Redis, as after a crash without
    // persistence): the first requests after it are answered.
    redis.stop();
    redis.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        statuses(&clients, &gws, "/api", 20).await,
        [200; 20],
        "after a restart"
    );

    // Restarted under traffic: 503s while it is down are `deny` doing its
    // job; once it is back, none. Until an instance notices the outage (its
    // keep-alive ping, within about a second) it may still serve requests
    // Redis counted earlier in a lease (policies::lease): after that, none.
    redis.stop();
    for gw in &gws {
        assert!(gw.wait_for_log("shared store unreachable", Duration::from_secs(5)));
    }
    let during = statuses(&clients, &gws, "/api", 6).await;
    assert!(during.iter().all(|s| *s == 503), "{during:?}");
    redis.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        statuses(&clients, &gws, "/api", 20).await,
        [200; 20],
        "once it is back"
    );
}

#[tokio::test]
async fn no_logout_is_lost_when_redis_restarts_with_allow() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut redis = RedisServer::start_with(&["--timeout", "2"]);
    let gws: Vec<Gateway> = (0..2)
        .map(|_| start(&emergency_config(&pki, &up, &redis, "allow", "")))
        .collect();
    let (ca, cb) = (
        https_client(&pki.ca_pem, gws[0].https_port, false),
        https_client(&pki.ca_pem, gws[1].https_port, false),
    );
    let dashboard = |c: &reqwest::Client, g: &Gateway, cookie: &str| {
        c.get(g.url("/.portcullis/emergency/dashboard"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, cookie.to_string())
            .send()
    };
    for round in 0..3 {
        let cookie = support::login::emergency_grant(&ca, &gws[0].base(), SECRET).await;
        // Grants are signed with the emergency secret, so B honours A's.
        assert_eq!(
            dashboard(&cb, &gws[1], &cookie).await.expect("b").status(),
            200
        );
        match round {
            0 => tokio::time::sleep(Duration::from_millis(3500)).await,
            _ => {
                redis.stop();
                redis.restart();
            }
        }
        let out =
            support::login::emergency_action(&ca, &gws[0].base(), &cookie, "logout", &[]).await;
        assert_eq!(out.status(), 303, "round {round}: logout");
        let seen = dashboard(&cb, &gws[1], &cookie).await.expect("b").status();
        assert_ne!(seen, 200, "round {round}: B sees A's logout at once");
    }
}

/// Sessions from a key file (`file:keys`) on one PostgreSQL, `/private`
/// for any signed-in account.
fn rotation_config(pki: &TestPki, up: &Upstream) -> String {
    basic_with(
        pki,
        &[up.addr()],
        "",
        "[rate_limit]\nlogin = \"100/minute\"\n\
         [secrets]\nsession_keys = \"file:keys\"\n\
         [store]\nurl = \"env:PORTCULLIS_DATABASE_URL\"\n\
         [[route]]\npath = \"/private\"\naccess = \"login\"\n",
    )
}

/// Writes `keys` and reloads the same config; waits until the reload is
/// logged.
fn rotate(gw: &Gateway, keys: &str) {
    let before = gw.stderr().matches("config reloaded").count();
    gw.write_file("keys", keys);
    gw.reload(&std::fs::read_to_string(gw.config_path()).expect("config"));
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .stderr()
            .matches("config reloaded")
            .count()
            > before),
        "reloaded: {}",
        gw.stderr()
    );
}

/// A login form fetched from `from`, posted to `to`: the session cookie.
async fn cross_login(pki: &TestPki, from: &Gateway, to: &Gateway) -> String {
    let cf = https_client(&pki.ca_pem, from.https_port, false);
    let ct = https_client(&pki.ca_pem, to.https_port, false);
    let form = support::login::login_form(&cf, &from.base()).await;
    let resp =
        support::login::post_login(&ct, &to.base(), &form, "alice", PW, "/private", None).await;
    assert_eq!(
        resp.status(),
        303,
        "a form from :{} posted to :{}",
        from.https_port,
        to.https_port
    );
    format!(
        "__Host-portcullis={}",
        support::login::set_cookie(&resp, "__Host-portcullis").expect("session")
    )
}

async fn private(pki: &TestPki, gw: &Gateway, cookie: &str) -> u16 {
    https_client(&pki.ca_pem, gw.https_port, false)
        .get(gw.url("/private"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("private")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rolling_session_key_rotation_keeps_everything_working() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let pg = Postgres::start();
    let cfg = rotation_config(&pki, &up);
    let hash = policies::users::hash_password(PW).expect("hash");
    let start = |users: bool| {
        let b = GatewayBuilder::new(&cfg)
            .file("keys", OLD)
            .env("PORTCULLIS_DATABASE_URL", &pg.url());
        let b = if users {
            b.users(&format!("[users.alice]\npassword = \"{hash}\"\n"))
        } else {
            b
        };
        b.start()
    };
    let a = start(true);
    let b = start(false);
    let mut sessions = vec![cross_login(&pki, &a, &b).await];
    // The documented steps, one instance at a time: add NEW as a second
    // key; make it the first (it signs); drop OLD.
    let steps = [
        (&a, format!("{OLD},{NEW}")),
        (&b, format!("{OLD},{NEW}")),
        (&a, format!("{NEW},{OLD}")),
        (&b, format!("{NEW},{OLD}")),
        (&a, NEW.to_string()),
        (&b, NEW.to_string()),
    ];
    for (i, (gw, keys)) in steps.iter().enumerate() {
        rotate(gw, keys);
        // Forms cross instances both ways; sign-in works on each.
        sessions.push(cross_login(&pki, &a, &b).await);
        sessions.push(cross_login(&pki, &b, &a).await);
        // Every session keeps working on both, until OLD is dropped: then
        // those signed with OLD end (the first six, signed before B signed
        // with NEW; docs/deployment.md says to wait a session lifetime).
        let live_from = if i >= 4 { 6 } else { 0 };
        for (k, s) in sessions.iter().enumerate().skip(live_from) {
            assert_eq!(
                private(&pki, &a, s).await,
                200,
                "step {i}: session {k} on A"
            );
            assert_eq!(
                private(&pki, &b, s).await,
                200,
                "step {i}: session {k} on B"
            );
        }
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn counters_follow_the_rule_and_different_policies_are_reported() {
    let (pki, up, redis) = (TestPki::new(), Upstream::start(), RedisServer::start());
    let slow = "[[route]]\npath = \"/a\"\nrate_limit = \"3/minute\"\n";
    let fast = "[[route]]\npath = \"/b\"\nrate_limit = \"1000/minute\"\n";
    let with_ops = |routes: &str| {
        basic_with(
            &pki,
            &[up.addr()],
            &format!("ops = \"127.0.0.1:{}\"", free_port()),
            &format!("{}{routes}", redis_store(&redis, "deny")),
        )
    };
    let a_cfg = with_ops(&format!("{slow}{fast}"));
    let a = Gateway::start(&a_cfg);
    let b = Gateway::start(&with_ops(&format!("{fast}{slow}")));
    let ca = https_client(&pki.ca_pem, a.https_port, false);
    let cb = https_client(&pki.ca_pem, b.https_port, false);
    for _ in 0..3 {
        assert_eq!(ca.get(a.url("/a")).send().await.expect("a").status(), 200);
    }
    // One rule, one budget across instances, wherever it sits in the file.
    assert_eq!(cb.get(b.url("/a")).send().await.expect("b").status(), 429);
    // B's first route is another rule: its own, untouched counter.
    let resp = cb.get(b.url("/b")).send().await.expect("b");
    assert_eq!(resp.status(), 200);
    let rl = resp.headers()["ratelimit"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(rl.starts_with("\"route-1\";r=999;"), "{rl}");

    // The fingerprints differ in the routes (their order): the metric on
    // each instance and `check --online` say so.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(a.ops_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let other = metric(&text, "portcullis_instances{fingerprint=\"other\"}");
        let same = metric(&text, "portcullis_instances{fingerprint=\"same\"}");
        if other == Some(1.0) && same == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instances metric: {other:?} {same:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = run_cli(
        &[
            "check",
            "-c",
            a.config_path().to_str().expect("utf8"),
            "--online",
        ],
        &[],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        support::gateway::stderr_of(&out)
    );
    let text = support::gateway::stdout_of(&out);
    assert!(
        text.contains("instances: 2 live on this Redis, 1 with another policy than this file"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" pid ")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&b.pid().to_string()) && l.ends_with("DIFFERS in routes")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&a.pid().to_string()) && l.ends_with("same policy as this file")),
        "{text}"
    );
    assert!(
        a.wait_for_log("runs a different policy", Duration::from_secs(5)),
        "logged: {}",
        a.stderr()
    );
    // Listener ports differ by design and are not part of the fingerprint:
    // a third instance with A's routes on other ports is "same".
    let c = Gateway::start(&with_ops(&format!("{slow}{fast}")));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(c.ops_url("/metrics"))
            .await
            .expect("m")
            .text()
            .await
            .expect("t");
        if metric(&text, "portcullis_instances{fingerprint=\"same\"}") == Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
