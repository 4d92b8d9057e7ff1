//! Session verification as stage `session` does it with the identity store
//! (issue 17): the cookie's MAC and clocks (`policies::session::decode`),
//! then its record and account from the store's cache (`Cache::cached`),
//! the store itself (a SQLite temp file with 200 accounts and sessions) not
//! read. Run: `cargo bench -p portcullis --bench session_store`.
// Bench code: a failed setup is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use identity::{Cache, Lookup, NewAccount, SessionRecord, Store};
use policies::session::{self, Lifetimes, Session, SessionKeys};

const NOW_MS: u64 = 1_800_000_000_000;

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("identity.db").display());
    let keys = SessionKeys::new(vec![
        b"session key A, at least thirty-two bytes long".to_vec()
    ])
    .unwrap();
    let life = Lifetimes::new(Duration::from_secs(12 * 3600), Duration::from_secs(7200));
    let mut cookies = Vec::new();
    let cache = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let roles = vec!["staff".to_string()];
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
            let s = Session {
                id: session::new_id(),
                issued: NOW_MS - 60_000,
                seen: NOW_MS - 60_000,
            };
            let record = SessionRecord::new(s.id_hex(), &a, "password", 1);
            store.create_session(&record).await.unwrap();
            cookies.push(session::encode(&s, &keys));
        }
        let cache = Cache::open(store, NOW_MS).await.unwrap();
        for cookie in &cookies {
            let (s, _) = session::decode(cookie, &keys, NOW_MS, life).unwrap();
            assert!(matches!(
                cache.session(&s.id_hex(), NOW_MS).await,
                Lookup::Valid { .. }
            ));
        }
        cache
    });
    let cookie = &cookies[123];
    c.bench_function("session verification: cookie + identity cache", |b| {
        b.iter(|| {
            let (s, _) = session::decode(black_box(cookie), &keys, NOW_MS, life).unwrap();
            let found = cache.cached(&s.id_hex(), NOW_MS);
            assert!(matches!(found, Some(Lookup::Valid { .. })));
            black_box(found)
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
