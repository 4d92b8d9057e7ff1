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

fn key(kid: &str, sign_from: i64) -> SigningKey {
    SigningKey {
        kid: kid.to_string(),
        alg: "ES256".to_string(),
        private_key: format!("pkcs8 of {kid}"),
        created: sign_from,
        sign_from,
        published_until: None,
    }
}

on_both!(a_rotation_is_one_transaction_every_instance_sees);
async fn a_rotation_is_one_transaction_every_instance_sees(a: &Store, b: &Store) {
    assert!(b.signing_keys().await.unwrap().is_empty());
    a.add_signing_key(&key("k1", 1_000), None, 1_000)
        .await
        .unwrap();
    assert_eq!(b.signing_keys().await.unwrap(), vec![key("k1", 1_000)]);
    // Rotation: k2 signs from 5 000; k1 stays published until 9 000.
    b.add_signing_key(&key("k2", 5_000), Some(9_000), 2_000)
        .await
        .unwrap();
    let seen = a.signing_keys().await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].kid, "k1");
    assert_eq!(seen[0].published_until, Some(9_000));
    assert_eq!(seen[1], key("k2", 5_000));
    // Another rotation before k1's end cuts nothing short that ends sooner.
    a.add_signing_key(&key("k3", 6_000), Some(10_000), 3_000)
        .await
        .unwrap();
    let seen = b.signing_keys().await.unwrap();
    assert_eq!(
        seen.iter()
            .map(|k| (k.kid.as_str(), k.published_until))
            .collect::<Vec<_>>(),
        vec![("k1", Some(9_000)), ("k2", Some(10_000)), ("k3", None)]
    );
    // Keys whose publication ended are deleted at the next write.
    b.add_signing_key(&key("k4", 20_000), Some(30_000), 9_500)
        .await
        .unwrap();
    let kids: Vec<String> = a
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["k2", "k3", "k4"]);
    // A kid is unique: the second insert fails and changes nothing.
    assert!(a
        .add_signing_key(&key("k4", 40_000), Some(50_000), 9_600)
        .await
        .is_err());
    assert_eq!(b.signing_keys().await.unwrap().len(), 3);
    assert_eq!(
        b.signing_keys().await.unwrap()[1].published_until,
        Some(30_000)
    );
}
