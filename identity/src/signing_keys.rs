//! Assertion signing keys, shared by every instance: added (and the older
//! ones given an end to their publication) in one transaction, read whole
//! by the gateway's cache, dropped once no longer published. The key bytes
//! are `policies::signing`'s business.

use sqlx::Row;

use crate::store::Moves;
use crate::{Store, StoreError};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// JWS `alg` (`ES256`, `EdDSA`).
    pub alg: String,
    /// PKCS#8 DER, base64.
    pub private_key: String,
    /// When it was made.
    pub created: i64,
    /// Signs from then on (until a newer key's `sign_from`).
    pub sign_from: i64,
    /// Published in the JWKS until then; none: for as long as it is current.
    pub published_until: Option<i64>,
}

impl Store {
    /// Every stored key, oldest `sign_from` first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, created, sign_from, published_until
             FROM signing_keys ORDER BY sign_from, kid",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| {
                Ok(SigningKey {
                    kid: r.try_get(0)?,
                    alg: r.try_get(1)?,
                    private_key: r.try_get(2)?,
                    created: r.try_get(3)?,
                    sign_from: r.try_get(4)?,
                    published_until: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// Adds `key`; every other key still published without an end gets
    /// `others_until` as its end (a rotation), in the same transaction.
    /// Keys whose publication ended before `now` are deleted.
    pub async fn add_signing_key(
        &self,
        key: &SigningKey,
        others_until: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let err = |e| self.error(e);
            sqlx::query("DELETE FROM signing_keys WHERE published_until < $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if let Some(until) = others_until {
                sqlx::query(
                    "UPDATE signing_keys SET published_until = $1
                     WHERE published_until IS NULL OR published_until > $1",
                )
                .bind(until)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, private_key, created, sign_from, published_until)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.private_key)
            .bind(key.created)
            .bind(key.sign_from)
            .bind(key.published_until)
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(err)
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }
}
