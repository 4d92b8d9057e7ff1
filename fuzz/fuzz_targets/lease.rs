//! Leases in front of the shared rate-limit store (policies/src/lease.rs).
//!
//! Input: a rate (first byte picks one) then operations, two bytes each, on
//! two keys and two store connections: a request (`take`; an ask is
//! answered at once, later, or never), the store answering a pending ask
//! (with what fits, a refusal, or a failure), time passing, pruning.
//! The store is modelled: one budget per key and connection epoch, counted
//! as the script counts.
//!
//! Properties:
//! * never panics;
//! * requests allowed (locally or by an answer) never exceed what the store
//!   counted for that key and epoch: a lease only ever counts early;
//! * no ask is larger than the rule's cap, none is for zero requests;
//! * `remaining` never exceeds the burst.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use policies::lease::{Ask, Leases, Take};
use policies::ratelimit::{Grant, Outcome, Rate};

const RATES: [&str; 4] = ["5/minute", "100/s", "6400/minute", "100000/minute"];

struct Model {
    /// Requests the store counted and allowed, by (key, epoch).
    counted: HashMap<(usize, u64), u64>,
    allowed: HashMap<(usize, u64), u64>,
    /// The store's budget left, by (key, epoch).
    left: HashMap<(usize, u64), u32>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, ops)) = data.split_first() else {
        return;
    };
    let rate = Rate::parse(RATES[usize::from(pick) % RATES.len()]).expect("rate");
    let burst = rate.count.get();
    let leases = Leases::new(rate);
    let keys = ["a", "b"];
    let start = Instant::now();
    let mut now = start;
    let mut epoch = 0u64;
    let mut m = Model {
        counted: HashMap::new(),
        allowed: HashMap::new(),
        left: HashMap::new(),
    };
    // Asks on their way: (key, epoch when asked, ask, a request waits).
    let mut pending: Vec<(usize, u64, Ask, bool)> = Vec::new();
    let answer = |m: &mut Model, k: usize, e: u64, ask: Ask, how: u8, now: Instant| {
        let left = m.left.entry((k, e)).or_insert(burst);
        let grant = if how % 5 == 0 || *left == 0 {
            Grant::Limited {
                retry_after: Duration::from_millis(u64::from(how) * 7),
            }
        } else {
            let count = ask.want.min(*left);
            *left -= count;
            *m.counted.entry((k, e)).or_default() += u64::from(count);
            Grant::Counted {
                count,
                remaining: *left,
                full_in: Duration::from_secs(1),
            }
        };
        leases.record(keys[k], now, e, ask, grant)
    };
    for op in ops.chunks_exact(2) {
        let (what, arg) = (op[0], op[1]);
        let k = usize::from(arg & 1);
        match what % 6 {
            0 | 1 => match leases.take(keys[k], now, epoch) {
                Take::Served { outcome, refill } => {
                    if let Outcome::Allowed { remaining, .. } = outcome {
                        assert!(remaining <= burst);
                        *m.allowed.entry((k, epoch)).or_default() += 1;
                    }
                    if let Some(r) = refill {
                        assert!(r.want >= 1 && r.want <= leases.cap());
                        pending.push((k, epoch, r, false));
                    }
                }
                Take::Ask(ask) => {
                    assert!(ask.want >= 1 && ask.want <= leases.cap());
                    if what % 6 == 0 {
                        pending.push((k, epoch, ask, true));
                    } else if let Outcome::Allowed { remaining, .. } =
                        answer(&mut m, k, epoch, ask, arg >> 1, now)
                    {
                        assert!(remaining <= burst);
                        *m.allowed.entry((k, epoch)).or_default() += 1;
                    }
                }
                Take::Wait => {}
            },
            2 => {
                if !pending.is_empty() {
                    let (k, e, ask, waits) = pending.remove(usize::from(arg) % pending.len());
                    if arg & 0x80 != 0 {
                        leases.abandon(keys[k], ask);
                    } else {
                        let o = answer(&mut m, k, e, ask, arg >> 1, now);
                        // The outcome is the waiting request's; a refill's
                        // is nobody's.
                        if waits && matches!(o, Outcome::Allowed { .. }) {
                            *m.allowed.entry((k, e)).or_default() += 1;
                        }
                    }
                }
            }
            3 => now += Duration::from_millis(u64::from(arg) * 3),
            4 => leases.prune(now),
            _ => {
                if arg % 16 == 0 {
                    epoch += 1; // a new store connection
                }
            }
        }
        for (key, counted) in &m.counted {
            let allowed = m.allowed.get(key).copied().unwrap_or(0);
            assert!(
                allowed <= *counted,
                "{allowed} allowed but {counted} counted for {key:?}"
            );
        }
    }
});
