//! Second factors, recovery codes, the last-admin guard, reset links and
//! invited password sign-ups on both
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

    // An admin clears them all: factors, codes and sessions go.
    a.add_factor(&totp(ann.id), Some(&codes)).await.unwrap();
    let s = identity::SessionRecord::new(
        "s9",
        &b.account("ann").await.unwrap().unwrap(),
        "password+totp",
        9,
    );
    a.create_session(&s).await.unwrap();
    assert_eq!(b.clear_factors("ANN").await.unwrap(), 1);
    assert_eq!(a.account("ann").await.unwrap().unwrap().factors, 0);
    assert_eq!(a.recovery_codes_left(ann.id).await.unwrap(), 0);
    assert!(a.session("s9").await.unwrap().is_none());
    assert!(matches!(
        a.clear_factors("nobody").await,
        Err(StoreError::NoSuchAccount(_))
    ));

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

async fn reset_links_and_invited_sign_ups_are_used_once(a: &Store, b: &Store) {
    use identity::{Invitation, SessionRecord, Unusable};
    let ann = create(a, "ann", &["guest"]).await;
    a.create_session(&SessionRecord::new("s1", &ann, "password", 10))
        .await
        .unwrap();
    a.create_reset_link("r1", "Ann", 10, 1_000).await.unwrap();
    assert!(matches!(
        a.create_reset_link("r2", "nobody", 10, 1_000).await,
        Err(StoreError::NoSuchAccount(_))
    ));
    let link = b.reset_link("r1").await.unwrap().unwrap();
    assert_eq!((link.account.as_str(), link.check(20)), ("ann", Ok(())));
    assert_eq!(link.check(1_000), Err(Unusable::Expired));
    assert_eq!(
        a.use_reset_link("nope", "h", 20).await.unwrap(),
        Err(Unusable::Unknown)
    );
    let after = b.use_reset_link("r1", "h2", 20).await.unwrap().unwrap();
    assert_eq!(after.password.as_deref(), Some("h2"));
    assert_ne!(after.epoch, ann.epoch, "sessions end");
    assert!(a.session("s1").await.unwrap().is_none());
    assert_eq!(
        a.use_reset_link("r1", "h3", 21).await.unwrap(),
        Err(Unusable::Used)
    );
    a.create_reset_link("r3", "ann", 10, 100).await.unwrap();
    assert_eq!(
        a.use_reset_link("r3", "h4", 100).await.unwrap(),
        Err(Unusable::Expired)
    );
    assert_eq!(
        b.account("ann").await.unwrap().unwrap().password.as_deref(),
        Some("h2")
    );

    // An invitation: the account gets its roles and address; a taken name
    // leaves it usable; once used, or revoked, it is gone.
    let inv = |id: &str| Invitation {
        id: id.into(),
        email: Some("new@example.com".into()),
        roles: roles(&["admin"]),
        created: 1,
        expires: 1_000,
        used: None,
    };
    a.create_invitation(&inv("i1")).await.unwrap();
    let s = |id: &str| SessionRecord::new(id, &ann, "password", 30);
    assert!(matches!(
        b.sign_up_invited("i1", "ANN", "hash", 30, s("x")).await,
        Err(StoreError::Exists(_))
    ));
    let (acc, sess) = b
        .sign_up_invited("i1", "neo", "hash", 30, s("s2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.roles, roles(&["admin"]));
    assert_eq!(acc.email.as_deref(), Some("new@example.com"));
    assert_eq!(a.session("s2").await.unwrap().unwrap().account_id, acc.id);
    assert_eq!(sess.epoch, acc.epoch);
    assert_eq!(
        a.sign_up_invited("i1", "neo2", "hash", 31, s("s3"))
            .await
            .unwrap(),
        Err(Unusable::Used)
    );
    a.create_invitation(&inv("i2")).await.unwrap();
    assert!(b.revoke_invitation("i2").await.unwrap());
    assert!(!b.revoke_invitation("i2").await.unwrap());
    assert_eq!(
        a.sign_up_invited("i2", "neo3", "hash", 31, s("s4"))
            .await
            .unwrap(),
        Err(Unusable::Unknown)
    );
    assert!(a.account("neo3").await.unwrap().is_none());
}
on_both!(reset_links_and_invited_sign_ups_are_used_once);

async fn a_ceremony_is_taken_once_before_it_expires(a: &Store, b: &Store) {
    use identity::Ceremony;
    let ann = create(a, "ann", &[]).await;
    let c = Ceremony {
        account_id: Some(ann.id),
        data: "{\"state\":1}".into(),
    };
    a.put_ceremony("c1", &c, 10, 100).await.unwrap();
    assert_eq!(b.take_ceremony("c1", 20).await.unwrap(), Some(c.clone()));
    assert_eq!(a.take_ceremony("c1", 21).await.unwrap(), None, "once");
    a.put_ceremony("c2", &c, 10, 100).await.unwrap();
    assert_eq!(b.take_ceremony("c2", 100).await.unwrap(), None, "expired");
    assert_eq!(a.take_ceremony("c2", 50).await.unwrap(), None, "and gone");
    let anonymous = Ceremony {
        account_id: None,
        data: "{}".into(),
    };
    a.put_ceremony("c3", &anonymous, 10, 100).await.unwrap();
    // An expired one is swept by the next ceremony.
    a.put_ceremony("c4", &anonymous, 200, 300).await.unwrap();
    assert_eq!(b.take_ceremony("c3", 50).await.unwrap(), None);
    assert_eq!(b.take_ceremony("c4", 250).await.unwrap(), Some(anonymous));
}
on_both!(a_ceremony_is_taken_once_before_it_expires);
