//! The emergency dashboard's changes to the identity store: create an
//! account, reset a password. Each is one transaction in the store (the
//! same one `portcullis user` writes), then the cache is refreshed so the
//! dashboard lists the result.

use std::sync::Arc;

use identity::{Cache, NewAccount, StoreError};

use crate::state::{now_ms, Shared};
use crate::users_file;

const MIN_PASSWORD: usize = 8;

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("invalid user name")]
    BadName,
    #[error("invalid roles")]
    BadRoles,
    #[error("password too short")]
    ShortPassword,
    #[error("user exists")]
    Exists,
    #[error("no such user")]
    NoSuchUser,
    #[error("identity store not written")]
    Storage,
}

impl Refusal {
    /// A fixed sentence for the page: no input is echoed.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::BadName => "Not a valid user name (1-64 of A-Z a-z 0-9 . _ @ + -).",
            Refusal::BadRoles => "Roles need at least one name of A-Z a-z 0-9 . _ -.",
            Refusal::ShortPassword => "The password needs at least 8 characters.",
            Refusal::Exists => "A user with that name exists already.",
            Refusal::NoSuchUser => "There is no such user.",
            Refusal::Storage => "The identity store could not be written; see the gateway's log.",
        }
    }
}

async fn hash(password: String) -> Result<String, Refusal> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(Refusal::ShortPassword);
    }
    crate::passwords::hash(password)
        .await
        .ok_or(Refusal::Storage)
}

/// The store, while it answers.
async fn store(shared: &Shared) -> Result<Arc<Cache>, Refusal> {
    shared.accounts.fresh_soon().await.ok_or(Refusal::Storage)
}

/// A write's outcome; the cache is refreshed after a success so the
/// dashboard shows it at once.
async fn written<T>(cache: &Cache, result: Result<T, StoreError>) -> Result<(), Refusal> {
    match result {
        Ok(_) => {
            if let Err(e) = cache.refresh(now_ms()).await {
                tracing::warn!(error = %e, "emergency: written, but the cache could not be refreshed");
            }
            Ok(())
        }
        Err(StoreError::Exists(_)) => Err(Refusal::Exists),
        Err(StoreError::NoSuchAccount(_)) => Err(Refusal::NoSuchUser),
        Err(e) => {
            tracing::error!(error = %e, "emergency: the identity store could not be updated");
            Err(Refusal::Storage)
        }
    }
}

/// Adds an enabled account.
pub async fn create(
    shared: &Shared,
    name: &str,
    password: String,
    roles: Vec<String>,
) -> Result<(), Refusal> {
    if !policies::users::valid_user_name(name) {
        return Err(Refusal::BadName);
    }
    if roles.is_empty() || !roles.iter().all(|r| users_file::valid_role(r)) {
        return Err(Refusal::BadRoles);
    }
    let cache = store(shared).await?;
    let hash = hash(password).await?;
    let new = NewAccount {
        name,
        password: Some(&hash),
        roles: &roles,
        created: i64::try_from(now_ms()).unwrap_or(i64::MAX),
        ..NewAccount::default()
    };
    written(&cache, cache.store().create_account(new).await).await
}

/// Sets a new password and enables the account; its sessions end (the
/// password change replaces the epoch).
pub async fn reset_password(shared: &Shared, name: &str, password: String) -> Result<(), Refusal> {
    let cache = store(shared).await?;
    if cache.account(name).is_none() {
        return Err(Refusal::NoSuchUser);
    }
    let hash = hash(password).await?;
    written(&cache, cache.store().reset_password(name, &hash).await).await
}
