//! `portcullis user add|passwd|disable|remove|list`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use policies::users::{hash_password, valid_user_name, PasswordError};

use crate::cli::{UserCommand, UsersArg};
use crate::users_file::{self, UpdateError, User, UsersFileError};

/// Why a `portcullis user` command changed nothing.
#[derive(Debug, thiserror::Error)]
enum UserError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid TOML: {message}", path.display())]
    ConfigToml { path: PathBuf, message: String },
    #[error("{}: session.users: expected a string", path.display())]
    UsersKey { path: PathBuf },
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
    #[error("{}: user {name:?} exists already", path.display())]
    Exists { path: PathBuf, name: String },
    #[error("{}: no user {name:?}", path.display())]
    NoSuchUser { path: PathBuf, name: String },
    #[error(transparent)]
    File(#[from] UsersFileError),
}

impl From<UpdateError<UserError>> for UserError {
    fn from(e: UpdateError<UserError>) -> UserError {
        match e {
            UpdateError::File(e) => UserError::File(e),
            UpdateError::Refused(e) => e,
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {msg}");
    ExitCode::from(crate::EXIT_INVALID)
}

fn no_user(path: &Path, name: &str) -> UserError {
    UserError::NoSuchUser {
        path: path.to_path_buf(),
        name: name.to_string(),
    }
}

/// The users file: `--users`, else `[session] users` of the config (read
/// on its own, so secrets need not be set to manage users).
fn users_path(arg: &UsersArg) -> Result<PathBuf, UserError> {
    if let Some(p) = &arg.users {
        return Ok(p.clone());
    }
    let config = arg.config.path();
    let text = match std::fs::read_to_string(&config) {
        Ok(text) => text,
        Err(source) => {
            return Err(UserError::ReadConfig {
                path: config,
                source,
            })
        }
    };
    let doc: toml::Table = match text.parse() {
        Ok(doc) => doc,
        Err(e) => {
            let message = toml::de::Error::message(&e).to_string();
            return Err(UserError::ConfigToml {
                path: config,
                message,
            });
        }
    };
    let users = match doc.get("session").and_then(|s| s.get("users")) {
        None => "users.toml",
        Some(v) => match v.as_str() {
            Some(users) => users,
            None => return Err(UserError::UsersKey { path: config }),
        },
    };
    let base = config.parent().unwrap_or(Path::new(""));
    Ok(base.join(users))
}

/// The password: from the terminal (asked twice), or one line of stdin.
fn read_password() -> Result<String, UserError> {
    let pw = if std::io::stdin().is_terminal() {
        let prompt = |p| {
            rpassword::prompt_password(p)
                .map_err(|source| UserError::ReadPassword { from: "", source })
        };
        let a = prompt("Password: ")?;
        if a != prompt("Again: ")? {
            return Err(UserError::PasswordsDiffer);
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| UserError::ReadPassword {
                from: " from stdin",
                source,
            })?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if pw.chars().count() < 8 {
        return Err(UserError::ShortPassword);
    }
    Ok(pw)
}

/// A new password's hash.
fn new_hash() -> Result<String, UserError> {
    Ok(hash_password(&read_password()?)?)
}

pub fn run(cmd: UserCommand) -> ExitCode {
    match cmd {
        UserCommand::Add { name, roles, file } => add(&name, roles, &file),
        UserCommand::Passwd { name, file } => passwd(&name, &file),
        UserCommand::Disable { name, file } => disable(&name, &file),
        UserCommand::Remove { name, file } => remove(&name, &file),
        UserCommand::List { file } => list(&file),
    }
}

fn add(name: &str, roles: Vec<String>, file: &UsersArg) -> ExitCode {
    if !valid_user_name(name) {
        return fail(format!(
            "{name:?} is not a user name (1-64 of A-Z a-z 0-9 . _ @ + -)"
        ));
    }
    if let Some(bad) = roles.iter().find(|r| !users_file::valid_role(r)) {
        return fail(format!("{bad:?} is not a role name (A-Z a-z 0-9 . _ -)"));
    }
    let path = match users_path(file) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let hash = match new_hash() {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let result = users_file::update(&path, |users| {
        let user = User {
            name: name.to_string(),
            password: hash,
            roles,
            disabled: false,
            generation: 1,
        };
        users.insert(user).then_some(()).ok_or(UserError::Exists {
            path: path.clone(),
            name: name.to_string(),
        })
    });
    match result {
        Ok(()) => {
            println!("added {name} to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(UserError::from(e)),
    }
}

/// Changes one existing user under the lock; the generation bump voids sessions.
fn change(name: &str, file: &UsersArg, f: impl FnOnce(&mut User)) -> Result<PathBuf, UserError> {
    let path = users_path(file)?;
    users_file::update(&path, |users| {
        let user = users.get_mut(name).ok_or_else(|| no_user(&path, name))?;
        f(user);
        user.generation += 1;
        Ok(())
    })?;
    Ok(path)
}

/// Prints what was done to the file at `path`, or fails with the error.
fn done(result: Result<PathBuf, UserError>, what: impl FnOnce(&Path) -> String) -> ExitCode {
    match result {
        Ok(path) => {
            println!("{}", what(&path));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn passwd(name: &str, file: &UsersArg) -> ExitCode {
    let hash = match new_hash() {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    done(change(name, file, |u| u.password = hash), |path| {
        format!(
            "password of {name} changed in {}; their sessions have ended",
            path.display()
        )
    })
}

fn disable(name: &str, file: &UsersArg) -> ExitCode {
    done(change(name, file, |u| u.disabled = true), |path| {
        format!(
            "{name} disabled in {}; their sessions have ended",
            path.display()
        )
    })
}

/// Removes a user. A later `add` of the same name hashes a new password
/// with a fresh salt, so the old account's sessions never come back.
fn remove(name: &str, file: &UsersArg) -> ExitCode {
    let result = users_path(file).and_then(|path| {
        users_file::update(&path, |users| {
            users
                .remove(name)
                .then_some(())
                .ok_or_else(|| no_user(&path, name))
        })?;
        Ok(path)
    });
    done(result, |path| {
        format!(
            "{name} removed from {}; their sessions have ended",
            path.display()
        )
    })
}

fn list(file: &UsersArg) -> ExitCode {
    let path = match users_path(file) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match users_file::load(&path) {
        Ok((users, _)) => {
            println!("NAME\tROLES\tSTATE");
            for u in users.iter() {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{state}", u.name, u.roles.join(","));
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            ExitCode::from(crate::EXIT_INVALID)
        }
    }
}
