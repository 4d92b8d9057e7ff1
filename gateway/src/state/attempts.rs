//! Attempt limits of the gateway's own forms: sign-in, and the emergency
//! gate's secret.

use std::net::IpAddr;
use std::time::Duration;

use policies::ratelimit::{Outcome, Rate};

use crate::config::{OnStoreError, EMERGENCY_GLOBAL_ATTEMPTS, EMERGENCY_GLOBAL_WINDOW};
use crate::limits::{Limiter, Store, Verdict};
use crate::store::RedisStore;

/// Login attempts per client IP and, separately, per user name (docs/configuration.md: the
/// sixth attempt inside a minute, from one IP or on one name, is refused
/// with the default `[rate_limit] login = "5/minute"`).
pub struct LoginLimits {
    limiters: Option<(Limiter, Limiter)>,
}

impl LoginLimits {
    /// `None`: login attempts are not limited (`login = "off"`).
    pub fn new(rate: Option<Rate>, store: &Store) -> LoginLimits {
        LoginLimits {
            limiters: rate.and_then(|r| {
                Some((
                    Limiter::builtin("login-ip", r, store)?,
                    Limiter::builtin("login-user", r, store)?,
                ))
            }),
        }
    }

    /// Counts one attempt on both budgets, so a spray across names still
    /// exhausts the IP; limited when either is spent.
    pub async fn check(&self, ip: IpAddr, name: &str) -> Verdict {
        let Some((by_ip, by_name)) = &self.limiters else {
            return Verdict::Unknown;
        };
        let a = by_ip.check(&ip.to_string()).await;
        let b = by_name.check(&name.to_ascii_lowercase()).await;
        match (a, b) {
            (v @ Verdict::Counted(Outcome::Limited { .. }), _)
            | (_, v @ Verdict::Counted(Outcome::Limited { .. })) => v,
            (Verdict::Refused, _) | (_, Verdict::Refused) => Verdict::Refused,
            (v, _) => v,
        }
    }

    /// Drops keys whose budget is full again, so memory follows live attackers.
    pub fn prune(&self) {
        if let Some((a, b)) = &self.limiters {
            a.prune();
            b.prune();
        }
    }
}

/// What the emergency gate's limits say about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go on and check the secret.
    Open,
    /// This client's budget (`[emergency] attempts`) is spent.
    Limited(Duration),
    /// The global cap is reached: every attempt waits out the window.
    /// `true` for the attempt that caused the lockout.
    LockedOut(Duration, bool),
    /// The shared store is down and `on_store_error = "deny"`.
    Refused,
}

/// The emergency gate's attempt limits: per client IP and a global cap of
/// [`EMERGENCY_GLOBAL_ATTEMPTS`] per [`EMERGENCY_GLOBAL_WINDOW`], counted in
/// the shared store when there is one. Every attempt counts, before the
/// secret is checked, so no guess goes uncounted. Reaching the cap locks the
/// gate for a whole window from that moment; with Redis the lockout itself
/// is shared (one key with that end as its expiry), so every instance
/// refuses every attempt until it ends, not only the one that tripped.
pub struct EmergencyLimits {
    limiters: Option<(Limiter, Limiter)>,
    locked_until: std::sync::atomic::AtomicU64,
    redis: Option<std::sync::Arc<RedisStore>>,
}

/// The shared lockout's name in Redis.
const LOCKOUT: &str = "emergency";

impl EmergencyLimits {
    pub fn new(per_ip: Rate, store: &Store) -> EmergencyLimits {
        let global = std::num::NonZeroU32::new(EMERGENCY_GLOBAL_ATTEMPTS).map(|count| Rate {
            count,
            per: EMERGENCY_GLOBAL_WINDOW,
        });
        EmergencyLimits {
            limiters: global.and_then(|g| {
                Some((
                    Limiter::builtin("emergency-ip", per_ip, store)?,
                    Limiter::builtin("emergency-global", g, store)?,
                ))
            }),
            locked_until: Default::default(),
            redis: store.redis().cloned(),
        }
    }

    /// Another instance's lockout, if the shared store knows of one; `Err`
    /// when it cannot say and `on_store_error = "deny"`.
    async fn shared_lockout(&self, now: u64) -> Result<Option<u64>, ()> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        match redis.locked_until(LOCKOUT).await {
            Ok(until) => Ok(until.filter(|u| *u > now)),
            Err(_) if redis.on_error == OnStoreError::Allow => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// Starts the lockout (shared when there is Redis); its end.
    async fn lock_out(&self, now: u64) -> u64 {
        let mut until = now + EMERGENCY_GLOBAL_WINDOW.as_secs();
        if let Some(redis) = &self.redis {
            // Unreachable: this instance is locked all the same.
            if let Ok(shared) = redis.lock(LOCKOUT, until).await {
                until = shared;
            }
        }
        until
    }

    pub async fn attempt(&self, ip: IpAddr, now: u64) -> Attempt {
        use std::sync::atomic::Ordering;
        let until = self.locked_until.load(Ordering::Relaxed);
        if now < until {
            return Attempt::LockedOut(Duration::from_secs(until - now), false);
        }
        match self.shared_lockout(now).await {
            Ok(Some(until)) => {
                self.locked_until.store(until, Ordering::Relaxed);
                return Attempt::LockedOut(Duration::from_secs(until - now), false);
            }
            Ok(None) => {}
            Err(()) => return Attempt::Refused,
        }
        // Limits that cannot be built (an absurd rate) fail closed.
        let Some((per_ip, global)) = &self.limiters else {
            return Attempt::Refused;
        };
        match per_ip.check(&ip.to_string()).await {
            Verdict::Counted(Outcome::Limited { retry_after }) => {
                return Attempt::Limited(retry_after)
            }
            Verdict::Refused => return Attempt::Refused,
            Verdict::Counted(_) | Verdict::Unknown => {}
        }
        match global.check("all").await {
            Verdict::Counted(Outcome::Limited { .. }) => {
                let until = self.lock_out(now).await;
                self.locked_until.store(until, Ordering::Relaxed);
                let first = until >= now + EMERGENCY_GLOBAL_WINDOW.as_secs();
                Attempt::LockedOut(Duration::from_secs(until.saturating_sub(now)), first)
            }
            Verdict::Refused => Attempt::Refused,
            Verdict::Counted(_) | Verdict::Unknown => Attempt::Open,
        }
    }

    pub fn prune(&self) {
        if let Some((a, b)) = &self.limiters {
            a.prune();
            b.prune();
        }
    }
}
