//! The identity store of portcullis: accounts and sessions (and, empty for
//! now, the tables the sign-in work needs) in SQLite, embedded, or
//! PostgreSQL, shared by several instances.
//!
//! * [`Store`] opens either backend through sqlx's `Any` driver, so every
//!   statement is written once (`$N` markers, types both dialects share:
//!   `BIGINT` integers, `TEXT`), and runs the versioned, forward-only
//!   migrations of [`schema`]; a store written by a newer schema is refused.
//! * [`accounts`] and [`sessions`]: every write is one transaction that also
//!   bumps a change counter, so a cache in front can poll one row to learn
//!   that something changed ([`Store::changes`]).
//! * [`links`]: provider identities linked to accounts, and the one
//!   transaction a provider sign-in is.
//! * [`ceremonies`]: WebAuthn ceremonies under way, taken once.
//! * [`factors`]: second factors (TOTP, passkeys) and recovery codes.
//! * [`invitations`]: one-time links that create an account.
//! * [`resets`]: one-time password-reset links.
//! * [`signing_keys`]: assertion keys with a public half, shared by every
//!   instance.
//! * [`tls`]: TLS material, ACME challenges and leases shared by several
//!   instances.
//! * [`cache`]: that cache. An authenticated request costs no database
//!   round trip in the steady state, and answers only on data at most 1 s
//!   old.
//!
//! Times are Unix milliseconds. Nothing here knows HTTP or the gateway.
#![deny(missing_docs, unreachable_pub)]

pub mod accounts;
pub mod cache;
pub mod ceremonies;
mod error;
pub mod factors;
pub mod invitations;
pub mod links;
mod location;
pub mod resets;
pub mod schema;
pub mod sessions;
pub mod signing_keys;
mod store;
pub mod tls;

pub use accounts::{Account, NewAccount};
pub use cache::{Cache, Lookup};
pub use ceremonies::Ceremony;
pub use error::StoreError;
pub use factors::{Factor, Removed};
pub use invitations::{Invitation, Unusable};
pub use links::{Found, Link, ProviderSignIn, SignInOutcome, Signup};
pub use resets::ResetLink;
pub use sessions::SessionRecord;
pub use signing_keys::SigningKey;
pub use store::{Backend, Store};

/// A fresh random epoch (128 bits, hex): replaced whenever an account's
/// sessions must end, so two independent changes never produce one value.
pub fn new_epoch() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
