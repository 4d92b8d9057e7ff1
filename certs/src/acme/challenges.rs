//! The pending challenge answers, shared between the ACME client that
//! publishes them and the listeners that serve them: HTTP-01 key
//! authorizations by token (the plain-HTTP listener) and TLS-ALPN-01
//! certificates by domain (the https listener). The TLS-ALPN-01 half is a
//! [`PendingCerts`], owned by [`crate::tls_alpn`], so that module needs
//! nothing from here.
//!
//! With a shared backend the ordering instance also publishes each answer
//! there (`http-01/<token>` → key authorization, `tls-alpn-01/<domain>` →
//! the key authorization's SHA-256 in hex), and every instance copies what
//! is published into its own store ([`ChallengeStore::sync_shared`]), so the
//! listeners never wait on the backend and any instance answers the CA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::sign::CertifiedKey;

use super::backend::Backend;
use crate::error::CertError;
use crate::tls_alpn::{self, PendingCerts};

/// How long a published answer stays in a shared backend when its
/// publisher dies before withdrawing it.
const SHARED_TTL: Duration = Duration::from_secs(10 * 60);

/// Pending challenge answers: HTTP-01 token → key authorization, and the
/// TLS-ALPN-01 certificate per domain. Cheap to clone; the clones share one
/// state, written by `obtain` and read by the listeners.
#[derive(Clone, Debug, Default)]
pub struct ChallengeStore {
    http: Arc<RwLock<HashMap<String, String>>>,
    alpn: PendingCerts,
    /// HTTP-01 answers another instance published.
    shared_http: Arc<RwLock<HashMap<String, String>>>,
    /// TLS-ALPN-01 domains another instance published, with their digest.
    shared_alpn: Arc<Mutex<HashMap<String, String>>>,
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
        if let Some(found) = map.get(token) {
            return Some(found.clone());
        }
        let shared = self
            .shared_http
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shared.get(token).cloned()
    }

    /// Replaces the answers other instances published with `answers`, as
    /// read from a shared backend: (`http-01/<token>`, key authorization)
    /// and (`tls-alpn-01/<domain>`, SHA-256 hex). Malformed entries are
    /// skipped; a TLS-ALPN-01 certificate is made here, once per answer.
    pub fn sync_shared(&self, answers: &[(String, String)]) {
        let mut http = HashMap::new();
        let mut alpn = HashMap::new();
        for (name, value) in answers {
            if let Some(token) = name.strip_prefix("http-01/") {
                if valid_token(token) && value.len() <= 512 {
                    http.insert(token.to_string(), value.clone());
                }
            } else if let Some(domain) = name.strip_prefix("tls-alpn-01/") {
                if valid_domain(domain) && decode_digest(value).is_some() {
                    alpn.insert(domain.to_string(), value.clone());
                }
            }
        }
        *self
            .shared_http
            .write()
            .unwrap_or_else(PoisonError::into_inner) = http;
        let mut current = self
            .shared_alpn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.retain(|domain, digest| {
            let keep = alpn.get(domain) == Some(digest);
            if !keep {
                self.alpn.remove(domain);
            }
            keep
        });
        for (domain, digest) in alpn {
            if current.contains_key(&domain) {
                continue;
            }
            let Some(bytes) = decode_digest(&digest) else {
                continue;
            };
            match tls_alpn::challenge_cert(&domain, &bytes) {
                Ok(cert) => {
                    self.alpn.insert(domain.clone(), cert);
                    current.insert(domain, digest);
                }
                Err(e) => {
                    tracing::warn!(domain, error = %e, "cannot make a TLS-ALPN-01 certificate for a shared challenge")
                }
            }
        }
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

/// A lowercase DNS name as the ordering instance publishes it.
fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A SHA-256 digest in lowercase hex.
fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn encode_digest(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 8555 8.1: tokens are base64url without padding; ours are bounded.
pub(super) fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Removes the answers it published from the local store when dropped, so
/// a failed or cancelled `obtain` leaves none behind; answers published to a
/// shared backend are withdrawn by [`Published::withdraw`] (and expire
/// there otherwise).
pub(super) struct Published {
    store: ChallengeStore,
    backend: Arc<dyn Backend>,
    tokens: Vec<String>,
    domains: Vec<String>,
    shared: Vec<String>,
}

impl Published {
    /// Nothing published yet into `store` (and `backend`, when shared).
    pub(super) fn new(store: ChallengeStore, backend: Arc<dyn Backend>) -> Self {
        Self {
            store,
            backend,
            tokens: Vec::new(),
            domains: Vec::new(),
            shared: Vec::new(),
        }
    }

    /// Serve `key_authorization` for HTTP-01 `token` until dropped.
    pub(super) async fn add(
        &mut self,
        token: String,
        key_authorization: String,
    ) -> Result<(), CertError> {
        self.store.insert(token.clone(), key_authorization.clone());
        self.tokens.push(token.clone());
        self.share(format!("http-01/{token}"), &key_authorization)
            .await
    }

    /// Serve the TLS-ALPN-01 certificate for `domain` and the key
    /// authorization `digest` until dropped.
    pub(super) async fn add_alpn(
        &mut self,
        domain: String,
        digest: &[u8],
    ) -> Result<(), CertError> {
        let cert = tls_alpn::challenge_cert(&domain, digest)?;
        self.store.alpn.insert(domain.clone(), cert);
        self.domains.push(domain.clone());
        self.share(format!("tls-alpn-01/{domain}"), &encode_digest(digest))
            .await
    }

    async fn share(&mut self, name: String, value: &str) -> Result<(), CertError> {
        if !self.backend.is_shared() {
            return Ok(());
        }
        self.backend
            .publish_challenge(&name, value, SHARED_TTL)
            .await?;
        self.shared.push(name);
        Ok(())
    }

    /// Whether answers also go to a shared backend.
    pub(super) fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Withdraws what was published to a shared backend; the local answers
    /// go when this is dropped.
    pub(super) async fn withdraw(mut self) {
        for name in std::mem::take(&mut self.shared) {
            self.backend.withdraw_challenge(&name).await;
        }
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

    fn files() -> Arc<dyn Backend> {
        Arc::new(super::super::backend::FileBackend::new(
            std::path::Path::new("/nonexistent"),
        ))
    }

    #[tokio::test]
    async fn published_tokens_are_removed_on_drop() {
        let store = ChallengeStore::new();
        {
            let mut published = Published::new(store.clone(), files());
            published
                .add("t1".to_owned(), "k1".to_owned())
                .await
                .expect("add");
            published
                .add("t2".to_owned(), "k2".to_owned())
                .await
                .expect("add");
            published
                .add_alpn("a.test".to_owned(), &[7; 32])
                .await
                .expect("alpn");
            assert_eq!(store.get("t2").as_deref(), Some("k2"));
            assert!(store.alpn_pending());
            assert!(store.alpn_cert("A.TEST").is_some());
        }
        assert!(store.is_empty());
        assert!(!store.alpn_pending());
        assert!(store.alpn_cert("a.test").is_none());
    }

    #[tokio::test]
    async fn the_validation_side_sees_what_is_published_later() {
        let store = ChallengeStore::new();
        // Converted before anything is published, as the gateway does at start.
        let pending = PendingCerts::from(store.clone());
        assert!(!pending.is_pending());
        {
            let mut published = Published::new(store.clone(), files());
            published
                .add_alpn("a.test".to_owned(), &[7; 32])
                .await
                .expect("alpn");
            assert!(pending.is_pending());
            assert!(pending.get("a.test").is_some());
        }
        assert!(!pending.is_pending());
        assert!(pending.get("a.test").is_none());
    }

    #[test]
    fn answers_from_other_instances_are_served_and_junk_is_skipped() {
        let store = ChallengeStore::new();
        let digest = encode_digest(&[9; 32]);
        store.sync_shared(&[
            ("http-01/tok-1".into(), "tok-1.thumb".into()),
            ("http-01/../x".into(), "nope".into()),
            ("tls-alpn-01/a.test".into(), digest.clone()),
            ("tls-alpn-01/B.test".into(), digest.clone()),
            ("tls-alpn-01/c.test".into(), "zz".into()),
            ("dns-01/a.test".into(), "x".into()),
        ]);
        assert_eq!(store.get("tok-1").as_deref(), Some("tok-1.thumb"));
        assert_eq!(store.get("../x"), None);
        assert!(store.alpn_pending());
        assert!(store.alpn_cert("a.test").is_some());
        assert!(
            store.alpn_cert("b.test").is_none(),
            "published lowercase only"
        );
        assert!(store.alpn_cert("c.test").is_none());
        // Withdrawn elsewhere: gone here at the next sync.
        store.sync_shared(&[]);
        assert_eq!(store.get("tok-1"), None);
        assert!(!store.alpn_pending());
        assert_eq!(decode_digest(&digest), Some([9; 32]));
    }
}
