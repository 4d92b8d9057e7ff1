//! Sessions as records: the cookie names one, and it is valid only while
//! the record exists and carries its account's current epoch. Logout
//! deletes the record; losing records signs people out, never in.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Moves, Tx};
use crate::{Store, StoreError};

/// One session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// 32 lowercase hex digits (the cookie carries it, signed).
    pub id: String,
    /// The account it belongs to.
    pub account_id: i64,
    /// The account's epoch when the session was established.
    pub epoch: String,
    /// Unix milliseconds.
    pub created: i64,
    /// Unix milliseconds of the last request seen (written at most once per
    /// refresh window, not per request).
    pub last_seen: i64,
    /// How it was established: `password`, `emergency`, a provider id.
    pub method: String,
    /// The client IP it was established from.
    pub client_ip: Option<String>,
    /// The browser's `User-Agent` then (for the account page).
    pub user_agent: Option<String>,
}

impl SessionRecord {
    /// A session of `account` established at `at` (Unix ms) by `method`,
    /// under the account's current epoch; client details left empty.
    pub fn new(
        id: impl Into<String>,
        account: &crate::Account,
        method: &str,
        at: i64,
    ) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            account_id: account.id,
            epoch: account.epoch.clone(),
            created: at,
            last_seen: at,
            method: method.to_string(),
            client_ip: None,
            user_agent: None,
        }
    }
}

const COLUMNS: &str = "id, account_id, epoch, created, last_seen, method, client_ip, user_agent";

fn from_row(row: &AnyRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        epoch: row.try_get("epoch")?,
        created: row.try_get("created")?,
        last_seen: row.try_get("last_seen")?,
        method: row.try_get("method")?,
        client_ip: row.try_get("client_ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

impl Store {
    /// Stores a new session and records the sign-in on its account, in one
    /// transaction. The change counter does not move: no cache can hold a
    /// fresh random id, and `last_sign_in` is not something other instances
    /// must see within a second.
    pub async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = self.insert_session(&mut tx, s).await;
        self.finish(tx, out, Moves::Nothing).await
    }

    pub(crate) async fn insert_session(
        &self,
        tx: &mut Tx,
        s: &SessionRecord,
    ) -> Result<(), StoreError> {
        let sql =
            format!("INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        sqlx::query(&sql)
            .bind(s.id.as_str())
            .bind(s.account_id)
            .bind(s.epoch.as_str())
            .bind(s.created)
            .bind(s.last_seen)
            .bind(s.method.as_str())
            .bind(s.client_ip.clone())
            .bind(s.user_agent.clone())
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        sqlx::query("UPDATE accounts SET last_sign_in = $2 WHERE id = $1")
            .bind(s.account_id)
            .bind(s.created)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The session with this id, if it exists.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = $1");
        self.optional(sqlx::query(&sql).bind(id), from_row).await
    }

    /// The sessions of one account, newest first (for the account page).
    pub async fn sessions_of(&self, account_id: i64) -> Result<Vec<SessionRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM sessions WHERE account_id = $1 ORDER BY created DESC");
        self.all(sqlx::query(&sql).bind(account_id), from_row).await
    }

    /// Records activity. Not a change other instances must see: the
    /// counter does not move.
    pub async fn touch_session(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $2 WHERE id = $1 AND last_seen < $2")
            .bind(id)
            .bind(at)
            .execute(self.pool())
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Logout: deletes the record. `false` when there was none.
    pub async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        self.delete("DELETE FROM sessions WHERE id = $1", id.to_string())
            .await
    }
}
