//! The identity store on both backends: a SQLite temp file and a private
//! PostgreSQL cluster (tests/support/postgres.rs). Every check runs on both.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use identity::{schema, NewAccount, SessionRecord, Store, StoreError};

fn session(id: &str, account: &identity::Account) -> SessionRecord {
    SessionRecord {
        client_ip: Some("192.0.2.7".into()),
        ..SessionRecord::new(id, account, "password", 2_000)
    }
}

on_both!(migrations_are_versioned);
async fn migrations_are_versioned(a: &Store, b: &Store) {
    assert_eq!(a.schema_version().await.unwrap(), schema::LATEST);
    assert_eq!(b.schema_version().await.unwrap(), schema::LATEST);
    assert_eq!(a.changes().await.unwrap(), 0);
}

on_both!(accounts_round_trip);
async fn accounts_round_trip(a: &Store, b: &Store) {
    let alice = create(a, "Alice", &["staff", "admin"]).await;
    assert_eq!(alice.name, "Alice");
    assert_eq!(alice.roles, ["staff", "admin"]);
    assert_eq!(alice.epoch.len(), 32);
    // Unique case-insensitively, found in any case, from either instance.
    assert!(matches!(
        a.create_account(NewAccount {
            name: "alice",
            ..Default::default()
        })
        .await,
        Err(StoreError::Exists(_))
    ));
    assert_eq!(b.account("ALICE").await.unwrap(), Some(alice.clone()));
    create(b, "bob", &[]).await;
    let names: Vec<String> = a
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(names, ["Alice", "bob"]);

    // Roles and enabling keep sessions; a password, a disable and "sign out
    // everywhere" each end them with a new epoch.
    let same = a.set_roles("alice", &roles(&["staff"])).await.unwrap();
    assert_eq!(
        (same.roles.clone(), same.epoch.clone()),
        (roles(&["staff"]), alice.epoch.clone())
    );
    let pw = a
        .set_password("alice", Some("$argon2id$new"))
        .await
        .unwrap();
    assert_ne!(pw.epoch, alice.epoch);
    assert_eq!(pw.password.as_deref(), Some("$argon2id$new"));
    let off = b.set_disabled("alice", true).await.unwrap();
    assert!(off.disabled && off.epoch != pw.epoch);
    let on = a.set_disabled("alice", false).await.unwrap();
    assert!(!on.disabled && on.epoch == off.epoch);
    let out = a.end_sessions("alice").await.unwrap();
    assert_ne!(out.epoch, on.epoch);
    // The emergency reset: password and enabled in one change, sessions end.
    a.set_disabled("alice", true).await.unwrap();
    let reset = b.reset_password("alice", "$argon2id$reset").await.unwrap();
    assert!(!reset.disabled && reset.password.as_deref() == Some("$argon2id$reset"));
    let out = a.end_sessions("alice").await.unwrap();
    assert_ne!(out.epoch, reset.epoch);
    // A session records the sign-in on its account, epoch untouched.
    let mut signed_in = session("00112233445566778899aabbccddeeff", &out);
    signed_in.created = 5_000;
    a.create_session(&signed_in).await.unwrap();
    let seen = b.account("alice").await.unwrap().unwrap();
    assert_eq!(
        (seen.last_sign_in, seen.epoch),
        (Some(5_000), out.epoch.clone())
    );

    // Deleted and added again: a new account, a new epoch.
    assert!(b.delete_account("alice").await.unwrap());
    assert!(!a.delete_account("alice").await.unwrap());
    assert!(a.account("alice").await.unwrap().is_none());
    let again = create(a, "alice", &[]).await;
    assert_ne!(again.epoch, out.epoch);
    assert_ne!(again.id, alice.id);
    assert!(matches!(
        a.set_password("carol", None).await,
        Err(StoreError::NoSuchAccount(_))
    ));
}

on_both!(sessions_follow_their_account);
async fn sessions_follow_their_account(a: &Store, b: &Store) {
    let alice = create(a, "alice", &["staff"]).await;
    let bob = create(a, "bob", &[]).await;
    a.create_session(&session("00112233445566778899aabbccddeeff", &alice))
        .await
        .unwrap();
    a.create_session(&session("ffeeddccbbaa99887766554433221100", &alice))
        .await
        .unwrap();
    a.create_session(&session("0123456789abcdef0123456789abcdef", &bob))
        .await
        .unwrap();
    let s = b
        .session("00112233445566778899aabbccddeeff")
        .await
        .unwrap()
        .expect("seen by B");
    assert_eq!(
        (s.account_id, s.epoch.as_str()),
        (alice.id, alice.epoch.as_str())
    );
    assert_eq!(s.client_ip.as_deref(), Some("192.0.2.7"));
    // last_seen only moves forward.
    b.touch_session(&s.id, 9_000).await.unwrap();
    b.touch_session(&s.id, 3_000).await.unwrap();
    assert_eq!(
        a.session(&s.id).await.unwrap().map(|s| s.last_seen),
        Some(9_000)
    );
    // Logout deletes one; a new epoch deletes the rest of that account's.
    assert!(b.delete_session(&s.id).await.unwrap());
    assert!(!a.delete_session(&s.id).await.unwrap());
    assert_eq!(a.sessions_of(alice.id).await.unwrap().len(), 1);
    a.set_password("alice", None).await.unwrap();
    assert!(a.sessions_of(alice.id).await.unwrap().is_empty());
    assert_eq!(a.sessions_of(bob.id).await.unwrap().len(), 1, "bob's stays");
    // Deleting an account deletes its sessions.
    a.delete_account("bob").await.unwrap();
    assert!(b
        .session("0123456789abcdef0123456789abcdef")
        .await
        .unwrap()
        .is_none());
}

on_both!(every_write_moves_the_counter_once);
async fn every_write_moves_the_counter_once(a: &Store, b: &Store) {
    let c0 = b.changes().await.unwrap();
    let alice = create(a, "alice", &[]).await;
    assert_eq!(b.changes().await.unwrap(), c0 + 1);
    // A refused write changes nothing.
    let dup = a
        .create_account(NewAccount {
            name: "ALICE",
            ..Default::default()
        })
        .await;
    assert!(dup.is_err());
    a.delete_account("nobody").await.unwrap();
    assert_eq!(b.changes().await.unwrap(), c0 + 1);
    a.set_roles("alice", &roles(&["x"])).await.unwrap();
    assert_eq!(b.changes().await.unwrap(), c0 + 2);
    // A new session (no cache can hold its fresh id) and activity are not
    // changes other instances must learn about.
    a.create_session(&session("00112233445566778899aabbccddeeff", &alice))
        .await
        .unwrap();
    a.touch_session("00112233445566778899aabbccddeeff", 7_000)
        .await
        .unwrap();
    assert_eq!(b.changes().await.unwrap(), c0 + 2);
    // Logout is: every instance must drop the session.
    a.delete_session("00112233445566778899aabbccddeeff")
        .await
        .unwrap();
    assert_eq!(b.changes().await.unwrap(), c0 + 3);
}

on_both!(an_import_is_all_or_nothing);
async fn an_import_is_all_or_nothing(a: &Store, b: &Store) {
    create(a, "carol", &[]).await;
    let c0 = b.changes().await.unwrap();
    let staff = roles(&["staff"]);
    let new = |name| NewAccount {
        name,
        password: Some("$argon2id$kept"),
        roles: &staff,
        created: 1,
        ..Default::default()
    };
    // The third name exists (in another case): nothing is created.
    let refused = a
        .import_accounts(&[new("alice"), new("bob"), new("CAROL")])
        .await;
    assert!(matches!(refused, Err(StoreError::Exists(n)) if n == "CAROL"));
    assert!(b.account("alice").await.unwrap().is_none());
    assert_eq!(b.changes().await.unwrap(), c0);
    // Two copies of one name inside the import are refused the same way.
    assert!(a
        .import_accounts(&[new("dave"), new("Dave")])
        .await
        .is_err());
    assert!(b.account("dave").await.unwrap().is_none());
    assert_eq!(
        a.import_accounts(&[new("alice"), new("bob")])
            .await
            .unwrap(),
        2
    );
    let alice = b.account("ALICE").await.unwrap().unwrap();
    assert_eq!(
        (alice.password.as_deref(), alice.roles, alice.epoch.len()),
        (Some("$argon2id$kept"), staff.clone(), 32)
    );
    assert_eq!(b.changes().await.unwrap(), c0 + 1);
}

#[tokio::test]
async fn a_new_sqlite_file_is_private_and_reopens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("identity.db");
    let url = format!("sqlite:{}", file.display());
    let store = Store::open(&url).await.unwrap();
    create(&store, "alice", &[]).await;
    drop(store);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Across a restart: the same accounts, the schema not applied twice.
    let again = Store::open(&url).await.unwrap();
    assert!(again.account("alice").await.unwrap().is_some());
    assert_eq!(again.schema_version().await.unwrap(), schema::LATEST);
}

#[tokio::test]
async fn foreign_and_newer_stores_are_refused_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let e = Store::open(&format!("sqlite:{}", garbage.display()))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&garbage.display().to_string()),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x42u8; 8192],
        "left untouched"
    );

    // A SQLite database of some other program.
    let other = dir.path().join("other.db");
    let url = format!("sqlite:{}", other.display());
    {
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=rwc", other.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE notes (body TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let e = Store::open(&url).await.unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");

    // Written by a newer portcullis.
    let newer = dir.path().join("newer.db");
    let url = format!("sqlite:{}", newer.display());
    let store = Store::open(&url).await.unwrap();
    drop(store);
    {
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", newer.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO portcullis_schema (version) VALUES (99)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let e = Store::open(&url).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 99,
                supported: schema::LATEST,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("newer portcullis"), "{e}");
}

#[tokio::test]
async fn two_instances_starting_together_migrate_once() {
    let pg = Postgres::start();
    pg.create_database("together");
    let url = pg.url_of("together");
    let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.schema_version().await.unwrap(), schema::LATEST);
    create(&a, "alice", &[]).await;
    assert!(b.account("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://portcullis:sekrit-pw@127.0.0.1:{port}/identity");
    let e = Store::open(&url).await.unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("postgres://127.0.0.1:{port}/identity")),
        "{text}"
    );
    assert!(!text.contains("sekrit-pw"), "{text}");
}

fn provider_session(id: &str, at: i64) -> SessionRecord {
    SessionRecord {
        id: id.to_string(),
        account_id: 0,
        epoch: String::new(),
        created: at,
        last_seen: at,
        method: "corp".to_string(),
        client_ip: None,
        user_agent: None,
    }
}

on_both!(provider_identities_find_link_or_create_their_account);
async fn provider_identities_find_link_or_create_their_account(a: &Store, b: &Store) {
    use identity::{Found, ProviderSignIn, SignInOutcome, Signup};
    let guest = roles(&["guest"]);
    let admins = roles(&["admin"]);
    let names = vec!["carol@example.com".to_string(), "corp-c1".to_string()];
    let sign_in = |subject: &'static str, email: Option<&'static str>, signup, link, id: &str| {
        ProviderSignIn {
            provider: "corp",
            subject,
            email,
            names: &names,
            signup,
            link_by_email: link,
            mapped_roles: &admins,
            session: provider_session(id, 5_000),
        }
    };
    let existing = Signup::Existing;
    let open = Signup::Open { roles: &guest };

    // "existing": an unknown identity gets nothing, and nothing is written.
    let before = a.changes().await.unwrap();
    let out = a
        .provider_sign_in(sign_in(
            "c1",
            Some("carol@example.com"),
            existing,
            false,
            "s0",
        ))
        .await
        .unwrap();
    assert_eq!(out, SignInOutcome::NoAccount);
    assert!(b.links().await.unwrap().is_empty());
    assert!(b.account("carol@example.com").await.unwrap().is_none());
    assert!(b.changes().await.unwrap() >= before);

    // "open": created under the first free name, with the default roles
    // kept apart from the mapped ones, linked, and a session stored.
    let out = a
        .provider_sign_in(sign_in("c1", Some("carol@example.com"), open, false, "s1"))
        .await
        .unwrap();
    let SignInOutcome::SignedIn { account, how } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (how, account.name.as_str()),
        (Found::Created, "carol@example.com")
    );
    assert_eq!(account.roles, guest);
    assert_eq!(account.mapped_roles, admins);
    assert_eq!(account.all_roles(), roles(&["guest", "admin"]));
    assert!(account.password.is_none());
    let s1 = b.session("s1").await.unwrap().expect("session stored");
    assert_eq!(
        (s1.account_id, s1.epoch.as_str()),
        (account.id, account.epoch.as_str())
    );
    let links = b.links().await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0].provider.as_str(),
            links[0].subject.as_str(),
            links[0].account_id
        ),
        ("corp", "c1", account.id)
    );

    // Signing in again finds it by subject, whatever the address says now,
    // and the mapped roles follow the groups of this sign-in.
    let none: Vec<String> = Vec::new();
    let again = ProviderSignIn {
        mapped_roles: &none,
        ..sign_in("c1", Some("someone-else@example.com"), existing, true, "s2")
    };
    let SignInOutcome::SignedIn {
        account: again,
        how,
    } = b.provider_sign_in(again).await.unwrap()
    else {
        panic!("linked identity refused")
    };
    assert_eq!((how, again.id), (Found::Linked, account.id));
    assert!(again.mapped_roles.is_empty());
    assert_eq!(again.all_roles(), guest);

    // Another subject with the same address: a new account under the next
    // free name, never the first account, while link_by_email is off.
    let SignInOutcome::SignedIn {
        account: other,
        how,
    } = a
        .provider_sign_in(sign_in("c2", Some("carol@example.com"), open, false, "s3"))
        .await
        .unwrap()
    else {
        panic!("second identity refused")
    };
    assert_eq!((how, other.name.as_str()), (Found::Created, "corp-c1"));
    assert_ne!(other.id, account.id);
    // No third name free: refused, nothing written.
    let out = a
        .provider_sign_in(sign_in("c3", Some("x@example.com"), open, false, "s4"))
        .await
        .unwrap();
    assert_eq!(out, SignInOutcome::NoFreeName);
    assert!(b.session("s4").await.unwrap().is_none());

    // link_by_email: the one account with that address (any case) gets
    // the identity; with two such accounts, neither does.
    create(a, "dora", &["staff"]).await;
    let dora_by_mail = ProviderSignIn {
        names: &[],
        ..sign_in("d1", Some("A@Example.com"), existing, true, "s5")
    };
    let out = b.provider_sign_in(dora_by_mail.clone()).await.unwrap();
    let SignInOutcome::SignedIn { account: dora, how } = out else {
        panic!("{out:?}")
    };
    assert_eq!((how, dora.name.as_str()), (Found::LinkedByEmail, "dora"));
    create(a, "dora2", &[]).await;
    let ambiguous = ProviderSignIn {
        names: &[],
        ..sign_in("d2", Some("a@example.com"), existing, true, "s6")
    };
    assert_eq!(
        b.provider_sign_in(ambiguous).await.unwrap(),
        SignInOutcome::NoAccount
    );

    // A disabled account: refused, no session.
    a.set_disabled("dora", true).await.unwrap();
    let out = b
        .provider_sign_in(ProviderSignIn {
            session: provider_session("s7", 6_000),
            ..dora_by_mail
        })
        .await
        .unwrap();
    assert_eq!(out, SignInOutcome::Disabled("dora".into()));
    assert!(a.session("s7").await.unwrap().is_none());

    // Deleting the account deletes its links.
    a.delete_account("carol@example.com").await.unwrap();
    assert!(b.links().await.unwrap().iter().all(|l| l.subject != "c1"));
}

on_both!(a_callback_state_is_taken_once);
async fn a_callback_state_is_taken_once(a: &Store, b: &Store) {
    assert!(a.take_state("st-1", 10_000, 1_000).await.unwrap());
    assert!(
        !b.take_state("st-1", 10_000, 2_000).await.unwrap(),
        "replayed on another instance"
    );
    assert!(
        !a.take_state("st-1", 10_000, 3_000).await.unwrap(),
        "replayed on the same one"
    );
    assert!(b.take_state("st-2", 10_000, 3_000).await.unwrap());
    // Past its expiry a state is forgotten (it no longer verifies anyway).
    assert!(a.take_state("st-1", 30_000, 20_000).await.unwrap());
}

/// A store at schema 1 (as the first identity-store build wrote it) is
/// brought to the latest schema at the next open, its accounts kept.
async fn downgrade_to_v1(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("raw connection");
    for sql in [
        "DROP TABLE signing_keys",
        "DROP TABLE leases",
        "DROP TABLE tls_challenges",
        "DROP TABLE tls_items",
        "DROP TABLE ceremonies",
        "DROP TABLE reset_links",
        "ALTER TABLE accounts DROP COLUMN mapped_roles",
        "DROP TABLE used_states",
        "DELETE FROM portcullis_schema WHERE version > 1",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;
}

async fn migrates_forward(url: &str) {
    let store = Store::open(url).await.expect("open");
    create(&store, "kept", &["staff"]).await;
    store.close().await;
    downgrade_to_v1(url).await;
    let store = Store::open(url).await.expect("reopen at v1");
    assert_eq!(store.schema_version().await.unwrap(), schema::LATEST);
    let kept = store.account("kept").await.unwrap().expect("account kept");
    assert_eq!(
        (kept.roles, kept.mapped_roles),
        (roles(&["staff"]), Vec::<String>::new())
    );
    assert!(
        store.take_state("s", 10, 1).await.unwrap(),
        "used_states exists again"
    );
    store
        .create_reset_link("r", "kept", 1, 2)
        .await
        .expect("reset_links exists again (v3)");
    assert!(
        store.take_lease("l", "me", 1, 2).await.unwrap(),
        "leases exists again (v5)"
    );
    assert!(store
        .signing_keys()
        .await
        .expect("signing_keys exists again (v6)")
        .is_empty());
}

#[tokio::test]
async fn a_v1_sqlite_store_migrates_forward() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("v1.db").display());
    migrates_forward(&url).await;
}

#[tokio::test]
async fn a_v1_postgres_store_migrates_forward() {
    let pg = Postgres::start();
    migrates_forward(&pg.url()).await;
}

on_both!(invitations_are_used_once_within_their_time);
async fn invitations_are_used_once_within_their_time(a: &Store, b: &Store) {
    use identity::{Found, Invitation, ProviderSignIn, SignInOutcome, Signup, Unusable};
    let staff = roles(&["staff"]);
    let invitation = |id: &str, email: Option<&str>| Invitation {
        id: id.to_string(),
        email: email.map(str::to_string),
        roles: staff.clone(),
        created: 1_000,
        expires: 10_000,
        used: None,
    };
    a.create_invitation(&invitation("inv-any", None))
        .await
        .unwrap();
    a.create_invitation(&invitation("inv-mail", Some("Bound@Example.com")))
        .await
        .unwrap();
    assert_eq!(b.invitations().await.unwrap().len(), 2);
    let names = |n: &str| vec![n.to_string()];
    fn with<'a>(
        subject: &'a str,
        email: Option<&'a str>,
        inv: Option<&'a str>,
        at: i64,
        names: &'a [String],
    ) -> ProviderSignIn<'a> {
        ProviderSignIn {
            provider: "corp",
            subject,
            email,
            names,
            signup: Signup::Invite { invitation: inv },
            link_by_email: false,
            mapped_roles: &[],
            session: provider_session(&format!("s-{subject}-{at}"), at),
        }
    }

    // Without an invitation, or with an unknown one: nobody new.
    let n1 = names("newcomer");
    assert_eq!(
        a.provider_sign_in(with("n1", None, None, 5_000, &n1))
            .await
            .unwrap(),
        SignInOutcome::NoAccount
    );
    assert_eq!(
        a.provider_sign_in(with("n1", None, Some("nope"), 5_000, &n1))
            .await
            .unwrap(),
        SignInOutcome::Invitation(Unusable::Unknown)
    );
    // No free name: refused, and the invitation is not spent.
    create(a, "newcomer", &[]).await;
    assert_eq!(
        a.provider_sign_in(with("n1", None, Some("inv-any"), 5_000, &n1))
            .await
            .unwrap(),
        SignInOutcome::NoFreeName
    );
    assert_eq!(b.invitation("inv-any").await.unwrap().unwrap().used, None);
    // Used: an account with the invitation's roles; then spent.
    let n2 = names("newcomer2");
    let out = b
        .provider_sign_in(with("n2", None, Some("inv-any"), 5_000, &n2))
        .await
        .unwrap();
    let SignInOutcome::SignedIn { account, how } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (how, account.roles.clone()),
        (Found::Invited, staff.clone())
    );
    assert_eq!(
        a.invitation("inv-any").await.unwrap().unwrap().used,
        Some(5_000)
    );
    let n3 = names("newcomer3");
    assert_eq!(
        a.provider_sign_in(with("n3", None, Some("inv-any"), 6_000, &n3))
            .await
            .unwrap(),
        SignInOutcome::Invitation(Unusable::Used)
    );
    // Bound to an address: another address or none is refused; past the
    // expiry nobody may use it.
    assert_eq!(
        a.provider_sign_in(with(
            "n3",
            Some("other@example.com"),
            Some("inv-mail"),
            6_000,
            &n3
        ))
        .await
        .unwrap(),
        SignInOutcome::Invitation(Unusable::OtherEmail)
    );
    assert_eq!(
        a.provider_sign_in(with("n3", None, Some("inv-mail"), 6_000, &n3))
            .await
            .unwrap(),
        SignInOutcome::Invitation(Unusable::OtherEmail)
    );
    assert_eq!(
        a.provider_sign_in(with(
            "n3",
            Some("bound@example.com"),
            Some("inv-mail"),
            10_000,
            &n3
        ))
        .await
        .unwrap(),
        SignInOutcome::Invitation(Unusable::Expired)
    );
    let out = a
        .provider_sign_in(with(
            "n3",
            Some("bound@example.com"),
            Some("inv-mail"),
            9_999,
            &n3,
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            SignInOutcome::SignedIn {
                how: Found::Invited,
                ..
            }
        ),
        "{out:?}"
    );
}
