//! Secret references: `env:NAME`, `file:/path`, or (development only) a literal.

use std::fmt;
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

impl<T> Secret<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret {
            source: self.source,
            value: f(self.value),
        }
    }
}

/// Resolves a reference to the secret's bytes. The error is one sentence.
pub fn resolve(
    reference: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Secret<Vec<u8>>, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return match env(name) {
            Some(v) if !v.is_empty() => Ok(Secret {
                source: SecretSource::Env(name.to_string()),
                value: v.into_bytes(),
            }),
            Some(_) => Err(format!("environment variable {name} is empty")),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(p) = reference.strip_prefix("file:") {
        let path = base.join(p);
        return match std::fs::read(&path) {
            // A trailing newline is an editor's, not the secret's.
            Ok(mut v) => {
                while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    v.pop();
                }
                if v.is_empty() {
                    return Err(format!("{} is empty", path.display()));
                }
                Ok(Secret {
                    source: SecretSource::File(path),
                    value: v,
                })
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
    }
    if reference.is_empty() {
        return Err("is empty".to_string());
    }
    Ok(Secret {
        source: SecretSource::Literal,
        value: reference.as_bytes().to_vec(),
    })
}
