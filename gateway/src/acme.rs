//! `tls.mode = "acme"`: keeps a certificate from the ACME CA in the
//! resolver. At start the stored certificate (if any) already serves (see
//! `serve::load_certs`); this service orders one when there is none, renews
//! when two thirds of its lifetime have passed, and retries failures with
//! jittered backoff (1 min, 10 min, 100 min, … 24 h) while the old
//! certificate keeps serving. A new certificate is served from the next
//! handshake on, without a restart. It reads the config from the current
//! runtime on every round, so a reload that changes the domains is picked up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certs::acme::{self, AcmeConfig, AcmeStore};
use certs::resolver::{CertSet, Resolver};
use serde_json::json;

use crate::config::TlsMode;
use crate::metrics::METRICS;
use crate::state::Shared;

/// How often to look again when nothing is due (a reload may change domains).
const RECHECK: Duration = Duration::from_secs(3600);

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
        let TlsMode::Acme(mode) = &rt.config.tls.mode else {
            return RECHECK;
        };
        let cfg = AcmeConfig {
            directory: mode.directory.clone(),
            email: mode.email.clone(),
            domains: rt.config.tls.domains.clone(),
            ca_pem: mode.ca_pem.clone(),
        };
        let store = AcmeStore::new(&rt.config.tls.storage);
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
        match acme::obtain(&cfg, &store, &self.shared.challenges).await {
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
