//! Second factors (TOTP secrets, passkeys) and recovery codes.
//!
//! Adding or removing a factor moves the change counter: an account's
//! factor count is part of the cached account, and the request path decides
//! from it whether a session must step up. Using a factor does not (the
//! TOTP step and a passkey's counter are checked against the store itself).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Moves, Tx};
use crate::{Store, StoreError};

/// A TOTP secret (`data`: base32) or a passkey (`data`: the library's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    /// The store's key (the remove form names it).
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// `totp` or `passkey`.
    pub kind: String,
    /// What the person called it.
    pub label: String,
    /// The secret material: never shown after enrolment, never logged.
    pub data: String,
    /// Unix milliseconds.
    pub created: i64,
    /// TOTP: the last step accepted (each code once). Passkeys: Unix ms of
    /// the last use.
    pub last_used: Option<i64>,
}

/// What removing a factor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// Gone (and, when it was the last, the recovery codes with it).
    Removed,
    /// No such factor on this account.
    NotFound,
    /// Refused: it is the last one and the account must keep one.
    LastOne,
}

const COLUMNS: &str = "id, account_id, kind, label, data, created, last_used";

fn from_row(row: &AnyRow) -> Result<Factor, sqlx::Error> {
    Ok(Factor {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        kind: row.try_get("kind")?,
        label: row.try_get("label")?,
        data: row.try_get("data")?,
        created: row.try_get("created")?,
        last_used: row.try_get("last_used")?,
    })
}

impl Store {
    /// The factors of one account, oldest first.
    pub async fn factors(&self, account_id: i64) -> Result<Vec<Factor>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM second_factors WHERE account_id = $1 ORDER BY id");
        self.all(sqlx::query(&sql).bind(account_id), from_row).await
    }

    /// Every factor of one kind, of every account (a new passkey's
    /// credential id must not be another account's).
    pub async fn factors_of_kind(&self, kind: &str) -> Result<Vec<Factor>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM second_factors WHERE kind = $1 ORDER BY id");
        self.all(sqlx::query(&sql).bind(kind), from_row).await
    }

    /// Adds a factor and, when `recovery` is given, replaces the account's
    /// recovery codes with those hashes, in one transaction. Returns its id.
    pub async fn add_factor(
        &self,
        f: &Factor,
        recovery: Option<&[String]>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let row = sqlx::query(
                "INSERT INTO second_factors (account_id, kind, label, data, created, last_used) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(f.account_id)
            .bind(f.kind.as_str())
            .bind(f.label.as_str())
            .bind(f.data.as_str())
            .bind(f.created)
            .bind(f.last_used)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
            if let Some(hashes) = recovery {
                self.put_recovery_codes(&mut tx, f.account_id, hashes)
                    .await?;
            }
            row.try_get::<i64, _>(0).map_err(|e| self.error(e))
        }
        .await;
        self.finish(tx, out, Moves::Counter).await
    }

    /// Records TOTP step `step` as used on factor `id`, only if it is newer
    /// than the last one: `false` when this or a later step was used already
    /// (on any instance: the check and the write are one statement).
    pub async fn use_totp_step(&self, id: i64, step: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let out = sqlx::query(
            "UPDATE second_factors SET last_used = $2 \
             WHERE id = $1 AND kind = 'totp' AND (last_used IS NULL OR last_used < $2)",
        )
        .bind(id)
        .bind(step)
        .execute(&mut *tx)
        .await
        .map(|d| d.rows_affected() == 1)
        .map_err(|e| self.error(e));
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Replaces a factor's data and last use (a passkey's signature counter
    /// after a sign-in).
    pub async fn update_factor(
        &self,
        id: i64,
        data: &str,
        last_used: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = sqlx::query("UPDATE second_factors SET data = $2, last_used = $3 WHERE id = $1")
            .bind(id)
            .bind(data)
            .bind(last_used)
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e));
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Removes factor `id` of account `account_id`. With `keep_one`, the
    /// last factor is refused. When none remain the recovery codes go too
    /// (they only stand in for a factor).
    pub async fn remove_factor(
        &self,
        account_id: i64,
        id: i64,
        keep_one: bool,
    ) -> Result<Removed, StoreError> {
        let mut tx = self.begin().await?;
        let out = self.remove_in(&mut tx, account_id, id, keep_one).await;
        let moves = match out {
            Ok(Removed::Removed) => Moves::Counter,
            _ => Moves::Nothing,
        };
        match self.finish(tx, out, moves).await {
            Err(StoreError::LastFactor) => Ok(Removed::LastOne),
            other => other,
        }
    }

    async fn remove_in(
        &self,
        tx: &mut Tx,
        account_id: i64,
        id: i64,
        keep_one: bool,
    ) -> Result<Removed, StoreError> {
        let err = |e| self.error(e);
        let before: i64 = sqlx::query("SELECT COUNT(*) FROM second_factors WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        let gone = sqlx::query("DELETE FROM second_factors WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut **tx)
            .await
            .map_err(err)?
            .rows_affected();
        if gone == 0 {
            return Ok(Removed::NotFound);
        }
        if before <= 1 {
            if keep_one {
                return Err(StoreError::LastFactor);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
                .bind(account_id)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        Ok(Removed::Removed)
    }

    /// Removes every second factor and recovery code of the account named
    /// `name` and ends its sessions (an admin's help for a person who lost
    /// both), in one transaction. Returns how many factors went.
    pub async fn clear_factors(&self, name: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let Some(id) = self.find(&mut tx, name).await? else {
                return Err(StoreError::NoSuchAccount(name.to_string()));
            };
            let err = |e| self.error(e);
            let gone = sqlx::query("DELETE FROM second_factors WHERE account_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            for sql in [
                "DELETE FROM recovery_codes WHERE account_id = $1",
                "DELETE FROM sessions WHERE account_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            sqlx::query("UPDATE accounts SET epoch = $2 WHERE id = $1")
                .bind(id)
                .bind(crate::new_epoch())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            Ok(gone)
        }
        .await;
        self.finish(tx, out, Moves::Counter).await
    }

    /// Replaces the account's recovery codes (their hashes): the old ones
    /// stop working in the same transaction.
    pub async fn replace_recovery_codes(
        &self,
        account_id: i64,
        hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = self.put_recovery_codes(&mut tx, account_id, hashes).await;
        self.finish(tx, out, Moves::Nothing).await
    }

    async fn put_recovery_codes(
        &self,
        tx: &mut Tx,
        account_id: i64,
        hashes: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        for h in hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)")
                .bind(account_id)
                .bind(h.as_str())
                .execute(&mut **tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Uses the recovery code with this hash, once: `false` when the
    /// account has no such unused code.
    pub async fn use_recovery_code(
        &self,
        account_id: i64,
        hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let out = sqlx::query(
            "UPDATE recovery_codes SET used = $3 \
             WHERE account_id = $1 AND code_hash = $2 AND used IS NULL",
        )
        .bind(account_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map(|d| d.rows_affected() > 0)
        .map_err(|e| self.error(e));
        self.finish(tx, out, Moves::Nothing).await
    }

    /// Unused recovery codes of the account.
    pub async fn recovery_codes_left(&self, account_id: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used IS NULL",
        )
        .bind(account_id)
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        row.try_get(0).map_err(|e| self.error(e))
    }
}
