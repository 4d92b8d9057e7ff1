//! The public-key assertion's keys (`[identity] assertion = "es256"` or
//! `"eddsa"`): kept in the identity store, shared by every instance, and
//! held here in memory so signing a request's assertion or serving
//! `/.portcullis/jwks.json` never waits on the database.
//!
//! A background service ([`KeyKeeper`]) makes the first key when the store
//! has none of the configured algorithm, and re-reads the keys every few
//! seconds, so a `portcullis keys rotate` on any host reaches every
//! instance long before its key signs (`key_grace`, 10 minutes).
//!
//! Which key signs at `now`: of the configured algorithm, still published,
//! the one with the latest `sign_from` not after `now` (ties: the greater
//! `kid`, so instances agree). Published: every key whose
//! `published_until` is unset or later than `now`, whatever its algorithm.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use identity::{SigningKey, Store, StoreError};
use policies::signing::{self, Alg, KeyPair};

use crate::runtime::AssertionRt;
use crate::state::{now_ms, Shared};

/// One key, read from the store.
pub struct Loaded {
    pub pair: KeyPair,
    pub sign_from: i64,
    pub published_until: Option<i64>,
}

impl Loaded {
    fn published(&self, now: i64) -> bool {
        self.published_until.is_none_or(|t| t > now)
    }
}

/// Every key the store had at the last read.
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<Loaded>,
    /// Read from the store at least once.
    pub loaded: bool,
}

impl KeyRing {
    /// From the store's rows; a row that does not parse is left out (and
    /// logged): it could not sign or be verified anyway.
    pub fn from_rows(rows: &[SigningKey]) -> KeyRing {
        let keys = rows
            .iter()
            .filter_map(|row| {
                let parsed = Alg::parse(&row.alg)
                    .ok_or_else(|| format!("unknown algorithm {:?}", row.alg))
                    .and_then(|alg| {
                        let der = STANDARD
                            .decode(&row.private_key)
                            .map_err(|e| e.to_string())?;
                        KeyPair::from_pkcs8(alg, &der).map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(pair) => Some(Loaded {
                        pair,
                        sign_from: row.sign_from,
                        published_until: row.published_until,
                    }),
                    Err(e) => {
                        tracing::error!(kid = %row.kid, error = %e, "unusable assertion key in the store; skipped");
                        None
                    }
                }
            })
            .collect();
        KeyRing { keys, loaded: true }
    }

    /// The key that signs at `now` (Unix ms).
    pub fn signer(&self, alg: Alg, now: i64) -> Option<&KeyPair> {
        self.keys
            .iter()
            .filter(|k| k.pair.alg() == alg && k.sign_from <= now && k.published(now))
            .max_by(|a, b| (a.sign_from, a.pair.kid()).cmp(&(b.sign_from, b.pair.kid())))
            .map(|k| &k.pair)
    }

    /// Whether a key of `alg` signs now or will: none means a new one is due.
    fn has_current(&self, alg: Alg, now: i64) -> bool {
        self.keys
            .iter()
            .any(|k| k.pair.alg() == alg && k.published_until.is_none() && k.published(now))
    }

    /// `{"keys": [...]}`: every published key's JWK.
    pub fn jwks(&self, now: i64) -> String {
        let keys: Vec<&serde_json::Value> = self
            .keys
            .iter()
            .filter(|k| k.published(now))
            .map(|k| k.pair.jwk())
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

/// The ring every request reads.
pub static RING: LazyLock<ArcSwap<KeyRing>> =
    LazyLock::new(|| ArcSwap::from_pointee(KeyRing::default()));

/// Milliseconds since the epoch as the store keeps them.
fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Why a key could not be made or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Key(#[from] signing::KeyError),
}

/// Stores a new key of `alg` that signs from `sign_from`; every other
/// published key stays published until `others_until`. Returns its `kid`.
pub async fn add(
    store: &Store,
    alg: Alg,
    sign_from: i64,
    others_until: Option<i64>,
) -> Result<String, KeysError> {
    let der = signing::generate(alg)?;
    let pair = KeyPair::from_pkcs8(alg, &der)?;
    let row = SigningKey {
        kid: pair.kid().to_string(),
        alg: alg.as_str().to_string(),
        private_key: STANDARD.encode(&der),
        created: now(),
        sign_from,
        published_until: None,
    };
    store.add_signing_key(&row, others_until, now()).await?;
    Ok(row.kid)
}

/// `portcullis keys rotate`: a new key, published at once, signing after
/// `grace`; the keys before it published until `old_published` after that.
pub async fn rotate(
    store: &Store,
    alg: Alg,
    grace: Duration,
    old_published: Duration,
) -> Result<(String, i64), KeysError> {
    let sign_from = now().saturating_add(millis(grace));
    let until = sign_from.saturating_add(millis(old_published));
    let kid = add(store, alg, sign_from, Some(until)).await?;
    Ok((kid, sign_from))
}

/// Reads every key into [`RING`]; makes the first one of `alg` when there
/// is none (signing at once: nothing signed before it to overlap with).
/// Keys of another algorithm (the config changed) stay published for
/// `old_published`.
pub async fn refresh(store: &Store, alg: Alg, old_published: Duration) -> Result<(), KeysError> {
    let ring = KeyRing::from_rows(&store.signing_keys().await?);
    let t = now();
    if !ring.has_current(alg, t) {
        let others = t.saturating_add(millis(old_published));
        let kid = add(store, alg, t, Some(others)).await?;
        tracing::info!(kid = %kid, alg = alg.as_str(), "new assertion signing key");
        RING.store(Arc::new(KeyRing::from_rows(&store.signing_keys().await?)));
        return Ok(());
    }
    RING.store(Arc::new(ring));
    Ok(())
}

/// How often the keys are read again.
const REFRESH: Duration = Duration::from_secs(5);
/// How often while the store has not been read yet.
const FIRST: Duration = Duration::from_millis(250);

/// Keeps [`RING`] filled while the assertion uses stored keys.
pub struct KeyKeeper {
    pub shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for KeyKeeper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut said = false;
        loop {
            let wait = if RING.load().loaded { REFRESH } else { FIRST };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let rt = self.shared.runtime.load_full();
            let AssertionRt::Keys(alg) = rt.identity.assertion else {
                continue;
            };
            let Some(cache) = self.shared.accounts.cache() else {
                continue;
            };
            match refresh(cache.store(), alg, rt.identity.old_key_published).await {
                Ok(()) => said = false,
                Err(e) if !said => {
                    said = true;
                    tracing::error!(error = %e, "assertion keys could not be read; the last ones read stay in use");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(alg: Alg, sign_from: i64, until: Option<i64>) -> SigningKey {
        let der = signing::generate(alg).unwrap();
        let pair = KeyPair::from_pkcs8(alg, &der).unwrap();
        SigningKey {
            kid: pair.kid().to_string(),
            alg: alg.as_str().to_string(),
            private_key: STANDARD.encode(der),
            created: sign_from,
            sign_from,
            published_until: until,
        }
    }

    #[test]
    fn the_latest_started_published_key_of_the_algorithm_signs() {
        let old = row(Alg::Es256, 1_000, Some(50_000));
        let new = row(Alg::Es256, 10_000, None);
        let other = row(Alg::EdDsa, 5_000, None);
        let ring = KeyRing::from_rows(&[old.clone(), new.clone(), other.clone()]);
        let kid = |t| ring.signer(Alg::Es256, t).map(|k| k.kid().to_string());
        assert_eq!(kid(500), None, "nothing signs before its time");
        assert_eq!(kid(1_000).as_deref(), Some(old.kid.as_str()));
        assert_eq!(kid(9_999).as_deref(), Some(old.kid.as_str()));
        assert_eq!(kid(10_000).as_deref(), Some(new.kid.as_str()));
        assert_eq!(
            ring.signer(Alg::EdDsa, 6_000).map(|k| k.kid().to_string()),
            Some(other.kid.clone())
        );
        // Published: all three until the old one's end, then two.
        let published = |t| {
            let v: serde_json::Value = serde_json::from_str(&ring.jwks(t)).unwrap();
            v["keys"].as_array().unwrap().len()
        };
        assert_eq!(
            published(2_000),
            3,
            "the next key is published before it signs"
        );
        assert_eq!(published(49_999), 3);
        assert_eq!(published(50_000), 2);
        assert!(ring.has_current(Alg::Es256, 0));
        assert!(!KeyRing::from_rows(&[old]).has_current(Alg::Es256, 0));
    }

    #[test]
    fn a_broken_row_is_left_out() {
        let mut bad = row(Alg::Es256, 0, None);
        bad.private_key = "bm90IGEga2V5".into();
        let mut alien = row(Alg::Es256, 0, None);
        alien.alg = "RS256".into();
        let good = row(Alg::Es256, 0, None);
        let ring = KeyRing::from_rows(&[bad, alien, good.clone()]);
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.signer(Alg::Es256, 1).unwrap().kid(), good.kid);
    }
}
