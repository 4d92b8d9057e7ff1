//! What to ask which CA for; the gateway fills this in from `[tls]`, so the
//! issuance code never sees the gateway's config types.

/// What to ask which CA for.
#[derive(Clone, Debug, Default)]
pub struct AcmeConfig {
    /// ACME directory URL (https).
    pub directory: String,
    /// Contact address for the account, without `mailto:`.
    pub email: Option<String>,
    /// DNS names (or IP addresses) the certificate must cover.
    pub domains: Vec<String>,
    /// PEM with one or more roots to trust for the ACME server's HTTPS, in
    /// addition to the system roots (a private or test CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Which challenge proves control of the domains.
    pub challenge: Challenge,
}

/// The ACME challenge type portcullis answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 on the plain-HTTP listener (port 80).
    #[default]
    Http01,
    /// TLS-ALPN-01 on the https listener (port 443), see [`crate::tls_alpn`].
    TlsAlpn01,
}
