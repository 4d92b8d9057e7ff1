//! State that outlives a config reload: the users file, revoked sessions and
//! the login attempt limiters. The `Runtime` holds the rules; this holds the
//! facts.

mod attempts;
mod housekeeping;
mod revocations;
mod users;

use std::time::{SystemTime, UNIX_EPOCH};

pub use attempts::{Attempt, EmergencyLimits, LoginLimits};
pub use housekeeping::Housekeeping;
pub use revocations::Revocations;
pub use users::{InvalidUsersFile, UsersStore};

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
    pub users: UsersStore,
    pub revocations: Revocations,
    pub login_limits: LoginLimits,
    pub emergency_limits: EmergencyLimits,
    /// Pending HTTP-01 answers, written by the ACME manager, read by the http listener.
    pub challenges: certs::acme::ChallengeStore,
}
