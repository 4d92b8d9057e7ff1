//! The request-side policy chain, in process (issue #8's micro-benchmarks):
//! path safety + route match over 100 routes, header application, and the
//! whole chain a proxied request goes through before the upstream is
//! contacted — client IP, target, route, session cookie, rate limit, access,
//! response header plan. No sockets: this is the cost portcullis adds.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use policies::access::{self, Access, Decision};
use policies::client_ip::{self, TrustedProxies};
use policies::headers::HeaderSet;
use policies::ratelimit::{MemoryStore, Rate};
use policies::routes::{RouteMatcher, RouteTable};
use policies::session::{self, Lifetimes, Session, SessionKeys};
use policies::target::parse_target;

const NOW: u64 = 1_700_000_000;
/// Session clocks are Unix milliseconds.
const NOW_MS: u64 = NOW * 1000;
const LIFE: Lifetimes = Lifetimes {
    ttl: 12 * 3600 * 1000,
    idle: 2 * 3600 * 1000,
};

/// 100 routes like a real app's: `/api/v1/resource-N` prefixes, some with
/// methods, a host-bound admin area, then a catch-all.
fn table() -> RouteTable {
    let mut m = Vec::new();
    for i in 0..97 {
        let methods = (i % 3 == 0).then(|| vec!["GET".to_string(), "POST".to_string()]);
        m.push(RouteMatcher::new(None, &format!("/api/v1/resource-{i}"), methods).expect("route"));
    }
    m.push(RouteMatcher::new(Some("admin.example.com"), "/admin", None).expect("route"));
    m.push(RouteMatcher::new(None, "/static", Some(vec!["GET".into()])).expect("route"));
    m.push(RouteMatcher::new(None, "/", None).expect("route"));
    RouteTable::new(m, false)
}

fn bench(c: &mut Criterion) {
    let routes = table();
    let target = b"/api/v1/resource-90/items/42?page=2&sort=asc";
    let mut g = c.benchmark_group("pipeline");

    g.bench_function("target + route (100 routes, late match)", |b| {
        b.iter(|| {
            let t = parse_target(black_box(target)).expect("safe");
            let path = t.path().expect("origin form");
            routes.find(Some("app.example.com"), path.as_str(), "GET")
        })
    });
    g.bench_function("target + route (100 routes, catch-all)", |b| {
        b.iter(|| {
            let t = parse_target(black_box(b"/about/team")).expect("safe");
            routes.find(
                Some("app.example.com"),
                t.path().expect("path").as_str(),
                "GET",
            )
        })
    });
    g.bench_function("target alone", |b| {
        b.iter(|| parse_target(black_box(target)).is_ok())
    });
    let parsed = parse_target(target).expect("safe");
    let path = parsed.path().expect("path").as_str().to_string();
    g.bench_function("route alone (100 routes, late match)", |b| {
        b.iter(|| routes.find(Some("app.example.com"), black_box(&path), "GET"))
    });
    // The same question answered by trying every route in file order, as
    // the table did before it was indexed: the baseline for the index.
    g.bench_function("route alone, linear scan (100 routes, late match)", |b| {
        b.iter(|| {
            routes
                .matchers()
                .iter()
                .position(|m| m.matches(Some("app.example.com"), black_box(&path), "GET", false))
        })
    });
    g.bench_function("target refused (dot segment)", |b| {
        b.iter(|| parse_target(black_box(b"/api/v1/%2e%2e/admin")).is_err())
    });

    let headers = HeaderSet::defaults();
    g.bench_function("security header plan", |b| {
        b.iter(|| headers.plan(black_box(true), &|_| false).len())
    });

    // The whole chain for an authenticated, rate-limited, role-checked request.
    let keys = SessionKeys::new(vec![
        b"session key A, at least thirty-two bytes long".to_vec()
    ])
    .expect("key");
    let cookie = session::encode(
        &Session {
            id: session::new_id(),
            issued: NOW_MS - 60_000,
            seen: NOW_MS - 60_000,
        },
        &keys,
    );
    let limiter = MemoryStore::new(Rate::parse("4294967295/day").expect("rate")).expect("store");
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("cidr")]);
    let rule = Access::parse("role:admin,staff").expect("access");
    let roles = vec!["staff".to_string()];
    g.bench_function("whole request-side chain", |b| {
        b.iter(|| {
            let client = client_ip::resolve(
                IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
                [&b"203.0.113.7, 10.0.0.9"[..]],
                &trusted,
            );
            let t = parse_target(black_box(target)).expect("safe");
            let route = routes.find(
                Some("app.example.com"),
                t.path().expect("path").as_str(),
                "GET",
            );
            let (s, _refresh) =
                session::decode(black_box(&cookie), &keys, NOW_MS, LIFE).expect("valid");
            let key = format!("i:{}", client.ip);
            let outcome = limiter.check(&key);
            let decision = access::decide(&rule, Some(&roles), false);
            let plan = headers.plan(true, &|_| false);
            assert!(matches!(decision, Decision::Allow));
            (route, s.seen, outcome, plan.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
