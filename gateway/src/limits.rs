//! One rate-limit rule over either store: in-process GCRA (governor) or the
//! same GCRA in Redis. Callers see one `check` and decide what a
//! [`StoreDown`] means through `on_store_error`.

use std::sync::Arc;
use std::time::Instant;

use policies::lease::{Ask, Leases, Take};
use policies::ratelimit::{MemoryStore, Outcome, Rate, SharedGcra};
use tokio::sync::Notify;

use crate::config::OnStoreError;
use crate::store::{RedisStore, StoreDown, ASK_WAIT};

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
    Redis(Arc<RedisRule>),
}

/// A rule counted in Redis, with the leases in front of it; shared with the
/// background refills.
#[derive(Debug)]
struct RedisRule {
    store: Arc<RedisStore>,
    counter: String,
    gcra: SharedGcra,
    leases: Leases,
    /// Woken whenever an ask ends: requests waiting for a key's lease.
    answered: Notify,
}

/// Times a request waits for another's lease before asking for itself.
const WAITS: u32 = 2;

impl RedisRule {
    /// Asks the store and records its answer.
    async fn ask(&self, key: &str, ask: Ask) -> Result<Outcome, StoreDown> {
        match self
            .store
            .count(&self.counter, key, &self.gcra, ask.want)
            .await
        {
            Ok(grant) => {
                let epoch = self.store.generation();
                let outcome = self.leases.record(key, Instant::now(), epoch, ask, grant);
                self.answered.notify_waiters();
                Ok(outcome)
            }
            Err(down) => {
                self.leases.abandon(key, ask);
                self.answered.notify_waiters();
                Err(down)
            }
        }
    }

    /// Decides from the leases, or says what to ask the store; waits (a
    /// bounded number of times) while the key's lease is on its way.
    async fn take(self: &Arc<Self>, key: &str) -> Result<Outcome, Ask> {
        for _ in 0..WAITS {
            // While the store is down `on_store_error` decides, as without
            // leases: what the store said before is not used then.
            if self.store.is_down() {
                return Err(Ask::one());
            }
            let epoch = self.store.generation();
            let wait = match self.leases.take(key, Instant::now(), epoch) {
                Take::Served { outcome, refill } => {
                    if let Some(refill) = refill {
                        let (rule, key) = (self.clone(), key.to_string());
                        // Recorded in the leases; nobody waits for it.
                        tokio::spawn(async move {
                            let _ = rule.ask(&key, refill).await;
                        });
                    }
                    return Ok(outcome);
                }
                Take::Ask(ask) => return Err(ask),
                Take::Wait => self.answered.notified(),
            };
            tokio::pin!(wait);
            wait.as_mut().enable();
            // The answer may have come between the take and the enable.
            if self.leases.take_would_wait(key, Instant::now()) {
                let _ = tokio::time::timeout(ASK_WAIT, wait).await;
            }
        }
        Err(Ask::one())
    }
}

/// A named rule: its name is the policy name in `RateLimit` headers; its
/// counter (in Redis) names its keys from the rule's definition, so
/// instances share exactly the counters of equal rules.
#[derive(Debug)]
pub struct Limiter {
    pub name: String,
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
            Store::Redis(r) => Backend::Redis(Arc::new(RedisRule {
                store: r.clone(),
                counter,
                gcra: SharedGcra::new(rate)?,
                leases: Leases::new(rate),
                answered: Notify::new(),
            })),
        };
        Some(Limiter {
            name,
            rate,
            backend,
        })
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts one request for `key`.
    pub async fn check(&self, key: &str) -> Verdict {
        let rule = match &self.backend {
            Backend::Memory(m) => return Verdict::Counted(m.check(key)),
            Backend::Redis(rule) => rule,
        };
        let ask = match rule.take(key).await {
            Ok(outcome) => return Verdict::Counted(outcome),
            Err(ask) => ask,
        };
        // Boxed: a Redis round trip's future is ~2.7 KiB and would size
        // every request's pipeline future; with leases few requests ask.
        match Box::pin(rule.ask(key, ask)).await {
            Ok(outcome) => Verdict::Counted(outcome),
            Err(StoreDown) => match rule.store.on_error {
                OnStoreError::Allow => Verdict::Unknown,
                OnStoreError::Deny => Verdict::Refused,
            },
        }
    }

    /// Forgets idle keys (Redis expires its own counters).
    pub fn prune(&self) {
        match &self.backend {
            Backend::Memory(m) => m.prune(),
            Backend::Redis(rule) => rule.leases.prune(Instant::now()),
        }
    }
}
