//! ACME (RFC 8555) issuance with `instant-acme`, one module per concern:
//!
//! - `config`: what to ask which CA for ([`AcmeConfig`], [`Challenge`]);
//! - `client`: the conversation with the CA ([`obtain`], [`probe_directory`]);
//! - `transport`: the HTTPS client that conversation runs on, its timeouts,
//!   and how its failures become [`AcmeError`]s;
//! - `backend`: where ACME state lives ([`Backend`]: named values, leases,
//!   published challenges; [`FileBackend`] under `[tls] storage`);
//! - `store`: the account, the issued certificates and the order lease on a
//!   backend ([`AcmeStore`]);
//! - `names`: the directory URL and the domain set, validated and turned
//!   into directory names;
//! - `challenges`: the pending answers the listeners serve ([`ChallengeStore`]);
//! - `schedule`: when to renew and how long to back off ([`renew_at`], [`backoff`]);
//! - `error`: [`AcmeError`].
//!
//! HTTP-01 answers are read by the plain-HTTP listener, TLS-ALPN-01
//! certificates by [`crate::tls_alpn`] on the https listener. The renewal loop
//! and the listener wiring live in the gateway (`gateway/src/acme.rs`).
//!
//! Dependencies point one way: `client` uses the others, `challenges` uses
//! [`crate::tls_alpn`], and `tls_alpn` uses nothing from here.

mod backend;
mod challenges;
mod client;
mod config;
mod error;
mod names;
mod schedule;
mod store;
mod transport;

pub use backend::{Backend, FileBackend, Lease};
pub use challenges::ChallengeStore;
pub use client::{obtain, probe_directory, DirectoryInfo};
pub use config::{AcmeConfig, Challenge};
pub use error::AcmeError;
pub use schedule::{backoff, renew_at};
pub use store::{AcmeStore, LEASE_TTL};
