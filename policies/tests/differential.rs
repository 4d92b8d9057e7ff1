//! Differential property test: for any request target the gateway forwards,
//! the upstream sees the path the route was matched on.
//!
//! This runs the gateway's exact composition (gateway/src/proxy.rs,
//! stage `target` and routing, `upstream_request_filter`):
//!
//! raw HTTP/1 head → [`head::request_target`] → [`parse_target`] →
//! `RouteTable::find(host, path, method)` → [`forwarded_target`] →
//! the upstream request line,
//!
//! and then reads that forwarded target the way upstreams do:
//! * strictly: the gateway's own parser must give back the same path and query;
//! * generically (RFC 3986 §5.2.4 dot-segment removal, slash merging,
//!   percent-decoding, as Flask/werkzeug, Express, Rails or PHP do): nothing may
//!   change, no separator may appear from decoding, and routing on the
//!   decoded view must pick the same route as the gateway did.
//!
//! Targets are generated over percent-encodings (upper and lower hex,
//! encoded `/`, `.`, `%`, sub-delims), letter case, repeated slashes, dot
//! segments (literal and encoded), raw and encoded Unicode, absolute form and
//! query strings.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policies::head;
use policies::routes::{RouteMatcher, RouteTable};
use policies::target::{forwarded_target, normalize_path, parse_target, RequestTarget};
use proptest::prelude::*;

/// Route prefixes, canonical and not; some contain sub-delims, `:` and `@`.
const PREFIXES: &[&str] = &[
    "/admin",
    "/api/v1",
    "/a:b",
    "/x@y",
    "/files/%C3%A9t%C3%A9",
    "/A/B",
    "/~user",
    "/s!p$e&c'i(a)l*+,=",
    "/%7euser",
    "/.well-known",
];

/// One piece of a path segment.
fn piece() -> impl Strategy<Value = String> {
    let hex_case = any::<bool>();
    prop_oneof![
        // plain text, letters in both cases
        "[a-zA-Z0-9]{1,4}",
        Just("admin".to_string()),
        Just("ADMIN".to_string()),
        Just("api".to_string()),
        Just("v1".to_string()),
        Just("user".to_string()),
        // raw sub-delims and pchar specials, some refused (`;`, `\`, space)
        prop::sample::select(vec![
            "-", ".", "_", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", "=", ":", "@", ";",
            "\\", " ", "%", "..", "."
        ])
        .prop_map(str::to_string),
        // any byte percent-encoded, upper or lower hex
        (any::<u8>(), hex_case).prop_map(|(b, up)| pct(b, up)),
        // the interesting ones: `/`, `.`, `%`, `\`, `;`, letters, sub-delims
        (
            prop::sample::select(vec![
                b'/', b'.', b'%', b'\\', b';', b'a', b'A', b'd', b'~', b'!', b':', b'@', b'?',
                b'#', b'+', b'=', b'&', b' '
            ]),
            hex_case
        )
            .prop_map(|(b, up)| pct(b, up)),
        // Unicode: raw (refused) or percent-encoded UTF-8 (kept encoded)
        any::<char>().prop_map(|c| c.to_string()),
        (any::<char>(), hex_case).prop_map(|(c, up)| {
            let mut buf = [0u8; 4];
            c.encode_utf8(&mut buf)
                .bytes()
                .map(|b| pct(b, up))
                .collect()
        }),
        // overlong and truncated UTF-8
        Just("%C0%AE".to_string()),
        Just("%E2%82".to_string()),
    ]
}

fn pct(b: u8, upper: bool) -> String {
    if upper {
        format!("%{b:02X}")
    } else {
        format!("%{b:02x}")
    }
}

/// A whole segment, dot segments included.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(piece(), 1..4).prop_map(|v| v.concat()),
        1 => prop::sample::select(vec![".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2E."])
            .prop_map(str::to_string),
        2 => (prop::sample::select(PREFIXES.to_vec()), any::<u64>()).prop_map(|(p, bits)| respell(p, bits)),
    ]
}

/// A route prefix (without its leading `/`) with some characters, chosen by
/// `bits`, percent-encoded in upper or lower hex and some letters' case flipped.
fn respell(prefix: &str, bits: u64) -> String {
    prefix
        .trim_start_matches('/')
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let r = bits.rotate_right((i as u32 * 3) % 64) & 7;
            match r {
                1 if b != b'%' && b != b'/' => pct(b, true),
                2 if b != b'%' && b != b'/' => pct(b, false),
                3 if b.is_ascii_alphabetic() => char::from(b ^ 0x20).to_string(),
                _ => char::from(b).to_string(),
            }
        })
        .collect()
}

/// A request-target: optional absolute-form, segments joined by 1–3 slashes,
/// optional trailing slash, optional query.
fn request_target() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(vec![
            "http://gw.example",
            "HTTPS://gw.example:8443",
        ])),
        prop::collection::vec((1usize..4, segment()), 0..6),
        any::<bool>(),
        prop::option::of("[a-zA-Z0-9=&/?%.:@!$'()*+,;~-]{0,12}"),
    )
        .prop_map(|(abs, segs, trailing, query)| {
            let mut t = abs.unwrap_or_default().to_string();
            for (slashes, seg) in segs {
                t.push_str(&"/".repeat(slashes));
                t.push_str(&seg);
            }
            if trailing || t.is_empty() || !t.contains('/') {
                t.push('/');
            }
            if let Some(q) = query {
                t.push('?');
                t.push_str(&q);
            }
            t
        })
}

fn table(case_insensitive: bool) -> RouteTable {
    let matchers = PREFIXES
        .iter()
        .map(|p| RouteMatcher::new(None, p, None).expect("valid prefix"))
        .collect();
    RouteTable::new(matchers, case_insensitive)
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Percent-decodes once, as app frameworks do for the path.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// RFC 3986 §5.2.4 remove_dot_segments.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut out = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input = input[2..].to_string();
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") || input == "/.." {
            input = format!("/{}", &input[if input == "/.." { 3 } else { 4 }..]);
            if let Some(i) = out.rfind('/') {
                out.truncate(i);
            } else {
                out.clear();
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = input[end..].to_string();
        }
    }
    out
}

/// Which route an upstream that decodes the path would consider this
/// request to be for: prefix match on decoded bytes, segment boundary.
fn route_on_decoded(path: &[u8], case_insensitive: bool) -> Option<usize> {
    PREFIXES.iter().position(|p| {
        let canon = normalize_path(p.as_bytes()).expect("prefix");
        let mut prefix = decode(canon.as_str());
        if prefix.len() > 1 && prefix.ends_with(b"/") {
            prefix.pop();
        }
        if prefix == b"/" {
            return true;
        }
        if path.len() < prefix.len() {
            return false;
        }
        let head = &path[..prefix.len()];
        let same = if case_insensitive {
            head.eq_ignore_ascii_case(&prefix)
        } else {
            head == prefix.as_slice()
        };
        same && matches!(path.get(prefix.len()), None | Some(b'/'))
    })
}

/// The gateway's composition; `None` when the request is refused (400).
fn gateway(raw_target: &str) -> Option<(String, String, Option<String>)> {
    let head = format!("GET {raw_target} HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    // What the gateway judges is the target as split off the request line
    // (a raw space or line break in `raw_target` changes it, as on the wire).
    let wire = head::request_target(head.as_bytes())?;
    match parse_target(wire).ok()? {
        RequestTarget::Path { path, query, .. } => {
            let forwarded = forwarded_target(&path, query);
            Some((path.into_string(), forwarded, query.map(str::to_string)))
        }
        RequestTarget::Asterisk => None,
    }
}

fn check(raw: &str) -> Result<(), TestCaseError> {
    let Some((matched, forwarded, query)) = gateway(raw) else {
        return Ok(());
    };
    // The upstream's request line carries `forwarded` verbatim; it splits the
    // path at the first `?`.
    let (up_path, up_query) = match forwarded.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (forwarded.as_str(), None),
    };
    prop_assert_eq!(up_path, matched.as_str(), "target {:?}", raw);
    prop_assert_eq!(up_query, query.as_deref(), "target {:?}", raw);

    // Strict upstream: the same parser, same answer (a fixed point).
    match parse_target(forwarded.as_bytes()) {
        Ok(RequestTarget::Path {
            path,
            query: q,
            authority,
        }) => {
            prop_assert_eq!(path.as_str(), matched.as_str());
            prop_assert_eq!(q, query.as_deref());
            prop_assert_eq!(authority, None);
        }
        other => prop_assert!(false, "forwarded {:?} re-parses as {:?}", forwarded, other),
    }

    // Generic upstream: dot-segment removal and slash merging change nothing,
    // decoding creates no separator, and routes agree on the decoded view.
    prop_assert_eq!(remove_dot_segments(up_path), up_path, "target {:?}", raw);
    prop_assert!(!up_path.contains("//"));
    let decoded = decode(up_path);
    prop_assert_eq!(
        decoded.iter().filter(|&&b| b == b'/').count(),
        up_path.bytes().filter(|&b| b == b'/').count(),
        "decoding {:?} adds a separator",
        up_path
    );
    prop_assert!(!decoded.contains(&b'\\') && !decoded.contains(&b';') && !decoded.contains(&0));
    let decoded_str = std::str::from_utf8(&decoded);
    prop_assert!(
        decoded_str.is_ok(),
        "{:?} decodes to invalid UTF-8",
        up_path
    );
    prop_assert_eq!(
        remove_dot_segments(decoded_str.unwrap_or_default()),
        decoded_str.unwrap_or_default()
    );
    for ci in [false, true] {
        let gw = table(ci).find(Some("gw.example"), &matched, "GET");
        let up = route_on_decoded(&decoded, ci);
        prop_assert_eq!(
            gw, up,
            "target {:?}: gateway matched route {:?} on {:?}, the upstream sees {:?} (case-insensitive: {})",
            raw, gw.map(|i| PREFIXES[i]), matched, String::from_utf8_lossy(&decoded), ci
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn upstream_sees_the_matched_path(raw in request_target()) {
        check(&raw)?;
    }
}

/// Fixed regressions and spellings the generator may rarely produce.
#[test]
fn known_spellings() {
    for raw in [
        "/admin",
        "/%61dmin",
        "/%41DMIN/x",
        "//admin//x/",
        "/admin%2Fx",
        "/admin/%2e%2e/x",
        "/a:b/c",
        "/a%3Ab/c",
        "/a%3ab",
        "/x%40y",
        "/s%21p%24e%26c%27i%28a%29l%2A%2B%2C%3D",
        "/%7Euser",
        "/files/%c3%a9t%c3%a9/x",
        "http://gw.example//api//v1?x=%2F",
        "/api/v1?",
    ] {
        check(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
    }
}
