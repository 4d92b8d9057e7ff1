//! Where ACME state lives: a small storage interface (CertMagic's model —
//! named values, written atomically, and leases) with two backends. The
//! [`FileBackend`] keeps everything under `[tls] storage` for one instance
//! (or several sharing a volume); the gateway implements a shared backend on
//! the identity store for several instances, which also publishes pending
//! challenge answers so that any instance can answer a validation.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::CertError;
use crate::storage::{ensure_private_dir, write_atomic};

/// A lease held by this process (see [`Backend::try_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease's name.
    pub name: String,
}

/// Named values, leases and (for shared backends) challenge answers.
/// Names are `/`-separated paths of safe characters (made by
/// [`super::AcmeStore`], never by a client).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where `name` is, for messages (a file path or `[store] name`).
    fn locate(&self, name: &str) -> PathBuf;

    /// The value of `name`, if stored.
    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, CertError>;

    /// Stores every (name, value); a reader never sees half of one value,
    /// and a shared backend writes them all in one transaction. Values are
    /// written in the order given (a key before its certificate).
    async fn store(&self, items: &[(&str, &[u8])]) -> Result<(), CertError>;

    /// Takes lease `name` for `ttl` unless another holder's is live; `None`
    /// while it is. A holder that dies loses it when `ttl` has passed.
    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, CertError>;

    /// Extends a lease this process holds; false when it was lost (it
    /// expired and another holder took it).
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, CertError>;

    /// Ends a lease this process holds.
    async fn release_lease(&self, lease: Lease);

    /// Whether other instances read this backend: then challenge answers are
    /// published through it, and the CA is told only once they have had
    /// time to reach every instance.
    fn is_shared(&self) -> bool {
        false
    }

    /// Publishes a challenge answer for other instances, for `ttl`.
    async fn publish_challenge(
        &self,
        _name: &str,
        _value: &str,
        _ttl: Duration,
    ) -> Result<(), CertError> {
        Ok(())
    }

    /// Withdraws a published challenge answer (best effort: it expires).
    async fn withdraw_challenge(&self, _name: &str) {}
}

/// Everything under one directory (`{storage}/acme`): files 0600,
/// directories 0700, each file replaced atomically; a lease is a file
/// created exclusively whose modification time is its last renewal.
#[derive(Debug, Clone)]
pub struct FileBackend {
    root: PathBuf,
}

impl FileBackend {
    /// Values under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn lease_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.lock"))
    }
}

#[async_trait::async_trait]
impl Backend for FileBackend {
    fn locate(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, CertError> {
        let path = self.locate(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CertError::Read { path, source }),
        }
    }

    async fn store(&self, items: &[(&str, &[u8])]) -> Result<(), CertError> {
        ensure_private_dir(&self.root)?;
        for (name, value) in items {
            let path = self.locate(name);
            if let Some(dir) = path.parent() {
                ensure_private_dir(dir)?;
            }
            write_atomic(&path, value, 0o600)?;
        }
        Ok(())
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, CertError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.lease_path(name);
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
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
                    return Ok(Some(Lease {
                        name: name.to_string(),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    match age {
                        Some(age) if age < ttl => return Ok(None),
                        // Expired, or gone in between: try once more.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => {
                                tracing::warn!(path = %path.display(), "took over an expired ACME lease");
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io_err("remove", e)),
                        },
                    }
                }
                Err(e) => return Err(io_err("create", e)),
            }
        }
        Ok(None)
    }

    async fn renew_lease(&self, lease: &Lease, _ttl: Duration) -> Result<bool, CertError> {
        let path = self.lease_path(&lease.name);
        let file = match std::fs::File::options().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(CertError::Io {
                    path,
                    action: "open",
                    source,
                })
            }
        };
        file.set_modified(SystemTime::now())
            .map(|()| true)
            .map_err(|source| CertError::Io {
                path,
                action: "renew",
                source,
            })
    }

    async fn release_lease(&self, lease: Lease) {
        let path = self.lease_path(&lease.name);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the ACME lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn one_lease_holder_until_release_or_expiry() {
        let dir = tempfile::tempdir().expect("dir");
        let b = FileBackend::new(dir.path());
        let first = b
            .try_lease("ca/certs/a/order", TTL)
            .await
            .expect("io")
            .expect("free");
        assert_eq!(
            b.try_lease("ca/certs/a/order", TTL).await.expect("io"),
            None
        );
        assert!(b
            .try_lease("ca/certs/b/order", TTL)
            .await
            .expect("io")
            .is_some());
        assert!(b.renew_lease(&first, TTL).await.expect("io"));
        b.release_lease(first.clone()).await;
        assert!(!b.renew_lease(&first, TTL).await.expect("io"), "released");
        let again = b
            .try_lease("ca/certs/a/order", TTL)
            .await
            .expect("io")
            .expect("free");
        // A holder that died: its lease expires with its last renewal.
        let path = b.lease_path(&again.name);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(SystemTime::now() - TTL - Duration::from_secs(1))
            .expect("age it");
        assert!(b
            .try_lease("ca/certs/a/order", TTL)
            .await
            .expect("io")
            .is_some());
    }

    #[tokio::test]
    async fn values_are_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let b = FileBackend::new(&dir.path().join("acme"));
        assert_eq!(b.load("ca/account.json").await.expect("io"), None);
        b.store(&[("ca/certs/x/key.pem", b"k"), ("ca/certs/x/cert.pem", b"c")])
            .await
            .expect("store");
        assert_eq!(
            b.load("ca/certs/x/cert.pem").await.expect("io"),
            Some(b"c".to_vec())
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&b.locate("ca/certs/x/key.pem")), 0o600);
        assert_eq!(mode(&dir.path().join("acme/ca/certs")), 0o700);
        assert!(!b.is_shared());
    }
}
