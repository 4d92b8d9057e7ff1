//! `tls.mode = "acme"` end to end against Debian's Pebble: the gateway
//! answers HTTP-01 on its http listener, serves a temporary certificate
//! while ordering, then the issued one (both names, chain verified against
//! Pebble's root); a restart serves the stored certificate at once and
//! orders nothing; an unreachable CA is logged and retried while the
//! gateway keeps serving. TLS-ALPN-01 is answered on the https listener
//! while other clients keep being served there.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../certs/tests/support/mod.rs"]
mod pebble;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::gateway::{stderr_of, stdout_of};
use support::*;

fn acme_config(
    https: u16,
    http: u16,
    up: &Upstream,
    storage: &std::path::Path,
    directory: &str,
    ca: &std::path::Path,
) -> String {
    format!(
        "[server]\nhttps = \"127.0.0.1:{https}\"\nhttp = \"127.0.0.1:{http}\"\nthreads = 1\n\
         [tls]\nmode = \"acme\"\ndomains = [\"a.test\", \"b.test\"]\nstorage = \"{}\"\n\
         directory = \"{directory}\"\nca = \"{}\"\nemail = \"ops@example.com\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        storage.display(),
        ca.display(),
        up.addr()
    )
}

/// A client that trusts only `root` and sends `name` (SNI and Host) to 127.0.0.1:`port`.
fn client_for(root: &[u8], names: &[&str], port: u16) -> reqwest::Client {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(root).expect("root"))
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    for n in names {
        b = b.resolve(n, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    b.build().expect("client")
}

fn audit(gw: &Gateway, event: &str) -> usize {
    gw.log_lines()
        .iter()
        .filter(|l| l["event"] == event)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_for_two_names_then_a_restart_orders_nothing() {
    let up = Upstream::start();
    let (https, http) = (free_port(), free_port());
    let pebble = pebble::Pebble::start(http);
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    let storage = dir.path().join("state");
    let cfg = acme_config(https, http, &up, &storage, &pebble.directory, &ca);

    let gw = Gateway::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(60), || audit(&gw, "cert_issued") == 1),
        "no certificate issued:\n{}\npebble:\n{}",
        gw.stderr(),
        pebble.log()
    );
    let root = pebble.root().await;
    let c = client_for(root.as_ref(), &["a.test", "b.test"], https);
    for name in ["a.test", "b.test"] {
        let resp = c
            .get(format!("https://{name}:{https}/hello"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(resp.status(), 200, "{name}");
    }
    // Stored privately.
    let key = walk(&storage)
        .into_iter()
        .find(|p| p.ends_with("key.pem"))
        .expect("key stored");
    assert_eq!(
        std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    // HTTP-01 paths that are not pending are a plain 404; other paths still redirect.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client");
    let r = plain
        .get(format!(
            "http://127.0.0.1:{http}/.well-known/acme-challenge/not-pending"
        ))
        .send()
        .await
        .expect("challenge");
    assert_eq!(r.status(), 404);
    let r = plain
        .get(format!("http://127.0.0.1:{http}/x"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status(), 301);
    drop(gw);

    // Restart with the stored state: the issued certificate serves at once,
    // and no new order is placed.
    let gw = Gateway::start(&cfg);
    let resp = c
        .get(format!("https://a.test:{https}/again"))
        .send()
        .await
        .expect("stored cert serves");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        audit(&gw, "cert_issued") + audit(&gw, "cert_renewed"),
        0,
        "{}",
        gw.stdout()
    );
}

#[tokio::test]
async fn an_unreachable_ca_is_logged_and_retried_while_serving() {
    let up = Upstream::start();
    let (https, http) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::new();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let gw = Gateway::start(&acme_config(
        https,
        http,
        &up,
        &dir.path().join("state"),
        &dead,
        &ca,
    ));
    assert!(
        wait_until(Duration::from_secs(30), || audit(&gw, "cert_failed") == 1),
        "{}",
        gw.stderr()
    );
    let failed = gw
        .log_lines()
        .into_iter()
        .find(|l| l["event"] == "cert_failed")
        .expect("line");
    let error = failed["error"].as_str().unwrap_or("");
    assert!(
        error.contains("Connection refused") && error.contains(&dead),
        "{error}"
    );
    let retry = failed["retry_in_seconds"].as_u64().expect("retry");
    assert!(
        (54..=66).contains(&retry),
        "first retry after about a minute: {retry}"
    );
    assert!(gw
        .stderr()
        .contains("ACME order failed; the current certificate keeps serving"));
    // Still serving: the temporary certificate on https, redirects on http.
    install_crypto_provider();
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("a.test", SocketAddr::from((Ipv4Addr::LOCALHOST, https)))
        .no_proxy()
        .build()
        .expect("client");
    let resp = insecure
        .get(format!("https://a.test:{https}/"))
        .send()
        .await
        .expect("serves");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issuance_on_the_https_listener_while_it_serves_others() {
    let up = Upstream::start();
    let https = free_port();
    // Pebble checks TLS-ALPN-01 on the gateway's https port, and waits 5 s
    // before it does: the challenges stay pending meanwhile.
    let pebble = pebble::Pebble::start_with(pebble::Options {
        http_port: free_port(),
        tls_port: Some(https),
        va_sleep_secs: Some(5),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    // No http listener at all: TLS-ALPN-01 does not need one.
    let cfg = format!(
        "[server]\nhttps = \"127.0.0.1:{https}\"\nthreads = 1\n\
         [tls]\nmode = \"acme\"\ndomains = [\"a.test\", \"b.test\"]\nstorage = \"{}\"\n\
         directory = \"{}\"\nca = \"{}\"\nchallenge = \"tls-alpn-01\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        dir.path().join("state").display(),
        pebble.directory,
        ca.display(),
        up.addr()
    );
    let gw = Gateway::start(&cfg);

    // Until the certificate is issued, ordinary clients (HTTP/1.1 and HTTP/2,
    // a new connection each time) are served with the temporary certificate:
    // the validation handshakes are picked out and everything else passes.
    install_crypto_provider();
    let insecure = |h2: bool| {
        let b = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .resolve("a.test", SocketAddr::from((Ipv4Addr::LOCALHOST, https)))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if h2 { b } else { b.http1_only() }.build().expect("client")
    };
    let (h1, h2) = (insecure(false), insecure(true));
    let mut served = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while audit(&gw, "cert_issued") == 0 && std::time::Instant::now() < deadline {
        for (client, version) in [
            (&h1, reqwest::Version::HTTP_11),
            (&h2, reqwest::Version::HTTP_2),
        ] {
            let resp = client
                .get(format!("https://a.test:{https}/during"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("while ordering: {e:?}\n{}", gw.stderr()));
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), version);
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        audit(&gw, "cert_issued"),
        1,
        "no certificate issued:\n{}\npebble:\n{}",
        gw.stderr(),
        pebble.log()
    );
    // At least two rounds: the second is well inside the 5 s pending window
    // even if the first came before the challenges were published.
    assert!(served >= 4, "only {served} requests while ordering");
    let log = gw.stderr();
    for name in ["a.test", "b.test"] {
        assert!(
            log.lines().any(
                |l| l.contains("answered a TLS-ALPN-01 validation handshake") && l.contains(name)
            ),
            "{name}: {log}"
        );
    }

    // The issued certificate serves both names and verifies against Pebble's root.
    let root = pebble.root().await;
    let c = client_for(root.as_ref(), &["a.test", "b.test"], https);
    for name in ["a.test", "b.test"] {
        let resp = c
            .get(format!("https://{name}:{https}/hello"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(resp.status(), 200, "{name}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_and_served_without_restart() {
    let up = Upstream::start();
    let (https, http) = (free_port(), free_port());
    // 30 s certificates: renewal is due 20 s after issuance.
    let pebble = pebble::Pebble::start_with_validity(http, Some(30));
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    let gw = Gateway::start(&acme_config(
        https,
        http,
        &up,
        &dir.path().join("state"),
        &pebble.directory,
        &ca,
    ));
    assert!(
        wait_until(Duration::from_secs(60), || audit(&gw, "cert_issued") == 1),
        "{}",
        gw.stderr()
    );
    let first = support::client::served_leaf(https, "a.test").await;
    assert!(
        wait_until(Duration::from_secs(60), || audit(&gw, "cert_renewed") >= 1),
        "not renewed: {}",
        gw.stdout()
    );
    let second = support::client::served_leaf(https, "a.test").await;
    assert_ne!(first, second, "the renewed certificate serves, no restart");
    // One renewal, not a loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(audit(&gw, "cert_renewed"), 1, "{}", gw.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_down_at_renewal_keeps_the_old_certificate_then_recovers() {
    let up = Upstream::start();
    let (https, http) = (free_port(), free_port());
    // 90 s certificates: renewal is due after 60 s; the first retry after a
    // failure comes about a minute later, inside the old certificate's life.
    let mut pebble = pebble::Pebble::start_with_validity(http, Some(90));
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    let gw = Gateway::start(&acme_config(
        https,
        http,
        &up,
        &dir.path().join("state"),
        &pebble.directory,
        &ca,
    ));
    assert!(
        wait_until(Duration::from_secs(60), || audit(&gw, "cert_issued") == 1),
        "{}",
        gw.stderr()
    );
    let first = support::client::served_leaf(https, "a.test").await;
    pebble.stop();
    assert!(
        wait_until(Duration::from_secs(90), || audit(&gw, "cert_failed") >= 1),
        "renewal never attempted: {}",
        gw.stdout()
    );
    let failed = gw
        .log_lines()
        .into_iter()
        .find(|l| l["event"] == "cert_failed")
        .expect("line");
    assert!(
        (54..=66).contains(&failed["retry_in_seconds"].as_u64().unwrap_or(0)),
        "{failed}"
    );
    assert_eq!(
        support::client::served_leaf(https, "a.test").await,
        first,
        "the old certificate keeps serving"
    );
    // The CA comes back (Pebble forgets every account: re-registration too).
    pebble.start_again();
    assert!(
        wait_until(Duration::from_secs(90), || audit(&gw, "cert_renewed") == 1),
        "not renewed after the CA came back: {}\n{}",
        gw.stdout(),
        gw.stderr()
    );
    assert_ne!(support::client::served_leaf(https, "a.test").await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reaches_the_directory() {
    let up = Upstream::start();
    let pebble = pebble::Pebble::start(free_port());
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, TestPki::new().ca_pem).expect("other ca");
    let run = |directory: &str, ca: &std::path::Path, online: bool| {
        let path = dir.path().join("portcullis.toml");
        let cfg = acme_config(
            free_port(),
            free_port(),
            &up,
            &dir.path().join("state"),
            directory,
            ca,
        );
        std::fs::write(&path, cfg).expect("write");
        let p = path.to_str().expect("utf8").to_owned();
        let mut args = vec!["check", "-c", &p];
        if online {
            args.push("--online");
        }
        run_cli(&args, &[], None)
    };

    let ok = run(&pebble.directory, &ca, true);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    let out = stdout_of(&ok);
    assert!(
        out.contains(&format!(
            "certificates: ACME from {} (http-01 on the http listener; state in files under tls.storage), reachable",
            pebble.directory
        )),
        "{out}"
    );

    // The CA's HTTPS certificate is not from the configured `ca`.
    let untrusted = run(&pebble.directory, &other, true);
    assert_eq!(untrusted.status.code(), Some(1));
    let err = stderr_of(&untrusted);
    assert!(
        err.contains("portcullis.toml: tls.directory: cannot use the ACME directory: ")
            && err.contains("not trusted"),
        "{err}"
    );

    // Nothing listens there.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let down = run(&dead, &ca, true);
    assert_eq!(down.status.code(), Some(1));
    let err = stderr_of(&down);
    assert!(
        err.contains("tls.directory: cannot use the ACME directory: ACME directory at")
            && err.contains(&dead),
        "{err}"
    );
    // Without --online nothing is contacted.
    let offline = run(&dead, &ca, false);
    assert!(offline.status.success(), "{}", stderr_of(&offline));
    assert!(stdout_of(&offline).contains("--online to reach it"));

    // Something that answers but is not an ACME directory: Pebble's
    // management root.
    let not_acme = run(&format!("{}/roots/0", pebble.management), &ca, true);
    assert_eq!(not_acme.status.code(), Some(1));
    let err = stderr_of(&not_acme);
    assert!(err.contains("not an ACME directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_storage_order_once() {
    let up = Upstream::start();
    let (https_a, http_a) = (free_port(), free_port());
    // Pebble validates at instance A's http port, and takes 10 s to do it:
    // long enough for B to start while A is ordering, even on a loaded machine.
    let pebble = pebble::Pebble::start_with(pebble::Options {
        http_port: http_a,
        va_sleep_secs: Some(10),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca, &pebble.api_ca_pem).expect("ca");
    let storage = dir.path().join("shared");
    let a = Gateway::start(&acme_config(
        https_a,
        http_a,
        &up,
        &storage,
        &pebble.directory,
        &ca,
    ));
    assert!(
        wait_until(Duration::from_secs(20), || walk(&storage)
            .iter()
            .any(|p| p.ends_with("order.lock"))),
        "A never took the order lock: {}",
        a.stderr()
    );
    let https_b = free_port();
    let b = Gateway::start(&acme_config(
        https_b,
        free_port(),
        &up,
        &storage,
        &pebble.directory,
        &ca,
    ));
    assert!(
        wait_until(Duration::from_secs(60), || audit(&a, "cert_issued") == 1),
        "A: {}\npebble:\n{}",
        a.stderr(),
        pebble.log()
    );
    assert!(
        b.stderr()
            .contains("another instance is ordering this certificate"),
        "B: {}",
        b.stderr()
    );
    // B serves A's certificate once it looks again (30 s), without ordering.
    let issued = support::client::served_leaf(https_a, "a.test").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while support::client::served_leaf(https_b, "a.test").await != issued {
        assert!(
            std::time::Instant::now() < deadline,
            "B never served the shared certificate: {}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(audit(&b, "cert_issued") + audit(&b, "cert_failed"), 0);
    assert!(
        !walk(&storage).iter().any(|p| p.ends_with("order.lock")),
        "lock released"
    );
}
