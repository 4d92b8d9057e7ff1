//! `[identity]`: headers the upstream receives for a session, and how the
//! assertion among them is signed.

use std::time::Duration;

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
    /// `assertion`; `None`: HS256 when `secrets.assertion_key` is set, else no assertion.
    pub assertion: Option<AssertionAlg>,
    /// The `iss` claim; `None`: `https://` and the first domain.
    pub issuer: Option<String>,
    /// A new key signs this long after `portcullis keys rotate` published it.
    pub key_grace: Duration,
    /// A replaced key stays in the JWKS this long after its successor signs.
    pub old_key_published: Duration,
}

/// `[identity] assertion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// HMAC with `secrets.assertion_key` (version 1).
    Hs256,
    /// A public-key signature, keys in the identity store.
    Keys(policies::signing::Alg),
}

/// `key_grace` default: long enough for every instance and every app's
/// JWKS cache to see the new key before it signs.
pub const DEFAULT_KEY_GRACE: Duration = Duration::from_secs(600);
/// `old_key_published` default: tokens live a minute; caches a day.
pub const DEFAULT_OLD_KEY_PUBLISHED: Duration = Duration::from_secs(86_400);

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
    let assertion = match sec.str("assertion", r) {
        None => None,
        Some("hs256") => Some(AssertionAlg::Hs256),
        Some("es256") => Some(AssertionAlg::Keys(policies::signing::Alg::Es256)),
        Some("eddsa") => Some(AssertionAlg::Keys(policies::signing::Alg::EdDsa)),
        Some(other) => {
            r.error(
                sec.key("assertion"),
                format!("{other:?} is not one of \"hs256\", \"es256\", \"eddsa\""),
            );
            None
        }
    };
    let issuer = sec.str("issuer", r).map(str::to_string);
    if let Some(iss) = &issuer {
        if iss.is_empty() || !iss.bytes().all(|b| b.is_ascii_graphic()) {
            r.error(
                sec.key("issuer"),
                "must be printable ASCII without spaces, e.g. \"https://app.example.com\"",
            );
        }
    }
    let key_grace = super::reader::duration(sec, "key_grace", r).unwrap_or(DEFAULT_KEY_GRACE);
    let old_key_published =
        super::reader::duration(sec, "old_key_published", r).unwrap_or(DEFAULT_OLD_KEY_PUBLISHED);
    (r.errors.len() == errors_before).then_some(IdentityConf {
        assertion,
        issuer,
        key_grace,
        old_key_published,
        preset,
        user_header,
        roles_header,
        email_header,
        name_header,
        assertion_header,
    })
}
