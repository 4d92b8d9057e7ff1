//! Attempt limits of the gateway's own forms: sign-in, and the emergency
//! gate's secret.

use std::net::IpAddr;
use std::time::Duration;

use policies::ratelimit::{Outcome, Rate};

use crate::config::{EMERGENCY_GLOBAL_ATTEMPTS, EMERGENCY_GLOBAL_WINDOW};
use crate::limits::{Limiter, Store, Verdict};

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
                    Limiter::new("login-ip", r, store)?,
                    Limiter::new("login-user", r, store)?,
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
/// gate for a whole window; each instance locks at its first attempt after
/// the shared budget is spent.
pub struct EmergencyLimits {
    limiters: Option<(Limiter, Limiter)>,
    locked_until: std::sync::atomic::AtomicU64,
}

impl EmergencyLimits {
    pub fn new(per_ip: Rate, store: &Store) -> EmergencyLimits {
        let global = std::num::NonZeroU32::new(EMERGENCY_GLOBAL_ATTEMPTS).map(|count| Rate {
            count,
            per: EMERGENCY_GLOBAL_WINDOW,
        });
        EmergencyLimits {
            limiters: global.and_then(|g| {
                Some((
                    Limiter::new("emergency-ip", per_ip, store)?,
                    Limiter::new("emergency-global", g, store)?,
                ))
            }),
            locked_until: Default::default(),
        }
    }

    pub async fn attempt(&self, ip: IpAddr, now: u64) -> Attempt {
        use std::sync::atomic::Ordering;
        let until = self.locked_until.load(Ordering::Relaxed);
        if now < until {
            return Attempt::LockedOut(Duration::from_secs(until - now), false);
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
                self.locked_until
                    .store(now + EMERGENCY_GLOBAL_WINDOW.as_secs(), Ordering::Relaxed);
                Attempt::LockedOut(EMERGENCY_GLOBAL_WINDOW, true)
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
