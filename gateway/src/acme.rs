//! `tls.mode = "acme"`: keeps a certificate from the ACME CA in the
//! resolver. At start the stored certificate (if any) already serves (see
//! `certificates::load`); this service orders one when there is none, renews
//! when two thirds of its lifetime have passed, and retries failures with
//! jittered backoff (1 min, 10 min, 100 min, … 24 h) while the old
//! certificate keeps serving. A new certificate is served from the next
//! handshake on, without a restart. It reads the config from the current
//! runtime on every round, so a reload that changes the domains is picked up.
//!
//! ACME state lives in files under `[tls] storage`, or, with `[store] url`
//! on PostgreSQL, in the identity store ([`SharedBackend`]): instances then
//! share certificates, the account and challenge answers. One orders at a
//! time under a lease (renewed while it orders, taken over a minute after
//! a holder dies); after taking the lease the store is read again, so a
//! certificate another instance stored meanwhile is served, not ordered.
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

use crate::cert_backend::SharedBackend;
use crate::metrics::METRICS;
use crate::runtime::AcmeRt;
use crate::state::Shared;

/// How often to look again when nothing is due (a reload may change domains).
const RECHECK: Duration = Duration::from_secs(3600);
/// How soon to look again while another instance holds the order lease.
const LEASED_RECHECK: Duration = Duration::from_secs(5);
/// How soon to look again while the shared store cannot be reached: not a
/// CA failure, so no backoff (which would delay the order for hours).
const STORE_RETRY: Duration = Duration::from_secs(15);

/// The shared store failed (not the CA, not the stored bytes).
fn store_unavailable(e: &acme::AcmeError) -> bool {
    matches!(e, acme::AcmeError::Store(certs::CertError::Shared { .. }))
}

pub struct AcmeManager {
    pub shared: Arc<Shared>,
    pub resolver: Arc<Resolver>,
    /// This process in order leases.
    pub holder: String,
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
        let url = rt.fixed.store.as_ref().map(|s| s.value.as_str());
        let store = if url.is_some_and(crate::config::is_shared_store) {
            let backend = SharedBackend::new(self.shared.accounts.clone(), self.holder.clone());
            AcmeStore::with_backend(Arc::new(backend))
        } else {
            AcmeStore::new(storage)
        };
        let Ok(stored) = self.stored(cfg, &store).await else {
            return STORE_RETRY;
        };
        if let Some(wait) = self.serve_unless_due(stored.as_ref(), failures) {
            return wait;
        }
        let lease = match store.lease_order(&cfg.directory, &cfg.domains).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::info!(
                    domains = ?cfg.domains,
                    "another instance is ordering this certificate; looking again in 5 s"
                );
                return LEASED_RECHECK;
            }
            Err(e) if store_unavailable(&e) => {
                tracing::warn!(error = %e, "ACME: the shared store is unavailable; looking again in 15 s");
                return STORE_RETRY;
            }
            Err(e) => return self.settle(cfg, Err(e), stored.is_some(), failures),
        };
        // Another instance may have stored one while this one waited for
        // the lease: use it rather than order again.
        let stored = match self.stored(cfg, &store).await {
            Ok(stored) => stored,
            Err(()) => {
                store.backend().release_lease(lease).await;
                return STORE_RETRY;
            }
        };
        if let Some(wait) = self.serve_unless_due(stored.as_ref(), failures) {
            store.backend().release_lease(lease).await;
            return wait;
        }
        tracing::info!(domains = ?cfg.domains, lease = %lease.name, "ACME order lease taken; ordering");
        let result = self.order_holding(cfg, &store, &lease).await;
        store.backend().release_lease(lease).await;
        self.settle(cfg, result, stored.is_some(), failures)
    }

    /// The stored certificate; `Err` when the shared store cannot be read
    /// (then nothing is ordered: the CA is not the problem, and an order
    /// could not be stored).
    async fn stored(
        &self,
        cfg: &acme::AcmeConfig,
        store: &AcmeStore,
    ) -> Result<Option<certs::resolver::Loaded>, ()> {
        match store.load_cert(&cfg.directory, &cfg.domains).await {
            Ok(c) => Ok(c),
            Err(e) if store_unavailable(&e) => {
                tracing::warn!(error = %e, "ACME: the shared store is unavailable; looking again in 15 s");
                Err(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate unusable; ordering a new one");
                Ok(None)
            }
        }
    }

    /// Serves a stored certificate that is not due for renewal; the wait
    /// until it is. `None`: order now.
    fn serve_unless_due(
        &self,
        stored: Option<&certs::resolver::Loaded>,
        failures: &mut u32,
    ) -> Option<Duration> {
        let cert = stored?;
        let (now, due) = (SystemTime::now(), acme::renew_at(cert));
        if now >= due {
            return None;
        }
        self.serve_if_new(cert.clone());
        *failures = 0;
        Some(due.duration_since(now).unwrap_or(RECHECK).min(RECHECK))
    }

    /// Orders while renewing the lease every third of its lifetime, so it
    /// lapses only if this process dies.
    async fn order_holding(
        &self,
        cfg: &acme::AcmeConfig,
        store: &AcmeStore,
        lease: &acme::Lease,
    ) -> Result<certs::resolver::Loaded, acme::AcmeError> {
        let renew = async {
            let mut tick = tokio::time::interval(acme::LEASE_TTL / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.backend().renew_lease(lease, acme::LEASE_TTL).await {
                    Ok(true) => {}
                    Ok(false) => tracing::error!(
                        lease = %lease.name,
                        "the ACME order lease was lost; another instance may order too"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the ACME order lease"),
                }
            }
        };
        tokio::select! {
            result = acme::obtain(cfg, store, &self.shared.challenges) => result,
            () = renew => unreachable_renewal(),
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

/// The renewal loop never ends; this keeps `select!` total without a panic.
fn unreachable_renewal() -> Result<certs::resolver::Loaded, acme::AcmeError> {
    Err(acme::AcmeError::Config {
        reason: "the lease renewal loop ended".to_string(),
    })
}
