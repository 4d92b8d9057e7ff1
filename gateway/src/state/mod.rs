//! State that outlives a config reload: the identity store, revoked
//! emergency grants and the login attempt limiters. The `Runtime` holds the rules; this holds the
//! facts.

mod accounts;
mod attempts;
mod housekeeping;
mod revocations;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use accounts::{probe, Accounts, StoreKeeper};
pub use attempts::{Attempt, EmergencyLimits, LoginLimits};
pub use housekeeping::Housekeeping;
pub use revocations::Revocations;

use crate::runtime::SharedRuntime;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now: the session clocks (`policies::session`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything a request may need beyond its own `Runtime`.
pub struct Shared {
    pub runtime: SharedRuntime,
    /// The identity store, through its cache.
    pub accounts: Arc<Accounts>,
    pub revocations: Revocations,
    pub login_limits: LoginLimits,
    pub emergency_limits: EmergencyLimits,
    /// This instance among those sharing Redis (heartbeats, fingerprints).
    pub peers: crate::instances::Peers,
    /// Pending HTTP-01 answers, written by the ACME manager, read by the http listener.
    pub challenges: certs::acme::ChallengeStore,
}
