//! TLS material for portcullis: certificate files, self-signed certificates,
//! ACME issuance, private storage, and the SNI resolver the listener asks on
//! every handshake.
//!
//! Only the `ring` crypto provider is used, so the binary carries one provider.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod acme;
pub mod error;
pub mod files;
mod loaded;
pub mod resolver;
pub mod self_signed;
pub mod storage;
pub mod tls_alpn;

pub use error::CertError;
pub use resolver::{CertSet, Loaded, Resolver};
