//! ACME state through a [`Backend`]: the account (`<ca>/account.json`), the
//! issued certificates (`<ca>/certs/<domain set>/{cert,key}.pem`) and the
//! order lease (`<ca>/certs/<domain set>/order`), so that instances sharing
//! the backend order each certificate once. `<ca>` is the directory URL's
//! host (and port). With the [`FileBackend`] these are files under
//! `{storage}/acme/`, 0600 in 0700 directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::AccountCredentials;

use super::backend::{Backend, FileBackend, Lease};
use super::error::AcmeError;
use super::names::{directory_host, normalize_domains, set_name};
use crate::error::CertError;
use crate::files;
use crate::loaded::Loaded;

/// How long an order lease lasts without renewal: a holder renews it every
/// third of this while ordering, so only a dead holder loses it, and
/// another instance takes over this long after the last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// ACME state on a backend (see the module documentation).
#[derive(Clone, Debug)]
pub struct AcmeStore {
    backend: Arc<dyn Backend>,
}

impl AcmeStore {
    /// ACME state in files below `storage` (the `[tls] storage` directory).
    pub fn new(storage: &Path) -> Self {
        Self::with_backend(Arc::new(FileBackend::new(&storage.join("acme"))))
    }

    /// ACME state on `backend`.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// The backend (for challenge publication and leases).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn account_name(directory: &str) -> Result<String, AcmeError> {
        Ok(format!("{}/account.json", directory_host(directory)?))
    }

    fn cert_name(directory: &str, domains: &[String]) -> Result<String, AcmeError> {
        let names = normalize_domains(domains)?;
        Ok(format!(
            "{}/certs/{}",
            directory_host(directory)?,
            set_name(&names)
        ))
    }

    /// Where the account for `directory` is kept (a path for messages).
    pub fn account_path(&self, directory: &str) -> Result<PathBuf, AcmeError> {
        Ok(self.backend.locate(&Self::account_name(directory)?))
    }

    /// Where the certificate for `domains` from `directory` is kept.
    pub fn cert_dir(&self, directory: &str, domains: &[String]) -> Result<PathBuf, AcmeError> {
        Ok(self.backend.locate(&Self::cert_name(directory, domains)?))
    }

    /// Takes the order lease for `domains` at `directory` for [`LEASE_TTL`]:
    /// `None` while another holder (an instance ordering the same
    /// certificate into the same storage) has it.
    pub async fn lease_order(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Lease>, AcmeError> {
        let name = format!("{}/order", Self::cert_name(directory, domains)?);
        Ok(self.backend.try_lease(&name, LEASE_TTL).await?)
    }

    /// The stored account for `directory`, if any. An account stored for
    /// another URL on the same host is ignored (and later replaced).
    pub async fn load_account(
        &self,
        directory: &str,
    ) -> Result<Option<AccountCredentials>, AcmeError> {
        let name = Self::account_name(directory)?;
        let Some(bytes) = self.backend.load(&name).await? else {
            return Ok(None);
        };
        let path = self.backend.locate(&name);
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

    pub(super) async fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), AcmeError> {
        let name = Self::account_name(directory)?;
        let encode = |e: serde_json::Error| AcmeError::AccountFile {
            path: self.backend.locate(&name),
            reason: format!("cannot encode account: {e}"),
        };
        let mut json = serde_json::Map::new();
        json.insert("directory".to_owned(), directory.into());
        json.insert(
            "credentials".to_owned(),
            serde_json::to_value(credentials).map_err(encode)?,
        );
        let bytes = serde_json::to_vec_pretty(&json).map_err(encode)?;
        self.backend.store(&[(&name, &bytes)]).await?;
        Ok(())
    }

    /// The stored certificate for `domains` from `directory`, if present and
    /// covering every domain. Expiry is the caller's business (`renew_at`).
    pub async fn load_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Loaded>, AcmeError> {
        let base = Self::cert_name(directory, domains)?;
        let (cert_name, key_name) = (format!("{base}/cert.pem"), format!("{base}/key.pem"));
        let (Some(chain), Some(key)) = (
            self.backend.load(&cert_name).await?,
            self.backend.load(&key_name).await?,
        ) else {
            return Ok(None);
        };
        let loaded = files::from_pem(
            &chain,
            &self.backend.locate(&cert_name),
            &key,
            &self.backend.locate(&key_name),
        )?;
        covering(loaded, domains, &self.backend.locate(&base))
    }

    /// [`AcmeStore::load_cert`] from the files under `storage`, without a
    /// runtime: for the certificate set at start and on reload.
    pub fn load_cert_from_files(
        storage: &Path,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Loaded>, AcmeError> {
        let files_at = FileBackend::new(&storage.join("acme"));
        let dir = files_at.locate(&Self::cert_name(directory, domains)?);
        let loaded = match files::load(&dir.join("cert.pem"), &dir.join("key.pem")) {
            Ok(loaded) => loaded,
            Err(CertError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        covering(loaded, domains, &dir)
    }

    /// Check the PEM, then store key and chain; returns what was stored.
    pub(super) async fn save_cert(
        &self,
        directory: &str,
        domains: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<Loaded, AcmeError> {
        let base = Self::cert_name(directory, domains)?;
        let (cert_name, key_name) = (format!("{base}/cert.pem"), format!("{base}/key.pem"));
        let loaded = files::from_pem(
            chain_pem.as_bytes(),
            &self.backend.locate(&cert_name),
            key_pem.as_bytes(),
            &self.backend.locate(&key_name),
        )?;
        // Key first: with files, a crash in between leaves a mismatched
        // pair, which loads as an error instead of a certificate without its
        // key; a shared backend writes both in one transaction.
        self.backend
            .store(&[
                (&key_name, key_pem.as_bytes()),
                (&cert_name, chain_pem.as_bytes()),
            ])
            .await?;
        Ok(loaded)
    }
}

/// `loaded` when it covers every one of `domains`.
fn covering(loaded: Loaded, domains: &[String], at: &Path) -> Result<Option<Loaded>, AcmeError> {
    let names = normalize_domains(domains)?;
    if names.iter().all(|n| loaded.names.contains(n)) {
        Ok(Some(loaded))
    } else {
        tracing::warn!(at = %at.display(), "stored ACME certificate lacks requested names");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn one_order_lease_per_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let a = names(&["a.test"]);
        let first = store.lease_order(url, &a).await.expect("io").expect("free");
        assert!(
            store.lease_order(url, &a).await.expect("io").is_none(),
            "held"
        );
        // Another certificate has its own lease.
        assert!(store
            .lease_order(url, &names(&["b.test"]))
            .await
            .expect("io")
            .is_some());
        assert_eq!(
            dir.path().join("acme/ca.test/certs/a.test/order.lock"),
            store.backend().locate(&format!("{}.lock", first.name))
        );
        store.backend().release_lease(first).await;
        assert!(store.lease_order(url, &a).await.expect("io").is_some());
    }

    #[tokio::test]
    async fn store_paths_and_missing_state() {
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
        assert!(store.load_account(url).await.expect("none").is_none());
        assert!(store
            .load_cert(url, &names(&["a.test"]))
            .await
            .expect("none")
            .is_none());
    }

    #[tokio::test]
    async fn corrupt_account_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        let url = "https://ca.test/dir";
        let path = store.account_path(url).expect("path");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("write");
        let Err(err) = store.load_account(url).await else {
            panic!("corrupt account file accepted");
        };
        assert!(err.to_string().contains("account.json"), "{err}");
        // An account for another URL on the same host is not used.
        std::fs::write(
            &path,
            br#"{"directory":"https://ca.test/other","credentials":{}}"#,
        )
        .expect("write");
        assert!(store.load_account(url).await.expect("other").is_none());
    }
}
