//! The users file (`users.toml`): the exchange format of `portcullis user
//! import` and `user export` (accounts live in the identity store).
//!
//! Read strictly (every mistake names file, key and reason) and written only
//! atomically with mode 0600 (temp file, fsync, rename): it holds hashes.
//! Files written by version 1 read as they are (`generation` is accepted and
//! ignored: the store gives every imported account a fresh epoch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policies::users::{is_argon2id_hash, valid_user_name};

use crate::config::{ConfigError, Report, Section};

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name as written in the file (its case is what apps see).
    pub name: String,
    pub email: Option<String>,
    /// argon2id PHC string; `None` for an account that signs in only
    /// through a provider.
    pub password: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
}

/// All accounts, keyed case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_key: BTreeMap<String, User>,
}

impl Users {
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_key.get(&name.to_lowercase())
    }

    /// Adds a user; `false` when the name is taken (case-insensitively).
    pub fn insert(&mut self, user: User) -> bool {
        let key = user.name.to_lowercase();
        if self.by_key.contains_key(&key) {
            return false;
        }
        self.by_key.insert(key, user);
        true
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
            let password = u.str("password", &mut r).map(str::to_string);
            if password.as_deref().is_some_and(|p| !is_argon2id_hash(p)) {
                r.error(
                    u.key("password"),
                    "must be an argon2id hash (set it with `portcullis user passwd`)",
                );
            }
            let email = u.str("email", &mut r).map(str::to_string);
            if email.as_deref().is_some_and(|e| !valid_email(e)) {
                r.error(
                    u.key("email"),
                    "not an e-mail address (name@domain, no spaces)",
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
            // Version 1's session counter: read so old files import, unused.
            let _ = u.int("generation", &mut r);
            u.finish(&mut r);
            let user = User {
                name: name.to_string(),
                email,
                password,
                roles,
                disabled,
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
        if let Some(email) = &u.email {
            t.insert("email".into(), email.clone().into());
        }
        if let Some(password) = &u.password {
            t.insert("password".into(), password.clone().into());
        }
        t.insert(
            "roles".into(),
            toml::Value::Array(u.roles.iter().cloned().map(Into::into).collect()),
        );
        t.insert("disabled".into(), u.disabled.into());
        table.insert(u.name.clone(), t.into());
    }
    doc.insert("users".into(), table.into());
    format!(
        "# portcullis users: written by `portcullis user export`, read by `user import`.\n\
         # It holds argon2id hashes: keep it private (0600).\n\n{}",
        toml::to_string(&doc).unwrap_or_default()
    )
}

/// Loads the file; a missing file is an error here (an import of nothing
/// is a mistake).
pub fn load(path: &Path) -> Result<Users, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => {
            let mut r = Report::new(path);
            r.error("", format!("cannot read the users file: {e}"));
            Err(r.errors)
        }
    }
}

/// A plausible e-mail address: one `@`, something either side, no
/// whitespace or control characters. (Delivery is not the gateway's job.)
pub fn valid_email(e: &str) -> bool {
    e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// A directory could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The atomic write failed (the error names the file).
    #[error(transparent)]
    Write(#[from] certs::CertError),
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

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lm1J4z3c6w9oGJ0KbFy3VfM5ZkQm6lP7Xh2YbH9y0qE";

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            email: Some(format!(
                "{}@example.com",
                name.split('@').next().unwrap_or(name)
            )),
            password: Some(HASH.into()),
            roles: vec!["admin".into()],
            disabled: false,
        }
    }

    #[test]
    fn round_trip_keeps_everything() {
        let mut users = Users::default();
        assert!(users.insert(user("alice@example.com")));
        assert!(users.insert(user("Bob")));
        let provider_only = User {
            password: None,
            email: None,
            disabled: true,
            ..user("carol")
        };
        assert!(users.insert(provider_only));
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
             [users.Alice]\npassword = \"{HASH}\"\n[users.\"bad name\"]\npassword = \"{HASH}\"\n\
             [users.dave]\nemail = \"dave at example\"\n"
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
        assert!(has("users.dave.email: not an e-mail address"), "{errs:?}");
    }

    #[test]
    fn version_1_files_import_and_saves_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let v1 = format!(
            "[users.alice]\npassword = \"{HASH}\"\nroles = [\"staff\"]\ndisabled = false\ngeneration = 7\n"
        );
        let users = parse(&v1, Path::new("users.toml")).expect("a version 1 file reads");
        assert_eq!(
            users.get("ALICE").and_then(|u| u.password.as_deref()),
            Some(HASH)
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/users.toml");
        assert!(
            load(&path).is_err(),
            "a missing file is not an empty import"
        );
        save(&path, &users).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path).expect("load"), users);
    }
}
