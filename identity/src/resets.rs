//! One-time password-reset links an admin makes for an account. Like
//! invitations, the store keeps only the SHA-256 of the link's token; a
//! link is good once, until it expires, and using it sets the password and
//! ends the account's sessions in one transaction.

use sqlx::Row;

use crate::accounts::{from_row, COLUMNS as ACCOUNT_COLUMNS};
use crate::store::{Moves, Tx};
use crate::{new_epoch, Account, Store, StoreError, Unusable};

/// What the reset page needs to know of a link before it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetLink {
    /// The hash of the token (hex).
    pub id: String,
    /// The account's name.
    pub account: String,
    /// Unix milliseconds.
    pub expires: i64,
    /// Unix milliseconds of its use, if used.
    pub used: Option<i64>,
}

impl ResetLink {
    /// Whether it may be used at `now` (Unix ms).
    pub fn check(&self, now: i64) -> Result<(), Unusable> {
        if self.used.is_some() {
            Err(Unusable::Used)
        } else if now >= self.expires {
            Err(Unusable::Expired)
        } else {
            Ok(())
        }
    }
}

impl Store {
    /// Stores a new reset link (token hash `id`) for the account named `name`.
    pub async fn create_reset_link(
        &self,
        id: &str,
        name: &str,
        created: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let Some(account_id) = self.find(&mut tx, name).await? else {
                return Err(StoreError::NoSuchAccount(name.to_string()));
            };
            sqlx::query(
                "INSERT INTO reset_links (id, account_id, created, expires, used) \
                 VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(id)
            .bind(account_id)
            .bind(created)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
        }
        .await;
        self.finish(tx, out, Moves::Nothing).await
    }

    /// The link with this id (token hash), if any.
    pub async fn reset_link(&self, id: &str) -> Result<Option<ResetLink>, StoreError> {
        let q = sqlx::query(
            "SELECT r.id, a.name, r.expires, r.used FROM reset_links r \
             JOIN accounts a ON a.id = r.account_id WHERE r.id = $1",
        )
        .bind(id);
        self.optional(q, |row| {
            Ok(ResetLink {
                id: row.try_get(0)?,
                account: row.try_get(1)?,
                expires: row.try_get(2)?,
                used: row.try_get(3)?,
            })
        })
        .await
    }

    /// Uses link `id` at `now`: the account gets password `hash` and a new
    /// epoch (its sessions end), the link is marked used — all or nothing.
    pub async fn use_reset_link(
        &self,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Result<Account, Unusable>, StoreError> {
        let mut tx = self.begin().await?;
        let out = self.reset_in(&mut tx, id, hash, now).await;
        match out {
            Ok(Ok(account)) => self.finish(tx, Ok(Ok(account)), Moves::Counter).await,
            Ok(Err(why)) => self.abandon(tx, Err(why)).await,
            Err(e) => self.finish(tx, Err(e), Moves::Nothing).await,
        }
    }

    async fn reset_in(
        &self,
        tx: &mut Tx,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Result<Account, Unusable>, StoreError> {
        let err = |e| self.error(e);
        let row = sqlx::query("SELECT account_id, expires, used FROM reset_links WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(err)?;
        let Some(row) = row else {
            return Ok(Err(Unusable::Unknown));
        };
        let account_id: i64 = row.try_get(0).map_err(err)?;
        let expires: i64 = row.try_get(1).map_err(err)?;
        let used: Option<i64> = row.try_get(2).map_err(err)?;
        if used.is_some() {
            return Ok(Err(Unusable::Used));
        }
        if now >= expires {
            return Ok(Err(Unusable::Expired));
        }
        // Of two uses racing, one updates the row.
        let taken = sqlx::query("UPDATE reset_links SET used = $2 WHERE id = $1 AND used IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        if taken.rows_affected() != 1 {
            return Ok(Err(Unusable::Used));
        }
        let sql = format!(
            "UPDATE accounts SET password = $2, epoch = $3 WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(account_id)
            .bind(hash)
            .bind(new_epoch())
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
        sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        from_row(&row).map(Ok).map_err(err)
    }
}
