//! The certificate set a config asks for, at start-up and on reload; the
//! ACME manager keeps it fresh afterwards (`crate::acme`).

use certs::resolver::CertSet;

use crate::config::{Config, TlsMode};

/// The certificate set a config asks for. `demo` passes `in_memory` to keep
/// everything off the disk.
pub fn load(cfg: &Config, in_memory: bool) -> Result<CertSet, certs::CertError> {
    let names = if cfg.tls.domains.is_empty() {
        vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ]
    } else {
        cfg.tls.domains.clone()
    };
    let loaded = match &cfg.tls.mode {
        TlsMode::Files { cert, key } => certs::files::load(cert, key)?,
        TlsMode::SelfSigned if in_memory => certs::self_signed::generate(&names)?,
        TlsMode::SelfSigned => certs::self_signed::load_or_create(&cfg.tls.storage, &names)?,
        TlsMode::Acme(_) if crate::config::is_shared_store(&cfg.store.url.value) => {
            // The ACME manager's first round, at start, reads the shared
            // store (its open is not awaited here) and serves what is there.
            tracing::info!("ACME state is in the shared store: serving a temporary self-signed certificate until it is read");
            certs::self_signed::generate(&names)?
        }
        TlsMode::Acme(acme) => match certs::acme::AcmeStore::load_cert_from_files(
            &cfg.tls.storage,
            &acme.directory,
            &cfg.tls.domains,
        ) {
            // A stored certificate serves at once; renewal is the manager's job.
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                tracing::info!("no stored ACME certificate yet: serving a temporary self-signed one while ordering");
                certs::self_signed::generate(&names)?
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate unusable: serving a temporary self-signed one while ordering");
                certs::self_signed::generate(&names)?
            }
        },
        TlsMode::Off => return Ok(CertSet::new(Vec::new())),
    };
    Ok(CertSet::new(vec![loaded]))
}

/// One error line for bad certificate material: file, key, reason.
pub fn error_line(cfg: &Config, e: &certs::CertError) -> String {
    let msg = e.to_string();
    let key = match &cfg.tls.mode {
        TlsMode::Files { key, .. } if msg.starts_with(&key.display().to_string()) => "tls.key",
        TlsMode::Files { .. } => "tls.cert",
        _ => "tls.storage",
    };
    format!("{}: {key}: {msg}", cfg.file.display())
}
