//! One rate-limit rule over either store: in-process GCRA (governor) or the
//! same GCRA in Redis. Callers see one `check` and decide what a
//! [`StoreDown`] means through `on_store_error`.

use std::sync::Arc;

use policies::ratelimit::{MemoryStore, Outcome, Rate, SharedGcra};

use crate::config::OnStoreError;
use crate::store::RedisStore;

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The store counted the request.
    Counted(Outcome),
    /// The store is unreachable and `on_store_error = "allow"`: pass, uncounted.
    Unknown,
    /// The store is unreachable and `on_store_error = "deny"`: answer 503.
    Refused,
}

/// Where limiter state lives, chosen once from `[rate_limit] store`.
#[derive(Debug, Clone)]
pub enum Store {
    Memory,
    Redis(Arc<RedisStore>),
}

impl Store {
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match self {
            Store::Memory => None,
            Store::Redis(r) => Some(r),
        }
    }
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryStore),
    Redis {
        store: Arc<RedisStore>,
        gcra: SharedGcra,
    },
}

/// A named rule: its name is the policy name in `RateLimit` headers; its
/// counter names its keys in Redis, from the rule's definition, so instances
/// share exactly the counters of equal rules.
#[derive(Debug)]
pub struct Limiter {
    pub name: String,
    counter: String,
    rate: Rate,
    backend: Backend,
}

impl Limiter {
    /// One of the gateway's own rules (`default`, `login-ip`, …): counted
    /// under its name and rate, so an instance with another rate does not
    /// spend this one's budget.
    pub fn builtin(name: &str, rate: Rate, store: &Store) -> Option<Limiter> {
        let counter = format!("{name}:{}/{}", rate.count, rate.per.as_nanos());
        Limiter::new(name.to_string(), counter, rate, store)
    }

    /// `None` when the rate is too fast for the store's clock.
    pub fn new(name: String, counter: String, rate: Rate, store: &Store) -> Option<Limiter> {
        let backend = match store {
            Store::Memory => Backend::Memory(MemoryStore::new(rate)?),
            Store::Redis(r) => Backend::Redis {
                store: r.clone(),
                gcra: SharedGcra::new(rate)?,
            },
        };
        Some(Limiter {
            name,
            counter,
            rate,
            backend,
        })
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts one request for `key`.
    pub async fn check(&self, key: &str) -> Verdict {
        match &self.backend {
            Backend::Memory(m) => Verdict::Counted(m.check(key)),
            Backend::Redis { store, gcra } => match store.check(&self.counter, key, gcra).await {
                Ok(outcome) => Verdict::Counted(outcome),
                Err(_) if store.on_error == OnStoreError::Allow => Verdict::Unknown,
                Err(_) => Verdict::Refused,
            },
        }
    }

    /// Forgets idle in-process keys (Redis expires its own).
    pub fn prune(&self) {
        if let Backend::Memory(m) = &self.backend {
            m.prune();
        }
    }
}
