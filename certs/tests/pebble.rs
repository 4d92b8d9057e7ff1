//! ACME issuance against a real Pebble (Debian `pebble` package): the chain
//! verifies against Pebble's root, the stored account is reused, a CA that
//! forgot the account gets a new registration, and network/trust/validation
//! failures come back as clear errors.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use certs::acme::{self, AcmeConfig, AcmeError, AcmeStore, ChallengeStore};
use certs::Loaded;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::{free_port, Pebble, Responder, TestPki};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn config(pebble: &Pebble, domains: &[&str]) -> AcmeConfig {
    AcmeConfig {
        directory: pebble.directory.clone(),
        email: Some("ops@example.test".to_owned()),
        domains: names(domains),
        ca_pem: Some(pebble.api_ca_pem.clone().into_bytes()),
        ..AcmeConfig::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Verify `loaded`'s chain for `name` against `root` with webpki.
fn verify(loaded: &Loaded, root: &CertificateDer<'static>, name: &str) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let chain = &loaded.certified.cert;
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("chain does not verify for {name}: {e}"));
}

async fn obtain_or_log(
    cfg: &AcmeConfig,
    store: &AcmeStore,
    challenges: &ChallengeStore,
    pebble: &Pebble,
) -> Loaded {
    match acme::obtain(cfg, store, challenges).await {
        Ok(loaded) => loaded,
        Err(e) => panic!("obtain failed: {e}\npebble log:\n{}", pebble.log()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_for_two_names_then_reuses_the_account() {
    let started = Instant::now();
    let challenges = ChallengeStore::new();
    let responder = Responder::start(challenges.clone()).await;
    let pebble = Pebble::start(responder.port);
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let cfg = config(&pebble, &["a.test", "B.test"]);

    let first = obtain_or_log(&cfg, &store, &challenges, &pebble).await;
    let issued = started.elapsed();
    let mut issued_names = first.names.clone();
    issued_names.sort();
    assert_eq!(issued_names, ["a.test", "b.test"]);
    assert!(first.certified.cert.len() >= 2, "leaf + intermediate");
    let root = pebble.root().await;
    verify(&first, &root, "a.test");
    verify(&first, &root, "b.test");
    assert_eq!(first.certified.cert[1], pebble.intermediate().await);
    // Answers are withdrawn once the order is done.
    assert!(challenges.is_empty());

    // Renewal is scheduled two thirds into the (5-year Pebble) lifetime.
    let renew = acme::renew_at(&first);
    assert!(renew > SystemTime::now() + Duration::from_secs(365 * 86_400));
    assert!(renew < first.not_after);

    // Everything private, and the stored copy loads back.
    let account = store.account_path(&cfg.directory).expect("path");
    let cert_dir = store.cert_dir(&cfg.directory, &cfg.domains).expect("path");
    assert_eq!(mode(&storage.path().join("acme")), 0o700);
    assert_eq!(mode(account.parent().expect("ca dir")), 0o700);
    assert_eq!(mode(&cert_dir), 0o700);
    for file in [
        account.clone(),
        cert_dir.join("cert.pem"),
        cert_dir.join("key.pem"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let stored = store
        .load_cert(&cfg.directory, &names(&["b.test", "a.test"]))
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(stored.certified.cert, first.certified.cert);

    // Second run: same account (file untouched), new certificate.
    let account_before = std::fs::read(&account).expect("account");
    let modified_before = std::fs::metadata(&account).expect("meta").modified().ok();
    let second = obtain_or_log(&cfg, &store, &challenges, &pebble).await;
    assert_eq!(std::fs::read(&account).expect("account"), account_before);
    assert_eq!(
        std::fs::metadata(&account).expect("meta").modified().ok(),
        modified_before
    );
    assert_ne!(second.certified.cert[0], first.certified.cert[0]);
    verify(&second, &root, "b.test");
    let stored = store
        .load_cert(&cfg.directory, &cfg.domains)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(stored.certified.cert, second.certified.cert);
    eprintln!(
        "first issuance {:?}, both with checks {:?}",
        issued,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_or_damaged_account_is_registered_again() {
    let challenges = ChallengeStore::new();
    let responder = Responder::start(challenges.clone()).await;
    let mut pebble = Pebble::start(responder.port);
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let cfg = config(&pebble, &["c.test"]);

    obtain_or_log(&cfg, &store, &challenges, &pebble).await;
    let account = store.account_path(&cfg.directory).expect("path");
    let before = std::fs::read(&account).expect("account");

    // Pebble keeps no state across restarts: our account is unknown now.
    pebble.restart();
    let loaded = obtain_or_log(&cfg, &store, &challenges, &pebble).await;
    let after = std::fs::read(&account).expect("account");
    assert_ne!(after, before);
    verify(&loaded, &pebble.root().await, "c.test");

    // A damaged account file is replaced by a new registration, not fatal.
    std::fs::write(&account, b"{ damaged").expect("damage");
    obtain_or_log(&cfg, &store, &challenges, &pebble).await;
    let repaired = std::fs::read(&account).expect("account");
    assert_ne!(repaired, after);
    assert!(store
        .load_account(&cfg.directory)
        .await
        .expect("valid")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_directory_is_a_clear_error() {
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let cfg = AcmeConfig {
        directory: directory.clone(),
        email: None,
        domains: names(&["a.test"]),
        ..AcmeConfig::default()
    };
    let started = Instant::now();
    let err = acme::obtain(&cfg, &store, &ChallengeStore::new())
        .await
        .expect_err("nothing listens there");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, AcmeError::Protocol { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("ACME account registration at {directory}: ")),
        "{msg}"
    );
    assert!(msg.contains("Connection refused"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing stored for a CA we never reached.
    assert!(!storage.path().join("acme").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_a_clear_error() {
    let challenges = ChallengeStore::new();
    let responder = Responder::start(challenges.clone()).await;
    let pebble = Pebble::start(responder.port);
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let mut cfg = config(&pebble, &["a.test"]);
    cfg.ca_pem = Some(TestPki::new("some other CA").ca_pem.into_bytes());

    let err = acme::obtain(&cfg, &store, &challenges)
        .await
        .expect_err("untrusted");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, AcmeError::Untrusted { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "ACME account registration at {}: TLS certificate of the ACME server not trusted",
            pebble.directory
        )),
        "{msg}"
    );
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("set `ca`"), "{msg}");

    // Not PEM at all: refused before any connection.
    cfg.ca_pem = Some(b"hello".to_vec());
    let err = acme::obtain(&cfg, &store, &challenges)
        .await
        .expect_err("no cert");
    assert_eq!(err.to_string(), "ACME `ca`: no certificate found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_names_the_domain() {
    // The responder reads another store, so every answer is a 404.
    let responder = Responder::start(ChallengeStore::new()).await;
    let pebble = Pebble::start(responder.port);
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let cfg = config(&pebble, &["d.test"]);
    let challenges = ChallengeStore::new();

    let err = acme::obtain(&cfg, &store, &challenges)
        .await
        .expect_err("validation fails");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, AcmeError::Validation { .. }), "{msg}");
    assert!(
        msg.starts_with("ACME validation of d.test failed: "),
        "{msg}"
    );
    assert!(msg.contains("404"), "{msg}");
    assert!(challenges.is_empty(), "answers withdrawn after failure");
    assert!(store
        .load_cert(&cfg.directory, &cfg.domains)
        .await
        .expect("load")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_ca_refuses_is_a_clear_error() {
    // The harness's Pebble refuses to issue for `refused.test` by policy.
    let pebble = Pebble::start(free_port());
    let storage = tempfile::tempdir().expect("tempdir");
    let store = AcmeStore::new(storage.path());
    let cfg = config(&pebble, &["ok.test", "refused.test"]);
    let err = acme::obtain(&cfg, &store, &ChallengeStore::new())
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("ACME new order at {}: ", pebble.directory)),
        "{msg}"
    );
    assert!(
        msg.contains("refused.test") && msg.contains("forbidden by policy"),
        "{msg}"
    );
}

#[test]
fn harness_stops_its_processes_on_panic() {
    let mut pids = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pebble = Pebble::start(free_port());
        pids = pebble.pids();
        assert!(pids
            .iter()
            .all(|pid| Path::new(&format!("/proc/{pid}")).exists()));
        panic!("test failure while Pebble runs");
    }));
    assert!(result.is_err());
    assert_eq!(pids.len(), 2);
    for pid in pids {
        // Killed and reaped: not even a zombie remains.
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    }
}
