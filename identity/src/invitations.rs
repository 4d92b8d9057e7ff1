//! Invitations: one-time links that create an account, with a password
//! ([`Store::sign_up_invited`]) or at a provider sign-in when
//! `signup = "invite"`. The store keeps only a hash of the
//! link's token (the caller hashes it), so reading the database gives no
//! usable link. Used once: the sign-in that uses it marks it in the same
//! transaction as the account it creates.

use sqlx::Row;

use crate::store::{Moves, Tx};
use crate::{Account, NewAccount, SessionRecord, Store, StoreError};

/// One invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The hash of the link's token (hex), never the token.
    pub id: String,
    /// When set, only a verified address equal to it (ASCII case aside)
    /// may use the invitation.
    pub email: Option<String>,
    /// The roles of the account it creates.
    pub roles: Vec<String>,
    /// Unix milliseconds.
    pub created: i64,
    /// Unix milliseconds; unusable from then on.
    pub expires: i64,
    /// Unix milliseconds of its use, if used.
    pub used: Option<i64>,
}

/// Why an invitation cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// No such invitation (a wrong or made-up link).
    Unknown,
    /// Used already.
    Used,
    /// Past its expiry.
    Expired,
    /// Bound to another address, or the sign-in has no verified one.
    OtherEmail,
}

impl Invitation {
    /// Whether it may be used at `now` (Unix ms) by `email` (verified).
    pub fn check(&self, now: i64, email: Option<&str>) -> Result<(), Unusable> {
        if self.used.is_some() {
            return Err(Unusable::Used);
        }
        if now >= self.expires {
            return Err(Unusable::Expired);
        }
        match (&self.email, email) {
            (None, _) => Ok(()),
            (Some(want), Some(got)) if want.eq_ignore_ascii_case(got) => Ok(()),
            _ => Err(Unusable::OtherEmail),
        }
    }
}

const COLUMNS: &str = "id, email, roles, created, expires, used";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Invitation, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(Invitation {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        roles: crate::accounts::split_roles(&roles),
        created: row.try_get("created")?,
        expires: row.try_get("expires")?,
        used: row.try_get("used")?,
    })
}

impl Store {
    /// Stores a new invitation.
    pub async fn create_invitation(&self, inv: &Invitation) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let out = sqlx::query(
            "INSERT INTO invitations (id, email, roles, created, expires, used) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(inv.id.as_str())
        .bind(inv.email.clone())
        .bind(inv.roles.join(","))
        .bind(inv.created)
        .bind(inv.expires)
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(|e| self.error(e));
        self.finish(tx, out, Moves::Nothing).await
    }

    /// The invitation with this id (token hash), if any.
    pub async fn invitation(&self, id: &str) -> Result<Option<Invitation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE id = $1");
        self.optional(sqlx::query(&sql).bind(id), from_row).await
    }

    /// Every invitation, newest first.
    pub async fn invitations(&self) -> Result<Vec<Invitation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM invitations ORDER BY created DESC");
        self.all(sqlx::query(&sql), from_row).await
    }

    /// Revokes (deletes) an invitation: its link is then unknown. `false`
    /// when there was none.
    pub async fn revoke_invitation(&self, id: &str) -> Result<bool, StoreError> {
        self.delete("DELETE FROM invitations WHERE id = $1", id.to_string())
            .await
    }

    /// A password sign-up with invitation `id` at `now`: creates the account
    /// with the invitation's roles and address, marks the invitation used
    /// and stores the first session (its account and epoch filled in), in
    /// one transaction. A name that exists already is `StoreError::Exists`
    /// and the invitation stays usable.
    pub async fn sign_up_invited(
        &self,
        id: &str,
        name: &str,
        password: &str,
        now: i64,
        session: SessionRecord,
    ) -> Result<Result<(Account, SessionRecord), Unusable>, StoreError> {
        let mut tx = self.begin().await?;
        let out = self
            .sign_up_in(&mut tx, id, name, password, now, session)
            .await;
        match out {
            Ok(Ok(done)) => self.finish(tx, Ok(Ok(done)), Moves::Counter).await,
            Ok(Err(why)) => self.abandon(tx, Err(why)).await,
            Err(e) => self.finish(tx, Err(e), Moves::Nothing).await,
        }
    }

    async fn sign_up_in(
        &self,
        tx: &mut Tx,
        id: &str,
        name: &str,
        password: &str,
        now: i64,
        session: SessionRecord,
    ) -> Result<Result<(Account, SessionRecord), Unusable>, StoreError> {
        let Some(found) = self.find_invitation(tx, id).await? else {
            return Ok(Err(Unusable::Unknown));
        };
        let bound = found.email;
        // Nobody verifies an address at a password sign-up: whoever holds
        // the link is the invitee, and the account gets the invited address.
        let inv = match self.use_invitation(tx, id, now, bound.as_deref()).await? {
            Ok(inv) => inv,
            Err(why) => return Ok(Err(why)),
        };
        let account = self
            .insert(
                tx,
                &NewAccount {
                    name,
                    email: inv.email.as_deref(),
                    password: Some(password),
                    roles: &inv.roles,
                    disabled: false,
                    created: now,
                },
            )
            .await?;
        let session = SessionRecord {
            account_id: account.id,
            epoch: account.epoch.clone(),
            ..session
        };
        self.insert_session(tx, &session).await?;
        Ok(Ok((account, session)))
    }

    /// The invitation `id` inside a transaction.
    async fn find_invitation(
        &self,
        tx: &mut Tx,
        id: &str,
    ) -> Result<Option<Invitation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        row.as_ref()
            .map(from_row)
            .transpose()
            .map_err(|e| self.error(e))
    }

    /// Inside a sign-in: the invitation if usable now by `email`, marked
    /// used (the caller's transaction commits both or neither).
    pub(crate) async fn use_invitation(
        &self,
        tx: &mut Tx,
        id: &str,
        now: i64,
        email: Option<&str>,
    ) -> Result<Result<Invitation, Unusable>, StoreError> {
        let Some(inv) = self.find_invitation(tx, id).await? else {
            return Ok(Err(Unusable::Unknown));
        };
        if let Err(why) = inv.check(now, email) {
            return Ok(Err(why));
        }
        // `used IS NULL` again here: of two sign-ins racing with one link,
        // one updates the row and the other finds it used.
        let done = sqlx::query("UPDATE invitations SET used = $2 WHERE id = $1 AND used IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        if done.rows_affected() != 1 {
            return Ok(Err(Unusable::Used));
        }
        Ok(Ok(inv))
    }
}
