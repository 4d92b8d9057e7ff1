//! Real components for the ACME tests: Debian's `pebble` and
//! `pebble-challtestsrv` on free loopback ports, a test PKI for Pebble's own
//! HTTPS API, and a tiny HTTP-01 responder reading a `ChallengeStore`.
//! Every process and task is stopped by a Drop guard, also on panic.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)] // not every test file uses every helper

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use certs::acme::ChallengeStore;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// tests/acme.rs also loads tests/support (with its own copy of this file):
// deliberate, the copies draw ports from disjoint ranges.
#[allow(clippy::duplicate_mod)]
#[path = "../../../tests/support/ports.rs"]
mod ports;

/// A free loopback TCP port, below the kernel's ephemeral range (an outgoing
/// connection could take an ephemeral one before Pebble binds it), never the
/// same twice in a process; see `tests/support/ports.rs`.
pub fn free_port() -> u16 {
    ports::free_port_in(ports::PEBBLE_RANGE)
}

/// A child process killed and reaped on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e} (apt-get install -y pebble)"));
        Self { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-made CA and a leaf for `localhost`/`127.0.0.1` signed by it.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The leaf certificate, PEM.
    pub leaf_pem: String,
    /// The leaf's key, PKCS#8 PEM.
    pub leaf_key_pem: String,
}

impl TestPki {
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).expect("ca cert");

        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        Self {
            ca_pem: issuer.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }
}

/// Pebble + challtestsrv, each on free loopback ports, with HTTP-01
/// validation pointed at `http_port`.
pub struct Pebble {
    /// `https://127.0.0.1:<port>/dir`
    pub directory: String,
    /// `https://127.0.0.1:<port>` (roots, intermediates)
    pub management: String,
    /// Root of Pebble's own HTTPS API certificate (trust this as `ca`).
    pub api_ca_pem: String,
    config: PathBuf,
    dns: SocketAddr,
    dir: tempfile::TempDir,
    pebble: Option<Proc>,
    va_sleep_secs: Option<u64>,
    _challtestsrv: Proc,
}

/// How to start Pebble: the ports its validation authority checks, the
/// lifetime of what it issues, and how long it waits before validating.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Where HTTP-01 is checked (`httpPort`).
    pub http_port: u16,
    /// Where TLS-ALPN-01 is checked (`tlsPort`); a free unused port if `None`.
    pub tls_port: Option<u16>,
    /// `certificateValidityPeriod` in seconds.
    pub validity_secs: Option<u64>,
    /// Seconds the VA sleeps before validating (`PEBBLE_VA_SLEEPTIME`);
    /// no sleep if `None`.
    pub va_sleep_secs: Option<u64>,
}

impl Pebble {
    pub fn start(http_port: u16) -> Self {
        Self::start_with_validity(http_port, None)
    }

    /// As [`Pebble::start`], issuing certificates valid for `validity_secs`
    /// (Pebble's `certificateValidityPeriod`) when given.
    pub fn start_with_validity(http_port: u16, validity_secs: Option<u64>) -> Self {
        Self::start_with(Options {
            http_port,
            validity_secs,
            ..Options::default()
        })
    }

    /// Pebble with every knob the tests use.
    pub fn start_with(opts: Options) -> Self {
        let Options {
            http_port,
            tls_port,
            validity_secs,
            va_sleep_secs,
        } = opts;
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki::new("pebble api test CA");
        let cert = dir.path().join("api-cert.pem");
        let key = dir.path().join("api-key.pem");
        std::fs::write(&cert, &pki.leaf_pem).expect("write cert");
        std::fs::write(&key, &pki.leaf_key_pem).expect("write key");

        let (acme, mgmt) = (free_port(), free_port());
        let tls = tls_port.unwrap_or_else(free_port);
        let config = dir.path().join("pebble.json");
        let json = format!(
            r#"{{"pebble": {{
  "listenAddress": "127.0.0.1:{acme}",
  "managementListenAddress": "127.0.0.1:{mgmt}",
  "certificate": "{}",
  "privateKey": "{}",
  "httpPort": {http_port},
  "tlsPort": {tls},
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false,
  "domainBlocklist": ["refused.test"]{validity}
}}}}"#,
            cert.display(),
            key.display(),
            validity = validity_secs
                .map(|v| format!(",\n  \"certificateValidityPeriod\": {v}"))
                .unwrap_or_default(),
        );
        std::fs::write(&config, json).expect("write config");

        let (dns_port, chall_mgmt) = (free_port(), free_port());
        let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse().expect("addr");
        let challtestsrv = Proc::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv").args([
                "-management",
                &format!("127.0.0.1:{chall_mgmt}"),
                "-dns01",
                &dns.to_string(),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]),
            &dir.path().join("challtestsrv.log"),
        );
        wait_listening(chall_mgmt, dir.path(), "challtestsrv.log");

        let mut pebble = Self {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management: format!("https://127.0.0.1:{mgmt}"),
            api_ca_pem: pki.ca_pem,
            config,
            dns,
            dir,
            pebble: None,
            va_sleep_secs,
            _challtestsrv: challtestsrv,
        };
        pebble.start_pebble();
        pebble
    }

    fn start_pebble(&mut self) {
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&self.config)
            .arg("-dnsserver")
            .arg(self.dns.to_string())
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        match self.va_sleep_secs {
            Some(secs) => cmd.env("PEBBLE_VA_SLEEPTIME", secs.to_string()),
            None => cmd.env("PEBBLE_VA_NOSLEEP", "1"),
        };
        let proc = Proc::spawn("pebble", &mut cmd, &self.dir.path().join("pebble.log"));
        self.pebble = Some(proc);
        wait_listening(port_of(&self.directory), self.dir.path(), "pebble.log");
        wait_listening(port_of(&self.management), self.dir.path(), "pebble.log");
    }

    /// Stop Pebble and start it again on the same ports: it forgets every
    /// account, order and its issuing CA.
    pub fn restart(&mut self) {
        self.stop();
        self.start_pebble();
    }

    /// Stop Pebble (the CA is unreachable until [`Pebble::start_again`]).
    pub fn stop(&mut self) {
        drop(self.pebble.take());
    }

    /// Start a stopped Pebble on the same ports (a fresh CA, no accounts).
    pub fn start_again(&mut self) {
        if self.pebble.is_none() {
            self.start_pebble();
        }
    }

    /// Process ids of pebble and challtestsrv (for the harness self-test).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self._challtestsrv.child.id()];
        pids.extend(self.pebble.as_ref().map(|p| p.child.id()));
        pids
    }

    /// Pebble's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root that issues certificates now (new on every start).
    pub async fn root(&self) -> CertificateDer<'static> {
        self.management_pem("/roots/0").await
    }

    /// The intermediate that issues certificates now.
    pub async fn intermediate(&self) -> CertificateDer<'static> {
        self.management_pem("/intermediates/0").await
    }

    async fn management_pem(&self, path: &str) -> CertificateDer<'static> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.api_ca_pem.as_bytes()).expect("ca pem"))
            .expect("add ca");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let url = format!("{}{path}", self.management);
        let rsp = client
            .get(url.parse().expect("uri"))
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(rsp.status().is_success(), "GET {url}: {}", rsp.status());
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        CertificateDer::from_pem_slice(&body).expect("PEM from management API")
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in url")
}

/// Wait until something accepts on 127.0.0.1:`port` (10 s at most).
fn wait_listening(port: u16, dir: &Path, log: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            panic!("nothing listens on {addr} after 10s; {log}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// An HTTP-01 responder: `GET /.well-known/acme-challenge/<token>` answered
/// from a `ChallengeStore`, everything else 404. Stops when dropped.
pub struct Responder {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Responder {
    pub async fn start(store: ChallengeStore) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind responder");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer(conn, store.clone()));
            }
        });
        Self { port, task }
    }
}

async fn answer(mut conn: tokio::net::TcpStream, store: ChallengeStore) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    let found = target
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|token| store.get(token));
    let reply = match found {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}
