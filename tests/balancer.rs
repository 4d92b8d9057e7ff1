//! Several gateways behind a real HAProxy (round robin, health checks on
//! `/readyz`) on one PostgreSQL, with Debian's Pebble whose validation
//! traffic goes through the balancer (docs/deployment.md "Running several
//! instances"):
//! * HTTP-01 and TLS-ALPN-01: issued at the first try with exactly one
//!   order, served by every instance; an instance started later serves the
//!   stored certificate without ordering; the renewal is one order too;
//! * the instance holding the order lease killed mid-order: another
//!   finishes once the lease has expired;
//! * under `wrk` load through the balancer, one instance killed and
//!   restarted: the failed requests and the balancer's retries, counted.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../certs/tests/support/mod.rs"]
mod pebble;
mod support;

use std::time::{Duration, Instant};

use support::client::served_leaf;
use support::haproxy::{HaProxy, Server};
use support::postgres::Postgres;
use support::*;

/// One ACME instance on the shared store; `challenge` is `http-01` or
/// `tls-alpn-01`.
fn acme_instance(
    up: &Upstream,
    pebble: &pebble::Pebble,
    ca: &std::path::Path,
    challenge: &str,
    db: &str,
) -> Gateway {
    // The storage dir is the gateway's own, removed when it is dropped.
    let builder = GatewayBuilder::new("");
    let cfg = format!(
        "[server]\nhttps = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\nops = \"127.0.0.1:{}\"\nthreads = 1\n\
         [tls]\nmode = \"acme\"\ndomains = [\"a.test\"]\nstorage = \"{}\"\n\
         directory = \"{}\"\nca = \"{}\"\nchallenge = \"{challenge}\"\n\
         [store]\nurl = \"env:PORTCULLIS_DATABASE_URL\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        free_port(),
        free_port(),
        free_port(),
        builder.dir().join("state").display(),
        pebble.directory,
        ca.display(),
        up.addr()
    );
    builder
        .config(&cfg)
        .env("PORTCULLIS_DATABASE_URL", db)
        .start()
}

fn events(gws: &[&Gateway], event: &str) -> usize {
    gws.iter()
        .map(|g| g.log_lines().iter().filter(|l| l["event"] == event).count())
        .sum()
}

fn logs(gws: &[&Gateway]) -> String {
    gws.iter()
        .map(|g| g.stderr())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Waits until every gateway serves one and the same leaf that is not
/// `not`; returns it.
async fn same_leaf_everywhere(gws: &[&Gateway], not: &[u8], within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let mut leaves = Vec::new();
        for g in gws {
            leaves.push(served_leaf(g.https_port, "a.test").await);
        }
        if leaves[0] != not && leaves.iter().all(|l| *l == leaves[0]) {
            return leaves.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "instances serve different certificates:\n{}",
            logs(gws)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn servers(gws: &[&Gateway], tls: bool) -> Vec<Server> {
    gws.iter()
        .map(|g| Server {
            port: if tls { g.https_port } else { g.http_port },
            ops: g.ops_port,
        })
        .collect()
}

/// Pebble (its validation aimed at the balancer's ports, chosen first, and
/// waiting `va_sleep` seconds so the balancer is up by then), a file with
/// its API root, and the ports.
fn pebble_behind_balancer(
    validity: Option<u64>,
    va_sleep: u64,
) -> (pebble::Pebble, tempfile::TempDir, u16, u16) {
    let (http_front, tls_front) = (free_port(), free_port());
    let pebble = pebble::Pebble::start_with(pebble::Options {
        http_port: http_front,
        tls_port: Some(tls_front),
        validity_secs: validity,
        va_sleep_secs: Some(va_sleep),
    });
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ca.pem"), &pebble.api_ca_pem).expect("ca");
    (pebble, dir, http_front, tls_front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_through_the_balancer_one_order_for_every_instance_renewal_too() {
    let (up, pg) = (Upstream::start(), Postgres::start());
    let (pebble, dir, http_front, _) = pebble_behind_balancer(Some(45), 3);
    let ca = dir.path().join("ca.pem");
    let (a, b, c) = (
        acme_instance(&up, &pebble, &ca, "http-01", &pg.url()),
        acme_instance(&up, &pebble, &ca, "http-01", &pg.url()),
        acme_instance(&up, &pebble, &ca, "http-01", &pg.url()),
    );
    let gws = [&a, &b, &c];
    let _lb = HaProxy::start_on(http_front, 0, &servers(&gws, false), &[]);

    let first = same_leaf_everywhere(&gws, &[], Duration::from_secs(60)).await;
    assert_eq!(events(&gws, "cert_issued"), 1, "one order:\n{}", logs(&gws));
    assert_eq!(
        events(&gws, "cert_failed"),
        0,
        "at the first try:\n{}",
        logs(&gws)
    );
    // Issued by Pebble for a.test (its root verifies it).
    let root = pebble.root().await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(root.as_ref()).expect("root"))
        .resolve("a.test", ([127, 0, 0, 1], b.https_port).into())
        .no_proxy()
        .build()
        .expect("client");
    let resp = client
        .get(format!("https://a.test:{}/x", b.https_port))
        .send()
        .await
        .expect("verified");
    assert_eq!(resp.status(), 200);

    // Started later: the stored certificate, no order.
    let d = acme_instance(&up, &pebble, &ca, "http-01", &pg.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_leaf(d.https_port, "a.test").await != first {
        assert!(Instant::now() < deadline, "D: {}", d.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        events(&[&d], "cert_issued") + events(&[&d], "cert_renewed"),
        0
    );

    // Renewal at two thirds of 45 s: one order, served everywhere.
    let all = [&a, &b, &c, &d];
    let renewed = same_leaf_everywhere(&all, &first, Duration::from_secs(60)).await;
    assert_ne!(renewed, first);
    assert_eq!(
        events(&all, "cert_renewed"),
        1,
        "one renewal:\n{}",
        logs(&all)
    );
    assert_eq!(events(&all, "cert_failed"), 0, "{}", logs(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_the_balancer_one_order_for_every_instance() {
    let (up, pg) = (Upstream::start(), Postgres::start());
    let (pebble, dir, _, tls_front) = pebble_behind_balancer(None, 3);
    let ca = dir.path().join("ca.pem");
    let (a, b, c) = (
        acme_instance(&up, &pebble, &ca, "tls-alpn-01", &pg.url()),
        acme_instance(&up, &pebble, &ca, "tls-alpn-01", &pg.url()),
        acme_instance(&up, &pebble, &ca, "tls-alpn-01", &pg.url()),
    );
    let gws = [&a, &b, &c];
    let _lb = HaProxy::start_on(0, tls_front, &[], &servers(&gws, true));
    same_leaf_everywhere(&gws, &[], Duration::from_secs(60)).await;
    assert_eq!(events(&gws, "cert_issued"), 1, "one order:\n{}", logs(&gws));
    assert_eq!(
        events(&gws, "cert_failed"),
        0,
        "at the first try:\n{}",
        logs(&gws)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_killed_mid_order_another_instance_finishes() {
    let (up, pg) = (Upstream::start(), Postgres::start());
    // Pebble waits 8 s before validating: time to kill the orderer.
    let (pebble, dir, http_front, _) = pebble_behind_balancer(None, 8);
    let ca = dir.path().join("ca.pem");
    let a = acme_instance(&up, &pebble, &ca, "http-01", &pg.url());
    let b = acme_instance(&up, &pebble, &ca, "http-01", &pg.url());
    let _lb = HaProxy::start_on(http_front, 0, &servers(&[&a, &b], false), &[]);
    let taken = "ACME order lease taken";
    assert!(
        wait_until(Duration::from_secs(20), || a.stderr().contains(taken)
            || b.stderr().contains(taken)),
        "{}",
        logs(&[&a, &b])
    );
    let (holder, other) = if a.stderr().contains(taken) {
        (a, b)
    } else {
        (b, a)
    };
    holder.signal("KILL");
    let killed_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(120), || events(
            &[&other],
            "cert_issued"
        ) == 1),
        "the other instance never finished:\n{}\npebble:\n{}",
        other.stderr(),
        pebble.log()
    );
    // Not before the lease (60 s from its last renewal) had expired.
    assert!(
        killed_at.elapsed() >= Duration::from_secs(40),
        "{:?}",
        killed_at.elapsed()
    );
    assert!(other
        .stderr()
        .contains("another instance is ordering this certificate"));
    served_leaf(other.https_port, "a.test").await;
    drop(holder);
}

/// One instance with TLS off behind the balancer's HTTP frontend.
fn plain_instance(up: &Upstream, db: &str, http: u16, ops: u16) -> Gateway {
    let cfg = format!(
        "[server]\nhttp = \"127.0.0.1:{http}\"\nops = \"127.0.0.1:{ops}\"\nthreads = 1\n\
         trusted_proxies = [\"127.0.0.1\"]\n\
         [tls]\nmode = \"off\"\n[store]\nurl = \"env:PORTCULLIS_DATABASE_URL\"\n\
         [rate_limit]\ndefault = \"off\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        up.addr()
    );
    GatewayBuilder::new(&cfg)
        .env("PORTCULLIS_DATABASE_URL", db)
        .start()
}

/// wrk's summary: (requests, non-2xx/3xx responses, socket errors).
fn wrk_counts(out: &str) -> (u64, u64, u64) {
    let number = |line: &str, after: &str| -> Option<u64> {
        line.split(after)
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let non_2xx = out
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| number(l, ":"))
        .unwrap_or(0);
    let socket_errors = out
        .lines()
        .find(|l| l.contains("Socket errors:"))
        .map(|l| {
            ["connect", "read", "write", "timeout"]
                .iter()
                .filter_map(|k| number(l, k))
                .sum()
        })
        .unwrap_or(0);
    (requests, non_2xx, socket_errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_an_instance_killed_and_restarted_costs_no_request() {
    let (up, pg) = (Upstream::start(), Postgres::start());
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut gws: Vec<Gateway> = ports
        .iter()
        .map(|(http, ops)| plain_instance(&up, &pg.url(), *http, *ops))
        .collect();
    let refs: Vec<&Gateway> = gws.iter().collect();
    let lb = HaProxy::start(&servers(&refs, false), &[]);
    let url = format!("http://127.0.0.1:{}/load", lb.http_port);
    let wrk = std::process::Command::new("wrk")
        .args(["-t1", "-c16", "-d10s", "--latency", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wrk not found: run scripts/test, which installs it (apt wrk)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (http, ops) = ports[1];
    gws[1].signal("KILL");
    let _ = gws[1].wait_exit(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    gws[1] = plain_instance(&up, &pg.url(), http, ops);
    let out = wrk.wait_with_output().expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (requests, non_2xx, socket_errors) = wrk_counts(&text);
    let (retries, redispatches) = (
        lb.counter("gateways_http", "wretr"),
        lb.counter("gateways_http", "wredis"),
    );
    println!(
        "wrk through HAProxy, 3 instances, one killed at 3 s and restarted at 5 s: \
         {requests} requests, {non_2xx} non-2xx, {socket_errors} socket errors; \
         HAProxy retried {retries} and redispatched {redispatches}"
    );
    assert!(requests > 1000, "{text}");
    assert_eq!((non_2xx, socket_errors), (0, 0), "{text}\n{}", lb.log());
    assert_eq!(
        lb.up("gateways_http"),
        3,
        "the restarted instance is back in"
    );
}
