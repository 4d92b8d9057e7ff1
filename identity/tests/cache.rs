//! The cache in front of the store, on both backends: no store read in the
//! steady state, every change through another instance seen at the next
//! refresh, and nothing valid on data older than a second.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/postgres.rs"]
mod postgres;

use identity::{Cache, Lookup, NewAccount, SessionRecord, Store};
use postgres::Postgres;

const T0: u64 = 1_800_000_000_000;

macro_rules! on_both {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("identity.db").display());
                let store = super::Store::open(&url).await.unwrap();
                super::$check(&store, &store.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let pg = super::Postgres::start();
                let a = super::Store::open(&pg.url()).await.unwrap();
                let b = super::Store::open(&pg.url()).await.unwrap();
                super::$check(&a, &b).await;
            }
        }
    };
}

async fn account(store: &Store, name: &str, roles: &[&str]) -> identity::Account {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    store
        .create_account(NewAccount {
            name,
            roles: &roles,
            created: 1,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn session(store: &Store, id: &str, a: &identity::Account) {
    let s = SessionRecord::new(id, a, "password", 1);
    store.create_session(&s).await.unwrap();
}

fn roles_of(l: &Lookup) -> Vec<String> {
    match l {
        Lookup::Valid { account, .. } => account.roles.clone(),
        other => panic!("not valid: {other:?}"),
    }
}

const S1: &str = "00112233445566778899aabbccddeeff";
const S2: &str = "ffeeddccbbaa99887766554433221100";

on_both!(the_steady_state_reads_nothing);
async fn the_steady_state_reads_nothing(a: &Store, b: &Store) {
    let alice = account(a, "alice", &["staff"]).await;
    session(a, S1, &alice).await;
    let cache = Cache::open(b.clone(), T0).await.unwrap();
    assert!(matches!(cache.session(S1, T0).await, Lookup::Valid { .. }));
    assert_eq!(cache.store_reads(), 1);
    for i in 0..1000 {
        assert!(matches!(
            cache.session(S1, T0 + i % 900).await,
            Lookup::Valid { .. }
        ));
    }
    // An unknown id is read once too, then answered from memory.
    assert_eq!(cache.session(S2, T0).await, Lookup::Invalid);
    assert_eq!(cache.session(S2, T0).await, Lookup::Invalid);
    assert_eq!(cache.store_reads(), 2);
    // A refresh with nothing changed keeps everything.
    assert!(!cache.refresh(T0 + 500).await.unwrap());
    cache.session(S1, T0 + 600).await;
    assert_eq!(cache.store_reads(), 2);
}

on_both!(changes_elsewhere_arrive_at_the_next_refresh);
async fn changes_elsewhere_arrive_at_the_next_refresh(a: &Store, b: &Store) {
    let alice = account(a, "alice", &["staff"]).await;
    let bob = account(a, "bob", &[]).await;
    session(a, S1, &alice).await;
    session(a, S2, &bob).await;
    let cache = Cache::open(b.clone(), T0).await.unwrap();
    assert_eq!(roles_of(&cache.session(S1, T0).await), ["staff"]);

    // A promotion reaches the live session.
    a.set_roles("alice", &["staff".into(), "admin".into()])
        .await
        .unwrap();
    assert!(cache.refresh(T0 + 250).await.unwrap());
    assert_eq!(
        roles_of(&cache.session(S1, T0 + 250).await),
        ["staff", "admin"]
    );
    assert_eq!(cache.account("ALICE").map(|x| x.roles.len()), Some(2));

    // Logout, a new password, a disable, a deletion: each ends it.
    a.delete_session(S1).await.unwrap();
    cache.refresh(T0 + 500).await.unwrap();
    assert_eq!(cache.session(S1, T0 + 500).await, Lookup::Invalid);
    assert!(matches!(
        cache.session(S2, T0 + 500).await,
        Lookup::Valid { .. }
    ));
    a.set_disabled("bob", true).await.unwrap();
    cache.refresh(T0 + 750).await.unwrap();
    assert_eq!(cache.session(S2, T0 + 750).await, Lookup::Invalid);
    // Even a session record written with the old epoch after the change.
    session(a, "0123456789abcdef0123456789abcdef", &bob).await;
    a.set_disabled("bob", false).await.unwrap();
    cache.refresh(T0 + 1000).await.unwrap();
    assert_eq!(
        cache
            .session("0123456789abcdef0123456789abcdef", T0 + 1000)
            .await,
        Lookup::Invalid
    );
    let carol = account(a, "carol", &[]).await;
    session(a, S1, &carol).await;
    cache.refresh(T0 + 1250).await.unwrap();
    assert!(matches!(
        cache.session(S1, T0 + 1250).await,
        Lookup::Valid { .. }
    ));
    a.delete_account("carol").await.unwrap();
    cache.refresh(T0 + 1500).await.unwrap();
    assert_eq!(cache.session(S1, T0 + 1500).await, Lookup::Invalid);
    assert!(cache.account("carol").is_none());
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_after_a_second_then_recovers() {
    let pg = Postgres::start();
    let store = Store::open(&pg.url()).await.unwrap();
    let alice = account(&store, "alice", &["staff"]).await;
    session(&store, S1, &alice).await;
    let cache = Cache::open(store.clone(), T0).await.unwrap();
    assert!(matches!(cache.session(S1, T0).await, Lookup::Valid { .. }));

    pg.stop();
    assert!(cache.refresh(T0 + 250).await.is_err());
    // Within a second of the last good refresh: cached answers stand; an
    // unknown session cannot be read.
    assert!(matches!(
        cache.session(S1, T0 + 900).await,
        Lookup::Valid { .. }
    ));
    assert_eq!(cache.session(S2, T0 + 900).await, Lookup::Unavailable);
    // Past it: nothing is valid on stale data.
    assert_eq!(cache.session(S1, T0 + 1001).await, Lookup::Unavailable);

    pg.restart();
    let mut recovered = false;
    for i in 0..40 {
        if cache.refresh(T0 + 2000 + i).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(recovered, "the pool reconnects without a restart");
    assert!(matches!(
        cache.session(S1, T0 + 2100).await,
        Lookup::Valid { .. }
    ));
}
