//! Memory of the in-process limiter under a flood of distinct keys (issue:
//! "one million distinct keys keep the process under a documented bound").
//! Not a timed test: it prints resident memory before, after the flood, and
//! after `prune()` once the keys' budgets are full again.
//!
//! `cargo bench -p portcullis-policies --bench ratelimit_memory`
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use policies::ratelimit::{MemoryStore, Rate};

/// Resident set size in MiB, from /proc/self/statm.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    }
    const KEYS: u32 = 1_000_000;
    // 100/s: each key's budget is full again 10 ms after its one request.
    let store = MemoryStore::new(Rate::parse("100/s").expect("rate")).expect("store");
    let before = rss_mib();
    for i in 0..KEYS {
        store.check(&format!("i:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255));
    }
    let flooded = rss_mib();
    let live = store.len();
    std::thread::sleep(Duration::from_millis(50));
    store.prune();
    let pruned = rss_mib();
    println!("ratelimit memory: {KEYS} distinct keys");
    println!("  rss before        {before:8.1} MiB");
    println!(
        "  rss after flood   {flooded:8.1} MiB  ({live} live keys, {:.0} B/key)",
        (flooded - before) * 1048576.0 / f64::from(KEYS)
    );
    println!(
        "  rss after prune   {pruned:8.1} MiB  ({} live keys)",
        store.len()
    );
}
