//! How the client reaches the CA: the HTTPS client, a timeout on every
//! exchange, and the translation of `instant-acme`'s errors into
//! [`AcmeError`]s that name the step and the URL.
//!
//! The HTTP client is built here (hyper-rustls on the ring provider) rather
//! than taken from `instant-acme`, so that the binary keeps one crypto
//! provider, every certificate in `ca` is trusted in addition to the system
//! roots, and connecting has a timeout.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::BodyWrapper;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::error::AcmeError;

/// Longest wait for any single exchange with the CA (connect included).
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for connecting to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client `instant-acme` is handed (boxed) for every request.
pub(super) type Http = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// An https-only client on the ring provider trusting the system roots plus
/// every certificate in `ca_pem`.
pub(super) fn http_client(ca_pem: Option<&[u8]>) -> Result<Http, AcmeError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        errors = native.errors.len(),
        "system roots for the ACME client"
    );
    if let Some(pem) = ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AcmeError::Ca {
                reason: format!("invalid PEM: {e}"),
            })?;
        if certs.is_empty() {
            return Err(AcmeError::Ca {
                reason: "no certificate found".to_owned(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| AcmeError::Ca {
                reason: format!("unusable certificate: {e}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Config {
            reason: format!("TLS client: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

/// A failed exchange before it is named: callers match on the ACME error
/// (a forgotten account, an unusable key) before it becomes an [`AcmeError`].
pub(super) enum StepError {
    Acme(instant_acme::Error),
    Timeout(Duration),
}

impl StepError {
    /// The error for `step` at `url`.
    pub(super) fn into_error(self, step: &'static str, url: &str) -> AcmeError {
        match self {
            Self::Acme(e) => protocol(step, url, &e),
            Self::Timeout(timeout) => AcmeError::Timeout {
                step,
                url: url.to_owned(),
                timeout,
            },
        }
    }
}

/// Run one exchange under `timeout`, keeping the raw error (see [`StepError`]).
pub(super) async fn step_raw<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, StepError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StepError::Acme(e)),
        Err(_) => Err(StepError::Timeout(timeout)),
    }
}

/// Run one exchange with the CA under [`STEP_TIMEOUT`], naming it in errors.
pub(super) async fn step<T>(
    step: &'static str,
    url: &str,
    fut: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    step_raw(STEP_TIMEOUT, fut)
        .await
        .map_err(|e| e.into_error(step, url))
}

/// The error with all its causes, and TLS trust failures told apart.
pub(super) fn protocol(step: &'static str, url: &str, e: &instant_acme::Error) -> AcmeError {
    let mut parts: Vec<String> = Vec::new();
    let mut untrusted = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> =
        Some(e as &(dyn std::error::Error + 'static));
    while let Some(err) = current {
        if untrusted.is_none() {
            untrusted = tls_error(err).map(|t| t.to_string());
        }
        let text = err.to_string();
        // Wrappers often repeat their cause in their own message.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    match untrusted {
        Some(detail) => AcmeError::Untrusted {
            step,
            url: url.to_owned(),
            detail,
        },
        None => AcmeError::Protocol {
            step,
            url: url.to_owned(),
            detail: parts.join(": "),
        },
    }
}

/// A rustls certificate error, directly or inside (nested) `io::Error`s, which
/// is how tokio-rustls and hyper-rustls hand it up.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
            .then_some(tls);
        }
        let inner = current.downcast_ref::<io::Error>()?.get_ref()?;
        current = inner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_pem_is_refused() {
        let err = http_client(Some(b"not a pem")).expect_err("no cert");
        assert_eq!(err.to_string(), "ACME `ca`: no certificate found");
    }
}
