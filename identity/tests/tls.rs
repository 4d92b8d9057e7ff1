//! TLS material, ACME challenges and leases, on SQLite and on PostgreSQL
//! with two instances (`a` and `b`) on one database.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

on_both!(items_are_written_together_and_read_by_every_instance);
async fn items_are_written_together_and_read_by_every_instance(a: &Store, b: &Store) {
    assert_eq!(b.tls_item("ca/certs/x/cert.pem").await.unwrap(), None);
    a.put_tls_items(
        &[
            ("ca/certs/x/key.pem", "KEY 1"),
            ("ca/certs/x/cert.pem", "CERT 1"),
        ],
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(
        b.tls_item("ca/certs/x/cert.pem").await.unwrap().as_deref(),
        Some("CERT 1")
    );
    // A renewal replaces both.
    b.put_tls_items(
        &[
            ("ca/certs/x/key.pem", "KEY 2"),
            ("ca/certs/x/cert.pem", "CERT 2"),
        ],
        2_000,
    )
    .await
    .unwrap();
    assert_eq!(
        a.tls_item("ca/certs/x/key.pem").await.unwrap().as_deref(),
        Some("KEY 2")
    );
}

on_both!(challenges_are_seen_until_withdrawn_or_expired);
async fn challenges_are_seen_until_withdrawn_or_expired(a: &Store, b: &Store) {
    a.put_tls_challenge("http-01/tok", "tok.thumb", 1_000, 5_000)
        .await
        .unwrap();
    a.put_tls_challenge("tls-alpn-01/a.test", "00ff", 1_000, 3_000)
        .await
        .unwrap();
    let mut seen = b.tls_challenges(2_000).await.unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("http-01/tok".to_string(), "tok.thumb".to_string()),
            ("tls-alpn-01/a.test".to_string(), "00ff".to_string())
        ]
    );
    // Expired answers are not served.
    assert_eq!(b.tls_challenges(3_000).await.unwrap().len(), 1);
    b.delete_tls_challenge("http-01/tok").await.unwrap();
    assert!(a.tls_challenges(2_000).await.unwrap().len() == 1);
    assert!(a.tls_challenges(4_000).await.unwrap().is_empty());
}

on_both!(a_lease_has_one_holder_until_it_expires_or_is_released);
async fn a_lease_has_one_holder_until_it_expires_or_is_released(a: &Store, b: &Store) {
    assert!(a.take_lease("order", "A", 1_000, 2_000).await.unwrap());
    assert!(!b.take_lease("order", "B", 1_500, 2_500).await.unwrap());
    // The holder extends it; another cannot.
    assert!(a.renew_lease("order", "A", 3_000).await.unwrap());
    assert!(!b.renew_lease("order", "B", 9_000).await.unwrap());
    assert!(!b.take_lease("order", "B", 2_500, 4_000).await.unwrap());
    // Expired (the holder died): another takes it, and the old holder's
    // renewal and release no longer touch it.
    assert!(b.take_lease("order", "B", 3_000, 6_000).await.unwrap());
    assert!(!a.renew_lease("order", "A", 9_000).await.unwrap());
    a.release_lease("order", "A").await.unwrap();
    assert!(!a.take_lease("order", "A", 4_000, 7_000).await.unwrap());
    // Released: free at once. Other names are other leases.
    assert!(a.take_lease("other", "A", 4_000, 7_000).await.unwrap());
    b.release_lease("order", "B").await.unwrap();
    assert!(a.take_lease("order", "A", 4_000, 7_000).await.unwrap());
}
