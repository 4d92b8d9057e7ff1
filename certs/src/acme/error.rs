//! The error of every ACME step. Each variant names the step and the URL or
//! domain, so that the message alone tells an operator what failed where.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::CertError;

/// Why an ACME step failed; each names the step and the URL or domain.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The configuration cannot work (no domains, bad URL, wildcard...).
    #[error("ACME config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The `ca` PEM holds no usable certificate.
    #[error("ACME `ca`: {reason}")]
    Ca {
        /// What is wrong with it.
        reason: String,
    },
    /// The CA's HTTPS certificate is not trusted.
    #[error("ACME {step} at {url}: TLS certificate of the ACME server not trusted ({detail}); set `ca` to its root if it uses a private CA")]
    Untrusted {
        /// The step, e.g. "account".
        step: &'static str,
        /// The URL involved.
        url: String,
        /// The TLS error.
        detail: String,
    },
    /// A request to the CA failed (network or an ACME problem document).
    #[error("ACME {step} at {url}: {detail}")]
    Protocol {
        /// The step, e.g. "new order".
        step: &'static str,
        /// The URL involved.
        url: String,
        /// The error and its causes.
        detail: String,
    },
    /// The CA did not answer in time.
    #[error("ACME {step} at {url}: no answer within {}s", timeout.as_secs())]
    Timeout {
        /// The step.
        step: &'static str,
        /// The URL involved.
        url: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The CA could not validate a domain.
    #[error("ACME validation of {domain} failed: {detail}")]
    Validation {
        /// The domain (identifier) concerned.
        domain: String,
        /// What the CA reported.
        detail: String,
    },
    /// The stored account file cannot be used.
    #[error("{}: {reason}", path.display())]
    AccountFile {
        /// The account file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the account or certificates failed.
    #[error("ACME storage: {0}")]
    Store(#[from] CertError),
}
