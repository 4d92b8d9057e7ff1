//! Secret references: `env:NAME`, `file:/path`, or (development only) a literal.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::EnvLookup;

/// Where a secret came from; a literal is refused outside loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Literal,
}

/// A resolved secret. `Debug` never prints the value.
#[derive(Clone)]
pub struct Secret<T> {
    pub source: SecretSource,
    pub value: T,
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("source", &self.source)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl<T: PartialEq> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.value == other.value
    }
}

impl<T> Secret<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret {
            source: self.source,
            value: f(self.value),
        }
    }
}

/// Why a secret reference could not be resolved; `Display` is one sentence
/// (shown after the key).
#[derive(Debug)]
pub enum SecretError {
    EnvUnset(String),
    EnvEmpty(String),
    FileEmpty(PathBuf),
    Unreadable {
        path: PathBuf,
        source: io::Error,
    },
    /// `""`: neither a reference nor a usable literal.
    Empty,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::EnvUnset(name) => write!(f, "environment variable {name} is not set"),
            SecretError::EnvEmpty(name) => write!(f, "environment variable {name} is empty"),
            SecretError::FileEmpty(path) => write!(f, "{} is empty", path.display()),
            SecretError::Unreadable { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            SecretError::Empty => f.write_str("is empty"),
        }
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SecretError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Resolves a reference to the secret's bytes.
pub fn resolve(
    reference: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Secret<Vec<u8>>, SecretError> {
    if let Some(name) = reference.strip_prefix("env:") {
        return match env(name) {
            Some(v) if !v.is_empty() => Ok(Secret {
                source: SecretSource::Env(name.to_string()),
                value: v.into_bytes(),
            }),
            Some(_) => Err(SecretError::EnvEmpty(name.to_string())),
            None => Err(SecretError::EnvUnset(name.to_string())),
        };
    }
    if let Some(p) = reference.strip_prefix("file:") {
        return read_file(base.join(p));
    }
    if reference.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(Secret {
        source: SecretSource::Literal,
        value: reference.as_bytes().to_vec(),
    })
}

fn read_file(path: PathBuf) -> Result<Secret<Vec<u8>>, SecretError> {
    match std::fs::read(&path) {
        // A trailing newline is an editor's, not the secret's.
        Ok(mut v) => {
            while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                v.pop();
            }
            if v.is_empty() {
                return Err(SecretError::FileEmpty(path));
            }
            Ok(Secret {
                source: SecretSource::File(path),
                value: v,
            })
        }
        Err(source) => Err(SecretError::Unreadable { path, source }),
    }
}
