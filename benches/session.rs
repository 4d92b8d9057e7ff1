//! Per-request costs of the session cookie and CSRF checks.
//!
//! `session::decode` runs on every request that carries a cookie, so it must
//! stay well under a microsecond, including for the cookies an attacker
//! makes up (bad MAC, malformed).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use policies::csrf;
use policies::session::{self, Lifetimes, Session, SessionKeys};

const NOW: u64 = 1_700_000_000;
/// Session clocks are Unix milliseconds.
const NOW_MS: u64 = NOW * 1000;
const LIFE: Lifetimes = Lifetimes {
    ttl: 12 * 3600 * 1000,
    idle: 2 * 3600 * 1000,
};

fn keys(list: &[&[u8]]) -> SessionKeys {
    SessionKeys::new(list.iter().map(|k| k.to_vec()).collect()).expect("at least one key")
}

fn bench_session(c: &mut Criterion) {
    let key_a: &[u8] = b"session key A, at least thirty-two bytes long";
    let key_b: &[u8] = b"session key B, at least thirty-two bytes long";
    let key_c: &[u8] = b"session key C, at least thirty-two bytes long";
    let one = keys(&[key_a]);
    let three = keys(&[key_b, key_c, key_a]);
    let s = Session {
        id: session::new_id(),
        issued: NOW_MS - 600_000,
        seen: NOW_MS - 60_000,
    };
    let valid = session::encode(&s, &one);
    assert!(session::decode(&valid, &three, NOW_MS, LIFE).is_ok());
    let (payload, _) = valid.rsplit_once('.').expect("payload.tag");
    let bad_mac = format!("{payload}.{}", "A".repeat(43));
    let malformed = "v1|not-a-session-cookie";

    let mut g = c.benchmark_group("session::decode");
    g.bench_function("valid, 1 key", |b| {
        b.iter(|| session::decode(black_box(&valid), &one, NOW_MS, LIFE))
    });
    g.bench_function("valid, 3 keys, match last", |b| {
        b.iter(|| session::decode(black_box(&valid), &three, NOW_MS, LIFE))
    });
    g.bench_function("bad MAC, 1 key", |b| {
        b.iter(|| session::decode(black_box(&bad_mac), &one, NOW_MS, LIFE))
    });
    g.bench_function("malformed", |b| {
        b.iter(|| session::decode(black_box(malformed), &one, NOW_MS, LIFE))
    });
    g.finish();

    c.bench_function("session::encode", |b| {
        b.iter(|| session::encode(black_box(&s), &one))
    });
}

fn bench_csrf(c: &mut Criterion) {
    let key = csrf::derive_key(b"master secret, at least thirty-two bytes", "csrf");
    let binding = csrf::new_binding();
    let token = csrf::token(&key, &binding, "logout", NOW);
    assert!(csrf::verify(&key, &binding, "logout", &token, NOW, 3600));
    c.bench_function("csrf::verify", |b| {
        b.iter(|| csrf::verify(&key, &binding, "logout", black_box(&token), NOW, 3600))
    });
}

criterion_group!(benches, bench_session, bench_csrf);
criterion_main!(benches);
