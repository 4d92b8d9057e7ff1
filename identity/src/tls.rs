//! TLS material and ACME state for several instances: named items
//! (certificates, keys, the ACME account), pending challenge answers and
//! leases. The bytes are `certs`' business; this only keeps them, each
//! write one transaction.

use sqlx::Row;

use crate::store::Moves;
use crate::{Store, StoreError};

impl Store {
    /// The item `name`, if stored.
    pub async fn tls_item(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT data FROM tls_items WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.error(e))?;
        row.map(|r| r.try_get(0).map_err(|e| self.error(e)))
            .transpose()
    }

    /// Writes every item in one transaction (all or none).
    pub async fn put_tls_items(&self, items: &[(&str, &str)], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            for (name, data) in items {
                sqlx::query(
                    "INSERT INTO tls_items (name, data, updated) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated = excluded.updated",
                )
                .bind(*name)
                .bind(*data)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
            }
            Ok(())
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Publishes a challenge answer until `expires`; expired ones go.
    pub async fn put_tls_challenge(
        &self,
        name: &str,
        data: &str,
        now: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let err = |e| self.error(e);
            sqlx::query("DELETE FROM tls_challenges WHERE expires <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query(
                "INSERT INTO tls_challenges (name, data, expires) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET data = excluded.data, expires = excluded.expires",
            )
            .bind(name)
            .bind(data)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(err)
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Withdraws a challenge answer.
    pub async fn delete_tls_challenge(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tls_challenges WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Every challenge answer still pending at `now`: (name, data).
    pub async fn tls_challenges(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, data FROM tls_challenges WHERE expires > $1")
            .bind(now)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// Takes lease `name` for `holder` until `expires` unless another
    /// holder's lease is live at `now`; true when `holder` has it. Taking a
    /// lease one already holds extends it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let err = |e| self.error(e);
            // One statement: of two instances racing, the database lets one
            // insert or update and the other finds a live lease.
            let taken = sqlx::query(
                "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
                 WHERE leases.expires <= $4 OR leases.holder = excluded.holder",
            )
            .bind(name)
            .bind(holder)
            .bind(expires)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            Ok(taken.rows_affected() == 1)
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Extends `holder`'s lease `name` to `expires`; false when it is not
    /// `holder`'s any more (it expired and another took it).
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        expires: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query("UPDATE leases SET expires = $1 WHERE name = $2 AND holder = $3")
            .bind(expires)
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| self.error(e))
    }

    /// Ends `holder`'s lease `name` (nothing when it is not theirs).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }
}
