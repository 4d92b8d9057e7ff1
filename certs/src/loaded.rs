//! [`Loaded`], the certificate every source produces and the resolver
//! serves. It has its own module so that the sources (files, self-signed,
//! ACME) need nothing from the resolver, whose tests use those sources.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;

/// One certificate with what we know about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Chain (leaf first) and signing key, ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// DNS SANs lowercased (wildcards kept as `*.example.com`) and IP SANs as
    /// text; the subject CN only when the certificate has neither.
    pub names: Vec<String>,
    /// Start of validity; with `not_after` it gives the lifetime that
    /// renewal is scheduled against.
    pub not_before: SystemTime,
    /// End of validity, so callers can warn or schedule renewal.
    pub not_after: SystemTime,
}
