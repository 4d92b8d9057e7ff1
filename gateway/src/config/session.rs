//! `[session]`: cookie lifetimes, SameSite.

use std::path::Path;
use std::time::Duration;

use super::reader::duration;
use super::{Report, Section};

/// `SameSite` of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `[session]`: cookie lifetimes.
#[derive(Debug)]
pub struct SessionConf {
    /// Absolute lifetime.
    pub ttl: Duration,
    /// Sliding lifetime: a session unused this long is over.
    pub idle: Duration,
    pub same_site: SameSite,
}

pub(super) fn read_session(
    sec: &mut Section<'_>,
    base: &Path,
    r: &mut Report,
) -> Option<SessionConf> {
    let errors_before = r.errors.len();
    if let Some(users) = sec.str("users", r) {
        // Version 2: accounts live in the identity store ([store]).
        let file = base.join(users);
        r.error(
            sec.key("users"),
            format!(
                "the users file is no longer read by the gateway: accounts live in the identity \
                 store ([store]); import it once with `portcullis user import {} -c CONFIG` \
                 and remove this key",
                file.display()
            ),
        );
    }
    let ttl = duration(sec, "ttl", r).unwrap_or(Duration::from_secs(12 * 3600));
    let idle = duration(sec, "idle", r).unwrap_or(Duration::from_secs(2 * 3600));
    if idle > ttl {
        r.error(sec.key("idle"), "must not be longer than session.ttl");
    }
    let same_site = match sec.str("same_site", r).unwrap_or("lax") {
        "lax" => SameSite::Lax,
        "strict" => SameSite::Strict,
        "none" => SameSite::None,
        other => {
            r.error(
                sec.key("same_site"),
                format!("{other:?} is not one of \"lax\", \"strict\", \"none\""),
            );
            SameSite::Lax
        }
    };
    (r.errors.len() == errors_before).then_some(SessionConf {
        ttl,
        idle,
        same_site,
    })
}
