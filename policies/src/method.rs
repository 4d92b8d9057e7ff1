//! Request methods: which spellings are accepted, and method-override headers.
//!
//! Methods are case-sensitive tokens (RFC 9110 §9.1), but Werkzeug, Django
//! and Starlette upper-case whatever arrives and run the view of the result:
//! a route filtered to `POST` that let `post` fall through to a public route
//! was an unauthenticated POST. So any method with a lowercase ASCII letter
//! is refused (400, as nginx does), whichever protocol carries it; every
//! method the gateway routes is then the very method the app dispatches on.
//!
//! `X-HTTP-Method-Override` and its siblings make some frameworks (Express's
//! method-override, Laravel, Symfony with `http_method_override`) run another
//! method than the one the gateway routed. They are removed unless the route
//! opts in, and a route that opts in must match the overriding method too.

use crate::forwarding::header_name_eq;
use crate::token::is_tchar;

/// Headers some frameworks read as "the real method", compared with
/// [`header_name_eq`] (case-insensitive, `_` read as `-`).
pub const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether the gateway accepts `method`: a non-empty token without lowercase
/// ASCII letters (`GET`, `PROPFIND`, `M-SEARCH`; not `get` or `Post`).
pub fn is_accepted(method: &[u8]) -> bool {
    !method.is_empty()
        && method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase())
}

/// Whether a header name is one of [`OVERRIDE_HEADERS`].
pub fn is_override_header(name: &str) -> bool {
    OVERRIDE_HEADERS.iter().any(|h| header_name_eq(name, h))
}

/// Why method-override headers are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// An override names a method the gateway would refuse itself.
    #[error("method override names no acceptable method")]
    Invalid,
    /// Two override headers name different methods.
    #[error("method override headers disagree")]
    Conflict,
}

/// The method the override headers among `headers` (name, value) ask for:
/// `None` without one. Every override must be an acceptable method, and all
/// of them the same.
pub fn override_method<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<&'a str>, OverrideError> {
    let mut found: Option<&[u8]> = None;
    for (name, value) in headers {
        if !is_override_header(name) {
            continue;
        }
        if !is_accepted(value) {
            return Err(OverrideError::Invalid);
        }
        if found.is_some_and(|f| f != value) {
            return Err(OverrideError::Conflict);
        }
        found = Some(value);
    }
    // Accepted methods are tokens: ASCII, so this never fails.
    found
        .map(|v| std::str::from_utf8(v).map_err(|_| OverrideError::Invalid))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upper_case_tokens_are_accepted() {
        for m in [
            &b"GET"[..],
            b"HEAD",
            b"POST",
            b"DELETE",
            b"PROPFIND",
            b"M-SEARCH",
            b"BASELINE-CONTROL",
            b"X_1",
        ] {
            assert!(is_accepted(m), "{m:?}");
        }
        for m in [
            &b"post"[..],
            b"Post",
            b"pOST",
            b"delete",
            b"get",
            b"hEAD",
            b"",
            b"GET ",
            b"G\xc3\x89T",
            b"GE\0T",
            b"GE/T",
            // Turkish dotless i and Kelvin sign upper-case to ASCII in some
            // libraries; refused as non-tokens.
            "DEL\u{131}TE".as_bytes(),
            "\u{212a}".as_bytes(),
        ] {
            assert!(!is_accepted(m), "{m:?}");
        }
    }

    #[test]
    fn override_headers_in_every_spelling() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method-override",
            "X_HTTP_METHOD_OVERRIDE",
            "X-Http-Method",
            "x_http_method",
            "X-Method-Override",
            "x-method_override",
        ] {
            assert!(is_override_header(name), "{name}");
        }
        for name in [
            "X-HTTP-Methods",
            "X-Method",
            "Method",
            "X-HTTP-Method-Overrid",
        ] {
            assert!(!is_override_header(name), "{name}");
        }
    }

    #[test]
    fn override_method_needs_one_acceptable_method() {
        let m = |hs: &[(&'static str, &'static str)]| {
            override_method(hs.iter().map(|(n, v)| (*n, v.as_bytes())))
        };
        assert_eq!(m(&[("accept", "x")]), Ok(None));
        assert_eq!(m(&[("x-http-method-override", "PUT")]), Ok(Some("PUT")));
        // Every spelling counts; the same method twice is fine.
        assert_eq!(
            m(&[("X_HTTP_Method", "DELETE"), ("x-method-override", "DELETE")]),
            Ok(Some("DELETE"))
        );
        assert_eq!(
            m(&[("x-http-method", "PUT"), ("x-method-override", "DELETE")]),
            Err(OverrideError::Conflict)
        );
        for bad in ["put", "", "PU T", "P\u{e9}T"] {
            assert_eq!(
                m(&[("x-http-method-override", bad)]),
                Err(OverrideError::Invalid),
                "{bad:?}"
            );
        }
    }
}
