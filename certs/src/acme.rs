//! ACME (RFC 8555) issuance with `instant-acme`: the account and the issued
//! certificates on private storage, the pending challenge answers in a shared
//! [`ChallengeStore`] (HTTP-01 answers read by the plain-HTTP listener,
//! TLS-ALPN-01 certificates by [`crate::tls_alpn`] on the https listener), and
//! the renewal arithmetic ([`renew_at`], [`backoff`]). The renewal loop and the
//! listener wiring live in the gateway (`gateway/src/acme.rs`).
//!
//! The HTTP client is built here (hyper-rustls on the ring provider) rather
//! than taken from `instant-acme`, so that the binary keeps one crypto
//! provider, every certificate in `ca` is trusted in addition to the system
//! roots, and connecting has a timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::CertError;
use crate::files;
use crate::resolver::Loaded;
use crate::storage::{ensure_private_dir, write_atomic};
use crate::tls_alpn::PendingCerts;

/// Longest wait for any single exchange with the CA (connect included).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for connecting to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the CA may take to validate the challenges / issue the certificate.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(POLL_TIMEOUT);
/// Outer bound of a polling step: the polls plus one slow last request.
const POLL_STEP_TIMEOUT: Duration = Duration::from_secs(90 + 30);
/// Longest domain-set directory name before it is shortened with a hash.
const MAX_SET_NAME: usize = 120;

/// What to ask which CA for.
#[derive(Clone, Debug, Default)]
pub struct AcmeConfig {
    /// ACME directory URL (https).
    pub directory: String,
    /// Contact address for the account, without `mailto:`.
    pub email: Option<String>,
    /// DNS names (or IP addresses) the certificate must cover.
    pub domains: Vec<String>,
    /// PEM with one or more roots to trust for the ACME server's HTTPS, in
    /// addition to the system roots (a private or test CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Which challenge proves control of the domains.
    pub challenge: Challenge,
}

/// The ACME challenge type portcullis answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 on the plain-HTTP listener (port 80).
    #[default]
    Http01,
    /// TLS-ALPN-01 on the https listener (port 443), see [`crate::tls_alpn`].
    TlsAlpn01,
}

/// Why an ACME step failed; each names the step and the URL or domain.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The configuration cannot work (no domains, bad URL, wildcard...).
    #[error("ACME config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The `ca` PEM holds no usable certificate.
    #[error("ACME `ca`: {reason}")]
    Ca {
        /// What is wrong with it.
        reason: String,
    },
    /// The CA's HTTPS certificate is not trusted.
    #[error("ACME {step} at {url}: TLS certificate of the ACME server not trusted ({detail}); set `ca` to its root if it uses a private CA")]
    Untrusted {
        /// The step, e.g. "account".
        step: &'static str,
        /// The URL involved.
        url: String,
        /// The TLS error.
        detail: String,
    },
    /// A request to the CA failed (network or an ACME problem document).
    #[error("ACME {step} at {url}: {detail}")]
    Protocol {
        /// The step, e.g. "new order".
        step: &'static str,
        /// The URL involved.
        url: String,
        /// The error and its causes.
        detail: String,
    },
    /// The CA did not answer in time.
    #[error("ACME {step} at {url}: no answer within {}s", timeout.as_secs())]
    Timeout {
        /// The step.
        step: &'static str,
        /// The URL involved.
        url: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The CA could not validate a domain.
    #[error("ACME validation of {domain} failed: {detail}")]
    Validation {
        /// The domain (identifier) concerned.
        domain: String,
        /// What the CA reported.
        detail: String,
    },
    /// The stored account file cannot be used.
    #[error("{}: {reason}", path.display())]
    AccountFile {
        /// The account file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the account or certificates failed.
    #[error("ACME storage: {0}")]
    Store(#[from] CertError),
}

/// Pending challenge answers: HTTP-01 token → key authorization, and the
/// TLS-ALPN-01 certificate per domain. Cheap to clone; the clones share one
/// state, written by [`obtain`] and read by the listeners.
#[derive(Clone, Debug, Default)]
pub struct ChallengeStore {
    http: Arc<RwLock<HashMap<String, String>>>,
    alpn: PendingCerts,
}

impl ChallengeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key authorization for `token`, if pending. Anything that is not a
    /// plausible token (empty, too long, not base64url) is refused before
    /// the map is consulted.
    pub fn get(&self, token: &str) -> Option<String> {
        if !valid_token(token) {
            return None;
        }
        // A panic elsewhere while holding the lock leaves a usable map.
        let map = self.http.read().unwrap_or_else(PoisonError::into_inner);
        map.get(token).cloned()
    }

    /// Number of pending HTTP-01 answers.
    pub fn len(&self) -> usize {
        self.http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no HTTP-01 answer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while a TLS-ALPN-01 challenge is pending (one atomic load: the
    /// https listener asks on every connection).
    pub fn alpn_pending(&self) -> bool {
        self.alpn.is_pending()
    }

    /// The TLS-ALPN-01 certificate for `server_name`, if pending.
    pub fn alpn_cert(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.get(server_name)
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }

    fn remove(&self, token: &str) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// The TLS-ALPN-01 half, for [`crate::tls_alpn::validation_config`]: it
/// shares its state with the store, so what [`obtain`]
/// publishes later is seen by the validation handshake.
impl From<ChallengeStore> for PendingCerts {
    fn from(store: ChallengeStore) -> Self {
        store.alpn
    }
}

/// RFC 8555 8.1: tokens are base64url without padding; ours are bounded.
pub(super) fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Removes the answers it published when dropped, so a failed or cancelled
/// `obtain` leaves none behind.
pub(super) struct Published {
    store: ChallengeStore,
    tokens: Vec<String>,
    domains: Vec<String>,
}

impl Published {
    /// Nothing published yet into `store`.
    pub(super) fn new(store: ChallengeStore) -> Self {
        Self {
            store,
            tokens: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// Serve `key_authorization` for HTTP-01 `token` until dropped.
    pub(super) fn add(&mut self, token: String, key_authorization: String) {
        self.store.insert(token.clone(), key_authorization);
        self.tokens.push(token);
    }

    /// Serve `cert` for TLS-ALPN-01 validations of `domain` until dropped.
    pub(super) fn add_alpn(&mut self, domain: String, cert: Arc<CertifiedKey>) {
        self.store.alpn.insert(domain.clone(), cert);
        self.domains.push(domain);
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.store.remove(token);
        }
        for domain in &self.domains {
            self.store.alpn.remove(domain);
        }
    }
}

/// An order lock older than this is left over from a crash: ordering is
/// bounded well below it (every step has a timeout; polling stops at 90 s).
pub const LOCK_STALE: Duration = Duration::from_secs(15 * 60);

/// Held while this process orders a certificate into shared storage; the
/// lock file is removed on drop.
#[derive(Debug)]
pub struct OrderLock {
    path: PathBuf,
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the ACME order lock");
        }
    }
}

/// ACME state under `{storage}/acme/<directory host>/`: `account.json`
/// (0600) and `certs/<domain set>/{cert,key}.pem` (0600), directories 0700.
#[derive(Clone, Debug)]
pub struct AcmeStore {
    root: PathBuf,
}

impl AcmeStore {
    /// ACME state below `storage` (the `[tls] storage` directory).
    pub fn new(storage: &Path) -> Self {
        Self {
            root: storage.join("acme"),
        }
    }

    /// The directory holding everything for the CA at `directory`.
    pub fn ca_dir(&self, directory: &str) -> Result<PathBuf, AcmeError> {
        Ok(self.root.join(directory_host(directory)?))
    }

    /// Where the account for `directory` is kept.
    pub fn account_path(&self, directory: &str) -> Result<PathBuf, AcmeError> {
        Ok(self.ca_dir(directory)?.join("account.json"))
    }

    /// Where the certificate for `domains` from `directory` is kept.
    pub fn cert_dir(&self, directory: &str, domains: &[String]) -> Result<PathBuf, AcmeError> {
        let names = normalize_domains(domains)?;
        Ok(self.ca_dir(directory)?.join("certs").join(set_name(&names)))
    }

    /// Take the order lock for `domains` at `directory`: `None` while
    /// another process holds it (it is ordering the same certificate into
    /// the same storage). The lock is a file created exclusively
    /// (`certs/<names>/order.lock`, 0600), removed when the guard drops; one
    /// older than [`LOCK_STALE`] is left over from a crash and taken over.
    pub fn lock_order(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<OrderLock>, AcmeError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.cert_dir(directory, domains)?;
        ensure_private_dir(&dir)?;
        let path = dir.join("order.lock");
        let io_err = |action: &'static str, source: io::Error| CertError::Io {
            path: path.clone(),
            action,
            source,
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    let since = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    // For a human looking at the file; nothing reads it back.
                    let _ = writeln!(file, "pid {} since {since}", std::process::id());
                    return Ok(Some(OrderLock { path }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    match age {
                        Some(age) if age < LOCK_STALE => return Ok(None),
                        // Stale, or gone in between: try once more.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => {
                                tracing::warn!(path = %path.display(), "removed a stale ACME order lock");
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io_err("remove", e).into()),
                        },
                    }
                }
                Err(e) => return Err(io_err("create", e).into()),
            }
        }
        Ok(None)
    }

    /// The stored account for `directory`, if any. An account stored for
    /// another URL on the same host is ignored (and later replaced).
    pub fn load_account(&self, directory: &str) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path(directory)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CertError::Read { path, source }.into()),
        };
        let bad = |reason: String| AcmeError::AccountFile {
            path: path.clone(),
            reason,
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if value.get("directory").and_then(|d| d.as_str()) != Some(directory) {
            tracing::warn!(path = %path.display(), directory,
                "stored ACME account belongs to another directory URL; registering anew");
            return Ok(None);
        }
        let credentials = value
            .get_mut("credentials")
            .map(serde_json::Value::take)
            .ok_or_else(|| bad("no \"credentials\"".to_owned()))?;
        let credentials = serde_json::from_value(credentials)
            .map_err(|e| bad(format!("invalid credentials: {e}")))?;
        Ok(Some(credentials))
    }

    fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), AcmeError> {
        let path = self.account_path(directory)?;
        let encode = |e: serde_json::Error| AcmeError::AccountFile {
            path: path.clone(),
            reason: format!("cannot encode account: {e}"),
        };
        let mut json = serde_json::Map::new();
        json.insert("directory".to_owned(), directory.into());
        json.insert(
            "credentials".to_owned(),
            serde_json::to_value(credentials).map_err(encode)?,
        );
        let bytes = serde_json::to_vec_pretty(&json).map_err(encode)?;
        ensure_private_dir(&self.root)?;
        ensure_private_dir(&self.ca_dir(directory)?)?;
        write_atomic(&path, &bytes, 0o600)?;
        Ok(())
    }

    /// The stored certificate for `domains` from `directory`, if present and
    /// covering every domain. Expiry is the caller's business ([`renew_at`]).
    pub fn load_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Loaded>, AcmeError> {
        let dir = self.cert_dir(directory, domains)?;
        let loaded = match files::load(&dir.join("cert.pem"), &dir.join("key.pem")) {
            Ok(loaded) => loaded,
            Err(CertError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let names = normalize_domains(domains)?;
        if names.iter().all(|n| loaded.names.contains(n)) {
            Ok(Some(loaded))
        } else {
            tracing::warn!(dir = %dir.display(), "stored ACME certificate lacks requested names");
            Ok(None)
        }
    }

    /// Check the PEM, then store key and chain; returns what was stored.
    fn save_cert(
        &self,
        directory: &str,
        domains: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<Loaded, AcmeError> {
        let dir = self.cert_dir(directory, domains)?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let loaded = files::from_pem(
            chain_pem.as_bytes(),
            &cert_path,
            key_pem.as_bytes(),
            &key_path,
        )?;
        ensure_private_dir(&self.root)?;
        ensure_private_dir(&dir)?;
        // Key first: a crash in between leaves a mismatched pair, which loads
        // as an error instead of a certificate without its key.
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, chain_pem.as_bytes(), 0o600)?;
        Ok(loaded)
    }
}

/// `host` or `host_port` of an https URL, reduced to `[a-z0-9.-_]`.
fn directory_host(directory: &str) -> Result<String, AcmeError> {
    let rest = directory
        .strip_prefix("https://")
        .ok_or_else(|| AcmeError::Config {
            reason: format!("directory {directory:?} must be an https:// URL"),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host: String = authority
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    // Nothing but separators (or `.`/`..`) would escape or alias the directory.
    if host.trim_matches(['_', '.']).is_empty() {
        return Err(AcmeError::Config {
            reason: format!("directory {directory:?} has no host"),
        });
    }
    Ok(host)
}

/// Lowercase, no trailing dot, IPs canonical, duplicates dropped, sorted;
/// wildcards refused (HTTP-01 cannot validate them).
fn normalize_domains(domains: &[String]) -> Result<Vec<String>, AcmeError> {
    let mut out = Vec::with_capacity(domains.len());
    for domain in domains {
        let name = domain.trim();
        let name = name.strip_suffix('.').unwrap_or(name);
        let name = match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.to_ascii_lowercase(),
        };
        if name.starts_with("*.") {
            return Err(AcmeError::Config {
                reason: format!("{name}: wildcard names need DNS-01, which is not supported"),
            });
        }
        let plausible = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !plausible {
            return Err(AcmeError::Config {
                reason: format!("{domain:?} is not a domain name"),
            });
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err(AcmeError::Config {
            reason: "no domains".to_owned(),
        });
    }
    out.sort();
    Ok(out)
}

/// A directory name for a normalised domain set: the names joined by `+`, or
/// for long sets the first name, the count and a hash of all of them.
fn set_name(names: &[String]) -> String {
    let joined = names.join("+").replace(':', "_");
    if joined.len() <= MAX_SET_NAME {
        return joined;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, names.join(",").as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let first = names
        .first()
        .map(|n| n.replace(':', "_"))
        .unwrap_or_default();
    let first: String = first.chars().take(64).collect();
    format!("{first}+{}-{hex}", names.len().saturating_sub(1))
}

/// When to renew: two thirds into the certificate's lifetime.
pub fn renew_at(loaded: &Loaded) -> SystemTime {
    match loaded.not_after.duration_since(loaded.not_before) {
        Ok(lifetime) => loaded
            .not_before
            .checked_add(lifetime / 3 * 2)
            .unwrap_or(loaded.not_after),
        // A certificate that ends before it starts: renew now.
        Err(_) => loaded.not_after.min(SystemTime::now()),
    }
}

/// Delay before retry number `attempt` (0-based) after a failed issuance:
/// 1 min, 10 min, 100 min, ..., at most 24 h, each ±10% so that many
/// instances do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    const CAP: f64 = 86_400.0;
    let base = 60.0 * 10f64.powi(attempt.min(10) as i32);
    let mut bytes = [0u8; 4];
    // No randomness means no jitter, not no retry.
    let unit = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    let jittered = base.min(CAP) * (0.9 + 0.2 * unit);
    Duration::from_secs_f64(jittered.min(CAP))
}

/// Get a certificate for `cfg.domains`: load or register the account
/// (registering again if the CA forgot it), order, answer HTTP-01 through
/// `challenges`, finalize with a fresh P-256 key, download and store the
/// chain, and return it.
pub async fn obtain(
    cfg: &AcmeConfig,
    store: &AcmeStore,
    challenges: &ChallengeStore,
) -> Result<Loaded, AcmeError> {
    let domains = normalize_domains(&cfg.domains)?;
    // Fail on a bad directory URL before any network traffic.
    store.ca_dir(&cfg.directory)?;
    let http = http_client(cfg.ca_pem.as_deref())?;
    let identifiers: Vec<Identifier> = domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    let url = cfg.directory.as_str();

    let stored = match store.load_account(url) {
        Ok(stored) => stored,
        // Accounts are cheap to make; a broken file must not block issuance.
        Err(e @ AcmeError::AccountFile { .. }) => {
            tracing::warn!(error = %e, "stored ACME account unusable; registering anew");
            None
        }
        Err(e) => return Err(e),
    };
    let restored = match stored {
        Some(credentials) => {
            let builder = Account::builder_with_http(Box::new(http.clone()));
            match step_raw(STEP_TIMEOUT, builder.from_credentials(credentials)).await {
                Ok(account) => Some(account),
                // A stored key we cannot use will never work: start over.
                Err(StepError::Acme(
                    instant_acme::Error::KeyRejected | instant_acme::Error::Crypto,
                )) => {
                    tracing::warn!(
                        directory = url,
                        "stored ACME account key unusable; registering anew"
                    );
                    None
                }
                Err(e) => return Err(e.into_error("account", url)),
            }
        }
        None => None,
    };
    let (mut account, mut fresh) = match restored {
        Some(account) => (account, false),
        None => (register(cfg, store, &http).await?, true),
    };

    let mut order = loop {
        match step_raw(
            STEP_TIMEOUT,
            account.new_order(&NewOrder::new(&identifiers)),
        )
        .await
        {
            Ok(order) => break order,
            Err(StepError::Acme(e)) if !fresh && account_gone(&e) => {
                tracing::warn!(
                    directory = url,
                    "ACME CA no longer knows the stored account; registering anew"
                );
                account = register(cfg, store, &http).await?;
                fresh = true;
            }
            Err(e) => return Err(e.into_error("new order", url)),
        }
    };

    let mut published = Published::new(challenges.clone());
    authorize(&mut order, cfg.challenge, &mut published).await?;

    let order_url = order.url().to_owned();
    let status = match step_raw(POLL_STEP_TIMEOUT, order.poll_ready(&POLL)).await {
        Ok(status) => status,
        Err(StepError::Acme(instant_acme::Error::Api(problem))) => {
            return Err(validation_error(&mut order, &domains, problem.to_string()).await)
        }
        Err(e) => return Err(e.into_error("wait for validation", &order_url)),
    };
    if status != OrderStatus::Ready {
        return Err(validation_error(&mut order, &domains, format!("order is {status:?}")).await);
    }

    let key_pem = step("finalize", &order_url, order.finalize()).await?;
    let chain_pem = step_raw(POLL_STEP_TIMEOUT, order.poll_certificate(&POLL))
        .await
        .map_err(|e| e.into_error("download certificate", &order_url))?;
    drop(published);

    let loaded = store.save_cert(url, &domains, &chain_pem, &key_pem)?;
    tracing::info!(directory = url, domains = ?domains, "ACME certificate issued");
    Ok(loaded)
}

/// What a CA's directory offers, as far as portcullis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryInfo {
    /// ACME Renewal Information (RFC 9773) is offered.
    pub renewal_info: bool,
}

/// Fetch the directory at `directory` the way [`obtain`] would reach it
/// (same trust, same timeouts) and check that it is an ACME directory: for
/// `portcullis check --online`. Changes nothing at the CA.
pub async fn probe_directory(
    directory: &str,
    ca_pem: Option<&[u8]>,
) -> Result<DirectoryInfo, AcmeError> {
    directory_host(directory)?;
    let http = http_client(ca_pem)?;
    let not_acme = |detail: String| AcmeError::Protocol {
        step: "directory",
        url: directory.to_owned(),
        detail,
    };
    let request = http::Request::get(directory)
        .body(BodyWrapper::default())
        .map_err(|e| not_acme(e.to_string()))?;
    let mut response = step(
        "directory",
        directory,
        instant_acme::HttpClient::request(&http, request),
    )
    .await?;
    if !response.parts.status.is_success() {
        return Err(not_acme(format!("HTTP status {}", response.parts.status)));
    }
    let body = match tokio::time::timeout(STEP_TIMEOUT, response.body.into_bytes()).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(not_acme(format!("reading the body: {e}"))),
        Err(_) => {
            return Err(AcmeError::Timeout {
                step: "directory",
                url: directory.to_owned(),
                timeout: STEP_TIMEOUT,
            })
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| not_acme("not an ACME directory (not JSON)".to_owned()))?;
    for key in ["newNonce", "newAccount", "newOrder"] {
        if !json[key].is_string() {
            return Err(not_acme(format!("not an ACME directory (no {key:?})")));
        }
    }
    Ok(DirectoryInfo {
        renewal_info: json["renewalInfo"].is_string(),
    })
}

/// Publish the answer to the chosen challenge for every pending
/// authorization and tell the CA.
async fn authorize(
    order: &mut Order,
    kind: Challenge,
    published: &mut Published,
) -> Result<(), AcmeError> {
    let order_url = order.url().to_owned();
    let mut authorizations = order.authorizations();
    loop {
        let next = tokio::time::timeout(STEP_TIMEOUT, authorizations.next()).await;
        let result = match next {
            Ok(Some(result)) => result,
            Ok(None) => break,
            Err(_) => {
                return Err(AcmeError::Timeout {
                    step: "authorization",
                    url: order_url,
                    timeout: STEP_TIMEOUT,
                })
            }
        };
        let mut authz = result.map_err(|e| protocol("authorization", &order_url, &e))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Validation {
                    domain,
                    detail: format!("authorization is {other:?}"),
                })
            }
        }
        let authz_url = authz.url().to_owned();
        let (wanted, name) = match kind {
            Challenge::Http01 => (ChallengeType::Http01, "http-01"),
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
        };
        let Some(mut challenge) = authz.challenge(wanted) else {
            return Err(AcmeError::Validation {
                domain,
                detail: format!("the CA offers no {name} challenge"),
            });
        };
        match kind {
            Challenge::Http01 => {
                if !valid_token(&challenge.token) {
                    return Err(AcmeError::Protocol {
                        step: "challenge",
                        url: authz_url,
                        detail: "the CA sent a token that is not base64url".to_owned(),
                    });
                }
                let key_authorization = challenge.key_authorization().as_str().to_owned();
                published.add(challenge.token.clone(), key_authorization);
            }
            Challenge::TlsAlpn01 => {
                let Identifier::Dns(dns) = challenge.identifier().identifier.clone() else {
                    return Err(AcmeError::Validation {
                        domain,
                        detail: "tls-alpn-01 is only done for DNS names here".to_owned(),
                    });
                };
                let dns = dns.to_ascii_lowercase();
                let digest = challenge.key_authorization().digest();
                let cert = crate::tls_alpn::challenge_cert(&dns, digest.as_ref())?;
                published.add_alpn(dns, cert);
            }
        }
        let challenge_url = challenge.url.clone();
        step("challenge ready", &challenge_url, challenge.set_ready()).await?;
    }
    Ok(())
}

/// Explain a failed validation by the per-domain errors the CA recorded.
async fn validation_error(order: &mut Order, domains: &[String], fallback: String) -> AcmeError {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(Ok(state)) = tokio::time::timeout(STEP_TIMEOUT, authz.refresh()).await else {
            continue;
        };
        let domain = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                details.push((domain.clone(), problem.to_string()));
            }
        }
    }
    match details.len() {
        0 => AcmeError::Validation {
            domain: domains.join(", "),
            detail: fallback,
        },
        _ => {
            let domain = details
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let detail = match details.as_slice() {
                [(_, problem)] => problem.clone(),
                _ => details
                    .iter()
                    .map(|(d, p)| format!("{d}: {p}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            AcmeError::Validation { domain, detail }
        }
    }
}

async fn register(cfg: &AcmeConfig, store: &AcmeStore, http: &Http) -> Result<Account, AcmeError> {
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let builder = Account::builder_with_http(Box::new(http.clone()));
    let (account, credentials) = step(
        "account registration",
        &cfg.directory,
        builder.create(&new_account, cfg.directory.clone(), None),
    )
    .await?;
    store.save_account(&cfg.directory, &credentials)?;
    tracing::info!(directory = %cfg.directory, "ACME account registered");
    Ok(account)
}

/// RFC 8555 7.3.1: the CA no longer has the account our key signs for.
fn account_gone(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p)
        if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
}

type Http = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// An https-only client on the ring provider trusting the system roots plus
/// every certificate in `ca_pem`.
fn http_client(ca_pem: Option<&[u8]>) -> Result<Http, AcmeError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        errors = native.errors.len(),
        "system roots for the ACME client"
    );
    if let Some(pem) = ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AcmeError::Ca {
                reason: format!("invalid PEM: {e}"),
            })?;
        if certs.is_empty() {
            return Err(AcmeError::Ca {
                reason: "no certificate found".to_owned(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| AcmeError::Ca {
                reason: format!("unusable certificate: {e}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Config {
            reason: format!("TLS client: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

enum StepError {
    Acme(instant_acme::Error),
    Timeout(Duration),
}

impl StepError {
    fn into_error(self, step: &'static str, url: &str) -> AcmeError {
        match self {
            Self::Acme(e) => protocol(step, url, &e),
            Self::Timeout(timeout) => AcmeError::Timeout {
                step,
                url: url.to_owned(),
                timeout,
            },
        }
    }
}

async fn step_raw<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, StepError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StepError::Acme(e)),
        Err(_) => Err(StepError::Timeout(timeout)),
    }
}

/// Run one exchange with the CA under [`STEP_TIMEOUT`], naming it in errors.
async fn step<T>(
    step: &'static str,
    url: &str,
    fut: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    step_raw(STEP_TIMEOUT, fut)
        .await
        .map_err(|e| e.into_error(step, url))
}

/// The error with all its causes, and TLS trust failures told apart.
fn protocol(step: &'static str, url: &str, e: &instant_acme::Error) -> AcmeError {
    let mut parts: Vec<String> = Vec::new();
    let mut untrusted = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> =
        Some(e as &(dyn std::error::Error + 'static));
    while let Some(err) = current {
        if untrusted.is_none() {
            untrusted = tls_error(err).map(|t| t.to_string());
        }
        let text = err.to_string();
        // Wrappers often repeat their cause in their own message.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    match untrusted {
        Some(detail) => AcmeError::Untrusted {
            step,
            url: url.to_owned(),
            detail,
        },
        None => AcmeError::Protocol {
            step,
            url: url.to_owned(),
            detail: parts.join(": "),
        },
    }
}

/// A rustls certificate error, directly or inside (nested) `io::Error`s, which
/// is how tokio-rustls and hyper-rustls hand it up.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
            .then_some(tls);
        }
        let inner = current.downcast_ref::<io::Error>()?.get_ref()?;
        current = inner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn backoff_grows_tenfold_with_jitter_and_cap() {
        let bounds = [
            (0, 54.0, 66.0),
            (1, 540.0, 660.0),
            (2, 5_400.0, 6_600.0),
            (3, 54_000.0, 66_000.0),
            (4, 77_760.0, 86_400.0),
            (9, 77_760.0, 86_400.0),
            (u32::MAX, 77_760.0, 86_400.0),
        ];
        for (attempt, low, high) in bounds {
            let mut seen = Vec::new();
            for _ in 0..200 {
                let d = backoff(attempt).as_secs_f64();
                assert!(d >= low && d <= high, "attempt {attempt}: {d}");
                seen.push(d);
            }
            // Jitter actually varies.
            seen.dedup();
            assert!(seen.len() > 1, "attempt {attempt}: no jitter");
        }
    }

    fn loaded_with(not_before: u64, not_after: u64) -> Loaded {
        let mut loaded = crate::self_signed::generate(&names(&["a.test"])).expect("generate");
        loaded.not_before = UNIX_EPOCH + Duration::from_secs(not_before);
        loaded.not_after = UNIX_EPOCH + Duration::from_secs(not_after);
        loaded
    }

    #[test]
    fn renew_at_two_thirds() {
        let loaded = loaded_with(1_000_000, 1_000_000 + 90 * 86_400);
        assert_eq!(
            renew_at(&loaded),
            UNIX_EPOCH + Duration::from_secs(1_000_000 + 60 * 86_400)
        );
        // A real certificate: a year of validity from a day ago.
        let real = crate::self_signed::generate(&names(&["a.test"])).expect("generate");
        let lifetime = real
            .not_after
            .duration_since(real.not_before)
            .expect("order");
        assert_eq!(renew_at(&real), real.not_before + lifetime / 3 * 2);
        // Nonsense validity: renew now at the latest.
        let backwards = loaded_with(2_000, 1_000);
        assert!(renew_at(&backwards) <= UNIX_EPOCH + Duration::from_secs(1_000));
    }

    #[test]
    fn challenge_store_validates_tokens_and_shares_state() {
        let store = ChallengeStore::new();
        let clone = store.clone();
        store.insert("abc-DEF_123".to_owned(), "abc-DEF_123.thumb".to_owned());
        assert_eq!(
            clone.get("abc-DEF_123").as_deref(),
            Some("abc-DEF_123.thumb")
        );
        assert_eq!(clone.len(), 1);
        for bad in [
            "",
            "abc/..",
            "abc.def",
            "a b",
            "%41",
            "abc=",
            &"a".repeat(257),
        ] {
            assert_eq!(clone.get(bad), None, "{bad:?}");
        }
        // A token stored under a bad name is never served.
        store.insert("../x".to_owned(), "nope".to_owned());
        assert_eq!(clone.get("../x"), None);
        clone.remove("abc-DEF_123");
        assert_eq!(store.get("abc-DEF_123"), None);
    }

    #[test]
    fn the_validation_side_sees_what_is_published_later() {
        let store = ChallengeStore::new();
        // Converted before anything is published, as the gateway does at start.
        let pending = PendingCerts::from(store.clone());
        assert!(!pending.is_pending());
        {
            let mut published = Published::new(store.clone());
            let cert = crate::tls_alpn::challenge_cert("a.test", &[7; 32]).expect("cert");
            published.add_alpn("a.test".to_owned(), cert);
            assert!(pending.is_pending());
            assert!(pending.get("a.test").is_some());
        }
        assert!(!pending.is_pending());
        assert!(pending.get("a.test").is_none());
    }

    #[test]
    fn one_order_lock_per_certificate_and_stale_ones_are_taken_over() {
        let dir = tempfile::tempdir().expect("dir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let names = vec!["a.test".to_owned()];
        let first = store.lock_order(url, &names).expect("lock").expect("free");
        assert!(
            store.lock_order(url, &names).expect("lock").is_none(),
            "held"
        );
        // Another certificate has its own lock.
        let other = vec!["b.test".to_owned()];
        assert!(store.lock_order(url, &other).expect("lock").is_some());
        drop(first);
        let again = store
            .lock_order(url, &names)
            .expect("lock")
            .expect("released");
        // A crashed holder: the file stays, but its age makes it stale.
        let path = store.cert_dir(url, &names).expect("dir").join("order.lock");
        std::mem::forget(again);
        let old = SystemTime::now() - LOCK_STALE - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(old)
            .expect("age it");
        assert!(
            store.lock_order(url, &names).expect("lock").is_some(),
            "stale lock taken over"
        );
    }

    #[test]
    fn published_tokens_are_removed_on_drop() {
        let store = ChallengeStore::new();
        {
            let mut published = Published::new(store.clone());
            published.add("t1".to_owned(), "k1".to_owned());
            published.add("t2".to_owned(), "k2".to_owned());
            let cert = crate::tls_alpn::challenge_cert("a.test", &[7; 32]).expect("cert");
            published.add_alpn("a.test".to_owned(), cert);
            assert_eq!(store.get("t2").as_deref(), Some("k2"));
            assert!(store.alpn_pending());
            assert!(store.alpn_cert("A.TEST").is_some());
        }
        assert!(store.is_empty());
        assert!(!store.alpn_pending());
        assert!(store.alpn_cert("a.test").is_none());
    }

    #[test]
    fn directory_hosts() {
        let host = |u: &str| directory_host(u).expect(u);
        assert_eq!(
            host("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org"
        );
        assert_eq!(host("https://127.0.0.1:14000/dir"), "127.0.0.1_14000");
        assert_eq!(host("https://user@[::1]:443/d"), "___1__443");
        assert_eq!(host("https://CA.Example"), "ca.example");
        for bad in [
            "http://ca.example/dir",
            "https:///dir",
            "https://../x",
            "ca.example",
        ] {
            let err = directory_host(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("ACME config: directory"),
                "{err}"
            );
        }
    }

    #[test]
    fn domain_sets() {
        let set = normalize_domains(&names(&["B.test.", "a.test", "b.test", "::1"])).expect("ok");
        assert_eq!(set, ["::1", "a.test", "b.test"]);
        assert_eq!(set_name(&set), "__1+a.test+b.test");
        let err = normalize_domains(&names(&["*.a.test"])).expect_err("wildcard");
        assert!(err.to_string().contains("DNS-01"), "{err}");
        assert!(normalize_domains(&[]).is_err());
        assert!(normalize_domains(&names(&["a/../b"])).is_err());

        let many: Vec<String> = (0..40)
            .map(|i| format!("host-{i:02}.example.com"))
            .collect();
        let long = set_name(&normalize_domains(&many).expect("ok"));
        assert!(long.starts_with("host-00.example.com+39-"), "{long}");
        assert!(long.len() < 100);
        let mut fewer = many.clone();
        fewer.pop();
        assert_ne!(long, set_name(&normalize_domains(&fewer).expect("ok")));
    }

    #[test]
    fn store_paths_and_missing_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        let url = "https://127.0.0.1:14000/dir";
        assert_eq!(
            store.account_path(url).expect("path"),
            dir.path().join("acme/127.0.0.1_14000/account.json")
        );
        assert_eq!(
            store
                .cert_dir(url, &names(&["b.test", "a.test"]))
                .expect("path"),
            dir.path().join("acme/127.0.0.1_14000/certs/a.test+b.test")
        );
        assert!(store.load_account(url).expect("none").is_none());
        assert!(store
            .load_cert(url, &names(&["a.test"]))
            .expect("none")
            .is_none());
    }

    #[test]
    fn corrupt_account_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let path = store.account_path(url).expect("path");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("write");
        let Err(err) = store.load_account(url) else {
            panic!("corrupt account file accepted");
        };
        assert!(err.to_string().contains("account.json"), "{err}");
        // An account for another URL on the same host is not used.
        std::fs::write(
            &path,
            br#"{"directory":"https://ca.test/other","credentials":{}}"#,
        )
        .expect("write");
        assert!(store.load_account(url).expect("other").is_none());
    }

    #[test]
    fn bad_ca_pem_is_refused() {
        let err = http_client(Some(b"not a pem")).expect_err("no cert");
        assert_eq!(err.to_string(), "ACME `ca`: no certificate found");
    }
}
