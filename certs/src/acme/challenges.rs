//! The pending challenge answers, shared between the ACME client that
//! publishes them and the listeners that serve them: HTTP-01 key
//! authorizations by token (the plain-HTTP listener) and TLS-ALPN-01
//! certificates by domain (the https listener). The TLS-ALPN-01 half is a
//! [`PendingCerts`], owned by [`crate::tls_alpn`], so that module needs
//! nothing from here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::sign::CertifiedKey;

use crate::tls_alpn::PendingCerts;

/// Pending challenge answers: HTTP-01 token → key authorization, and the
/// TLS-ALPN-01 certificate per domain. Cheap to clone; the clones share one
/// state, written by `obtain` and read by the listeners.
#[derive(Clone, Debug, Default)]
pub struct ChallengeStore {
    http: Arc<RwLock<HashMap<String, String>>>,
    alpn: PendingCerts,
}

impl ChallengeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key authorization for `token`, if pending. Anything that is not a
    /// plausible token (empty, too long, not base64url) is refused before
    /// the map is consulted.
    pub fn get(&self, token: &str) -> Option<String> {
        if !valid_token(token) {
            return None;
        }
        // A panic elsewhere while holding the lock leaves a usable map.
        let map = self.http.read().unwrap_or_else(PoisonError::into_inner);
        map.get(token).cloned()
    }

    /// Number of pending HTTP-01 answers.
    pub fn len(&self) -> usize {
        self.http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no HTTP-01 answer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while a TLS-ALPN-01 challenge is pending (one atomic load: the
    /// https listener asks on every connection).
    pub fn alpn_pending(&self) -> bool {
        self.alpn.is_pending()
    }

    /// The TLS-ALPN-01 certificate for `server_name`, if pending.
    pub fn alpn_cert(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.get(server_name)
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }

    fn remove(&self, token: &str) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// The TLS-ALPN-01 half, for [`crate::tls_alpn::validation_config`]: it
/// shares its state with the store, so what `obtain` publishes later is seen
/// by the validation handshake.
impl From<ChallengeStore> for PendingCerts {
    fn from(store: ChallengeStore) -> Self {
        store.alpn
    }
}

/// RFC 8555 8.1: tokens are base64url without padding; ours are bounded.
pub(super) fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Removes the answers it published when dropped, so a failed or cancelled
/// `obtain` leaves none behind.
pub(super) struct Published {
    store: ChallengeStore,
    tokens: Vec<String>,
    domains: Vec<String>,
}

impl Published {
    /// Nothing published yet into `store`.
    pub(super) fn new(store: ChallengeStore) -> Self {
        Self {
            store,
            tokens: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// Serve `key_authorization` for HTTP-01 `token` until dropped.
    pub(super) fn add(&mut self, token: String, key_authorization: String) {
        self.store.insert(token.clone(), key_authorization);
        self.tokens.push(token);
    }

    /// Serve `cert` for TLS-ALPN-01 validations of `domain` until dropped.
    pub(super) fn add_alpn(&mut self, domain: String, cert: Arc<CertifiedKey>) {
        self.store.alpn.insert(domain.clone(), cert);
        self.domains.push(domain);
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.store.remove(token);
        }
        for domain in &self.domains {
            self.store.alpn.remove(domain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_store_validates_tokens_and_shares_state() {
        let store = ChallengeStore::new();
        let clone = store.clone();
        store.insert("abc-DEF_123".to_owned(), "abc-DEF_123.thumb".to_owned());
        assert_eq!(
            clone.get("abc-DEF_123").as_deref(),
            Some("abc-DEF_123.thumb")
        );
        assert_eq!(clone.len(), 1);
        for bad in [
            "",
            "abc/..",
            "abc.def",
            "a b",
            "%41",
            "abc=",
            &"a".repeat(257),
        ] {
            assert_eq!(clone.get(bad), None, "{bad:?}");
        }
        // A token stored under a bad name is never served.
        store.insert("../x".to_owned(), "nope".to_owned());
        assert_eq!(clone.get("../x"), None);
        clone.remove("abc-DEF_123");
        assert_eq!(store.get("abc-DEF_123"), None);
    }

    #[test]
    fn published_tokens_are_removed_on_drop() {
        let store = ChallengeStore::new();
        {
            let mut published = Published::new(store.clone());
            published.add("t1".to_owned(), "k1".to_owned());
            published.add("t2".to_owned(), "k2".to_owned());
            let cert = crate::tls_alpn::challenge_cert("a.test", &[7; 32]).expect("cert");
            published.add_alpn("a.test".to_owned(), cert);
            assert_eq!(store.get("t2").as_deref(), Some("k2"));
            assert!(store.alpn_pending());
            assert!(store.alpn_cert("A.TEST").is_some());
        }
        assert!(store.is_empty());
        assert!(!store.alpn_pending());
        assert!(store.alpn_cert("a.test").is_none());
    }

    #[test]
    fn the_validation_side_sees_what_is_published_later() {
        let store = ChallengeStore::new();
        // Converted before anything is published, as the gateway does at start.
        let pending = PendingCerts::from(store.clone());
        assert!(!pending.is_pending());
        {
            let mut published = Published::new(store.clone());
            let cert = crate::tls_alpn::challenge_cert("a.test", &[7; 32]).expect("cert");
            published.add_alpn("a.test".to_owned(), cert);
            assert!(pending.is_pending());
            assert!(pending.get("a.test").is_some());
        }
        assert!(!pending.is_pending());
        assert!(pending.get("a.test").is_none());
    }
}
