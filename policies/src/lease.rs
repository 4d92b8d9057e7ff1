//! Leases in front of the shared (Redis) rate-limit store: what spares most
//! requests a round trip while keeping the limit's guarantees.
//!
//! A client that sends many requests to one instance gets them counted in
//! Redis a few at a time: the instance asks the script to count up to `want`
//! requests at once ([`crate::ratelimit::REDIS_GCRA_SCRIPT`]) and serves the
//! rest of that grant from memory. Two rules keep this exact where it
//! matters and safe everywhere:
//!
//! - A lease only ever counts *early*: leased requests are already spent in
//!   Redis's budget, so ones a client does not use make it limited sooner,
//!   never later. Leases start at one request and double only while a grant
//!   is used up within [`FAST`] (a client sending more than a few requests a
//!   second), up to 1/[`SHARE`] of the rule's burst and at most [`MAX`]
//!   requests: a rule with a burst under `2 × SHARE` (login, second factor,
//!   emergency, any "N/minute" with N < 64) is never leased. With `N`
//!   instances a client can be refused up to `N × 1.5 leases` requests
//!   early: under 5 % of the burst per instance.
//! - A refusal is remembered until the moment the script said one more
//!   request would fit. Other instances can only move that moment later
//!   (counters never go back), so answering 429 locally until then is what
//!   Redis would answer — and a client flooding a limited key costs no
//!   round trip at all.
//!
//! One lease is asked for at a time per key, ahead of need: when half of a
//! lease is served the next is asked for in the background, and requests
//! that find the lease empty while one is on its way wait for it rather
//! than ask themselves. So a busy client costs about one round trip per
//! lease, and an instance holds at most one and a half leases for a key.
//!
//! Both rules assume Redis keeps its counters. Each entry remembers the
//! store's `epoch` (the gateway counts the connections it opened): a new
//! connection may reach a Redis that restarted empty, so entries from an
//! older one are dropped. The gateway bypasses leases while the store is
//! down, so `on_store_error` decides then, as without them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::ratelimit::{ceil_secs, Grant, Outcome, Rate};

/// A lease is at most this share of the burst (1/32)…
pub const SHARE: u32 = 32;
/// … and at most this many requests.
pub const MAX: u32 = 64;
/// A grant used up within this long makes the next one twice as large.
pub const FAST: Duration = Duration::from_millis(250);
/// An ask not answered within this long no longer holds others back.
const ASK_STALE: Duration = Duration::from_secs(1);
/// Keys unused this long are forgotten (their unused requests with them).
pub const IDLE: Duration = Duration::from_secs(60);

/// What to do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Decided here, no round trip. With `refill`, the lease runs low: ask
    /// the store for the next one without making this request wait, and
    /// give its answer to [`Leases::record`].
    Served {
        /// This request's outcome.
        outcome: Outcome,
        /// The next lease to ask for, in the background.
        refill: Option<Ask>,
    },
    /// Ask the store for this request; give its answer to [`Leases::record`].
    Ask(Ask),
    /// The key's next lease is on its way: wait for it (until
    /// [`Leases::record`] or [`Leases::abandon`]) and take again.
    Wait,
}

/// One question to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Requests to count at once.
    pub want: u32,
    /// This ask is the key's one lease on its way.
    lead: bool,
    /// A request waits for the answer and takes one of the counted ones.
    waiting: bool,
}

impl Ask {
    /// One request, outside any lease (the store is not trusted now).
    pub fn one() -> Ask {
        Ask {
            want: 1,
            lead: false,
            waiting: true,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Requests counted in the store and not yet served.
    spare: u32,
    /// What the store said was left after the last grant.
    remaining: u32,
    full_at: Instant,
    /// Size and time of the last lease.
    granted: u32,
    granted_at: Instant,
    asking_since: Option<Instant>,
    limited_until: Option<Instant>,
    used_at: Instant,
    epoch: u64,
}

/// The leases of one rule, by key.
#[derive(Debug)]
pub struct Leases {
    burst: u32,
    cap: u32,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Leases {
    /// The leases of a rule with this rate.
    pub fn new(rate: Rate) -> Leases {
        let burst = rate.count.get();
        Leases {
            burst,
            cap: (burst / SHARE).clamp(1, MAX),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The largest lease this rule gives (1: never leased).
    pub fn cap(&self) -> u32 {
        self.cap
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request for `key` at `now`, the store on connection `epoch`.
    pub fn take(&self, key: &str, now: Instant, epoch: u64) -> Take {
        let mut entries = self.entries();
        let first = Take::Ask(Ask {
            want: 1,
            lead: true,
            waiting: true,
        });
        let Some(e) = entries.get_mut(key) else {
            return first;
        };
        if e.epoch != epoch {
            entries.remove(key);
            return first;
        }
        e.used_at = now;
        if let Some(until) = e.limited_until {
            if now < until {
                return Take::Served {
                    outcome: Outcome::Limited {
                        retry_after: until - now,
                    },
                    refill: None,
                };
            }
            e.limited_until = None;
        }
        let asking = e
            .asking_since
            .is_some_and(|t| now.saturating_duration_since(t) < ASK_STALE);
        // Half or all of the last lease went within FAST of its grant: the
        // next is twice as large; else half as large.
        let next = if now.saturating_duration_since(e.granted_at) < FAST {
            e.granted.saturating_mul(2).min(self.cap)
        } else {
            (e.granted / 2).max(1)
        };
        if e.spare > 0 {
            e.spare -= 1;
            let outcome = Outcome::Allowed {
                remaining: e.remaining.saturating_add(e.spare).min(self.burst),
                reset: ceil_secs(e.full_at.saturating_duration_since(now)),
            };
            // Half the lease is gone: the next one is asked for now, so a
            // busy client rarely waits for the store.
            let low = e.spare < e.granted.div_ceil(2);
            let refill = (low && !asking).then(|| {
                e.asking_since = Some(now);
                Ask {
                    want: next,
                    lead: true,
                    waiting: false,
                }
            });
            return Take::Served { outcome, refill };
        }
        if asking {
            return Take::Wait;
        }
        e.asking_since = Some(now);
        Take::Ask(Ask {
            want: next,
            lead: true,
            waiting: true,
        })
    }

    /// Whether [`Leases::take`] would say [`Take::Wait`] now (nothing
    /// changes): for a waiter that must not miss an answer arriving between
    /// its take and its starting to wait.
    pub fn take_would_wait(&self, key: &str, now: Instant) -> bool {
        self.entries().get(key).is_some_and(|e| {
            e.spare == 0
                && e.limited_until.is_none_or(|u| now >= u)
                && e.asking_since
                    .is_some_and(|t| now.saturating_duration_since(t) < ASK_STALE)
        })
    }

    /// The store's answer to `ask`, made at `now` on connection `epoch`:
    /// the waiting request's outcome (for a refill, what the next request
    /// would get).
    pub fn record(&self, key: &str, now: Instant, epoch: u64, ask: Ask, grant: Grant) -> Outcome {
        let mut entries = self.entries();
        let fresh = || Entry {
            spare: 0,
            remaining: 0,
            full_at: now,
            granted: 1,
            granted_at: now,
            asking_since: None,
            limited_until: None,
            used_at: now,
            epoch,
        };
        let e = entries.entry(key.to_string()).or_insert_with(fresh);
        if e.epoch != epoch {
            *e = fresh();
        }
        e.used_at = now;
        if ask.lead {
            e.asking_since = None;
        }
        match grant {
            Grant::Counted {
                count,
                remaining,
                full_in,
            } => {
                // A waiting request takes one; the rest waits here.
                let kept = if ask.waiting {
                    count.saturating_sub(1)
                } else {
                    count
                };
                e.spare = e.spare.saturating_add(kept);
                e.remaining = remaining;
                e.full_at = now + full_in;
                if ask.lead {
                    e.granted = count.max(1);
                    e.granted_at = now;
                }
                Outcome::Allowed {
                    remaining: remaining.saturating_add(e.spare).min(self.burst),
                    reset: ceil_secs(full_in),
                }
            }
            Grant::Limited { retry_after } => {
                let until = now + retry_after;
                e.limited_until = Some(e.limited_until.map_or(until, |u| u.max(until)));
                Outcome::Limited { retry_after }
            }
        }
    }

    /// The store did not answer `ask`.
    pub fn abandon(&self, key: &str, ask: Ask) {
        if ask.lead {
            if let Some(e) = self.entries().get_mut(key) {
                e.asking_since = None;
            }
        }
    }

    /// Forgets keys unused for [`IDLE`] and no longer refused.
    pub fn prune(&self, now: Instant) {
        self.entries().retain(|_, e| {
            now.saturating_duration_since(e.used_at) < IDLE
                || e.limited_until.is_some_and(|u| now < u)
        });
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// No key held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn leases(rate: &str) -> Leases {
        Leases::new(Rate::parse(rate).unwrap())
    }

    fn counted(count: u32, remaining: u32) -> Grant {
        Grant::Counted {
            count,
            remaining,
            full_in: Duration::from_secs(3),
        }
    }

    fn ask(l: &Leases, now: Instant) -> Ask {
        match l.take("k", now, 0) {
            Take::Ask(a) => a,
            other => panic!("expected an ask, got {other:?}"),
        }
    }

    #[test]
    fn small_rules_are_never_leased() {
        for rate in ["5/minute", "63/minute", "1/s"] {
            let l = leases(rate);
            assert_eq!(l.cap(), 1, "{rate}");
            let t = Instant::now();
            for i in 0..20 {
                let now = t + Duration::from_millis(i);
                let a = ask(&l, now);
                assert_eq!(a.want, 1, "{rate}: request {i}");
                l.record("k", now, 0, a, counted(1, 3));
            }
        }
    }

    /// A client sending a request every `gap`, the store answering at
    /// once: the sizes asked for, and how many of those a request waited on.
    fn client(l: &Leases, start: Instant, gap: Duration, requests: u32) -> (Vec<u32>, u32) {
        let (mut asked, mut waited) = (Vec::new(), 0);
        let mut now = start;
        for i in 0..requests {
            now += gap;
            match l.take("k", now, 0) {
                Take::Ask(a) => {
                    asked.push(a.want);
                    waited += 1;
                    let o = l.record("k", now, 0, a, counted(a.want, 50_000));
                    assert!(matches!(o, Outcome::Allowed { .. }), "request {i}");
                }
                Take::Served {
                    outcome: Outcome::Allowed { .. },
                    refill,
                } => {
                    if let Some(r) = refill {
                        asked.push(r.want);
                        l.record("k", now, 0, r, counted(r.want, 50_000));
                    }
                }
                other => panic!("request {i}: {other:?}"),
            }
        }
        (asked, waited)
    }

    #[test]
    fn leases_grow_for_fast_clients_up_to_the_cap_and_shrink_for_slow_ones() {
        let l = leases("100000/minute"); // cap 64
        assert_eq!(l.cap(), MAX);
        assert_eq!(leases("320/minute").cap(), 10);
        let t = Instant::now();
        let (asked, waited) = client(&l, t, Duration::from_micros(100), 640);
        assert_eq!(asked[..7], [1, 2, 4, 8, 16, 32, 64]);
        assert!(asked[7..].iter().all(|w| *w == 64), "{asked:?}");
        // Refills go ahead of need: only the first two requests waited.
        assert_eq!(waited, 2, "{asked:?}");
        assert!(asked.len() < 20, "{} asks for 640 requests", asked.len());
        // A client slower than FAST per half lease: leases shrink.
        let later = t + Duration::from_secs(10);
        let (asked, _) = client(&l, later, FAST * 2, 400);
        assert!(asked.windows(2).all(|w| w[1] <= w[0]), "{asked:?}");
        assert_eq!(asked.last(), Some(&1), "{asked:?}");
    }

    #[test]
    fn remaining_counts_the_unused_part_of_the_lease() {
        let l = leases("100000/minute");
        let t = Instant::now();
        let a = ask(&l, t);
        assert_eq!(
            l.record("k", t, 0, Ask { want: 8, ..a }, counted(8, 100)),
            Outcome::Allowed {
                remaining: 107,
                reset: 3
            }
        );
        assert_eq!(
            l.take("k", t, 0),
            Take::Served {
                outcome: Outcome::Allowed {
                    remaining: 106,
                    reset: 3
                },
                refill: None
            }
        );
    }

    #[test]
    fn a_refusal_is_answered_locally_until_one_more_would_fit() {
        let l = leases("100000/minute");
        let t = Instant::now();
        let a = ask(&l, t);
        let wait = Duration::from_millis(40);
        assert_eq!(
            l.record("k", t, 0, a, Grant::Limited { retry_after: wait }),
            Outcome::Limited { retry_after: wait }
        );
        assert_eq!(
            l.take("k", t + Duration::from_millis(10), 0),
            Take::Served {
                outcome: Outcome::Limited {
                    retry_after: Duration::from_millis(30)
                },
                refill: None
            }
        );
        // Exactly at the moment, the store is asked again.
        assert!(matches!(l.take("k", t + wait, 0), Take::Ask(_)));
    }

    #[test]
    fn one_lease_on_its_way_at_a_time() {
        let l = leases("100000/minute");
        let t = Instant::now();
        let first = ask(&l, t);
        l.record("k", t, 0, first, counted(1, 99_000));
        let lead = ask(&l, t);
        assert!(lead.lead && lead.want == 2);
        // While it is on its way, others wait for it.
        assert_eq!(l.take("k", t, 0), Take::Wait);
        assert!(l.take_would_wait("k", t));
        l.record("k", t, 0, lead, counted(2, 98_000));
        assert!(!l.take_would_wait("k", t));
        // The lead took one, the waiter takes the other; the next lease is
        // asked for in the background.
        match l.take("k", t, 0) {
            Take::Served {
                outcome: Outcome::Allowed { .. },
                refill: Some(r),
            } => assert!(r.lead && !r.waiting && r.want == 4),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.take("k", t, 0), Take::Wait);
        // An ask never answered stops holding others back after a while.
        let late = ask(&l, t + ASK_STALE);
        assert!(late.lead);
        // An abandoned one at once; one outside leases changes nothing.
        l.abandon("k", Ask::one());
        assert_eq!(l.take("k", t + ASK_STALE, 0), Take::Wait);
        l.abandon("k", late);
        assert!(ask(&l, t + ASK_STALE).lead);
    }

    #[test]
    fn a_grant_larger_than_asked_is_not_a_reply() {
        let g = crate::ratelimit::SharedGcra::new(Rate::parse("100/s").unwrap()).unwrap();
        assert_eq!(g.grant(&[3, 10, 5], 2), None);
        assert_eq!(
            g.grant(&[2, 10, 5], 2),
            Some(Grant::Counted {
                count: 2,
                remaining: 10,
                full_in: Duration::from_micros(5)
            })
        );
        assert_eq!(
            g.grant(&[0, 0, 7], 4),
            Some(Grant::Limited {
                retry_after: Duration::from_micros(7)
            })
        );
        assert_eq!(g.grant(&[-1, 0, 7], 4), None);
        assert_eq!(g.grant(&[1, 0], 1), None);
    }

    #[test]
    fn a_new_store_connection_drops_what_the_old_one_said() {
        let l = leases("100000/minute");
        let t = Instant::now();
        let a = ask(&l, t);
        l.record(
            "k",
            t,
            0,
            a,
            Grant::Limited {
                retry_after: Duration::from_secs(30),
            },
        );
        assert!(matches!(l.take("k", t, 0), Take::Served { .. }));
        // Redis may have restarted empty: ask it.
        assert!(matches!(
            l.take("k", t, 1),
            Take::Ask(Ask {
                want: 1,
                lead: true,
                waiting: true
            })
        ));
        let b = ask(&l, t);
        l.record("k", t, 0, b, counted(8, 10));
        assert!(
            matches!(l.take("k", t, 1), Take::Ask(_)),
            "spare from epoch 0 dropped"
        );
    }

    #[test]
    fn idle_keys_are_forgotten_refused_ones_kept_until_their_time() {
        let l = leases("100000/minute");
        let t = Instant::now();
        let a = ask(&l, t);
        l.record("k", t, 0, a, counted(1, 5));
        let b = match l.take("z", t, 0) {
            Take::Ask(b) => b,
            other => panic!("{other:?}"),
        };
        l.record(
            "z",
            t,
            0,
            b,
            Grant::Limited {
                retry_after: IDLE * 2,
            },
        );
        l.prune(t + IDLE);
        assert_eq!(l.len(), 1, "the refused key stays");
        l.prune(t + IDLE * 2);
        assert!(l.is_empty());
    }
}
