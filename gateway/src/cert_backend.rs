//! ACME state in the identity store, for several instances on one
//! PostgreSQL: `certs`' storage interface ([`certs::acme::Backend`]) on the
//! store's `tls_items`, `tls_challenges` and `leases` tables. Certificates,
//! the account key and pending challenge answers then need no shared volume,
//! and one instance orders at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certs::acme::{Backend, Lease};
use certs::CertError;

use crate::state::{now_ms, Accounts};

/// The shared backend; `holder` names this process in leases.
#[derive(Clone)]
pub struct SharedBackend {
    accounts: Arc<Accounts>,
    holder: String,
}

impl std::fmt::Debug for SharedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBackend")
            .field("holder", &self.holder)
            .finish()
    }
}

impl SharedBackend {
    pub fn new(accounts: Arc<Accounts>, holder: String) -> SharedBackend {
        SharedBackend { accounts, holder }
    }

    async fn store(&self) -> Result<identity::Store, CertError> {
        match self.accounts.fresh_soon().await {
            Some(cache) => Ok(cache.store().clone()),
            None => Err(self.failed("", "the identity store is not open")),
        }
    }

    fn failed(&self, name: &str, reason: impl std::fmt::Display) -> CertError {
        CertError::Shared {
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Backend for SharedBackend {
    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("[store] tls_items {name}"))
    }

    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, CertError> {
        let store = self.store().await?;
        store
            .tls_item(name)
            .await
            .map(|v| v.map(String::into_bytes))
            .map_err(|e| self.failed(name, e))
    }

    async fn store(&self, items: &[(&str, &[u8])]) -> Result<(), CertError> {
        let store = self.store().await?;
        // PEM and JSON are text; anything else is refused, never mangled.
        let text: Vec<(&str, &str)> = items
            .iter()
            .map(|(name, value)| {
                std::str::from_utf8(value)
                    .map(|v| (*name, v))
                    .map_err(|_| self.failed(name, "not text"))
            })
            .collect::<Result<_, _>>()?;
        store
            .put_tls_items(&text, now())
            .await
            .map_err(|e| self.failed(items.first().map_or("", |i| i.0), e))
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, CertError> {
        let store = self.store().await?;
        let at = now();
        let taken = store
            .take_lease(name, &self.holder, at, at.saturating_add(ms(ttl)))
            .await
            .map_err(|e| self.failed(name, e))?;
        Ok(taken.then(|| Lease {
            name: name.to_string(),
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, CertError> {
        let store = self.store().await?;
        store
            .renew_lease(&lease.name, &self.holder, now().saturating_add(ms(ttl)))
            .await
            .map_err(|e| self.failed(&lease.name, e))
    }

    async fn release_lease(&self, lease: Lease) {
        let released = match self.store().await {
            Ok(store) => store
                .release_lease(&lease.name, &self.holder)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = released {
            // It expires by itself.
            tracing::warn!(lease = %lease.name, error = %e, "cannot release the ACME lease");
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn publish_challenge(
        &self,
        name: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), CertError> {
        let store = self.store().await?;
        let at = now();
        store
            .put_tls_challenge(name, value, at, at.saturating_add(ms(ttl)))
            .await
            .map_err(|e| self.failed(name, e))
    }

    async fn withdraw_challenge(&self, name: &str) {
        if let Ok(store) = self.store().await {
            if let Err(e) = store.delete_tls_challenge(name).await {
                tracing::warn!(challenge = name, error = %e, "cannot withdraw a shared ACME challenge; it expires by itself");
            }
        }
    }
}

/// Copies the answers any instance published into this instance's
/// challenge store every [`SYNC_EVERY`], while ACME runs on the shared
/// store: the listeners read memory only.
pub struct ChallengeSync {
    pub shared: Arc<crate::state::Shared>,
}

/// How often published answers are copied (the ordering instance waits
/// four times this before telling the CA).
pub const SYNC_EVERY: Duration = Duration::from_millis(250);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ChallengeSync {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let Some(cache) = self.shared.accounts.cache() else {
                continue;
            };
            match cache.store().tls_challenges(now()).await {
                Ok(answers) => {
                    self.shared.challenges.sync_shared(&answers);
                    failing = false;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read shared ACME challenges; retrying");
                }
                Err(_) => {}
            }
        }
    }
}
