//! `[emergency]`: the break-glass gate.

use std::time::Duration;

use ipnet::IpNet;

use super::reader::{cidr_list, duration};
use super::{EnvLookup, Rate, Report, Section};

/// `[emergency]`: the break-glass gate.
#[derive(Debug, Clone)]
pub struct Emergency {
    /// After `PORTCULLIS_EMERGENCY_ENABLED`, which wins over the file.
    pub enabled: bool,
    pub ttl: Duration,
    pub roles: Vec<String>,
    /// Empty: any client IP.
    pub allow_from: Vec<IpNet>,
    /// Attempts per client IP.
    pub attempts: Rate,
}

/// The emergency gate's global cap: this many attempts per window from all
/// clients together, then every attempt is 429 until the window passes.
pub const EMERGENCY_GLOBAL_ATTEMPTS: u32 = 20;
/// The window of [`EMERGENCY_GLOBAL_ATTEMPTS`].
pub const EMERGENCY_GLOBAL_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest emergency session.
pub const EMERGENCY_MAX_TTL: Duration = Duration::from_secs(3600);
/// The environment variable that overrides `[emergency] enabled`.
pub const EMERGENCY_ENV: &str = "PORTCULLIS_EMERGENCY_ENABLED";

pub(super) fn read_emergency(
    sec: &mut Section<'_>,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Emergency> {
    let errors_before = r.errors.len();
    let enabled = enabled(sec, env, r);
    let ttl = duration(sec, "ttl", r).unwrap_or(Duration::from_secs(15 * 60));
    if ttl.is_zero() || ttl > EMERGENCY_MAX_TTL {
        r.error(sec.key("ttl"), "must be more than 0 and at most 1h");
    }
    let roles = roles(sec, r);
    let allow_from = cidr_list(sec, "allow_from", "\"203.0.113.0/24\"", r);
    let attempts = match Rate::parse(sec.str("attempts", r).unwrap_or("5/15m")) {
        Ok(rate) => Some(rate),
        Err(e) => {
            r.error(sec.key("attempts"), e.to_string());
            None
        }
    };
    (r.errors.len() == errors_before).then_some(Emergency {
        enabled,
        ttl,
        roles,
        allow_from,
        attempts: attempts?,
    })
}

/// `enabled`, overridden by [`EMERGENCY_ENV`] when that is set.
fn enabled(sec: &mut Section<'_>, env: EnvLookup<'_>, r: &mut Report) -> bool {
    let enabled = sec.bool("enabled", r).unwrap_or(false);
    match env(EMERGENCY_ENV).as_deref() {
        None => enabled,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            r.error(
                "emergency.enabled",
                format!(
                    "environment variable {EMERGENCY_ENV} is {other:?}; use \"true\" or \"false\""
                ),
            );
            enabled
        }
    }
}

/// The roles an emergency session gets; `["admin"]` by default.
fn roles(sec: &mut Section<'_>, r: &mut Report) -> Vec<String> {
    let roles: Vec<String> = match sec.str_list("roles", r) {
        None => vec!["admin".to_string()],
        Some(list) => list.iter().map(|s| s.trim().to_string()).collect(),
    };
    if roles.is_empty() {
        r.error(
            sec.key("roles"),
            "needs at least one role (e.g. [\"admin\"])",
        );
    }
    if let Some(bad) = roles.iter().find(|x| !policies::access::valid_role_name(x)) {
        r.error(
            sec.key("roles"),
            format!("invalid role name {bad:?}: use A-Z a-z 0-9 . _ -"),
        );
    }
    roles
}
