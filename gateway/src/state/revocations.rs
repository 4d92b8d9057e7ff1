//! Emergency grants ended by logout before their expiry, shared through
//! Redis. (Sessions are records in the identity store: logout deletes one.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::OnStoreError;
use crate::limits::Store;
use crate::store::{RedisStore, StoreDown};

/// Sessions ended by logout before their expiry: id → expiry (unix secs).
/// With Redis, every instance sees every logout; the local map still
/// answers for this instance's own logouts while Redis is away, and after
/// an outage it is written to Redis again (see [`Revocations::resync`]), so
/// a logout made while Redis was unreachable, or lost by a Redis restart
/// without persistence, still reaches the other instances.
#[derive(Default)]
pub struct Revocations {
    ids: Mutex<HashMap<[u8; 16], u64>>,
    redis: Option<Arc<RedisStore>>,
    /// Revocations that did not reach Redis, counted.
    failures: AtomicU64,
    /// (`stats.outages`, `failures`) when every local revocation was last
    /// known to be in Redis.
    synced: Mutex<(u64, u64)>,
}

impl Revocations {
    pub fn new(store: &Store) -> Revocations {
        let redis = store.redis().cloned();
        let outages = redis
            .as_ref()
            .map_or(0, |r| r.stats.outages.load(Ordering::Relaxed));
        Revocations {
            ids: Mutex::default(),
            redis,
            failures: AtomicU64::new(0),
            synced: Mutex::new((outages, 0)),
        }
    }

    /// Records the logout locally and, with Redis, for every instance. A
    /// Redis failure leaves it local (logged by the store) until
    /// [`Revocations::resync`] succeeds; the browser's cookie is cleared
    /// either way.
    pub async fn revoke(&self, id: [u8; 16], until: u64) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(id, until);
        }
        if let Some(r) = &self.redis {
            if r.revoke(&id, until).await.is_err() {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After an outage of the shared store (or a revocation that did not
    /// reach it), writes every local revocation to it again. Called every
    /// second by housekeeping; does nothing while all is in sync, and stops
    /// at the first failure (the next call retries).
    pub async fn resync(&self) {
        let Some(r) = &self.redis else { return };
        // Counts before the copy of `ids`: a revoke counted as failed here is
        // already in the copy; one that fails later leaves the counts unequal.
        let now = (
            r.stats.outages.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        );
        if self.synced.lock().map_or(true, |s| *s == now) {
            return;
        }
        let all: Vec<([u8; 16], u64)> = self
            .ids
            .lock()
            .map(|ids| ids.iter().map(|(id, until)| (*id, *until)).collect())
            .unwrap_or_default();
        for (id, until) in &all {
            if r.revoke(id, *until).await.is_err() {
                return;
            }
        }
        if let Ok(mut s) = self.synced.lock() {
            *s = now;
        }
        if !all.is_empty() {
            tracing::info!(
                sessions = all.len(),
                "logouts written to the shared store again after its outage"
            );
        }
    }

    /// `Err` only when Redis is unreachable and `on_store_error = "deny"`.
    pub async fn is_revoked(&self, id: &[u8; 16]) -> Result<bool, StoreDown> {
        if self.ids.lock().map_or(true, |ids| ids.contains_key(id)) {
            return Ok(true);
        }
        match &self.redis {
            None => Ok(false),
            Some(r) => match r.is_revoked(id).await {
                Ok(revoked) => Ok(revoked),
                Err(_) if r.on_error == OnStoreError::Allow => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Forgets revocations of sessions that have expired anyway.
    pub fn prune(&self, now: u64) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.retain(|_, until| *until > now);
        }
    }
}
