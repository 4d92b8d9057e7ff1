//! Free TCP ports for listeners started by tests.
//!
//! Many tests run in parallel threads of one process, and other cargo
//! processes may run tests on the same machine. Binding port 0 hands out an
//! *ephemeral* port, which the kernel may reuse a moment later as the source
//! port of some outgoing connection. So we pick random ports *below* the Linux
//! ephemeral range (32768–60999), check that each can be bound, and never hand
//! the same port out twice within this process.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Ports are drawn from `[LOW, HIGH)`: below the ephemeral range, above the
/// ports commonly used by local services.
const LOW: u16 = 20_000;
const HIGH: u16 = 32_000;

/// The range the ACME test support (`certs/tests/support`) draws from. That
/// module includes this file as its own copy, with its own record of ports
/// handed out; `tests/acme.rs` uses both copies in one process, so they
/// draw from disjoint ranges.
pub const PEBBLE_RANGE: std::ops::Range<u16> = 12_000..20_000;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A pseudo-random candidate port. `RandomState` is seeded per process, so two
/// test binaries running at once do not walk the same sequence.
fn candidate(range: &std::ops::Range<u16>) -> u16 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = STATE.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    range.start + (hasher.finish() % u64::from(range.end - range.start)) as u16
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port on 127.0.0.1 that nothing listens on right now and that no other
/// caller in this process has received.
pub fn free_port() -> u16 {
    free_port_in(LOW..HIGH)
}

/// [`free_port`] from `range`.
pub fn free_port_in(range: std::ops::Range<u16>) -> u16 {
    let mut taken = handed_out().lock().unwrap();
    for _ in 0..2_000 {
        let port = candidate(&range);
        if !taken.contains(&port) && bindable(port) {
            taken.insert(port);
            return port;
        }
    }
    // Fall back to a kernel-chosen port rather than failing the test.
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        if taken.insert(port) {
            return port;
        }
    }
}

/// An address on 127.0.0.1 that refuses connections (nothing listens there):
/// an upstream that is down.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}
