//! Request-target safety (policies/src/target.rs) and route matching
//! (policies/src/routes.rs).
//!
//! Input: `prefix \n method \n target` (missing parts get defaults), so the
//! fuzzer mutates a route prefix and a request target together.
//!
//! Properties, for every target the gateway accepts:
//! * the canonical path starts with one `/`, has no `//`, no `.`/`..`
//!   segment (also after percent-decoding), no encoded `/`, `\`, `;` or
//!   control byte, only `pchar` bytes and `%XX` with uppercase hex for a
//!   byte that may not appear raw, and decodes to UTF-8;
//! * it is a fixed point: normalising it again yields itself, and re-parsing
//!   `path?query` yields the same path and query;
//! * any other spelling of it (unreserved bytes percent-encoded in either
//!   case, `%XX` in lowercase, repeated slashes) normalises to it;
//! * a valid route prefix matches it exactly when it is `/`, equal, or a
//!   prefix ending at a `/` boundary, compared on decoded bytes (ASCII case
//!   folded when case-insensitive), and `RouteTable::find` agrees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::routes::{RouteMatcher, RouteTable};
use policies::target::{normalize_path, parse_target, RequestTarget};

// The byte classes are written out again rather than imported from
// policies::target on purpose: the properties are checked against an
// independent model, not against the code under test.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_pchar_no_semi(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Checks every invariant of a canonical path; returns its decoded bytes.
fn check_canonical(p: &str, from: &[u8]) -> Vec<u8> {
    let b = p.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{from:?} -> {p:?}");
    assert!(!p.contains("//"), "{from:?} -> {p:?}");
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            assert!(
                h.is_ascii_hexdigit() && !h.is_ascii_lowercase(),
                "{from:?} -> {p:?}"
            );
            assert!(
                l.is_ascii_hexdigit() && !l.is_ascii_lowercase(),
                "{from:?} -> {p:?}"
            );
            let v = hex(h).unwrap() << 4 | hex(l).unwrap();
            assert!(
                !is_pchar_no_semi(v),
                "a byte that may appear raw left encoded: {from:?} -> {p:?}"
            );
            assert!(
                !matches!(v, b'/' | b'\\' | b';' | 0..=0x1F | 0x7F),
                "dangerous byte left encoded: {from:?} -> {p:?}"
            );
            decoded.push(v);
            i += 3;
        } else {
            assert!(c == b'/' || is_pchar_no_semi(c), "{from:?} -> {p:?}");
            decoded.push(c);
            i += 1;
        }
    }
    for seg in decoded.split(|&c| c == b'/') {
        assert!(
            seg != b"." && seg != b"..",
            "dot segment: {from:?} -> {p:?}"
        );
    }
    assert!(std::str::from_utf8(&decoded).is_ok(), "{from:?} -> {p:?}");
    decoded
}

/// Another spelling of canonical `p`, chosen by `bits`.
fn respell(p: &str, bits: &[u8]) -> Vec<u8> {
    let mut bits = bits.iter().cycle();
    let mut next = || bits.next().copied().unwrap_or(0);
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len() * 3);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let r = next();
        if c == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            if r & 1 == 1 {
                out.extend([b'%', h.to_ascii_lowercase(), l.to_ascii_lowercase()]);
            } else {
                out.extend([b'%', h, l]);
            }
            i += 3;
            continue;
        }
        if c == b'/' {
            out.extend(std::iter::repeat(b'/').take(1 + usize::from(r % 3)));
        } else if is_unreserved(c) && r & 1 == 1 {
            let s = if r & 2 == 2 {
                format!("%{c:02x}")
            } else {
                format!("%{c:02X}")
            };
            out.extend(s.bytes());
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// Model of route matching: a prefix on segment boundaries, compared on the
/// bytes the canonical forms stand for (`%3A` and `:` alike, as upstreams
/// decode them).
fn prefix_matches(prefix: &str, path: &str, ci: bool) -> bool {
    if prefix == "/" {
        return true;
    }
    let (pb, qb) = (decode(prefix), decode(path));
    if qb.len() < pb.len() {
        return false;
    }
    let head = &qb[..pb.len()];
    let same = if ci {
        head.eq_ignore_ascii_case(&pb)
    } else {
        head == pb.as_slice()
    };
    same && (qb.len() == pb.len() || qb[pb.len()] == b'/')
}

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (prefix, method, raw) = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(m), Some(t)) => (p, m, t),
        (Some(p), Some(t), None) => (p, &b"GET"[..], t),
        _ => (&b"/"[..], &b"GET"[..], data),
    };

    let Ok(RequestTarget::Path {
        path,
        query,
        authority,
    }) = parse_target(raw)
    else {
        return;
    };
    let p = path.as_str();
    check_canonical(p, raw);

    // Fixed point, alone and with the query re-attached.
    assert_eq!(normalize_path(p.as_bytes()).as_ref(), Ok(&path), "{raw:?}");
    let mut again = p.to_owned();
    if let Some(q) = query {
        again.push('?');
        again.push_str(q);
    }
    match parse_target(again.as_bytes()) {
        Ok(RequestTarget::Path {
            path: p2,
            query: q2,
            authority: None,
        }) => {
            assert_eq!(p2, path, "{raw:?}");
            assert_eq!(q2, query, "{raw:?}");
        }
        other => panic!("re-parse of {again:?} from {raw:?}: {other:?}"),
    }
    if let Some(a) = authority {
        assert!(
            !a.is_empty() && !a.contains('@') && !a.contains('/'),
            "{raw:?}"
        );
    }

    // Every other spelling of the same resource lands on the same path.
    let variant = respell(p, raw);
    assert_eq!(
        normalize_path(&variant).as_ref(),
        Ok(&path),
        "{raw:?}: variant {:?}",
        String::from_utf8_lossy(&variant)
    );

    // Route matching on the canonical path.
    let Ok(prefix) = std::str::from_utf8(prefix) else {
        return;
    };
    let method = String::from_utf8_lossy(method).into_owned();
    let route = match RouteMatcher::new(None, prefix, Some(vec![method])) {
        Ok(route) => route,
        Err(_) => match RouteMatcher::new(None, prefix, None) {
            Ok(route) => route,
            Err(_) => return,
        },
    };
    let np = route.prefix();
    assert!(np == "/" || !np.ends_with('/'), "{prefix:?} -> {np:?}");
    assert_eq!(
        normalize_path(np.as_bytes()).map(|n| n.into_string()),
        Ok(np.to_owned()),
        "{prefix:?}"
    );
    let m = route
        .methods()
        .and_then(|m| m.first())
        .cloned()
        .unwrap_or_else(|| String::from("GET"));
    for ci in [false, true] {
        let want = prefix_matches(np, p, ci);
        assert_eq!(
            route.matches(None, p, &m, ci),
            want,
            "{prefix:?} {p:?} ci={ci}"
        );
        let table = RouteTable::new(vec![route.clone()], ci);
        assert_eq!(table.find(None, p, &m).is_some(), want);
        // The same resource spelled differently is routed the same way.
        if let Ok(vp) = normalize_path(&variant) {
            assert_eq!(table.find(None, vp.as_str(), &m).is_some(), want);
        }
        if !ci && want {
            assert!(prefix_matches(np, p, true));
        }
    }
});
