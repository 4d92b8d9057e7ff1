//! Errors for everything in this crate; each names the file or input it is about.

use std::io;
use std::path::PathBuf;

/// Why TLS material could not be loaded, generated or stored.
///
/// Every variant carries the path (or names) involved so that the message
/// alone tells an operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, I/O error).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The unreadable file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{}: invalid PEM: {reason}", path.display())]
    Pem {
        /// The malformed file.
        path: PathBuf,
        /// What the PEM parser reported.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file that was searched.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509.
    #[error("{}: invalid certificate: {reason}", path.display())]
    BadCertificate {
        /// The file holding the certificate.
        path: PathBuf,
        /// What the X.509 parser reported.
        reason: String,
    },
    /// The file holds no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoKey {
        /// The file that was searched.
        path: PathBuf,
    },
    /// The private key is of a type or curve the ring provider cannot sign with.
    #[error("{}: unsupported private key: {reason}", path.display())]
    UnsupportedKey {
        /// The file holding the key.
        path: PathBuf,
        /// What rustls reported.
        reason: String,
    },
    /// The private key is not the one the leaf certificate was issued for.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A path that must be a directory is something else.
    #[error("{}: exists but is not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A filesystem operation failed while storing material.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What we were doing, e.g. "create directory".
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The shared store could not keep or give back a value.
    #[error("shared store, {name}: {reason}")]
    Shared {
        /// The value's name (empty when the store itself is unavailable).
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A self-signed certificate was requested without any name.
    #[error("self-signed certificate: no names given")]
    NoNames,
    /// rcgen refused to build a self-signed certificate.
    #[error("self-signed certificate for {names}: {reason}")]
    Generate {
        /// The requested names, comma separated.
        names: String,
        /// What rcgen reported.
        reason: String,
    },
}
