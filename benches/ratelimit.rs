//! The in-process rate-limit decision (stages `limits` and `route_limit`), run on every request:
//! one key that keeps passing, and a key that is being refused.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use policies::ratelimit::{MemoryStore, Rate};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit::check");
    // Never trips: a steady client under a generous limit.
    let roomy = MemoryStore::new(Rate::parse("4294967295/day").expect("rate")).expect("store");
    g.bench_function("allowed", |b| {
        b.iter(|| roomy.check(black_box("i:203.0.113.7")))
    });
    // Always refused: a client far over its budget.
    let tight = MemoryStore::new(Rate::parse("1/day").expect("rate")).expect("store");
    tight.check("i:203.0.113.8");
    g.bench_function("limited", |b| {
        b.iter(|| tight.check(black_box("i:203.0.113.8")))
    });
    // Many distinct keys: the map lookup with 100k live keys.
    let many = MemoryStore::new(Rate::parse("10/s").expect("rate")).expect("store");
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("i:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    for k in &keys {
        many.check(k);
    }
    let mut i = 0usize;
    g.bench_function("100k live keys", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            many.check(black_box(&keys[i]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
