//! The login form's `next` parameter: where to send the browser afterwards.
//!
//! An open redirect on the login page is a phishing gift (a link to the real
//! login page that lands on the attacker's site), so `next` is only ever a
//! local path. Browsers are generous in what they read as "another origin":
//! `//host`, `/\host` and `\/host` (backslash read as slash), tabs and
//! newlines stripped from the middle of `/\t/host`, schemes in any case,
//! leading spaces. Rather than chase those spellings, a value must be plainly
//! local:
//!
//! * it starts with one `/` followed by something other than `/` or `\`;
//! * it contains no `\`, no control character, no whitespace (Unicode
//!   included) and nothing outside ASCII (legitimate values are already
//!   percent-encoded);
//! * it passes [`crate::target::parse_target`] as an origin-form target, so
//!   encoded slashes, dot segments, fragments and bad encodings go too;
//!
//! and what comes back is the *normalised* path (no `//` can survive) plus
//! the query. Anything else yields `/`.

use crate::target::{parse_target, RequestTarget};

/// Longest `next` honoured, in bytes; longer ones go to `/`.
pub const MAX_NEXT_LEN: usize = 2048;

/// A safe local redirect target for the already-decoded `next` value: the
/// normalised path plus `?query` when there is one, otherwise `/`.
pub fn safe_next(next: Option<&str>) -> String {
    next.and_then(local_target)
        .unwrap_or_else(|| String::from("/"))
}

fn local_target(next: &str) -> Option<String> {
    let bytes = next.as_bytes();
    let plain = bytes.len() <= MAX_NEXT_LEN
        && bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\');
    if !plain {
        return None;
    }
    let RequestTarget::Path {
        path,
        query,
        authority: None,
    } = parse_target(bytes).ok()?
    else {
        return None;
    };
    let mut out = path.into_string();
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What no browser resolves to another origin.
    fn assert_local(input: Option<&str>, out: &str) {
        let b = out.as_bytes();
        assert_eq!(b.first(), Some(&b'/'), "{input:?} -> {out:?}");
        assert!(
            !matches!(b.get(1), Some(b'/' | b'\\')),
            "{input:?} -> {out:?}"
        );
        let before_slash = out.split('/').next().unwrap();
        assert!(!before_slash.contains(':'), "{input:?} -> {out:?}");
        assert!(
            out.chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\'),
            "{input:?} -> {out:?}"
        );
        assert!(!out.contains('#'), "{input:?} -> {out:?}");
    }

    #[test]
    fn hostile_values_go_home() {
        let hostile = [
            "//evil.com",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "\\\\evil.com",
            "/\\/evil.com",
            "https://evil.com",
            "HTTPS://evil.com",
            "http:evil.com",
            "https:/evil.com",
            "https:\\\\evil.com",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "/%2F%2Fevil.com",
            "/%2f%2fevil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "/\r/evil.com",
            "/\0/evil.com",
            "/\x7f/evil.com",
            "/\u{85}/evil.com",
            " /evil",
            "\t/evil",
            "/evil ",
            "evil.com",
            "//evil.com@good",
            "/.//evil.com",
            "/..//evil.com",
            "/./evil",
            "/../evil",
            "/%2e%2e//evil.com",
            "/%2E/evil",
            "//%65vil.com",
            "/\u{3000}/evil",
            "/\u{2028}",
            "/\u{2029}/evil",
            "/\u{a0}/evil",
            "/\u{feff}/evil",
            "/\u{ff0f}evil.com", // fullwidth solidus
            "/caf\u{e9}",
            "@evil.com",
            "?next=//evil",
            "#//evil",
            "/#//evil",
            "/a#b",
            "/a;b",
            "/%ZZ",
            "/%C0%AE%C0%AE/evil",
            "/a?x=1 2",
            "",
            "/",
            ".",
            "..",
            "*",
        ];
        assert!(hostile.len() >= 30);
        for input in hostile {
            let out = safe_next(Some(input));
            assert_local(Some(input), &out);
            assert_eq!(out, "/", "{input:?}");
        }
        assert_eq!(safe_next(None), "/");
        let long = format!("/{}", "a".repeat(MAX_NEXT_LEN));
        assert_eq!(safe_next(Some(&long)), "/");
    }

    #[test]
    fn legitimate_values_kept() {
        for (input, expected) in [
            ("/dashboard", "/dashboard"),
            ("/a/b?x=1&y=2", "/a/b?x=1&y=2"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/dir/", "/dir/"),
            ("/a//b", "/a/b"),
            ("/%61dmin", "/admin"),
            ("/search?q=//evil.com", "/search?q=//evil.com"),
            ("/search?q=a:b", "/search?q=a:b"),
            ("/x?", "/x"),
            ("/a:b", "/a:b"),
            ("/@evil.com", "/@evil.com"),
            ("/evil.com", "/evil.com"),
            ("/.well-known/x", "/.well-known/x"),
        ] {
            let out = safe_next(Some(input));
            assert_local(Some(input), &out);
            assert_eq!(out, expected, "{input:?}");
        }
        let longest = format!("/{}", "a".repeat(MAX_NEXT_LEN - 1));
        assert_eq!(safe_next(Some(&longest)), longest);
    }
}
