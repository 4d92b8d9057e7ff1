//! Accounts: who may sign in, with which roles. Names are unique
//! case-insensitively; the epoch is replaced whenever the account's
//! sessions must end (password change, disable, sign out everywhere), and
//! those sessions are deleted in the same transaction.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Moves, Tx};
use crate::{new_epoch, Store, StoreError};

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The store's key (sessions and external identities point at it).
    pub id: i64,
    /// As written when created: what apps see.
    pub name: String,
    /// Optional contact and provider-matching address.
    pub email: Option<String>,
    /// argon2id PHC string; `None` for an account that signs in only
    /// through a provider.
    pub password: Option<String>,
    /// Role names given to the account (no commas: `A-Z a-z 0-9 . _ -`).
    pub roles: Vec<String>,
    /// Roles from the provider groups of its last provider sign-in
    /// (`role_map`); replaced at every such sign-in.
    pub mapped_roles: Vec<String>,
    /// A disabled account cannot sign in and has no sessions.
    pub disabled: bool,
    /// Sessions carry the epoch they were issued under.
    pub epoch: String,
    /// Unix milliseconds.
    pub created: i64,
    /// Unix milliseconds of the last sign-in, if any.
    pub last_sign_in: Option<i64>,
    /// Second factors (TOTP, passkeys) it has.
    pub factors: u32,
}

/// What a new account starts with.
#[derive(Debug, Clone, Default)]
pub struct NewAccount<'a> {
    /// Validated by the caller (`policies::users::valid_user_name`).
    pub name: &'a str,
    /// Optional e-mail address.
    pub email: Option<&'a str>,
    /// An argon2id hash, never a password.
    pub password: Option<&'a str>,
    /// Role names.
    pub roles: &'a [String],
    /// Created disabled (an import of a disabled user).
    pub disabled: bool,
    /// Unix milliseconds.
    pub created: i64,
}

/// What is read of an account, with its number of second factors (a
/// correlated count: both backends allow it in `RETURNING` too).
pub(crate) const COLUMNS: &str =
    "id, name, email, password, roles, mapped_roles, disabled, epoch, created, last_sign_in, \
     (SELECT COUNT(*) FROM second_factors f WHERE f.account_id = accounts.id) AS factors";

impl Account {
    /// What requests carry: the given roles in their order, then the
    /// mapped ones it does not have already.
    pub fn all_roles(&self) -> Vec<String> {
        let mut all = self.roles.clone();
        for m in &self.mapped_roles {
            if !all.contains(m) {
                all.push(m.clone());
            }
        }
        all
    }
}

/// A comma-separated role list as stored.
pub(crate) fn split_roles(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// A change to one account.
enum Change<'a> {
    Password(Option<&'a str>),
    /// A new password and enabled again (the emergency reset).
    Reset(&'a str),
    Disabled(bool),
    Roles(String),
    EndSessions,
}

impl Change<'_> {
    /// What the change sets, with its value as `$2`.
    fn set(&self) -> Option<&'static str> {
        match self {
            Change::Password(_) => Some("password = $2"),
            Change::Reset(_) => Some("password = $2, disabled = 0"),
            Change::Disabled(_) => Some("disabled = $2"),
            Change::Roles(_) => Some("roles = $2"),
            Change::EndSessions => None,
        }
    }

    /// Whether the account's sessions end: a new password, a disable, or
    /// "sign out everywhere". Enabling, roles and sign-ins keep them.
    fn ends_sessions(&self) -> bool {
        matches!(
            self,
            Change::Password(_) | Change::Reset(_) | Change::Disabled(true) | Change::EndSessions
        )
    }
}

pub(crate) fn key(name: &str) -> String {
    name.to_lowercase()
}

pub(crate) fn from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    let mapped: String = row.try_get("mapped_roles")?;
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        password: row.try_get("password")?,
        roles: split_roles(&roles),
        mapped_roles: split_roles(&mapped),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        epoch: row.try_get("epoch")?,
        created: row.try_get("created")?,
        last_sign_in: row.try_get("last_sign_in")?,
        factors: u32::try_from(row.try_get::<i64, _>("factors")?).unwrap_or(u32::MAX),
    })
}

impl Store {
    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM accounts ORDER BY name_key");
        self.all(sqlx::query(&sql), from_row).await
    }

    /// The account named `name` (case-insensitively).
    pub async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE name_key = $1");
        self.optional(sqlx::query(&sql).bind(key(name)), from_row)
            .await
    }

    /// Creates an account with a fresh epoch.
    pub async fn create_account(&self, new: NewAccount<'_>) -> Result<Account, StoreError> {
        let mut tx = self.begin().await?;
        let out = self.insert(&mut tx, &new).await;
        self.finish(tx, out, Moves::Counter).await
    }

    pub(crate) async fn insert(
        &self,
        tx: &mut Tx,
        new: &NewAccount<'_>,
    ) -> Result<Account, StoreError> {
        if self.find(tx, new.name).await?.is_some() {
            return Err(StoreError::Exists(new.name.to_string()));
        }
        let sql = format!(
            "INSERT INTO accounts (name, name_key, email, password, roles, disabled, epoch, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.name)
            .bind(key(new.name))
            .bind(new.email)
            .bind(new.password)
            .bind(new.roles.join(","))
            .bind(i64::from(new.disabled))
            .bind(new_epoch())
            .bind(new.created)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| match &e {
                // Another instance created it between the check and here.
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Exists(new.name.to_string())
                }
                _ => self.error(e),
            })?;
        from_row(&row).map_err(|e| self.error(e))
    }

    /// Sets (or removes) the password hash; the account's sessions end.
    pub async fn set_password(
        &self,
        name: &str,
        hash: Option<&str>,
    ) -> Result<Account, StoreError> {
        self.update(name, Change::Password(hash)).await
    }

    /// The emergency reset: a new password hash and the account enabled,
    /// in one transaction; its sessions end.
    pub async fn reset_password(&self, name: &str, hash: &str) -> Result<Account, StoreError> {
        self.update(name, Change::Reset(hash)).await
    }

    /// Disables (its sessions end) or enables an account.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<Account, StoreError> {
        self.update(name, Change::Disabled(disabled)).await
    }

    /// Replaces the roles; live sessions see them at their next request.
    pub async fn set_roles(&self, name: &str, roles: &[String]) -> Result<Account, StoreError> {
        self.update(name, Change::Roles(roles.join(","))).await
    }

    /// Ends every session of the account ("sign out everywhere").
    pub async fn end_sessions(&self, name: &str) -> Result<Account, StoreError> {
        self.update(name, Change::EndSessions).await
    }

    /// Creates every account of an import in one transaction: all or
    /// nothing, and a name that exists already (case-insensitively) stops it.
    pub async fn import_accounts(&self, all: &[NewAccount<'_>]) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            for new in all {
                self.insert(&mut tx, new).await?;
            }
            Ok(all.len())
        }
        .await;
        self.finish(tx, out, Moves::Counter).await
    }

    /// Deletes the account and, with it, its sessions and links. `false`
    /// when there was no such account.
    pub async fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        self.delete("DELETE FROM accounts WHERE name_key = $1", key(name))
            .await
    }

    /// One change to an existing account, in one transaction; a change
    /// that ends sessions replaces the epoch and deletes them too.
    async fn update(&self, name: &str, change: Change<'_>) -> Result<Account, StoreError> {
        let mut tx = self.begin().await?;
        let out = self.apply(&mut tx, name, change).await;
        self.finish(tx, out, Moves::Counter).await
    }

    /// [`Store::set_roles`], refused when it would leave no enabled account
    /// holding `keep` (the admin console's last-admin guard).
    pub async fn set_roles_keeping(
        &self,
        name: &str,
        roles: &[String],
        keep: &str,
    ) -> Result<Account, StoreError> {
        self.guarded(name, keep, Change::Roles(roles.join(",")))
            .await
    }

    /// [`Store::set_disabled`] with the same guard.
    pub async fn set_disabled_keeping(
        &self,
        name: &str,
        disabled: bool,
        keep: &str,
    ) -> Result<Account, StoreError> {
        self.guarded(name, keep, Change::Disabled(disabled)).await
    }

    /// [`Store::delete_account`] with the same guard.
    pub async fn delete_account_keeping(&self, name: &str, keep: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let gone = sqlx::query("DELETE FROM accounts WHERE name_key = $1")
                .bind(key(name))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?
                .rows_affected();
            self.still_held(&mut tx, name, keep).await?;
            Ok(gone > 0)
        }
        .await;
        self.finish(tx, out, Moves::Counter).await
    }

    async fn guarded(
        &self,
        name: &str,
        keep: &str,
        change: Change<'_>,
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            let account = self.apply(&mut tx, name, change).await?;
            self.still_held(&mut tx, name, keep).await?;
            Ok(account)
        }
        .await;
        self.finish(tx, out, Moves::Counter).await
    }

    /// Inside a change to `name`: an error (the transaction rolls back)
    /// when no enabled account holds role `keep` any more, given or mapped.
    /// The console that uses it is only open to a holder of the role, so
    /// one existed before the change.
    async fn still_held(&self, tx: &mut Tx, name: &str, keep: &str) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT roles, mapped_roles FROM accounts WHERE disabled = 0")
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        let holds = |r: &AnyRow| -> Result<bool, sqlx::Error> {
            let given: String = r.try_get(0)?;
            let mapped: String = r.try_get(1)?;
            Ok(split_roles(&given)
                .iter()
                .chain(&split_roles(&mapped))
                .any(|x| x == keep))
        };
        for r in &rows {
            if holds(r).map_err(|e| self.error(e))? {
                return Ok(());
            }
        }
        Err(StoreError::LastAdmin {
            account: name.to_string(),
            role: keep.to_string(),
        })
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        name: &str,
        change: Change<'_>,
    ) -> Result<Account, StoreError> {
        let Some(id) = self.find(tx, name).await? else {
            return Err(StoreError::NoSuchAccount(name.to_string()));
        };
        let ends = change.ends_sessions();
        let set = match (change.set(), ends) {
            (Some(set), true) => format!("{set}, epoch = $3"),
            (Some(set), false) => set.to_string(),
            (None, _) => "epoch = $2".to_string(),
        };
        let sql = format!("UPDATE accounts SET {set} WHERE id = $1 RETURNING {COLUMNS}");
        let q = sqlx::query(&sql).bind(id);
        let q = match change {
            Change::Password(hash) => q.bind(hash.map(str::to_string)),
            Change::Reset(hash) => q.bind(hash.to_string()),
            Change::Disabled(d) => q.bind(i64::from(d)),
            Change::Roles(roles) => q.bind(roles),
            Change::EndSessions => q,
        };
        let q = if ends { q.bind(new_epoch()) } else { q };
        let row = q.fetch_one(&mut **tx).await.map_err(|e| self.error(e))?;
        if ends {
            sqlx::query("DELETE FROM sessions WHERE account_id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        from_row(&row).map_err(|e| self.error(e))
    }

    /// The id of the account named `name`, inside a transaction.
    pub(crate) async fn find(&self, tx: &mut Tx, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT id FROM accounts WHERE name_key = $1")
            .bind(key(name))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.error(e))
    }

    /// Runs one `DELETE … WHERE key = $1`; commits (and moves the counter)
    /// only when a row went.
    pub(crate) async fn delete(&self, sql: &'static str, key: String) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map(|d| d.rows_affected() > 0)
            .map_err(|e| self.error(e));
        let moves = match done {
            Ok(true) => Moves::Counter,
            _ => Moves::Nothing,
        };
        self.finish(tx, done, moves).await
    }
}
