//! Rate limits (stages `limits` and `route_limit`, docs/behaviour.md): the rule model, the in-process GCRA
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

/// Shortest interval between two requests a rate may ask for (the
/// [`SharedGcra`] clock resolution; the in-process store's is finer).
const MIN_INTERVAL: Duration = Duration::from_micros(1);

/// Longest window a rate may have. governor keeps `window` in u64
/// nanoseconds (about 584 years) and multiplies it; far longer windows
/// overflowed there (a panic in debug builds, a wrapped, wrong limit in
/// release builds), and nothing useful needs more than a year.
const MAX_WINDOW: Duration = Duration::from_secs(365 * 86_400);

/// Why a rate string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate (e.g. \"5/minute\", \"100/min\", \"3/hour\", \"10/s\", \"5/15m\")")]
pub struct RateError(pub String);

impl Rate {
    /// `"5/minute"`, `"100/min"`, `"3/hour"`, `"10/s"`, `"2/day"`, `"5/15m"`.
    ///
    /// A rate whose interval between requests is under a microsecond (more
    /// than a million per second) is refused: neither store can enforce it
    /// (the Redis script counts in microseconds), and accepting it here would
    /// let `portcullis check` pass a config that `run` then refuses. So is a
    /// window longer than a year ([`MAX_WINDOW`]).
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
        if (per / count.get()) < MIN_INTERVAL || per > MAX_WINDOW {
            return Err(bad());
        }
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

pub(crate) fn ceil_secs(d: Duration) -> u64 {
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

/// The same GCRA as one Redis script, so several gateway instances share one
/// budget. It runs atomically on the server and reads the server's clock
/// (`TIME`), so instances with skewed clocks still agree.
///
/// `KEYS[1]` is the key; `ARGV` are [`SharedGcra::args`] and, optionally,
/// how many requests to count at once (`want`, default 1: a lease, see
/// [`crate::lease`]). The key holds the theoretical arrival time in
/// microseconds and expires when the budget is full again, so Redis memory
/// follows the clients being limited, as the in-process store's does. The
/// script counts as many of the `want` requests as the budget holds (at
/// least one, or none). The reply is `{granted, remaining, wait_us}`: with
/// `want` = 1 exactly the earlier `{allowed, …}` reply, so instances of
/// either version share keys. Read it with [`SharedGcra::grant`].
pub const REDIS_GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local want = tonumber(ARGV[3]) or 1
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local fits = math.floor((now + tau - tat) / interval)
if fits < 1 then
  return {0, 0, tat + interval - tau - now}
end
local granted = math.min(want, fits)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {granted, math.floor((tau - (new_tat - now)) / interval), new_tat - now}
";

/// What one script call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Requests were counted.
    Counted {
        /// How many (at least one, at most what was asked).
        count: u32,
        /// Requests left in the budget after them.
        remaining: u32,
        /// Time until the budget is full again.
        full_in: Duration,
    },
    /// None was counted.
    Limited {
        /// Time until one more request fits.
        retry_after: Duration,
    },
}

/// A rule's parameters for [`REDIS_GCRA_SCRIPT`], computed once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedGcra {
    rate: Rate,
    interval_us: u64,
}

impl SharedGcra {
    /// `None` when one request per window slot is shorter than a microsecond
    /// (the script's clock resolution).
    pub fn new(rate: Rate) -> Option<SharedGcra> {
        let interval_us = u64::try_from((rate.per / rate.count.get()).as_micros()).ok()?;
        (interval_us > 0).then_some(SharedGcra { rate, interval_us })
    }

    /// The rule's rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// `ARGV` for the script: the emission interval (µs) and the burst.
    pub fn args(&self) -> [u64; 2] {
        [self.interval_us, u64::from(self.rate.count.get())]
    }

    /// Reads the script's reply; `None` for a reply it cannot have sent
    /// (`want` is what was asked).
    pub fn grant(&self, reply: &[i64], want: u32) -> Option<Grant> {
        let [granted, remaining, wait_us] = *reply else {
            return None;
        };
        let wait = Duration::from_micros(u64::try_from(wait_us).ok()?);
        let count = u32::try_from(granted).ok()?;
        if count == 0 {
            return Some(Grant::Limited { retry_after: wait });
        }
        (count <= want.max(1)).then_some(Grant::Counted {
            count,
            remaining: u32::try_from(remaining).ok()?.min(self.rate.count.get()),
            full_in: wait,
        })
    }

    /// Reads the reply to a one-request call.
    pub fn outcome(&self, reply: &[i64]) -> Option<Outcome> {
        Some(match self.grant(reply, 1)? {
            Grant::Counted {
                remaining, full_in, ..
            } => Outcome::Allowed {
                remaining,
                reset: ceil_secs(full_in),
            },
            Grant::Limited { retry_after } => Outcome::Limited { retry_after },
        })
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
            // Faster than one request per microsecond: no store can enforce it.
            "1000001/s",
            "2000000/s",
            "4294967295/s",
            "4294967295/1m",
            // Windows beyond a year (governor's nanosecond arithmetic overflowed).
            "50/9999999999d",
            "1/366d",
            "1/8784h",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by fuzzing (fuzz/fuzz_targets/units_rate.rs): `"2000000/s"` was
    /// accepted by the config but refused by `SharedGcra::new` (and
    /// `"4294967295/s"` by `MemoryStore::new` too), so `check` passed a config
    /// that `run` rejected with "too fast to express". Every accepted rate now
    /// builds both stores. `"50/9999999999d"` overflowed governor's
    /// nanosecond arithmetic in `MemoryStore::new`; windows are now capped.
    #[test]
    fn every_accepted_rate_builds_both_stores() {
        for s in [
            "1000000/s",
            "1/s",
            "4294967295/day",
            "60000000/m",
            "1/1s",
            "1/365d",
            "4294967295/365d",
        ] {
            let r = rate(s);
            assert!(MemoryStore::new(r).is_some(), "{s}");
            assert!(SharedGcra::new(r).is_some(), "{s}");
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

    #[test]
    fn shared_gcra_arguments_and_replies() {
        let g = SharedGcra::new(rate("5/minute")).expect("expressible");
        assert_eq!(g.args(), [12_000_000, 5]);
        assert_eq!(
            g.outcome(&[1, 4, 12_000_000]),
            Some(Outcome::Allowed {
                remaining: 4,
                reset: 12
            })
        );
        assert_eq!(
            g.outcome(&[0, 0, 1_500_000]),
            Some(Outcome::Limited {
                retry_after: Duration::from_millis(1500)
            })
        );
        // Anything else is not our script's reply: the caller fails closed or open by policy.
        for bad in [
            &[][..],
            &[1, 4],
            &[2, 0, 0],
            &[1, -1, 0],
            &[0, 0, -5],
            &[1, 2, 3, 4],
        ] {
            assert_eq!(g.outcome(bad), None, "{bad:?}");
        }
        // A remaining count above the burst is clamped, never trusted.
        assert!(matches!(
            g.outcome(&[1, 99, 1]),
            Some(Outcome::Allowed { remaining: 5, .. })
        ));
        assert!(SharedGcra::new(Rate {
            count: NonZeroU32::new(2_000_000).expect("nz"),
            per: Duration::from_secs(1)
        })
        .is_none());
    }
}
