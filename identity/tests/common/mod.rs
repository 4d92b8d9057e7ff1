//! What the store tests share: both backends, and a way to make accounts.
#![allow(dead_code, unused_macros, unused_imports)]

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

pub use identity::{NewAccount, SigningKey, Store};
pub use postgres::Postgres;

/// A store on a fresh SQLite file; the dir lives as long as the store.
pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("sub/identity.db").display());
    (Store::open(&url).await.expect("sqlite store"), dir)
}

/// Runs one check on a SQLite store and on a PostgreSQL store.
macro_rules! on_both_ {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = super::sqlite().await;
                super::$check(&store, &store.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let pg = super::Postgres::start();
                let a = super::Store::open(&pg.url()).await.expect("postgres store");
                // A second instance on the same database.
                let b = super::Store::open(&pg.url())
                    .await
                    .expect("second instance");
                super::$check(&a, &b).await;
            }
        }
    };
}

pub fn roles(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| r.to_string()).collect()
}

pub async fn create(store: &Store, name: &str, role_list: &[&str]) -> identity::Account {
    let roles = roles(role_list);
    store
        .create_account(NewAccount {
            name,
            email: Some("a@example.com"),
            password: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            roles: &roles,
            disabled: false,
            created: 1_000,
        })
        .await
        .expect("created")
}

pub(crate) use on_both_ as on_both;
