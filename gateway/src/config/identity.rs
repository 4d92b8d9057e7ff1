//! `[identity]`: headers the upstream receives for a session.

use super::{Report, Section};

/// `[identity]`: headers the upstream receives for a session.
#[derive(Debug)]
pub struct IdentityConf {
    pub user_header: String,
    pub roles_header: String,
    /// The account's e-mail address (sent only when it has one).
    pub email_header: String,
    pub assertion_header: String,
}

/// Headers the gateway sets itself; an identity header may not reuse them.
const RESERVED_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "host",
    "cookie",
];

pub(super) fn read_identity(sec: &mut Section<'_>, r: &mut Report) -> Option<IdentityConf> {
    let errors_before = r.errors.len();
    let mut name = |key: &'static str, default: &str, r: &mut Report| {
        let v = sec.str(key, r).unwrap_or(default).to_string();
        if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
            r.error(sec.key(key), format!("{v:?} is not a valid header name"));
        } else if RESERVED_HEADERS
            .iter()
            .any(|h| policies::forwarding::header_name_eq(&v, h))
        {
            r.error(
                sec.key(key),
                format!("{v:?} is a header the gateway sets itself"),
            );
        }
        v
    };
    let user_header = name("user_header", "X-Forwarded-User", r);
    let roles_header = name("roles_header", "X-Forwarded-Roles", r);
    let email_header = name("email_header", "X-Forwarded-Email", r);
    let assertion_header = name("assertion_header", "X-Forwarded-Assertion", r);
    (r.errors.len() == errors_before).then_some(IdentityConf {
        user_header,
        roles_header,
        email_header,
        assertion_header,
    })
}
