//! `[session]`: the users file, cookie lifetimes, SameSite.

use std::path::{Path, PathBuf};
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

/// `[session]`: local accounts and cookie lifetimes.
#[derive(Debug)]
pub struct SessionConf {
    pub users: PathBuf,
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
    let users = base.join(sec.str("users", r).unwrap_or("users.toml"));
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
        users,
        ttl,
        idle,
        same_site,
    })
}
