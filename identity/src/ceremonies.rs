//! WebAuthn ceremonies under way. The library's state for a registration or
//! an authentication must stay on the server (its challenge is what makes
//! an answer fresh): it is kept here under a random id the browser holds,
//! for a few minutes, and taken once — on any instance, of two requests
//! with one id only one gets it.

use sqlx::Row;

use crate::store::Moves;
use crate::{Store, StoreError};

/// A ceremony taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// The account it was started for (`None`: a sign-in by passkey alone,
    /// where the browser says whose credential it is).
    pub account_id: Option<i64>,
    /// The library's state, as it serialised it.
    pub data: String,
}

impl Store {
    /// Keeps a ceremony until `expires` (Unix ms); expired ones go.
    pub async fn put_ceremony(
        &self,
        id: &str,
        c: &Ceremony,
        now: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let err = |e| self.error(e);
            sqlx::query("DELETE FROM ceremonies WHERE expires <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query(
                "INSERT INTO ceremonies (id, account_id, data, expires) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(c.account_id)
            .bind(c.data.as_str())
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(err)
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Takes ceremony `id` if it has not expired at `now`: it is gone
    /// afterwards, whatever the answer.
    pub async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Ceremony>, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let row = sqlx::query(
                "DELETE FROM ceremonies WHERE id = $1 RETURNING account_id, data, expires",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let expires: i64 = row.try_get(2).map_err(|e| self.error(e))?;
            if expires <= now {
                return Ok(None);
            }
            Ok(Some(Ceremony {
                account_id: row.try_get(0).map_err(|e| self.error(e))?,
                data: row.try_get(1).map_err(|e| self.error(e))?,
            }))
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }
}
