//! Rate limits (SPEC pipeline step 4): the rule model, the in-process GCRA
//! store (governor), and the IETF `RateLimit-Policy` / `RateLimit` header
//! values (draft-ietf-httpapi-ratelimit-headers-09 structured fields).
//!
//! Keys are strings the gateway builds (`ip:203.0.113.7`, `user:alice`,
//! `hdr:KEY`), so one store serves every key kind. Idle keys are evicted by
//! [`MemoryStore::prune`]: a key whose budget is full again carries no state,
//! so memory follows the clients that are actually being limited.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// `count` requests per `per`, allowing a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window (also the burst).
    pub count: NonZeroU32,
    /// The window.
    pub per: Duration,
}

/// Why a rate string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate (e.g. \"5/minute\", \"100/min\", \"3/hour\", \"10/s\", \"5/15m\")")]
pub struct RateError(pub String);

impl Rate {
    /// `"5/minute"`, `"100/min"`, `"3/hour"`, `"10/s"`, `"2/day"`, `"5/15m"`.
    pub fn parse(s: &str) -> Result<Rate, RateError> {
        let bad = || RateError(s.to_string());
        let (count, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count).ok_or_else(bad)?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                let split = other.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                let (n, unit) = other.split_at(split);
                let n: u64 = n.parse().map_err(|_| bad())?;
                let unit = match unit {
                    "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(bad()),
                };
                match n.checked_mul(unit) {
                    Some(secs) if secs > 0 => Duration::from_secs(secs),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Rate { count, per })
    }

    /// The window in whole seconds (at least 1), for headers.
    pub fn window_secs(&self) -> u64 {
        self.per.as_secs().max(1)
    }

    fn quota(&self) -> Option<Quota> {
        let period = self.per / self.count.get();
        Quota::with_period(period).map(|q| q.allow_burst(self.count))
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; `remaining` requests left now, full again in `reset` seconds.
    Allowed {
        /// Requests left in the current budget.
        remaining: u32,
        /// Seconds until the budget is full again (rounded up).
        reset: u64,
    },
    /// Refused; try again after this long.
    Limited {
        /// Time until one more request would pass.
        retry_after: Duration,
    },
}

impl Outcome {
    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Outcome::Limited { retry_after } => Some(ceil_secs(*retry_after).max(1)),
            Outcome::Allowed { .. } => None,
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// In-process GCRA for one rule, keyed by string.
pub struct MemoryStore {
    rate: Rate,
    limiter: Keyed,
    clock: DefaultClock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("rate", &self.rate)
            .field("keys", &self.limiter.len())
            .finish()
    }
}

impl MemoryStore {
    /// `None` when the rate cannot be expressed (a window shorter than a nanosecond per request).
    pub fn new(rate: Rate) -> Option<MemoryStore> {
        let clock = DefaultClock::default();
        let limiter = RateLimiter::dashmap_with_clock(rate.quota()?, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Some(MemoryStore {
            rate,
            limiter,
            clock,
        })
    }

    /// The rule's rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &str) -> Outcome {
        match self.limiter.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let per_request = self.rate.per / self.rate.count.get();
                let used = self.rate.count.get().saturating_sub(remaining);
                Outcome::Allowed {
                    remaining,
                    reset: ceil_secs(per_request * used),
                }
            }
            Err(not_until) => Outcome::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Forgets keys whose budget is full again.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently holding state.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// No key holds state.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// `RateLimit-Policy` value: `"name";q=COUNT;w=WINDOW`.
pub fn policy_header(name: &str, rate: Rate) -> String {
    format!("\"{name}\";q={};w={}", rate.count, rate.window_secs())
}

/// `RateLimit` value: `"name";r=REMAINING;t=SECONDS`.
pub fn ratelimit_header(name: &str, outcome: Outcome) -> String {
    match outcome {
        Outcome::Allowed { remaining, reset } => format!("\"{name}\";r={remaining};t={reset}"),
        Outcome::Limited { retry_after } => {
            format!("\"{name}\";r=0;t={}", ceil_secs(retry_after).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).expect("rate")
    }

    #[test]
    fn parses_the_spec_forms() {
        let r = |c: u32, s: u64| Rate {
            count: NonZeroU32::new(c).expect("nz"),
            per: Duration::from_secs(s),
        };
        assert_eq!(rate("5/minute"), r(5, 60));
        assert_eq!(rate("100/min"), r(100, 60));
        assert_eq!(rate("3/hour"), r(3, 3600));
        assert_eq!(rate("10/s"), r(10, 1));
        assert_eq!(rate("5/15m"), r(5, 900));
        assert_eq!(rate(" 2 / day "), r(2, 86_400));
        for bad in [
            "",
            "5",
            "/m",
            "0/m",
            "-1/m",
            "5/fortnight",
            "x/m",
            "5/0s",
            "5/15",
            "5/1.5h",
            "5/15M",
            "99999999999/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn five_per_minute_allows_five_then_refuses() {
        let store = MemoryStore::new(rate("5/minute")).expect("store");
        for left in (0..5).rev() {
            match store.check("ip:1.2.3.4") {
                Outcome::Allowed { remaining, reset } => {
                    assert_eq!(remaining, left);
                    assert!(reset <= 60, "{reset}");
                }
                o => panic!("{o:?}"),
            }
        }
        let sixth = store.check("ip:1.2.3.4");
        let retry = sixth.retry_after_secs().expect("limited");
        assert!(
            (1..=12).contains(&retry),
            "one request per 12 s comes back: {retry}"
        );
        // Another key has its own budget.
        assert!(matches!(
            store.check("ip:5.6.7.8"),
            Outcome::Allowed { remaining: 4, .. }
        ));
    }

    #[test]
    fn headers_are_structured_fields() {
        let r = rate("100/min");
        assert_eq!(policy_header("default", r), "\"default\";q=100;w=60");
        assert_eq!(
            ratelimit_header(
                "default",
                Outcome::Allowed {
                    remaining: 7,
                    reset: 3
                }
            ),
            "\"default\";r=7;t=3"
        );
        assert_eq!(
            ratelimit_header(
                "route",
                Outcome::Limited {
                    retry_after: Duration::from_millis(1500)
                }
            ),
            "\"route\";r=0;t=2"
        );
        assert_eq!(
            Outcome::Limited {
                retry_after: Duration::from_millis(1)
            }
            .retry_after_secs(),
            Some(1)
        );
    }

    #[test]
    fn distinct_keys_are_pruned_once_idle() {
        let store = MemoryStore::new(rate("1000/s")).expect("store");
        for i in 0..1000 {
            store.check(&format!("ip:{i}"));
        }
        assert_eq!(store.len(), 1000);
        std::thread::sleep(Duration::from_millis(20));
        store.prune();
        assert!(store.len() < 1000, "idle keys are evicted: {}", store.len());
    }
}
