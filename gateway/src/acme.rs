//! `tls.mode = "acme"`: keeps a certificate from the ACME CA in the
//! resolver. At start the stored certificate (if any) already serves (see
//! `certificates::load`); this service orders one when there is none, renews
//! when two thirds of its lifetime have passed, and retries failures with
//! jittered backoff (1 min, 10 min, 100 min, … 24 h) while the old
//! certificate keeps serving. A new certificate is served from the next
//! handshake on, without a restart. It reads the config from the current
//! runtime on every round, so a reload that changes the domains is picked up.
//!
//! [`AlpnChallenges`] answers TLS-ALPN-01 validation handshakes on the https
//! listener, ahead of pingora's own TLS handshake.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certs::acme::{self, AcmeStore, ChallengeStore};
use certs::resolver::{CertSet, Resolver};
use certs::tls_alpn::{self, Peeked};
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use serde_json::json;

use crate::metrics::METRICS;
use crate::runtime::AcmeRt;
use crate::state::Shared;

/// How often to look again when nothing is due (a reload may change domains).
const RECHECK: Duration = Duration::from_secs(3600);
/// How soon to look again while another instance holds the order lock.
const LOCKED_RECHECK: Duration = Duration::from_secs(30);

pub struct AcmeManager {
    pub shared: Arc<Shared>,
    pub resolver: Arc<Resolver>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AcmeManager {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut failures: u32 = 0;
        loop {
            let wait = self.round(&mut failures).await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl AcmeManager {
    /// One round: serve what is stored, order what is missing or due.
    /// Returns how long to wait before the next round.
    async fn round(&self, failures: &mut u32) -> Duration {
        let rt = self.shared.runtime.load_full();
        let Some(AcmeRt {
            config: cfg,
            storage,
        }) = rt.acme.as_ref()
        else {
            return RECHECK;
        };
        let store = AcmeStore::new(storage);
        let stored = match store.load_cert(&cfg.directory, &cfg.domains) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate unusable; ordering a new one");
                None
            }
        };
        let now = SystemTime::now();
        if let Some(cert) = &stored {
            let due = acme::renew_at(cert);
            if now < due {
                self.serve_if_new(cert.clone());
                *failures = 0;
                return due.duration_since(now).unwrap_or(RECHECK).min(RECHECK);
            }
        }
        let renewal = stored.is_some();
        let result = match self.order(cfg, &store).await {
            Some(result) => result,
            None => return LOCKED_RECHECK,
        };
        self.settle(cfg, result, renewal, failures)
    }

    /// Orders under the storage lock: with storage shared between
    /// instances, one orders and the others pick its certificate up from
    /// storage on a later round. `None`: another instance holds the lock.
    async fn order(
        &self,
        cfg: &acme::AcmeConfig,
        store: &AcmeStore,
    ) -> Option<Result<certs::resolver::Loaded, acme::AcmeError>> {
        match store.lock_order(&cfg.directory, &cfg.domains) {
            Ok(Some(lock)) => {
                let result = acme::obtain(cfg, store, &self.shared.challenges).await;
                drop(lock);
                Some(result)
            }
            Ok(None) => {
                tracing::info!(
                    domains = ?cfg.domains,
                    "another instance is ordering this certificate into the shared storage; looking again in 30 s"
                );
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Serves a new certificate, or schedules the retry; audits either.
    /// Returns how long to wait before the next round.
    fn settle(
        &self,
        cfg: &acme::AcmeConfig,
        result: Result<certs::resolver::Loaded, acme::AcmeError>,
        renewal: bool,
        failures: &mut u32,
    ) -> Duration {
        match result {
            Ok(cert) => {
                let event = if renewal { "renewed" } else { "issued" };
                let not_after = cert
                    .not_after
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.resolver.replace(CertSet::new(vec![cert]));
                METRICS.acme_orders.with_label_values(&[event]).inc();
                tracing::info!(domains = ?cfg.domains, event, "ACME certificate in service");
                crate::audit::event(
                    &format!("cert_{event}"),
                    "",
                    None,
                    json!({ "domains": cfg.domains, "not_after": not_after, "directory": cfg.directory }),
                );
                *failures = 0;
                Duration::from_secs(1)
            }
            Err(e) => {
                let wait = acme::backoff(*failures);
                *failures = failures.saturating_add(1);
                METRICS.acme_orders.with_label_values(&["failed"]).inc();
                tracing::error!(
                    error = %e,
                    retry_in_seconds = wait.as_secs(),
                    "ACME order failed; the current certificate keeps serving"
                );
                crate::audit::event(
                    "cert_failed",
                    "",
                    None,
                    json!({ "domains": cfg.domains, "error": e.to_string(), "retry_in_seconds": wait.as_secs() }),
                );
                wait
            }
        }
    }

    /// Puts a stored certificate in service unless it already is (after a
    /// reload that changed domains, or another instance's renewal in shared
    /// storage).
    fn serve_if_new(&self, cert: certs::resolver::Loaded) {
        let current = self.resolver.current();
        let same = current
            .certs()
            .first()
            .is_some_and(|c| c.certified.cert.first() == cert.certified.cert.first());
        if !same {
            self.resolver.replace(CertSet::new(vec![cert]));
            tracing::info!("stored ACME certificate in service");
        }
    }
}

/// Runs before pingora's TLS handshake on every https connection. While a
/// TLS-ALPN-01 challenge is pending it reads the ClientHello: a validation
/// handshake (`acme-tls/1`) is answered here and the connection then ends;
/// anything else gets its bytes put back and proceeds to pingora's handshake
/// unchanged. Otherwise it costs one atomic load.
pub struct AlpnChallenges {
    challenges: ChallengeStore,
    config: Arc<pingora::tls::ServerConfig>,
}

impl AlpnChallenges {
    pub fn new(challenges: ChallengeStore) -> Result<Self, certs::CertError> {
        let config = tls_alpn::validation_config(challenges.clone())?;
        Ok(Self { challenges, config })
    }
}

#[async_trait::async_trait]
impl PreTlsProcess for AlpnChallenges {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if !self.challenges.alpn_pending() {
            return Ok(());
        }
        match tls_alpn::answer(stream, &self.config).await {
            Peeked::NotAcme(seen) => {
                stream.rewind(&seen);
                Ok(())
            }
            // pingora logs this at error level as a "handshake error"; the
            // connection has done its job.
            Peeked::Answered => Err(pingora::Error::explain(
                pingora::ErrorType::ConnectionClosed,
                "TLS-ALPN-01 validation answered; connection closed (not a failure)",
            )),
        }
    }
}
