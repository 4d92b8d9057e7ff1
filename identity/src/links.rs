//! Provider sign-in: external identities linked to accounts, the account a
//! provider identity signs in to (found, linked by e-mail, or created), and
//! single-use callback states.
//!
//! An identity is found by provider + subject, never by e-mail unless the
//! configuration says so (`link_by_email`): an address can change hands at
//! a provider, a subject cannot.

use sqlx::Row;

use crate::accounts::{from_row, COLUMNS};
use crate::invitations::Unusable;
use crate::store::{Moves, Tx};
use crate::{Account, NewAccount, SessionRecord, Store, StoreError};

/// One provider identity linked to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The account it signs in to.
    pub account_id: i64,
    /// The provider's configured id.
    pub provider: String,
    /// The provider's subject (`sub`, or GitHub's numeric user id).
    pub subject: String,
    /// The verified address the provider gave when it was linked.
    pub email: Option<String>,
    /// Unix milliseconds.
    pub created: i64,
}

/// Who may get an account at a first provider sign-in.
#[derive(Debug, Clone, Copy)]
pub enum Signup<'a> {
    /// Anyone the provider's rules let through, with these roles.
    Open {
        /// The roles of a created account (`[login] default_roles`).
        roles: &'a [String],
    },
    /// Only identities already linked (or linked by e-mail).
    Existing,
    /// Like `Existing`, or with an invitation: its id (the hash of the
    /// link's token) when the browser brought one.
    Invite {
        /// `Invitation::id`.
        invitation: Option<&'a str>,
    },
}

/// A provider sign-in the gateway has verified.
#[derive(Debug, Clone)]
pub struct ProviderSignIn<'a> {
    /// The provider's configured id.
    pub provider: &'a str,
    /// Its subject for this person.
    pub subject: &'a str,
    /// A verified e-mail address, if the provider gave one.
    pub email: Option<&'a str>,
    /// Account names to try, in order, for a created account (already
    /// valid names: the address, a login, `provider-subject`).
    pub names: &'a [String],
    /// `[login] signup`.
    pub signup: Signup<'a>,
    /// `[login] link_by_email`.
    pub link_by_email: bool,
    /// The roles `role_map` gives for the identity's current groups.
    pub mapped_roles: &'a [String],
    /// The session to create (its account and epoch are filled in here).
    pub session: SessionRecord,
}

/// How a provider sign-in ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInOutcome {
    /// A session now exists for the account.
    SignedIn {
        /// The account, after the sign-in.
        account: Account,
        /// How the identity and the account met.
        how: Found,
    },
    /// No linked account and the sign-up policy creates none.
    NoAccount,
    /// The account is disabled.
    Disabled(String),
    /// No candidate name was free for a new account.
    NoFreeName,
    /// `signup = "invite"`, and the invitation brought cannot be used.
    Invitation(Unusable),
}

/// How a provider identity found its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Linked before.
    Linked,
    /// Linked now, by its verified e-mail address (`link_by_email`).
    LinkedByEmail,
    /// Created now (`signup = "open"`).
    Created,
    /// Created now with an invitation's roles.
    Invited,
}

fn link_from_row(row: &sqlx::any::AnyRow) -> Result<Link, sqlx::Error> {
    Ok(Link {
        account_id: row.try_get("account_id")?,
        provider: row.try_get("provider")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        created: row.try_get("created")?,
    })
}

impl Store {
    /// Every linked identity, by account then provider.
    pub async fn links(&self) -> Result<Vec<Link>, StoreError> {
        let sql = "SELECT account_id, provider, subject, email, created FROM external_identities \
                   ORDER BY account_id, provider, subject";
        self.all(sqlx::query(sql), link_from_row).await
    }

    /// Takes a callback `state` for good: `false` when it was taken before
    /// (a replay, on this instance or another). Forgets states that can no
    /// longer verify anyway.
    pub async fn take_state(&self, id: &str, expires: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let out = async {
            sqlx::query("DELETE FROM used_states WHERE expires < $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
            let taken = sqlx::query("SELECT 1 FROM used_states WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
            if taken.is_some() {
                return Ok(false);
            }
            sqlx::query("INSERT INTO used_states (id, expires) VALUES ($1, $2)")
                .bind(id)
                .bind(expires)
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    // Another instance took it between the check and here.
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::Exists(id.to_string())
                    }
                    _ => self.error(e),
                })?;
            Ok(true)
        }
        .await;
        match self.finish(tx, out, Moves::Nothing).await {
            Err(StoreError::Exists(_)) => Ok(false),
            other => other,
        }
    }

    /// Signs a verified provider identity in: finds its account (or links
    /// or creates one, as the policy says), stores the mapped roles and
    /// the session, all in one transaction.
    /// Nothing of a refused sign-in is kept (no link, no mapped roles, no
    /// used invitation).
    pub async fn provider_sign_in(
        &self,
        s: ProviderSignIn<'_>,
    ) -> Result<SignInOutcome, StoreError> {
        let mut tx = self.begin().await?;
        match self.sign_in(&mut tx, &s).await {
            // A new link, account or mapped roles: every cache must see it.
            Ok(done @ SignInOutcome::SignedIn { .. }) => {
                self.finish(tx, Ok(done), Moves::Counter).await
            }
            Ok(refused) => self.abandon(tx, refused).await,
            Err(e) => self.finish(tx, Err(e), Moves::Nothing).await,
        }
    }

    async fn sign_in(
        &self,
        tx: &mut Tx,
        s: &ProviderSignIn<'_>,
    ) -> Result<SignInOutcome, StoreError> {
        let at = s.session.created;
        let linked = sqlx::query(
            "SELECT account_id FROM external_identities WHERE provider = $1 AND subject = $2",
        )
        .bind(s.provider)
        .bind(s.subject)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| self.error(e))?;
        let (id, how) = match linked {
            Some(row) => (
                row.try_get::<i64, _>(0).map_err(|e| self.error(e))?,
                Found::Linked,
            ),
            None => match self.by_email(tx, s).await? {
                Some(id) => (id, Found::LinkedByEmail),
                None => match s.signup {
                    Signup::Existing | Signup::Invite { invitation: None } => {
                        return Ok(SignInOutcome::NoAccount)
                    }
                    Signup::Open { roles } => match self.create_for(tx, s, roles).await? {
                        Some(id) => (id, Found::Created),
                        None => return Ok(SignInOutcome::NoFreeName),
                    },
                    Signup::Invite {
                        invitation: Some(inv),
                    } => {
                        let inv = match self.use_invitation(tx, inv, at, s.email).await? {
                            Ok(inv) => inv,
                            Err(why) => return Ok(SignInOutcome::Invitation(why)),
                        };
                        match self.create_for(tx, s, &inv.roles).await? {
                            Some(id) => (id, Found::Invited),
                            None => return Ok(SignInOutcome::NoFreeName),
                        }
                    }
                },
            },
        };
        if how != Found::Linked {
            sqlx::query(
                "INSERT INTO external_identities (account_id, provider, subject, email, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(s.provider)
            .bind(s.subject)
            .bind(s.email)
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        }
        let sql =
            format!("UPDATE accounts SET mapped_roles = $2 WHERE id = $1 RETURNING {COLUMNS}");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(s.mapped_roles.join(","))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        let account = from_row(&row).map_err(|e| self.error(e))?;
        if account.disabled {
            return Ok(SignInOutcome::Disabled(account.name));
        }
        let session = SessionRecord {
            account_id: account.id,
            epoch: account.epoch.clone(),
            ..s.session.clone()
        };
        self.insert_session(tx, &session).await?;
        Ok(SignInOutcome::SignedIn { account, how })
    }

    /// With `link_by_email`, the one account whose address equals the
    /// verified one (case-insensitively); two such accounts link neither.
    async fn by_email(
        &self,
        tx: &mut Tx,
        s: &ProviderSignIn<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let Some(email) = s.email.filter(|_| s.link_by_email) else {
            return Ok(None);
        };
        let rows = sqlx::query("SELECT id FROM accounts WHERE LOWER(email) = $1")
            .bind(email.to_lowercase())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        match rows.as_slice() {
            [one] => one.try_get(0).map(Some).map_err(|e| self.error(e)),
            _ => Ok(None),
        }
    }

    /// Creates the account under the first free candidate name.
    async fn create_for(
        &self,
        tx: &mut Tx,
        s: &ProviderSignIn<'_>,
        roles: &[String],
    ) -> Result<Option<i64>, StoreError> {
        for name in s.names {
            if self.find(tx, name).await?.is_some() {
                continue;
            }
            let new = NewAccount {
                name,
                email: s.email,
                password: None,
                roles,
                disabled: false,
                created: s.session.created,
            };
            let account = self.insert(tx, &new).await?;
            return Ok(Some(account.id));
        }
        Ok(None)
    }
}
