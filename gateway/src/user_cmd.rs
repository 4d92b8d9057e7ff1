//! `portcullis user add|passwd|disable|enable|delete|roles|list|import|export`:
//! accounts in the identity store the config names (`[store]`, read on its
//! own so the session keys need not be set to manage accounts). Every
//! command is one transaction; running gateways see it within a second.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use identity::{NewAccount, Store, StoreError};
use policies::users::{hash_password, valid_user_name, PasswordError};

use crate::cli::{ConfigArg, UserCommand};
use crate::state::now_ms;
use crate::users_file::{self, User, Users, UsersFileError};

/// Why a `portcullis user` command changed nothing.
#[derive(Debug, thiserror::Error)]
enum UserError {
    /// The config's `[store]` (every mistake, one per line).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `from`: "" for the terminal, " from stdin" for a pipe.
    #[error("cannot read the password{from}: {source}")]
    ReadPassword {
        from: &'static str,
        source: std::io::Error,
    },
    #[error("the passwords differ")]
    PasswordsDiffer,
    #[error("the password needs at least 8 characters")]
    ShortPassword,
    #[error(transparent)]
    Hash(#[from] PasswordError),
    #[error("{0:?} is not a user name (1-64 of A-Z a-z 0-9 . _ @ + -)")]
    BadName(String),
    #[error("{0:?} is not a role name (A-Z a-z 0-9 . _ -)")]
    BadRole(String),
    #[error("{0:?} is not an e-mail address")]
    BadEmail(String),
    /// An import file with mistakes (every one, one per line).
    #[error("{0}")]
    UsersFile(String),
    #[error(transparent)]
    Export(#[from] UsersFileError),
}

pub fn run(cmd: UserCommand) -> ExitCode {
    crate::run_store_command(exec(cmd))
}

async fn exec(cmd: UserCommand) -> Result<String, UserError> {
    match cmd {
        UserCommand::Add {
            name,
            roles,
            email,
            config,
        } => add(&name, roles, email, &config).await,
        UserCommand::Passwd { name, config } => {
            let hash = checked_hash(read_password()?)?;
            let store = open(&config).await?;
            store.set_password(&name, Some(&hash)).await?;
            Ok(format!(
                "password of {name} changed in {}; their sessions have ended",
                store.location()
            ))
        }
        UserCommand::Disable { name, config } => {
            let store = open(&config).await?;
            store.set_disabled(&name, true).await?;
            Ok(format!(
                "{name} disabled in {}; their sessions have ended",
                store.location()
            ))
        }
        UserCommand::Enable { name, config } => {
            let store = open(&config).await?;
            store.set_disabled(&name, false).await?;
            Ok(format!("{name} enabled in {}", store.location()))
        }
        UserCommand::Delete { name, config } => {
            let store = open(&config).await?;
            if !store.delete_account(&name).await? {
                return Err(StoreError::NoSuchAccount(name).into());
            }
            Ok(format!(
                "{name} deleted from {}; their sessions have ended",
                store.location()
            ))
        }
        UserCommand::Roles {
            name,
            roles,
            config,
        } => {
            check_roles(&roles)?;
            let store = open(&config).await?;
            let a = store.set_roles(&name, &roles).await?;
            Ok(format!(
                "roles of {} in {}: {}",
                a.name,
                store.location(),
                if roles.is_empty() {
                    "(none)".to_string()
                } else {
                    roles.join(",")
                }
            ))
        }
        UserCommand::Invite {
            roles,
            email,
            days,
            base,
            config,
        } => invite(roles, email, days, &base, &config).await,
        UserCommand::List { config } => list(&open(&config).await?).await,
        UserCommand::Import { file, config } => import(&file, &config).await,
        UserCommand::Export { file, config } => export(file.as_deref(), &config).await,
    }
}

/// The store `[store]` of the config names, opened (and migrated).
async fn open(config: &ConfigArg) -> Result<Store, UserError> {
    let conf = crate::config::read_only_store(&config.path(), &crate::env_lookup)
        .map_err(|r| UserError::Config(lines(&r.errors)))?;
    Ok(Store::open(&conf.url.value).await?)
}

fn lines(errors: &[crate::config::ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_roles(roles: &[String]) -> Result<(), UserError> {
    match roles.iter().find(|r| !users_file::valid_role(r)) {
        Some(bad) => Err(UserError::BadRole(bad.clone())),
        None => Ok(()),
    }
}

fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

async fn add(
    name: &str,
    roles: Vec<String>,
    email: Option<String>,
    config: &ConfigArg,
) -> Result<String, UserError> {
    if !valid_user_name(name) {
        return Err(UserError::BadName(name.to_string()));
    }
    check_roles(&roles)?;
    if let Some(e) = email.as_deref().filter(|e| !users_file::valid_email(e)) {
        return Err(UserError::BadEmail(e.to_string()));
    }
    // The store first: a typo in the config costs no password prompt.
    let store = open(config).await?;
    if store.account(name).await?.is_some() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let hash = checked_hash(read_password()?)?;
    store
        .create_account(NewAccount {
            name,
            email: email.as_deref(),
            password: Some(&hash),
            roles: &roles,
            disabled: false,
            created: now(),
        })
        .await?;
    Ok(format!("added {name} to {}", store.location()))
}

/// A new invitation: only the token's hash is stored; the link is printed
/// once and cannot be shown again.
async fn invite(
    roles: Vec<String>,
    email: Option<String>,
    days: u16,
    base: &str,
    config: &ConfigArg,
) -> Result<String, UserError> {
    if let Some(bad) = roles.iter().find(|r| !users_file::valid_role(r)) {
        return Err(UserError::BadRole(bad.clone()));
    }
    if let Some(e) = email.as_deref().filter(|e| !users_file::valid_email(e)) {
        return Err(UserError::BadEmail(e.to_string()));
    }
    let store = open(config).await?;
    let token = policies::invite::new_token();
    let Some(id) = policies::invite::token_id(&token) else {
        return Err(UserError::Config("invitation token".into()));
    };
    let created = now();
    let expires = created.saturating_add(i64::from(days) * 86_400_000);
    store
        .create_invitation(&identity::Invitation {
            id,
            email: email.clone(),
            roles: roles.clone(),
            created,
            expires,
            used: None,
        })
        .await?;
    Ok(format!(
        "invitation for {} with roles [{}], valid {days} day{}, one use:\n{}{}?token={token}",
        email
            .as_deref()
            .unwrap_or("anyone who signs in with a provider"),
        roles.join(","),
        if days == 1 { "" } else { "s" },
        base.trim_end_matches('/'),
        crate::reserved::paths::INVITE,
    ))
}

/// One line per account: its given roles, then (`+`) those its provider
/// groups gave at its last provider sign-in, and its linked identities as
/// `provider:subject`.
async fn list(store: &Store) -> Result<String, UserError> {
    let links = store.links().await?;
    let mut out = String::from("NAME\tROLES\tSTATE\tEMAIL\tLINKED");
    for a in store.accounts().await? {
        let state = if a.disabled { "disabled" } else { "active" };
        let mut roles = a.roles.join(",");
        for m in a.mapped_roles.iter().filter(|m| !a.roles.contains(m)) {
            roles.push_str(if roles.is_empty() { "+" } else { ",+" });
            roles.push_str(m);
        }
        let linked: Vec<String> = links
            .iter()
            .filter(|l| l.account_id == a.id)
            .map(|l| format!("{}:{}", l.provider, l.subject))
            .collect();
        out.push_str(&format!(
            "\n{}\t{}\t{state}\t{}\t{}",
            a.name,
            roles,
            a.email.as_deref().unwrap_or("-"),
            if linked.is_empty() {
                "-".to_string()
            } else {
                linked.join(",")
            }
        ));
    }
    Ok(out)
}

async fn import(file: &Path, config: &ConfigArg) -> Result<String, UserError> {
    let users = users_file::load(file).map_err(|errs| UserError::UsersFile(lines(&errs)))?;
    let store = open(config).await?;
    let created = now();
    let new: Vec<NewAccount<'_>> = users
        .iter()
        .map(|u| NewAccount {
            name: &u.name,
            email: u.email.as_deref(),
            password: u.password.as_deref(),
            roles: &u.roles,
            disabled: u.disabled,
            created,
        })
        .collect();
    let n = store.import_accounts(&new).await?;
    Ok(format!(
        "imported {n} account{} from {} into {}",
        if n == 1 { "" } else { "s" },
        file.display(),
        store.location()
    ))
}

async fn export(file: Option<&Path>, config: &ConfigArg) -> Result<String, UserError> {
    let store = open(config).await?;
    let mut users = Users::default();
    for a in store.accounts().await? {
        users.insert(User {
            name: a.name,
            email: a.email,
            password: a.password,
            roles: a.roles,
            disabled: a.disabled,
        });
    }
    match file {
        Some(path) => {
            users_file::save(path, &users)?;
            Ok(format!(
                "exported {} accounts from {} to {} (0600: it holds password hashes)",
                users.len(),
                store.location(),
                PathBuf::from(path).display()
            ))
        }
        None => {
            print!("{}", users_file::render(&users));
            Ok(String::new())
        }
    }
}

/// The password: from the terminal (asked twice), or one line of stdin.
fn read_password() -> Result<String, UserError> {
    if std::io::stdin().is_terminal() {
        let prompt = |p| {
            rpassword::prompt_password(p)
                .map_err(|source| UserError::ReadPassword { from: "", source })
        };
        let a = prompt("Password: ")?;
        if a != prompt("Again: ")? {
            return Err(UserError::PasswordsDiffer);
        }
        return Ok(a);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| UserError::ReadPassword {
            from: " from stdin",
            source,
        })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A new password's argon2id hash, once it is long enough.
fn checked_hash(password: String) -> Result<String, UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::ShortPassword);
    }
    Ok(hash_password(&password)?)
}
