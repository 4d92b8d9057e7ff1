//! Second factors, recovery codes and the last-admin guard on both
//! backends (a SQLite file, a private PostgreSQL cluster).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use identity::{Factor, Removed, StoreError};

fn totp(account_id: i64) -> Factor {
    Factor {
        id: 0,
        account_id,
        kind: "totp".into(),
        label: "phone".into(),
        data: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
        created: 5,
        last_used: Some(100),
    }
}

async fn factors_count_and_steps_are_used_once(a: &Store, b: &Store) {
    let ann = create(a, "ann", &["guest"]).await;
    assert_eq!(ann.factors, 0);
    let codes: Vec<String> = (0..10).map(|i| format!("hash{i}")).collect();
    let id = a.add_factor(&totp(ann.id), Some(&codes)).await.unwrap();
    // The count is part of the account (the cache decides step-up from it),
    // and adding moved the counter for every instance.
    assert_eq!(b.account("ann").await.unwrap().unwrap().factors, 1);
    assert_eq!(b.factors(ann.id).await.unwrap()[0].id, id);
    assert_eq!(b.recovery_codes_left(ann.id).await.unwrap(), 10);

    // A step is accepted once, on any instance, and never an older one.
    assert!(a.use_totp_step(id, 101).await.unwrap());
    assert!(!b.use_totp_step(id, 101).await.unwrap());
    assert!(!a.use_totp_step(id, 100).await.unwrap());
    assert!(b.use_totp_step(id, 102).await.unwrap());

    // A recovery code works once, and only for its account.
    let bob = create(a, "bob", &[]).await;
    assert!(!a.use_recovery_code(bob.id, "hash3", 7).await.unwrap());
    assert!(a.use_recovery_code(ann.id, "hash3", 7).await.unwrap());
    assert!(!b.use_recovery_code(ann.id, "hash3", 8).await.unwrap());
    assert_eq!(a.recovery_codes_left(ann.id).await.unwrap(), 9);
    // New codes void the old ones.
    a.replace_recovery_codes(ann.id, &["new".to_string()])
        .await
        .unwrap();
    assert!(!a.use_recovery_code(ann.id, "hash4", 9).await.unwrap());
    assert_eq!(a.recovery_codes_left(ann.id).await.unwrap(), 1);

    // Removing: never another account's factor; the last one only when the
    // account may be without; with it go the recovery codes.
    assert_eq!(
        a.remove_factor(bob.id, id, false).await.unwrap(),
        Removed::NotFound
    );
    assert_eq!(
        a.remove_factor(ann.id, id, true).await.unwrap(),
        Removed::LastOne
    );
    assert_eq!(b.factors(ann.id).await.unwrap().len(), 1);
    assert_eq!(
        a.remove_factor(ann.id, id, false).await.unwrap(),
        Removed::Removed
    );
    assert_eq!(b.account("ann").await.unwrap().unwrap().factors, 0);
    assert_eq!(b.recovery_codes_left(ann.id).await.unwrap(), 0);

    // Deleting the account takes its factors along.
    let id2 = a.add_factor(&totp(ann.id), None).await.unwrap();
    a.update_factor(id2, "{}", 9).await.unwrap();
    assert_eq!(a.factors(ann.id).await.unwrap()[0].data, "{}");
    assert!(a.delete_account("ann").await.unwrap());
    assert!(b.factors(ann.id).await.unwrap().is_empty());
}
on_both!(factors_count_and_steps_are_used_once);

async fn the_last_admin_stays(a: &Store, b: &Store) {
    create(a, "root", &["admin"]).await;
    create(a, "ops", &["guest"]).await;
    let last = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LastAdmin { ref account, ref role }) if account == "root" && role == "admin");
    assert!(last(
        a.set_roles_keeping("root", &roles(&["guest"]), "admin")
            .await
            .map(|_| ())
    ));
    assert!(last(
        b.set_disabled_keeping("root", true, "admin")
            .await
            .map(|_| ())
    ));
    assert!(last(
        a.delete_account_keeping("root", "admin").await.map(|_| ())
    ));
    // Nothing of a refused change was written.
    let root = b.account("root").await.unwrap().unwrap();
    assert_eq!(
        (root.roles.clone(), root.disabled),
        (roles(&["admin"]), false)
    );

    // With a second admin, the first may go.
    b.set_roles_keeping("ops", &roles(&["admin", "guest"]), "admin")
        .await
        .unwrap();
    a.set_disabled_keeping("root", true, "admin").await.unwrap();
    // A disabled admin does not count: ops is now the last.
    assert!(matches!(
        b.set_roles_keeping("ops", &[], "admin").await,
        Err(StoreError::LastAdmin { .. })
    ));
    assert!(a.delete_account_keeping("root", "admin").await.unwrap());
    // Changes that keep the role are not refused.
    b.set_disabled_keeping("ops", false, "admin").await.unwrap();
    assert!(!b.delete_account_keeping("nobody", "admin").await.unwrap());
}
on_both!(the_last_admin_stays);
