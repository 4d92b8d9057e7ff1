//! `SIGHUP` reload (docs/configuration.md "Operations"): a changed route applies, an invalid
//! config is refused while the old one keeps serving, a listener change is
//! refused, and none of it fails a request or drops an open WebSocket.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::config::basic_with;
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn reloads(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.log_lines()
        .into_iter()
        .filter(|l| l["event"] == "config_reload")
        .collect()
}

fn wait_reloads(gw: &Gateway, n: usize) -> Vec<serde_json::Value> {
    assert!(
        wait_until(Duration::from_secs(15), || reloads(gw).len() >= n),
        "reload #{n} never finished: {}",
        gw.stderr()
    );
    reloads(gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_or_refuse_without_failing_a_request() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let original = basic_with(
        &pki,
        &[up.addr()],
        "",
        // No global per-IP limit: the steady load comes from one address.
        "[rate_limit]\ndefault = \"off\"\n[[route]]\npath = \"/x\"\naccess = \"deny\"\n",
    );
    let mut gw = Gateway::start(&original);
    let c = https_client(&pki.ca_pem, gw.https_port, false);
    assert_eq!(c.get(gw.url("/x")).send().await.expect("x").status(), 403);

    // Steady traffic through every reload below.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (c, url, stop) = (c.clone(), gw.url("/steady"), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) if failed.len() < 20 => failed.push(r.status().to_string()),
                    Err(e) if failed.len() < 20 => failed.push(e.to_string()),
                    _ => {}
                }
            }
            (ok, failed)
        })
    };
    let mut ws = websocket_tls(gw.https_port, &pki.ca_pem, "/ws").await;

    // 1. A changed route.
    gw.reload(&original.replace("access = \"deny\"", "access = \"public\""));
    let r = wait_reloads(&gw, 1);
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert_eq!(c.get(gw.url("/x")).send().await.expect("x").status(), 200);

    // 2. An invalid config: refused, named, and the running one stays.
    gw.reload(&original.replace("access = \"deny\"", "access = \"maybe\""));
    let r = wait_reloads(&gw, 2);
    assert_eq!(r[1]["ok"], false, "{r:?}");
    assert!(
        r[1]["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("route[0].access"),
        "{r:?}"
    );
    assert!(gw.stderr().contains("config reload refused"));
    assert_eq!(
        c.get(gw.url("/x")).send().await.expect("x").status(),
        200,
        "old config serves"
    );

    // 3. A listener change: refused (it needs a restart), the rest unchanged.
    let port = support::gateway::ListenerPorts::parse(&original).https;
    gw.reload(
        &original
            .replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1")
            .replace("access = \"deny\"", "access = \"public\""),
    );
    let r = wait_reloads(&gw, 3);
    assert_eq!(r[2]["ok"], false, "{r:?}");
    assert!(
        r[2]["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("server.https: cannot change while running"),
        "{r:?}"
    );

    // The WebSocket opened before the reloads still echoes.
    ws.send(Message::text("after reloads")).await.expect("send");
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("message");
    assert_eq!(msg.into_text().expect("text").as_str(), "after reloads");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load task");
    assert!(
        failed.is_empty(),
        "failed requests during reloads: {failed:?}"
    );
    assert!(ok > 10, "the load ran: {ok}");
    assert!(gw.try_wait().is_none(), "still running");
}
