//! ACME state on private storage, `{storage}/acme/<directory host>/`: the
//! account (`account.json`) and the issued certificates
//! (`certs/<domain set>/{cert,key}.pem`), files 0600 and directories 0700;
//! and the order lock, so that instances sharing the storage order each
//! certificate once.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;

use super::error::AcmeError;
use super::names::{directory_host, normalize_domains, set_name};
use crate::error::CertError;
use crate::files;
use crate::loaded::Loaded;
use crate::storage::{ensure_private_dir, write_atomic};

/// An order lock older than this is left over from a crash: ordering is
/// bounded well below it (every step has a timeout; polling stops at 90 s).
pub const LOCK_STALE: Duration = Duration::from_secs(15 * 60);

/// Held while this process orders a certificate into shared storage; the
/// lock file is removed on drop.
#[derive(Debug)]
pub struct OrderLock {
    path: PathBuf,
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the ACME order lock");
        }
    }
}

/// ACME state under `{storage}/acme/<directory host>/`: `account.json`
/// (0600) and `certs/<domain set>/{cert,key}.pem` (0600), directories 0700.
#[derive(Clone, Debug)]
pub struct AcmeStore {
    root: PathBuf,
}

impl AcmeStore {
    /// ACME state below `storage` (the `[tls] storage` directory).
    pub fn new(storage: &Path) -> Self {
        Self {
            root: storage.join("acme"),
        }
    }

    /// The directory holding everything for the CA at `directory`.
    pub fn ca_dir(&self, directory: &str) -> Result<PathBuf, AcmeError> {
        Ok(self.root.join(directory_host(directory)?))
    }

    /// Where the account for `directory` is kept.
    pub fn account_path(&self, directory: &str) -> Result<PathBuf, AcmeError> {
        Ok(self.ca_dir(directory)?.join("account.json"))
    }

    /// Where the certificate for `domains` from `directory` is kept.
    pub fn cert_dir(&self, directory: &str, domains: &[String]) -> Result<PathBuf, AcmeError> {
        let names = normalize_domains(domains)?;
        Ok(self.ca_dir(directory)?.join("certs").join(set_name(&names)))
    }

    /// Take the order lock for `domains` at `directory`: `None` while
    /// another process holds it (it is ordering the same certificate into
    /// the same storage). The lock is a file created exclusively
    /// (`certs/<names>/order.lock`, 0600), removed when the guard drops; one
    /// older than [`LOCK_STALE`] is left over from a crash and taken over.
    pub fn lock_order(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<OrderLock>, AcmeError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.cert_dir(directory, domains)?;
        ensure_private_dir(&dir)?;
        let path = dir.join("order.lock");
        let io_err = |action: &'static str, source: io::Error| CertError::Io {
            path: path.clone(),
            action,
            source,
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    let since = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    // For a human looking at the file; nothing reads it back.
                    let _ = writeln!(file, "pid {} since {since}", std::process::id());
                    return Ok(Some(OrderLock { path }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    match age {
                        Some(age) if age < LOCK_STALE => return Ok(None),
                        // Stale, or gone in between: try once more.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => {
                                tracing::warn!(path = %path.display(), "removed a stale ACME order lock");
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io_err("remove", e).into()),
                        },
                    }
                }
                Err(e) => return Err(io_err("create", e).into()),
            }
        }
        Ok(None)
    }

    /// The stored account for `directory`, if any. An account stored for
    /// another URL on the same host is ignored (and later replaced).
    pub fn load_account(&self, directory: &str) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path(directory)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CertError::Read { path, source }.into()),
        };
        let bad = |reason: String| AcmeError::AccountFile {
            path: path.clone(),
            reason,
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if value.get("directory").and_then(|d| d.as_str()) != Some(directory) {
            tracing::warn!(path = %path.display(), directory,
                "stored ACME account belongs to another directory URL; registering anew");
            return Ok(None);
        }
        let credentials = value
            .get_mut("credentials")
            .map(serde_json::Value::take)
            .ok_or_else(|| bad("no \"credentials\"".to_owned()))?;
        let credentials = serde_json::from_value(credentials)
            .map_err(|e| bad(format!("invalid credentials: {e}")))?;
        Ok(Some(credentials))
    }

    pub(super) fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), AcmeError> {
        let path = self.account_path(directory)?;
        let encode = |e: serde_json::Error| AcmeError::AccountFile {
            path: path.clone(),
            reason: format!("cannot encode account: {e}"),
        };
        let mut json = serde_json::Map::new();
        json.insert("directory".to_owned(), directory.into());
        json.insert(
            "credentials".to_owned(),
            serde_json::to_value(credentials).map_err(encode)?,
        );
        let bytes = serde_json::to_vec_pretty(&json).map_err(encode)?;
        ensure_private_dir(&self.root)?;
        ensure_private_dir(&self.ca_dir(directory)?)?;
        write_atomic(&path, &bytes, 0o600)?;
        Ok(())
    }

    /// The stored certificate for `domains` from `directory`, if present and
    /// covering every domain. Expiry is the caller's business (`renew_at`).
    pub fn load_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Loaded>, AcmeError> {
        let dir = self.cert_dir(directory, domains)?;
        let loaded = match files::load(&dir.join("cert.pem"), &dir.join("key.pem")) {
            Ok(loaded) => loaded,
            Err(CertError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let names = normalize_domains(domains)?;
        if names.iter().all(|n| loaded.names.contains(n)) {
            Ok(Some(loaded))
        } else {
            tracing::warn!(dir = %dir.display(), "stored ACME certificate lacks requested names");
            Ok(None)
        }
    }

    /// Check the PEM, then store key and chain; returns what was stored.
    pub(super) fn save_cert(
        &self,
        directory: &str,
        domains: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<Loaded, AcmeError> {
        let dir = self.cert_dir(directory, domains)?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let loaded = files::from_pem(
            chain_pem.as_bytes(),
            &cert_path,
            key_pem.as_bytes(),
            &key_path,
        )?;
        ensure_private_dir(&self.root)?;
        ensure_private_dir(&dir)?;
        // Key first: a crash in between leaves a mismatched pair, which loads
        // as an error instead of a certificate without its key.
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, chain_pem.as_bytes(), 0o600)?;
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_order_lock_per_certificate_and_stale_ones_are_taken_over() {
        let dir = tempfile::tempdir().expect("dir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let names = vec!["a.test".to_owned()];
        let first = store.lock_order(url, &names).expect("lock").expect("free");
        assert!(
            store.lock_order(url, &names).expect("lock").is_none(),
            "held"
        );
        // Another certificate has its own lock.
        let other = vec!["b.test".to_owned()];
        assert!(store.lock_order(url, &other).expect("lock").is_some());
        drop(first);
        let again = store
            .lock_order(url, &names)
            .expect("lock")
            .expect("released");
        // A crashed holder: the file stays, but its age makes it stale.
        let path = store.cert_dir(url, &names).expect("dir").join("order.lock");
        std::mem::forget(again);
        let old = SystemTime::now() - LOCK_STALE - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(old)
            .expect("age it");
        assert!(
            store.lock_order(url, &names).expect("lock").is_some(),
            "stale lock taken over"
        );
    }

    #[test]
    fn store_paths_and_missing_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        let url = "https://127.0.0.1:14000/dir";
        assert_eq!(
            store.account_path(url).expect("path"),
            dir.path().join("acme/127.0.0.1_14000/account.json")
        );
        assert_eq!(
            store
                .cert_dir(url, &names(&["b.test", "a.test"]))
                .expect("path"),
            dir.path().join("acme/127.0.0.1_14000/certs/a.test+b.test")
        );
        assert!(store.load_account(url).expect("none").is_none());
        assert!(store
            .load_cert(url, &names(&["a.test"]))
            .expect("none")
            .is_none());
    }

    #[test]
    fn corrupt_account_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let path = store.account_path(url).expect("path");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("write");
        let Err(err) = store.load_account(url) else {
            panic!("corrupt account file accepted");
        };
        assert!(err.to_string().contains("account.json"), "{err}");
        // An account for another URL on the same host is not used.
        std::fs::write(
            &path,
            br#"{"directory":"https://ca.test/other","credentials":{}}"#,
        )
        .expect("write");
        assert!(store.load_account(url).expect("other").is_none());
    }
}
