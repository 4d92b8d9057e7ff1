//! Security response headers (docs/configuration.md `[headers]`, the response).
//!
//! A [`HeaderSet`] is resolved once at config load (the documented defaults, then the
//! global `[headers]` table, then per route a key-by-key merge of the route's
//! `headers`) and asked per response for a [`HeaderSet::plan`]. Rules, and why:
//!
//! * **Route overrides merge, never replace.** nginx drops every inherited
//!   `add_header` as soon as a location sets one, so overriding CSP silently
//!   loses HSTS and friends. Here a route changes only the keys it names.
//! * **`""` removes** a header (globally or for one route).
//! * **Values are visible ASCII, space and tab only**, checked at load: a CR,
//!   LF, NUL or other control character could split a header or smuggle a
//!   second one (`DENY\r\nSet-Cookie: x`), and non-ASCII bytes are not
//!   portable in header values. Surrounding spaces and tabs are trimmed.
//! * **The gateway's value replaces the app's**, except for the headers in
//!   `app_may_override` (default: CSP), where an app that sends its own
//!   value keeps it.
//! * **HSTS only over https**: browsers ignore it over http, and sending it
//!   there only misleads.
//! * **`remove` names are header-name tokens, lowercased.** A header cannot
//!   be both set and removed (refused at load), and the framing headers
//!   `content-length` / `transfer-encoding` cannot be removed.

use crate::token::is_tchar;
use std::fmt;

/// The seven headers portcullis sets, by config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityHeader {
    /// `hsts` → `Strict-Transport-Security`.
    Hsts,
    /// `csp` → `Content-Security-Policy`.
    Csp,
    /// `frame_options` → `X-Frame-Options`.
    FrameOptions,
    /// `content_type_options` → `X-Content-Type-Options`.
    ContentTypeOptions,
    /// `referrer_policy` → `Referrer-Policy`.
    ReferrerPolicy,
    /// `permissions_policy` → `Permissions-Policy`.
    PermissionsPolicy,
    /// `coop` → `Cross-Origin-Opener-Policy`.
    Coop,
}

impl SecurityHeader {
    /// Every header, in the order [`HeaderSet::plan`] emits them.
    pub const ALL: [SecurityHeader; 7] = [
        SecurityHeader::Hsts,
        SecurityHeader::Csp,
        SecurityHeader::FrameOptions,
        SecurityHeader::ContentTypeOptions,
        SecurityHeader::ReferrerPolicy,
        SecurityHeader::PermissionsPolicy,
        SecurityHeader::Coop,
    ];

    /// The config key (`[headers]` table and route `headers`).
    pub fn key(self) -> &'static str {
        match self {
            SecurityHeader::Hsts => "hsts",
            SecurityHeader::Csp => "csp",
            SecurityHeader::FrameOptions => "frame_options",
            SecurityHeader::ContentTypeOptions => "content_type_options",
            SecurityHeader::ReferrerPolicy => "referrer_policy",
            SecurityHeader::PermissionsPolicy => "permissions_policy",
            SecurityHeader::Coop => "coop",
        }
    }

    /// The lowercase header name.
    pub fn header_name(self) -> &'static str {
        match self {
            SecurityHeader::Hsts => "strict-transport-security",
            SecurityHeader::Csp => "content-security-policy",
            SecurityHeader::FrameOptions => "x-frame-options",
            SecurityHeader::ContentTypeOptions => "x-content-type-options",
            SecurityHeader::ReferrerPolicy => "referrer-policy",
            SecurityHeader::PermissionsPolicy => "permissions-policy",
            SecurityHeader::Coop => "cross-origin-opener-policy",
        }
    }

    /// The header for a config key (exact, case-sensitive like TOML keys).
    pub fn from_key(key: &str) -> Option<SecurityHeader> {
        SecurityHeader::ALL.into_iter().find(|h| h.key() == key)
    }

    /// The documented default value.
    pub fn default_value(self) -> &'static str {
        match self {
            SecurityHeader::Hsts => "max-age=31536000; includeSubDomains",
            SecurityHeader::Csp => {
                "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
            }
            SecurityHeader::FrameOptions => "DENY",
            SecurityHeader::ContentTypeOptions => "nosniff",
            SecurityHeader::ReferrerPolicy => "strict-origin-when-cross-origin",
            SecurityHeader::PermissionsPolicy => "camera=(), microphone=(), geolocation=()",
            SecurityHeader::Coop => "same-origin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SecurityHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a `[headers]` table or route `headers` is invalid; `Display` names the
/// key or name and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value has a control character (CR, LF, NUL, ...) or a byte outside
    /// ASCII, so it cannot be a header value.
    #[error(
        "invalid value for {key}: only visible ASCII, spaces and tabs are allowed \
         (no line breaks or control characters)"
    )]
    InvalidValue {
        /// The config key.
        key: &'static str,
    },
    /// The value is only spaces or tabs; write `""` to remove the header.
    #[error("blank value for {key}: write \"\" to remove the header")]
    BlankValue {
        /// The config key.
        key: &'static str,
    },
    /// A `remove` entry is not an HTTP header-name token.
    #[error("invalid header name {0:?} in remove: not an HTTP header-name token")]
    InvalidName(String),
    /// A `remove` entry names a framing header; removing it would break
    /// message framing.
    #[error("header {0:?} cannot be removed: it frames the response")]
    ProtectedName(String),
    /// A header is both set by the gateway and listed in `remove`.
    #[error("{key} is set but its header {name:?} is also in remove: set it to \"\" instead")]
    SetAndRemoved {
        /// The config key of the header being set.
        key: &'static str,
        /// Its lowercase header name.
        name: &'static str,
    },
}

/// One resolved set: a value per header (`None` = not set by the gateway,
/// from `""`), the headers whose app value wins, and the names to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSet {
    values: [Option<String>; 7],
    app_may_override: [bool; 7],
    remove: Vec<String>,
}

impl HeaderSet {
    /// The documented defaults: every header at its default value,
    /// `app_may_override = ["csp"]`, `remove = ["server", "x-powered-by"]`.
    pub fn defaults() -> HeaderSet {
        HeaderSet {
            values: SecurityHeader::ALL.map(|h| Some(h.default_value().to_owned())),
            app_may_override: SecurityHeader::ALL.map(|h| h == SecurityHeader::Csp),
            remove: vec!["server".to_owned(), "x-powered-by".to_owned()],
        }
    }

    /// The global `[headers]` table applied over the defaults: `values`
    /// (`""` removes that default), `app_may_override` keys and `remove`
    /// names (each replacing the default list when given).
    pub fn configure(
        values: &[(SecurityHeader, String)],
        app_may_override: Option<&[SecurityHeader]>,
        remove: Option<Vec<String>>,
    ) -> Result<HeaderSet, HeaderError> {
        let mut set = HeaderSet::defaults();
        if let Some(list) = app_may_override {
            set.app_may_override = SecurityHeader::ALL.map(|h| list.contains(&h));
        }
        if let Some(names) = remove {
            let mut out: Vec<String> = Vec::with_capacity(names.len());
            for name in names {
                let lower = normalize_name(name)?;
                if !out.contains(&lower) {
                    out.push(lower);
                }
            }
            set.remove = out;
        }
        set.apply(values)?;
        Ok(set)
    }

    /// A route's `headers` merged key by key over this set: only the named
    /// headers change; every other value, `remove` and `app_may_override`
    /// stay (never nginx's `add_header` inheritance trap).
    pub fn with_route_overrides(
        &self,
        values: &[(SecurityHeader, String)],
    ) -> Result<HeaderSet, HeaderError> {
        let mut set = self.clone();
        set.apply(values)?;
        Ok(set)
    }

    /// The value the gateway sets for `h`, if any.
    pub fn value(&self, h: SecurityHeader) -> Option<&str> {
        self.values.get(h.index()).and_then(|v| v.as_deref())
    }

    /// Whether the app's own value for `h` wins over the gateway's.
    pub fn app_may_override(&self, h: SecurityHeader) -> bool {
        self.app_may_override
            .get(h.index())
            .copied()
            .unwrap_or(false)
    }

    /// Lowercase names of headers to strip from every response.
    pub fn remove(&self) -> &[String] {
        &self.remove
    }

    /// `(lowercase name, value)` pairs to set on a response, replacing any
    /// copy the app sent. HSTS only when `https`. For an `app_may_override`
    /// header that `app_sent` reports present, the app's value stays and
    /// nothing is listed. Removing [`remove`](Self::remove) names (and the
    /// app's copies of listed headers) is the caller's job; a name in
    /// `remove` is never listed.
    pub fn plan<'a>(
        &'a self,
        https: bool,
        app_sent: &dyn Fn(&str) -> bool,
    ) -> Vec<(&'static str, &'a str)> {
        let mut out = Vec::with_capacity(SecurityHeader::ALL.len());
        for h in SecurityHeader::ALL {
            let Some(value) = self.value(h) else {
                continue;
            };
            let name = h.header_name();
            if h == SecurityHeader::Hsts && !https {
                continue;
            }
            if self.remove.iter().any(|r| r == name) {
                continue;
            }
            if self.app_may_override(h) && app_sent(name) {
                continue;
            }
            out.push((name, value));
        }
        out
    }

    fn apply(&mut self, values: &[(SecurityHeader, String)]) -> Result<(), HeaderError> {
        for (h, raw) in values {
            let v = normalize_value(h.key(), raw)?;
            if let Some(slot) = self.values.get_mut(h.index()) {
                *slot = v;
            }
        }
        for h in SecurityHeader::ALL {
            if self.value(h).is_some() && self.remove.iter().any(|r| r == h.header_name()) {
                return Err(HeaderError::SetAndRemoved {
                    key: h.key(),
                    name: h.header_name(),
                });
            }
        }
        Ok(())
    }
}

/// `""` → `None`; otherwise trimmed of spaces/tabs and checked.
fn normalize_value(key: &'static str, raw: &str) -> Result<Option<String>, HeaderError> {
    if raw.is_empty() {
        return Ok(None);
    }
    if !raw
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(HeaderError::InvalidValue { key });
    }
    let trimmed = raw.trim_matches(|c| c == ' ' || c == '\t');
    if trimmed.is_empty() {
        return Err(HeaderError::BlankValue { key });
    }
    Ok(Some(trimmed.to_owned()))
}

fn normalize_name(name: String) -> Result<String, HeaderError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeaderError::InvalidName(name));
    }
    let lower = name.to_ascii_lowercase();
    if matches!(lower.as_str(), "content-length" | "transfer-encoding") {
        return Err(HeaderError::ProtectedName(lower));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecurityHeader::*;

    fn v(pairs: &[(SecurityHeader, &str)]) -> Vec<(SecurityHeader, String)> {
        pairs.iter().map(|(h, s)| (*h, (*s).to_owned())).collect()
    }

    fn never(_: &str) -> bool {
        false
    }

    fn always(_: &str) -> bool {
        true
    }

    #[test]
    fn keys_names_round_trip() {
        for h in SecurityHeader::ALL {
            assert_eq!(SecurityHeader::from_key(h.key()), Some(h));
            assert_eq!(h.header_name(), h.header_name().to_ascii_lowercase());
            assert_eq!(h.to_string(), h.key());
        }
        assert_eq!(SecurityHeader::from_key("HSTS"), None);
        assert_eq!(SecurityHeader::from_key("strict-transport-security"), None);
        assert_eq!(SecurityHeader::from_key(""), None);
        assert_eq!(SecurityHeader::from_key("remove"), None);
        assert_eq!(SecurityHeader::from_key("app_may_override"), None);
        assert_eq!(Coop.header_name(), "cross-origin-opener-policy");
        assert_eq!(FrameOptions.key(), "frame_options");
    }

    #[test]
    fn defaults_exactly_as_spec() {
        let d = HeaderSet::defaults();
        assert_eq!(d.value(Hsts), Some("max-age=31536000; includeSubDomains"));
        assert_eq!(
            d.value(Csp),
            Some("default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
        );
        assert_eq!(d.value(FrameOptions), Some("DENY"));
        assert_eq!(d.value(ContentTypeOptions), Some("nosniff"));
        assert_eq!(
            d.value(ReferrerPolicy),
            Some("strict-origin-when-cross-origin")
        );
        assert_eq!(
            d.value(PermissionsPolicy),
            Some("camera=(), microphone=(), geolocation=()")
        );
        assert_eq!(d.value(Coop), Some("same-origin"));
        assert_eq!(d.remove(), ["server", "x-powered-by"]);
        for h in SecurityHeader::ALL {
            assert_eq!(d.app_may_override(h), h == Csp, "{h}");
            assert_eq!(d.value(h), Some(h.default_value()));
        }
        assert_eq!(HeaderSet::configure(&[], None, None).unwrap(), d);
    }

    #[test]
    fn plan_defaults_https_and_http() {
        let d = HeaderSet::defaults();
        let p = d.plan(true, &never);
        assert_eq!(p.len(), 7);
        for (h, (name, value)) in SecurityHeader::ALL.into_iter().zip(&p) {
            assert_eq!(*name, h.header_name());
            assert_eq!(*value, h.default_value());
        }
        let p = d.plan(false, &never);
        assert_eq!(p.len(), 6);
        assert!(p.iter().all(|(n, _)| *n != "strict-transport-security"));
    }

    #[test]
    fn empty_value_removes_default() {
        let s = HeaderSet::configure(&v(&[(Coop, ""), (Hsts, "")]), None, None).unwrap();
        assert_eq!(s.value(Coop), None);
        assert_eq!(s.value(Hsts), None);
        assert_eq!(s.value(FrameOptions), Some("DENY"));
        let p = s.plan(true, &never);
        assert_eq!(p.len(), 5);
        assert!(p
            .iter()
            .all(|(n, _)| *n != "cross-origin-opener-policy" && *n != "strict-transport-security"));
    }

    #[test]
    fn configured_values_replace_defaults() {
        let s = HeaderSet::configure(
            &v(&[(FrameOptions, "SAMEORIGIN"), (Hsts, "  max-age=63072000\t")]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.value(FrameOptions), Some("SAMEORIGIN"));
        assert_eq!(s.value(Hsts), Some("max-age=63072000"));
        assert_eq!(s.value(Csp), Some(Csp.default_value()));
    }

    #[test]
    fn route_override_changes_only_that_header() {
        // The nginx add_header trap: overriding one header must keep the rest.
        let global = HeaderSet::configure(
            &v(&[(FrameOptions, "SAMEORIGIN"), (Coop, "")]),
            Some(&[Csp, ReferrerPolicy]),
            Some(vec![
                "Server".into(),
                "X-Powered-By".into(),
                "X-AspNet-Version".into(),
            ]),
        )
        .unwrap();
        let route = global
            .with_route_overrides(&v(&[(Csp, "default-src 'self' 'unsafe-inline'")]))
            .unwrap();
        assert_eq!(route.value(Csp), Some("default-src 'self' 'unsafe-inline'"));
        for h in SecurityHeader::ALL {
            if h != Csp {
                assert_eq!(route.value(h), global.value(h), "{h}");
            }
            assert_eq!(route.app_may_override(h), global.app_may_override(h), "{h}");
        }
        assert_eq!(route.remove(), global.remove());
        assert_eq!(route.value(FrameOptions), Some("SAMEORIGIN"));
        assert_eq!(route.value(Coop), None);
        assert_eq!(route.value(Hsts), Some(Hsts.default_value()));
        assert_eq!(route.plan(true, &never).len(), 6);
        // The global set is untouched.
        assert_eq!(global.value(Csp), Some(Csp.default_value()));
        // No overrides: identical set.
        assert_eq!(global.with_route_overrides(&[]).unwrap(), global);
    }

    #[test]
    fn route_override_can_remove_one_header() {
        let route = HeaderSet::defaults()
            .with_route_overrides(&v(&[(FrameOptions, "")]))
            .unwrap();
        assert_eq!(route.value(FrameOptions), None);
        assert_eq!(route.plan(true, &never).len(), 6);
    }

    #[test]
    fn route_override_rejects_bad_value() {
        let err = HeaderSet::defaults()
            .with_route_overrides(&v(&[(Csp, "default-src 'self'\r\nSet-Cookie: a=b")]))
            .unwrap_err();
        assert_eq!(err, HeaderError::InvalidValue { key: "csp" });
    }

    #[test]
    fn app_may_override_listed_keeps_app_value() {
        let d = HeaderSet::defaults();
        // The app sent a CSP: the gateway sets nothing for it.
        let p = d.plan(true, &|n: &str| n == "content-security-policy");
        assert!(p.iter().all(|(n, _)| *n != "content-security-policy"));
        assert_eq!(p.len(), 6);
        // The app did not: the gateway's CSP is set.
        let p = d.plan(true, &never);
        assert!(p.contains(&("content-security-policy", Csp.default_value())));
    }

    #[test]
    fn app_may_override_unlisted_gateway_replaces() {
        let d = HeaderSet::defaults();
        // The app sent X-Frame-Options (and everything else): only CSP is
        // left to the app; frame_options and the rest are set (replacing).
        let p = d.plan(true, &always);
        assert!(p.contains(&("x-frame-options", "DENY")));
        assert!(p.contains(&("strict-transport-security", Hsts.default_value())));
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn app_may_override_configured_list() {
        let s = HeaderSet::configure(&[], Some(&[FrameOptions]), None).unwrap();
        assert!(s.app_may_override(FrameOptions));
        assert!(!s.app_may_override(Csp));
        let p = s.plan(true, &always);
        assert!(p.iter().all(|(n, _)| *n != "x-frame-options"));
        assert!(p.contains(&("content-security-policy", Csp.default_value())));
        // An empty list: the gateway always wins.
        let s = HeaderSet::configure(&[], Some(&[]), None).unwrap();
        assert_eq!(s.plan(true, &always).len(), 7);
    }

    #[test]
    fn hsts_only_over_https() {
        let d = HeaderSet::defaults();
        assert!(d
            .plan(true, &never)
            .iter()
            .any(|(n, _)| *n == "strict-transport-security"));
        assert!(!d
            .plan(false, &never)
            .iter()
            .any(|(n, _)| *n == "strict-transport-security"));
        // Even when the app may override it and did not send it.
        let s = HeaderSet::configure(&[], Some(&[Hsts]), None).unwrap();
        assert!(!s
            .plan(false, &never)
            .iter()
            .any(|(n, _)| *n == "strict-transport-security"));
    }

    #[test]
    fn bad_values_refused() {
        for bad in [
            "DENY\r\nSet-Cookie: x",
            "DENY\nSet-Cookie: x",
            "DENY\rX",
            "DENY\0",
            "a\x0bb",
            "a\x7fb",
            "a\x1bb",
            "d\u{e9}ny",
            "DENY\u{2028}x",
            "\u{feff}DENY",
        ] {
            assert_eq!(
                HeaderSet::configure(&v(&[(FrameOptions, bad)]), None, None),
                Err(HeaderError::InvalidValue {
                    key: "frame_options"
                }),
                "{bad:?}"
            );
        }
        for blank in [" ", "\t", " \t "] {
            assert_eq!(
                HeaderSet::configure(&v(&[(Coop, blank)]), None, None),
                Err(HeaderError::BlankValue { key: "coop" })
            );
        }
        // Tabs and spaces inside are fine.
        let s = HeaderSet::configure(&v(&[(Csp, "a\tb c")]), None, None).unwrap();
        assert_eq!(s.value(Csp), Some("a\tb c"));
        let msg = HeaderError::InvalidValue { key: "csp" }.to_string();
        assert!(msg.contains("csp"), "{msg}");
    }

    #[test]
    fn remove_names_validated_and_lowercased() {
        let s = HeaderSet::configure(
            &[],
            None,
            Some(vec![
                "Server".into(),
                "X-POWERED-BY".into(),
                "server".into(),
                "X-AspNet-Version".into(),
            ]),
        )
        .unwrap();
        assert_eq!(s.remove(), ["server", "x-powered-by", "x-aspnet-version"]);
        for bad in [
            "",
            "X Powered",
            "Server:",
            "Server\r\nX: y",
            "Ser\0ver",
            "caf\u{e9}",
            " server",
            "a/b",
        ] {
            assert_eq!(
                HeaderSet::configure(&[], None, Some(vec![bad.to_owned()])),
                Err(HeaderError::InvalidName(bad.to_owned())),
                "{bad:?}"
            );
        }
        for framing in ["Content-Length", "transfer-encoding"] {
            assert_eq!(
                HeaderSet::configure(&[], None, Some(vec![framing.to_owned()])),
                Err(HeaderError::ProtectedName(framing.to_ascii_lowercase()))
            );
        }
        // An empty list removes nothing.
        let s = HeaderSet::configure(&[], None, Some(vec![])).unwrap();
        assert!(s.remove().is_empty());
    }

    #[test]
    fn set_and_removed_refused() {
        assert_eq!(
            HeaderSet::configure(&[], None, Some(vec!["X-Frame-Options".into()])),
            Err(HeaderError::SetAndRemoved {
                key: "frame_options",
                name: "x-frame-options"
            })
        );
        // Fine once the header is not set.
        let s = HeaderSet::configure(
            &v(&[(FrameOptions, "")]),
            None,
            Some(vec!["X-Frame-Options".into()]),
        )
        .unwrap();
        assert!(s
            .plan(true, &never)
            .iter()
            .all(|(n, _)| *n != "x-frame-options"));
        // A route cannot set it back either.
        assert_eq!(
            s.with_route_overrides(&v(&[(FrameOptions, "DENY")])),
            Err(HeaderError::SetAndRemoved {
                key: "frame_options",
                name: "x-frame-options"
            })
        );
    }

    #[test]
    fn plan_never_sets_a_removed_name() {
        // Every reachable combination: the plan and remove() are disjoint.
        let sets = [
            HeaderSet::defaults(),
            HeaderSet::configure(
                &v(&[(Csp, ""), (Coop, "")]),
                Some(&SecurityHeader::ALL),
                Some(vec![
                    "Content-Security-Policy".into(),
                    "Cross-Origin-Opener-Policy".into(),
                    "Server".into(),
                ]),
            )
            .unwrap(),
        ];
        for s in &sets {
            for https in [true, false] {
                for sent in [never as fn(&str) -> bool, always] {
                    for (name, _) in s.plan(https, &sent) {
                        assert!(!s.remove().iter().any(|r| r == name), "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn last_duplicate_key_wins() {
        let s = HeaderSet::configure(
            &v(&[(FrameOptions, "DENY"), (FrameOptions, "SAMEORIGIN")]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.value(FrameOptions), Some("SAMEORIGIN"));
    }
}
