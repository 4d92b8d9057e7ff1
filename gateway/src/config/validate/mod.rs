//! Rules that span sections, checked once every section has been read, and
//! the start-up safety checks `run` and `check` apply to a loaded config.
//!
//! Each section's reader checks only its own keys; anything that needs two
//! sections to judge lives here, so the whole list is in one place.

mod reach;
mod safety;

use super::{
    Access, AssertionAlg, Challenge, Emergency, IdentityConf, LoginConf, Report, Route, Secrets,
    Server, Tls, TlsMode,
};

pub use safety::startup_safety;

/// The sections the cross-section rules look at; `None` for a section that
/// had errors of its own (its rules are skipped rather than guessed).
pub(super) struct Sections<'a> {
    pub server: Option<&'a Server>,
    pub tls: Option<&'a Tls>,
    pub secrets: Option<&'a Secrets>,
    pub access_default: Option<&'a Access>,
    pub routes: &'a [Route],
    pub emergency: Option<&'a Emergency>,
    pub login: Option<&'a LoginConf>,
    pub identity: Option<&'a IdentityConf>,
}

/// Reports every cross-section mistake.
pub(super) fn cross_section(s: &Sections<'_>, r: &mut Report) {
    emergency_needs_secrets(s, r);
    providers_need_keys(s, r);
    sessions_need_keys(s, r);
    assertion_keys(s, r);
    if let (Some(server), Some(tls)) = (s.server, s.tls) {
        listeners_fit_tls(server, tls, r);
    }
}

/// Whether `key` already has an error (a missing secret is reported once).
fn has_error(r: &Report, key: &str) -> bool {
    r.errors.iter().any(|e| e.key == key)
}

/// An enabled emergency gate needs its secret and the session keys.
fn emergency_needs_secrets(s: &Sections<'_>, r: &mut Report) {
    let (Some(e), Some(sec)) = (s.emergency, s.secrets) else {
        return;
    };
    if e.enabled && sec.emergency.is_none() && !has_error(r, "secrets.emergency") {
        r.error(
            "emergency.enabled",
            "the gate needs secrets.emergency (e.g. \"env:PORTCULLIS_EMERGENCY_SECRET\", 32+ characters)",
        );
    }
    if e.enabled && sec.session_keys.is_none() && !has_error(r, "secrets.session_keys") {
        r.error(
            "emergency.enabled",
            "the gate needs secrets.session_keys (its forms are CSRF-protected with them)",
        );
    }
}

/// Provider sign-in makes sessions and signs its `state` with the keys.
fn providers_need_keys(s: &Sections<'_>, r: &mut Report) {
    let (Some(login), Some(sec)) = (s.login, s.secrets) else {
        return;
    };
    if !login.providers.is_empty()
        && sec.session_keys.is_none()
        && !has_error(r, "secrets.session_keys")
    {
        r.error(
            "login.provider",
            "provider sign-in needs secrets.session_keys (sessions and the sign-in state are signed with them)",
        );
    }
}

/// `hs256` signs with `secrets.assertion_key`; the public-key algorithms
/// keep their keys in the store and need an issuer.
fn assertion_keys(s: &Sections<'_>, r: &mut Report) {
    let (Some(id), Some(sec)) = (s.identity, s.secrets) else {
        return;
    };
    match (id.assertion, sec.assertion_key.is_some()) {
        (Some(AssertionAlg::Hs256), false) if !has_error(r, "secrets.assertion_key") => r.error(
            "identity.assertion",
            "\"hs256\" needs secrets.assertion_key (or use \"es256\": no key to share with apps)",
        ),
        (Some(AssertionAlg::Keys(_)), true) => r.error(
            "secrets.assertion_key",
            "is for identity.assertion = \"hs256\"; the public-key assertion keeps its keys in the identity store: remove it",
        ),
        _ => {}
    }
    let asymmetric = matches!(id.assertion, Some(AssertionAlg::Keys(_)));
    if let (true, Some(tls)) = (asymmetric, s.tls) {
        if super::issuer(id, tls, s.routes).is_none() {
            r.error(
                "identity.issuer",
                "no domain to make the issuer from ([tls] domains, a route host): set it, e.g. \"https://app.example.com\"",
            );
        }
    }
}

/// What a rule that needs sessions says without keys to sign them.
const NEEDS_KEYS: &str = "\"login\" and \"role:\" need secrets.session_keys (e.g. \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`)";

/// Login and role rules need the keys that sign sessions, but only rules
/// that can apply: `[access] default` when some request matches no route
/// (the implicit `"login"` behind a catch-all route needs nothing), a route
/// when no catch-all comes before it.
fn sessions_need_keys(s: &Sections<'_>, r: &mut Report) {
    let has_keys = s.secrets.is_some_and(|sec| sec.session_keys.is_some());
    if has_keys || has_error(r, "secrets.session_keys") {
        return;
    }
    let needs = |a: &Access| matches!(a, Access::Login | Access::Roles(_));
    // A route left out for its own errors might have been a catch-all:
    // which requests reach the default is unknown until it is fixed.
    let routes_known = !r.errors.iter().any(|e| e.key.starts_with("route"));
    if s.access_default.is_some_and(needs) && routes_known {
        let ci = s.server.is_some_and(|sv| sv.case_insensitive_paths);
        if let Some(who) = reach::unmatched(s.routes, ci) {
            r.error(
                "access.default",
                format!("{NEEDS_KEYS}; requests no route matches reach access.default: {who}"),
            );
            return;
        }
    }
    let reachable = reach::first_catch_all(s.routes).map_or(s.routes.len(), |i| i + 1);
    let route = s
        .routes
        .iter()
        .take(reachable)
        .position(|rt| needs(&rt.access));
    if let Some(i) = route {
        r.error(format!("route[{i}].access"), NEEDS_KEYS);
    }
}

/// Which listeners the TLS mode needs, and which it cannot use.
fn listeners_fit_tls(server: &Server, tls: &Tls, r: &mut Report) {
    if tls.mode == TlsMode::Off {
        if server.https.is_some() {
            r.error("server.https", "tls.mode = \"off\" serves plain HTTP on server.http; remove server.https or choose a TLS mode");
        }
        if server.http.is_none() {
            r.error(
                "server.http",
                "required when tls.mode = \"off\" (the platform in front sends plain HTTP here)",
            );
        }
    } else if server.https.is_none() {
        r.error(
            "server.https",
            "required (the TLS listener, e.g. \"0.0.0.0:443\")",
        );
    }
    if matches!(&tls.mode, TlsMode::Acme(m) if m.challenge == Challenge::Http01)
        && server.http.is_none()
    {
        r.error(
            "server.http",
            "required with tls.mode = \"acme\" and challenge = \"http-01\": the CA checks HTTP-01 challenges there (reachable as port 80)",
        );
    }
}
