//! `[identity]`: headers the upstream receives for a session.

use super::{Report, Section};

/// `[identity]`: headers the upstream receives for a session.
#[derive(Debug)]
pub struct IdentityConf {
    /// Whose header names the defaults follow.
    pub preset: Preset,
    pub user_header: String,
    pub roles_header: String,
    /// The account's e-mail address (sent only when it has one).
    pub email_header: String,
    /// The account's name again, for apps that read a display name
    /// (`Remote-Name` with `preset = "authelia"`); none by default.
    pub name_header: Option<String>,
    pub assertion_header: String,
}

/// `[identity] preset`: header names of a product apps may already be
/// written for, so they work unchanged behind portcullis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Portcullis,
    /// oauth2-proxy: `X-Forwarded-User`, `-Email`, `-Groups`.
    Oauth2Proxy,
    /// Authelia: `Remote-User`, `-Email`, `-Groups`, `-Name`.
    Authelia,
}

impl Preset {
    /// As the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Portcullis => "portcullis",
            Preset::Oauth2Proxy => "oauth2-proxy",
            Preset::Authelia => "authelia",
        }
    }

    /// (user, roles, e-mail, name) header names.
    fn names(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ) {
        match self {
            Preset::Portcullis => (
                "X-Forwarded-User",
                "X-Forwarded-Roles",
                "X-Forwarded-Email",
                None,
            ),
            Preset::Oauth2Proxy => (
                "X-Forwarded-User",
                "X-Forwarded-Groups",
                "X-Forwarded-Email",
                None,
            ),
            Preset::Authelia => (
                "Remote-User",
                "Remote-Groups",
                "Remote-Email",
                Some("Remote-Name"),
            ),
        }
    }
}

/// Every identity header name any preset uses: removed from every client
/// request whatever the preset, so an app once set up for another product
/// never believes a client's copy.
pub const PRESET_HEADERS: [&str; 8] = [
    "x-forwarded-user",
    "x-forwarded-roles",
    "x-forwarded-groups",
    "x-forwarded-email",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
];

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
    let preset = match sec.str("preset", r) {
        None | Some("portcullis") => Preset::Portcullis,
        Some("oauth2-proxy") => Preset::Oauth2Proxy,
        Some("authelia") => Preset::Authelia,
        Some(other) => {
            r.error(
                sec.key("preset"),
                format!("{other:?} is not one of \"portcullis\", \"oauth2-proxy\", \"authelia\""),
            );
            Preset::Portcullis
        }
    };
    let wants_name = sec.has("name_header");
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
    let (user, roles, email, display) = preset.names();
    let user_header = name("user_header", user, r);
    let roles_header = name("roles_header", roles, r);
    let email_header = name("email_header", email, r);
    let name_header = match display {
        Some(d) => Some(name("name_header", d, r)),
        None if wants_name => Some(name("name_header", "", r)),
        None => None,
    };
    let assertion_header = name("assertion_header", "X-Forwarded-Assertion", r);
    let mut all: Vec<(&str, &str)> = vec![
        ("user_header", &user_header),
        ("roles_header", &roles_header),
        ("email_header", &email_header),
        ("assertion_header", &assertion_header),
    ];
    all.extend(name_header.as_deref().map(|n| ("name_header", n)));
    for (i, (key, a)) in all.iter().enumerate() {
        if let Some((other, _)) = all[..i]
            .iter()
            .find(|(_, b)| policies::forwarding::header_name_eq(a, b))
        {
            r.error(sec.key(key), format!("{a:?} is already `{other}`"));
        }
    }
    (r.errors.len() == errors_before).then_some(IdentityConf {
        preset,
        user_header,
        roles_header,
        email_header,
        name_header,
        assertion_header,
    })
}
