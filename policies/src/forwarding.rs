//! Header-name decisions for the upstream request (SPEC pipeline step 7).
//!
//! Many app servers (CGI/WSGI environ, Rack, PHP, nginx with
//! `underscores_in_headers`) read `X_Forwarded_User` and `X-Forwarded-User`
//! as the same variable, so a client could smuggle an identity or client-IP
//! header past a filter that compares names exactly. Every name comparison
//! here is therefore ASCII case-insensitive with `_` read as `-`.
//!
//! Forwarding headers are: `Forwarded`, `X-Real-IP`, and `X-Forwarded` alone
//! or followed by `-` and any suffix (`X-Forwarded-For`, `-Host`, `-Proto`,
//! `-Port`, `-Prefix`, `-Ssl`, ...). Near misses such as `X-Forwardedfor`,
//! `X-Forward-For` or `Forwarded-For` are not matched: no common framework
//! reads them as forwarding information, and the rule must stay predictable.

/// True when `name` equals `target` compared case-insensitively with `_` read
/// as `-`.
pub fn header_name_eq(name: &str, target: &str) -> bool {
    name.len() == target.len()
        && name
            .bytes()
            .zip(target.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// True for `X-Forwarded-*` (any suffix, and bare `X-Forwarded`),
/// `X-Real-IP` and `Forwarded`, under the [`header_name_eq`] comparison.
pub fn is_forwarding_header(name: &str) -> bool {
    const PREFIX: &str = "x-forwarded";
    if header_name_eq(name, "forwarded") || header_name_eq(name, "x-real-ip") {
        return true;
    }
    match name.split_at_checked(PREFIX.len()) {
        Some((head, tail)) => {
            header_name_eq(head, PREFIX) && tail.bytes().next().is_none_or(|b| fold(b) == b'-')
        }
        None => false,
    }
}

/// Whether an `X-Request-Id` from a trusted peer may be kept: 1..=128 bytes
/// of `A-Za-z0-9._-`, so it is safe in logs and response headers.
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Tokens of a `Connection` header value: comma separated, trimmed,
/// lowercased, empty ones dropped. The gateway uses them to drop the named
/// hop-by-hop headers from the client request, but never one it sets itself.
pub fn connection_tokens(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_eq_folds_case_and_underscore() {
        for (name, target) in [
            ("X-Forwarded-User", "x-forwarded-user"),
            ("X_Forwarded_User", "X-Forwarded-User"),
            ("x_forwarded-user", "X-FORWARDED-USER"),
            ("X-FORWARDED-ROLES", "x-forwarded-roles"),
            ("x-forwarded-user", "X_FORWARDED_USER"),
        ] {
            assert!(header_name_eq(name, target), "{name} vs {target}");
        }
        for (name, target) in [
            ("X-Forwarded-User2", "X-Forwarded-User"),
            ("X-Forwarded-Use", "X-Forwarded-User"),
            ("X-Forwarded-User ", "X-Forwarded-User"),
            ("XForwarded-User", "X-Forwarded-User"),
            ("X.Forwarded.User", "X-Forwarded-User"),
            ("", "X-Forwarded-User"),
            // Non-ASCII lookalikes (Kelvin sign) do not fold to ASCII.
            ("\u{212a}", "k"),
        ] {
            assert!(!header_name_eq(name, target), "{name} vs {target}");
        }
        assert!(header_name_eq("", ""));
    }

    #[test]
    fn forwarding_headers_match() {
        for name in [
            "X-Forwarded-For",
            "X_Forwarded_For",
            "x-forwarded-host",
            "X-FORWARDED-PROTO",
            "x-forwarded-port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Ssl",
            "x_forwarded_anything_at_all",
            "X-Forwarded",
            "x_forwarded",
            "X-Forwarded-",
            "X-Real-IP",
            "x-real-ip",
            "x_real_ip",
            "X_REAL_IP",
            "Forwarded",
            "FORWARDED",
            "forwarded",
        ] {
            assert!(is_forwarding_header(name), "{name}");
        }
    }

    #[test]
    fn near_misses_do_not_match() {
        for name in [
            "X-Forwardedfor",
            "X-ForwardedFor",
            "X-Forward-For",
            "X-Forwarde",
            "Forwarded-For",
            "Forwarded_For",
            "X-Forwarded.For",
            "X-Real-IP2",
            "X-Real-Ip-Address",
            "X-RealIP",
            "Real-IP",
            "XForwarded-For",
            "Y-Forwarded-For",
            "",
            "x",
            "Host",
            "X-Request-Id",
        ] {
            assert!(!is_forwarding_header(name), "{name}");
        }
    }

    #[test]
    fn non_ascii_names_never_panic() {
        // Multi-byte characters across the prefix boundary must not panic.
        for name in [
            "X-Forwarde\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "X-Forwarded\u{e9}",
        ] {
            assert!(!is_forwarding_header(name), "{name}");
        }
    }

    #[test]
    fn request_id_validation() {
        assert!(is_valid_request_id(b"a"));
        assert!(is_valid_request_id(b"0b9f5c1e-7a3d-4c2e-9f11-abcdef012345"));
        assert!(is_valid_request_id(b"trace.id_01-X"));
        assert!(is_valid_request_id(&[b'a'; 128]));
        assert!(!is_valid_request_id(&[b'a'; 129]));
        assert!(!is_valid_request_id(b""));
        for bad in [
            &b"a b"[..],
            b"a\r\nSet-Cookie: x",
            b"a/b",
            b"a:b",
            b"a,b",
            b"a;b",
            b"<script>",
            b"\xc3\xa9",
            b"a\0",
            b"%41",
        ] {
            assert!(!is_valid_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn connection_tokens_split_trim_lowercase() {
        let t: Vec<String> = connection_tokens(" Keep-Alive , X-Foo,,\tUPGRADE\t, ").collect();
        assert_eq!(t, ["keep-alive", "x-foo", "upgrade"]);
        assert_eq!(connection_tokens("").count(), 0);
        assert_eq!(connection_tokens(" , ,").count(), 0);
        let t: Vec<String> = connection_tokens("close").collect();
        assert_eq!(t, ["close"]);
        // Tokens naming gateway headers are returned as-is; the gateway must
        // compare them with header_name_eq and keep its own headers.
        let t: Vec<String> = connection_tokens("X_Forwarded_For, X-Real-IP").collect();
        assert_eq!(t, ["x_forwarded_for", "x-real-ip"]);
        assert!(header_name_eq(&t[0], "X-Forwarded-For"));
    }
}
