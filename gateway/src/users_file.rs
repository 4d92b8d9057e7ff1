//! The users file (`users.toml`): local accounts with argon2id hashes.
//!
//! Read strictly (every mistake names file, key and reason), written only
//! atomically (temp file, fsync, rename) and under an exclusive lock, so a
//! `portcullis user` command, the emergency dashboard and a running gateway
//! never see or produce a half-written file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use policies::users::{is_argon2id_hash, valid_user_name};

use crate::config::{ConfigError, Report, Section};

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name as written in the file (its case is what apps see).
    pub name: String,
    /// argon2id PHC string.
    pub password: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Bumped by passwd/disable/reset: sessions of an older generation are void.
    pub generation: u64,
}

impl User {
    /// What sessions are bound to: changes with `generation` and with every
    /// new password hash, so a removed and re-added account never inherits
    /// the old one's sessions (`policies::users::account_epoch`).
    pub fn epoch(&self) -> u64 {
        policies::users::account_epoch(self.generation, &self.password)
    }
}

/// All accounts, keyed case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_key: BTreeMap<String, User>,
}

impl Users {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_key.get(&name.to_ascii_lowercase())
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut User> {
        self.by_key.get_mut(&name.to_ascii_lowercase())
    }

    /// Adds a user; `false` when the name is taken (case-insensitively).
    pub fn insert(&mut self, user: User) -> bool {
        let key = user.name.to_ascii_lowercase();
        if self.by_key.contains_key(&key) {
            return false;
        }
        self.by_key.insert(key, user);
        true
    }

    /// Removes a user; `false` when there is none of that name.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_key.remove(&name.to_ascii_lowercase()).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// Role names: the same alphabet `role:` rules accept.
pub fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses users-file text. A missing file is an empty one (see [`load`]).
pub fn parse(text: &str, path: &Path) -> Result<Users, Vec<ConfigError>> {
    let mut r = Report::new(path);
    let doc: toml::Table = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            r.error("", format!("invalid TOML: {}", e.message()));
            return Err(r.errors);
        }
    };
    let mut root = Section::new("", &doc);
    let mut users = Users::default();
    if let Some(mut sec) = root.table("users", &mut r) {
        for (name, mut u) in sec.named_tables(&mut r) {
            let key = u.key("");
            let key = key.trim_end_matches('.').to_string();
            if !valid_user_name(name) {
                r.error(&key, "user names are 1-64 of A-Z a-z 0-9 . _ @ + -");
            }
            let password = u.str("password", &mut r).unwrap_or_default().to_string();
            if !is_argon2id_hash(&password) {
                r.error(
                    u.key("password"),
                    "must be an argon2id hash (set it with `portcullis user passwd`)",
                );
            }
            let roles: Vec<String> = u
                .str_list("roles", &mut r)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect();
            if let Some(bad) = roles.iter().find(|x| !valid_role(x)) {
                r.error(
                    u.key("roles"),
                    format!("{bad:?} is not a role name (A-Z a-z 0-9 . _ -)"),
                );
            }
            let disabled = u.bool("disabled", &mut r).unwrap_or(false);
            let generation = match u.int("generation", &mut r) {
                Some(g) if g >= 0 => g as u64,
                Some(g) => {
                    r.error(u.key("generation"), format!("{g} must not be negative"));
                    0
                }
                None => 0,
            };
            u.finish(&mut r);
            let user = User {
                name: name.to_string(),
                password,
                roles,
                disabled,
                generation,
            };
            if !users.insert(user) {
                r.error(
                    &key,
                    "duplicate user name (names are unique case-insensitively)",
                );
            }
        }
        sec.finish(&mut r);
    }
    root.finish(&mut r);
    if r.errors.is_empty() {
        Ok(users)
    } else {
        Err(r.errors)
    }
}

/// Renders the file. Names are quoted keys, so `alice@example.com` works.
pub fn render(users: &Users) -> String {
    let mut doc = toml::Table::new();
    let mut table = toml::Table::new();
    for u in users.iter() {
        let mut t = toml::Table::new();
        t.insert("password".into(), u.password.clone().into());
        t.insert(
            "roles".into(),
            toml::Value::Array(u.roles.iter().cloned().map(Into::into).collect()),
        );
        t.insert("disabled".into(), u.disabled.into());
        t.insert("generation".into(), (u.generation as i64).into());
        table.insert(u.name.clone(), t.into());
    }
    doc.insert("users".into(), table.into());
    format!(
        "# portcullis users file: written by `portcullis user` and the emergency dashboard.\n\
         # Edit with those commands; hashes are argon2id.\n\n{}",
        toml::to_string(&doc).unwrap_or_default()
    )
}

/// Loads the file and its modification time; a missing file is empty.
pub fn load(path: &Path) -> Result<(Users, Option<SystemTime>), Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            parse(&text, path).map(|u| (u, mtime))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Users::default(), None)),
        Err(e) => {
            let mut r = Report::new(path);
            r.error("", format!("cannot read the users file: {e}"));
            Err(r.errors)
        }
    }
}

/// Modification time, to notice edits by `portcullis user` while serving.
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// A directory could not be made or the lock file opened.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot lock: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The atomic write failed (the error names the file).
    #[error(transparent)]
    Write(#[from] certs::CertError),
    /// The file is not a valid users file: every mistake, with its key.
    #[error("{}", join(.0))]
    Invalid(Vec<ConfigError>),
}

fn join(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why [`update`] wrote nothing: the file, or the change itself said no.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    File(#[from] UsersFileError),
    #[error("{0}")]
    Refused(E),
}

fn create_parent(path: &Path) -> Result<(), UsersFileError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| UsersFileError::Io {
            path: dir.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// Writes the file atomically with mode 0600.
pub fn save(path: &Path, users: &Users) -> Result<(), UsersFileError> {
    create_parent(path)?;
    certs::storage::write_atomic(path, render(users).as_bytes(), 0o600)?;
    Ok(())
}

/// An exclusive lock beside the file (`users.toml.lock`), held for a whole
/// read-modify-write so two writers cannot lose each other's change.
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    pub fn acquire(users_path: &Path) -> Result<WriteLock, UsersFileError> {
        let mut lock_path = users_path.as_os_str().to_owned();
        lock_path.push(".lock");
        let path = PathBuf::from(lock_path);
        create_parent(&path)?;
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(source) => return Err(UsersFileError::Io { path, source }),
        };
        if let Err(source) = file.lock() {
            return Err(UsersFileError::Lock { path, source });
        }
        Ok(WriteLock { _file: file })
    }
}

/// Read-modify-write under the lock; `change` returns an error to abort,
/// and then nothing is written.
pub fn update<T, E>(
    path: &Path,
    change: impl FnOnce(&mut Users) -> Result<T, E>,
) -> Result<T, UpdateError<E>> {
    let _lock = WriteLock::acquire(path)?;
    let (mut users, _) = load(path).map_err(UsersFileError::Invalid)?;
    let out = change(&mut users).map_err(UpdateError::Refused)?;
    save(path, &users)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lm1J4z3c6w9oGJ0KbFy3VfM5ZkQm6lP7Xh2YbH9y0qE";

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            password: HASH.into(),
            roles: vec!["admin".into()],
            disabled: false,
            generation: 3,
        }
    }

    #[test]
    fn round_trip_keeps_everything() {
        let mut users = Users::default();
        assert!(users.insert(user("alice@example.com")));
        assert!(users.insert(user("Bob")));
        assert!(!users.insert(user("bob")), "case-insensitive uniqueness");
        let text = render(&users);
        let back = parse(&text, Path::new("users.toml")).expect("parses");
        assert_eq!(back, users);
        assert_eq!(back.get("BOB").map(|u| u.name.as_str()), Some("Bob"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let bad = format!(
            "[users.alice]\npassword = \"plaintext\"\n[users.bob]\npassword = \"{HASH}\"\nrole = [\"x\"]\n\
             [users.Alice]\npassword = \"{HASH}\"\n[users.\"bad name\"]\npassword = \"{HASH}\"\n"
        );
        let errs: Vec<String> = parse(&bad, Path::new("u.toml"))
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        let has = |s: &str| errs.iter().any(|e| e.contains(s));
        assert!(
            has("u.toml: users.alice.password: must be an argon2id hash"),
            "{errs:?}"
        );
        assert!(has("users.bob.role: unknown key"), "{errs:?}");
        assert!(
            has(": duplicate user name (names are unique case-insensitively)"),
            "{errs:?}"
        );
        assert!(has("users.bad name: user names are"), "{errs:?}");
    }

    #[test]
    fn missing_file_is_empty_and_save_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/users.toml");
        let (users, mtime) = load(&path).expect("missing is empty");
        assert!(users.len() == 0 && mtime.is_none());
        update(&path, |u| {
            u.insert(user("carol"));
            Ok::<(), ()>(())
        })
        .expect("update");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path).expect("load").0.len(), 1);
    }
}
