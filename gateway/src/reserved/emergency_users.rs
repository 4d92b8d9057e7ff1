//! The emergency dashboard's changes to the users file: create a user,
//! reset a password. Each runs under the file lock shared with
//! `portcullis user`, written atomically, then reloaded.

use crate::state::Shared;
use crate::users_file::{self, UpdateError, User};

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
    #[error("users file not written")]
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
            Refusal::Storage => "The users file could not be written; see the gateway's log.",
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

/// Runs a users-file update on the blocking pool (it takes the file lock
/// shared with `portcullis user`, and fsyncs).
async fn update(
    shared: &Shared,
    change: impl FnOnce(&mut users_file::Users) -> Result<(), Refusal> + Send + 'static,
) -> Result<(), Refusal> {
    let path = shared.users.path.clone();
    let outcome = tokio::task::spawn_blocking(move || users_file::update(&path, change)).await;
    match outcome {
        Ok(Ok(())) => {
            shared.users.refresh();
            Ok(())
        }
        Ok(Err(UpdateError::Refused(r))) => Err(r),
        Ok(Err(UpdateError::File(e))) => {
            tracing::error!(error = %e, "emergency: the users file could not be updated");
            Err(Refusal::Storage)
        }
        Err(_) => Err(Refusal::Storage),
    }
}

/// Adds an enabled user.
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
    let hash = hash(password).await?;
    let name = name.to_string();
    update(shared, move |users| {
        let user = User {
            name,
            password: hash,
            roles,
            disabled: false,
            generation: 1,
        };
        users.insert(user).then_some(()).ok_or(Refusal::Exists)
    })
    .await
}

/// Sets a new password and enables the user; its sessions end.
pub async fn reset_password(shared: &Shared, name: &str, password: String) -> Result<(), Refusal> {
    if shared.users.get().get(name).is_none() {
        return Err(Refusal::NoSuchUser);
    }
    let hash = hash(password).await?;
    let name = name.to_string();
    update(shared, move |users| {
        let user = users.get_mut(&name).ok_or(Refusal::NoSuchUser)?;
        user.password = hash;
        user.disabled = false;
        // Every session of the old generation is void from now on.
        user.generation += 1;
        Ok(())
    })
    .await
}
