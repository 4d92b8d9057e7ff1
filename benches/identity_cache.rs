//! The identity store's cache on the hot path: answering a known session
//! from memory (`Cache::cached`: freshness check, map lookup, epoch and
//! account check). The store behind it is a SQLite temp file; nothing here
//! reads it. Run: `cargo bench -p portcullis-identity --bench identity_cache`.
// Bench code: a failed setup is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use identity::{Cache, Lookup, NewAccount, SessionRecord, Store};

const NOW: u64 = 1_800_000_000_000;

fn cached_session(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("identity.db").display());
    let cache = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let roles = vec!["staff".to_string()];
        // A realistic number of accounts and live sessions around the one looked up.
        let mut ids = Vec::new();
        for i in 0..200 {
            let name = format!("user{i}");
            let a = store
                .create_account(NewAccount {
                    name: &name,
                    roles: &roles,
                    created: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            let id = format!("{:032x}", i);
            let s = SessionRecord::new(id.clone(), &a, "password", 1);
            store.create_session(&s).await.unwrap();
            ids.push(id);
        }
        let cache = Cache::open(store, NOW).await.unwrap();
        for id in &ids {
            assert!(matches!(cache.session(id, NOW).await, Lookup::Valid { .. }));
        }
        cache
    });
    let id = format!("{:032x}", 123);
    c.bench_function("identity cache: a known session from memory", |b| {
        b.iter(|| black_box(cache.cached(black_box(&id), NOW)))
    });
}

criterion_group!(benches, cached_session);
criterion_main!(benches);
