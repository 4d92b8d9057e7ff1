//! Operations (docs/configuration.md "Operations"): a zero-downtime binary upgrade (`run -u`
//! then `SIGQUIT` to the old process) under steady load, graceful `SIGTERM`,
//! and access log lines that carry the request id the app saw.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::config::basic;
use support::*;

/// Requests `url` until `stop`; returns (ok, retried, failures).
///
/// Like a browser, a GET that fails with a connection error on a reused
/// keep-alive connection is retried once on a fresh connection; only a
/// failure of that retry (or any non-200) counts as failed. The retries are
/// reported: the old process closes idle keep-alive connections when it
/// exits, and a request racing that close sees a reset.
fn steady_load(
    c: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut ok, mut retried, mut failed) = (0u32, 0u32, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let mut result = c.get(&url).send().await;
            if matches!(&result, Err(e) if e.is_request() || e.is_connect()) {
                retried += 1;
                result = c.get(&url).header("connection", "close").send().await;
            }
            match result {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) if failed.len() < 20 => failed.push(r.status().to_string()),
                Err(e) if failed.len() < 20 => failed.push(format!("{e:?}")),
                _ => {}
            }
        }
        (ok, retried, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_under_load_fails_no_request() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    // No global per-IP limit: the load comes from one address.
    let cfg = basic(&pki, &[up.addr()], "[rate_limit]\ndefault = \"off\"\n");
    let mut old = Gateway::start(&cfg);
    let c = https_client(&pki.ca_pem, old.https_port, false);
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(c, old.url("/steady"), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new binary waits for the listening sockets (start returns once it
    // listens on the upgrade socket); the old one hands them over on
    // SIGQUIT, finishes what it has and exits.
    let new = GatewayBuilder::new(&cfg).arg("-u").start();
    old.signal("QUIT");
    let status = tokio::task::spawn_blocking(move || {
        let s = old.wait_exit(Duration::from_secs(30));
        (s, old)
    })
    .await
    .expect("join");
    assert!(status.0.is_some(), "the old process exited");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, retried, failed) = load.await.expect("load");
    eprintln!("upgrade under load: {ok} ok, {retried} retried once on a fresh connection");
    assert!(
        retried <= 2,
        "more than the keep-alive race: {retried} retries"
    );
    let old_log: Vec<String> = status
        .1
        .stderr()
        .lines()
        .filter(|l| !l.contains("\"INFO\""))
        .map(str::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "failed during the upgrade: {failed:?}\nold process: {old_log:#?}"
    );
    assert!(ok > 20, "the load ran: {ok}");
    // The new process serves on the same port.
    let c = https_client(&pki.ca_pem, new.https_port, false);
    assert_eq!(
        c.get(new.url("/after"))
            .send()
            .await
            .expect("after")
            .status(),
        200
    );
    assert!(new.stderr().contains("portcullis serving"));
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let mut gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    // A slow response is in flight when SIGTERM arrives.
    let slow = tokio::spawn({
        let url = gw.url("/slow?ms=1500");
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    assert_eq!(slow.await.expect("join").expect("answered"), 200);
    let exited = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

#[tokio::test]
async fn access_log_lines_carry_the_request_id_the_app_saw() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let gw = Gateway::start(&basic(&pki, &[up.addr()], ""));
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    for i in 0..3 {
        let resp = c
            .get(gw.url(&format!("/r{i}")))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
    }
    let seen: Vec<String> = up
        .requests()
        .iter()
        .map(|r| {
            r.header("x-request-id")
                .expect("id sent upstream")
                .to_string()
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || gw
        .log_lines()
        .iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| p.starts_with("/r")))
        .count()
        == 3));
    for line in gw
        .log_lines()
        .iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| p.starts_with("/r")))
    {
        for key in [
            "time",
            "request_id",
            "client_ip",
            "method",
            "path",
            "route",
            "status",
            "bytes",
            "duration",
            "upstream",
            "user",
            "limited",
        ] {
            assert!(line.get(key).is_some(), "{key} in {line}");
        }
        // RFC 3339, UTC, milliseconds: 2026-12-06T07:30:18.123Z
        let time = line["time"].as_str().expect("time is a string");
        assert!(
            time.len() == 24
                && time.as_bytes().get(10) == Some(&b'T')
                && time.as_bytes().get(19) == Some(&b'.')
                && time.ends_with('Z'),
            "{time}"
        );
        let id = line["request_id"].as_str().expect("id");
        assert!(
            seen.iter().any(|s| s == id),
            "{id} was sent to the app: {seen:?}"
        );
    }
}
