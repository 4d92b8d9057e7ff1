//! Header-name decisions for the upstream request (the upstream request, docs/behaviour.md).
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

/// Client-address headers of CDNs, load balancers and other proxies. Apps and
/// their libraries read them as "the client's IP" (Flask-Limiter, Django
/// IP helpers, logging middlewares), so a client's own copy would pick the
/// address the app limits or logs.
pub const CLIENT_IP_HEADERS: [&str; 6] = [
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
];

/// Headers other products use to tell an app who the user is, or which URL
/// was really asked for (IIS/Symfony `X-Original-URL` and `X-Rewrite-URL`
/// override the path an app routes on, past the gateway's path rules).
pub const FOREIGN_IDENTITY_HEADERS: [&str; 7] = [
    "x-remote-user",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-original-url",
    "x-rewrite-url",
];

/// The entry of [`CLIENT_IP_HEADERS`] or [`FOREIGN_IDENTITY_HEADERS`] that
/// `name` spells, under the [`header_name_eq`] comparison. The gateway
/// removes these from every request unless the operator keeps one by name.
pub fn spoofable_header(name: &str) -> Option<&'static str> {
    CLIENT_IP_HEADERS
        .iter()
        .chain(FOREIGN_IDENTITY_HEADERS.iter())
        .copied()
        .find(|h| header_name_eq(name, h))
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

/// Whether an upstream's `101 Switching Protocols` answers the request: the
/// client asked to upgrade, the response's `Upgrade` names exactly one
/// protocol the client offered (compared case-insensitively, version
/// included), and its `Connection` carries the `upgrade` option. Anything else
/// would switch the client's connection to a raw tunnel it never asked for.
pub fn is_upgrade_answer<'a>(
    request_upgrade: impl Iterator<Item = &'a [u8]>,
    response_upgrade: impl Iterator<Item = &'a [u8]>,
    response_connection: impl Iterator<Item = &'a [u8]>,
) -> bool {
    fn tokens<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
        values
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| {
                let start = t.iter().position(|&b| b != b' ' && b != b'\t');
                let end = t.iter().rposition(|&b| b != b' ' && b != b'\t');
                match (start, end) {
                    (Some(s), Some(e)) => t.get(s..=e).unwrap_or_default(),
                    _ => &[],
                }
            })
            .filter(|t| !t.is_empty())
            .collect()
    }
    let offered = tokens(request_upgrade);
    let chosen = tokens(response_upgrade);
    let [chosen] = chosen.as_slice() else {
        return false;
    };
    offered.iter().any(|o| o.eq_ignore_ascii_case(chosen))
        && tokens(response_connection)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
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
    fn spoofable_headers_in_every_spelling() {
        for (name, want) in [
            ("True-Client-IP", "true-client-ip"),
            ("true_client_ip", "true-client-ip"),
            ("X-Client-IP", "x-client-ip"),
            ("Client-Ip", "client-ip"),
            ("CF-Connecting-IP", "cf-connecting-ip"),
            ("cf_connecting_ip", "cf-connecting-ip"),
            ("Fastly-Client-IP", "fastly-client-ip"),
            ("X-Cluster-Client-IP", "x-cluster-client-ip"),
            ("X-Remote-User", "x-remote-user"),
            ("REMOTE_USER", "remote-user"),
            ("X-Auth-Request-User", "x-auth-request-user"),
            ("X-Auth-Request-Email", "x-auth-request-email"),
            ("x_auth_request_groups", "x-auth-request-groups"),
            ("X-Original-URL", "x-original-url"),
            ("x_rewrite_url", "x-rewrite-url"),
        ] {
            assert_eq!(spoofable_header(name), Some(want), "{name}");
        }
        for name in [
            "X-Client-IPs",
            "Client",
            "X-Remote-Users",
            "X-Auth-Request",
            "X-Original-URI",
            "Host",
            "",
        ] {
            assert_eq!(spoofable_header(name), None, "{name}");
        }
    }

    #[test]
    fn upgrade_answers() {
        let yes = |req: &[&[u8]], up: &[&[u8]], conn: &[&[u8]]| {
            is_upgrade_answer(
                req.iter().copied(),
                up.iter().copied(),
                conn.iter().copied(),
            )
        };
        assert!(yes(&[b"websocket"], &[b"websocket"], &[b"Upgrade"]));
        assert!(yes(
            &[b"WebSocket"],
            &[b"websocket"],
            &[b"keep-alive, upgrade"]
        ));
        assert!(yes(&[b"h2c, websocket"], &[b" websocket "], &[b"upgrade"]));
        // No upgrade asked for, none named, not the one asked for, no
        // Connection option, two protocols at once.
        assert!(!yes(&[], &[b"websocket"], &[b"upgrade"]));
        assert!(!yes(&[b"websocket"], &[], &[b"upgrade"]));
        assert!(!yes(&[b"websocket"], &[b"h2c"], &[b"upgrade"]));
        assert!(!yes(&[b"websocket"], &[b"websocket"], &[]));
        assert!(!yes(&[b"websocket"], &[b"websocket"], &[b"keep-alive"]));
        assert!(!yes(
            &[b"websocket, h2c"],
            &[b"websocket, h2c"],
            &[b"upgrade"]
        ));
        assert!(!yes(&[b"websocket"], &[b"websocket/13x"], &[b"upgrade"]));
        assert!(!yes(&[b""], &[b""], &[b"upgrade"]));
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
