//! The login `next` parameter (policies/src/redirect.rs).
//!
//! Properties, for any input:
//! * the result starts with exactly one `/` (never `//` or `/\`), is
//!   printable ASCII without `\`, `#`, whitespace or controls;
//! * a WHATWG URL parser (the `url` crate, what browsers implement) resolves
//!   it against `https://gateway.example/` to the same origin;
//! * its path is canonical (`normalize_path` is the identity on it) and
//!   applying `safe_next` again changes nothing;
//! * whenever the input was not turned into `/`, the result is the input's
//!   normalised path plus its non-empty query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::redirect::{safe_next, MAX_NEXT_LEN};
use policies::target::{normalize_path, parse_target, RequestTarget};
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let out = safe_next(Some(input));
    let b = out.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{input:?} -> {out:?}");
    assert!(
        !matches!(b.get(1), Some(b'/' | b'\\')),
        "{input:?} -> {out:?}"
    );
    assert!(
        b.iter()
            .all(|&c| c.is_ascii_graphic() && c != b'\\' && c != b'#'),
        "{input:?} -> {out:?}"
    );
    assert!(out.len() <= MAX_NEXT_LEN, "{input:?} -> {out:?}");

    let base = Url::parse("https://gateway.example/login").unwrap();
    let joined = base.join(&out).expect("a local path always joins");
    assert_eq!(
        joined.origin(),
        base.origin(),
        "{input:?} -> {out:?} -> {joined}"
    );
    assert!(joined.username().is_empty() && joined.password().is_none());

    let (path, query) = match out.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (out.as_str(), None),
    };
    assert_eq!(
        normalize_path(path.as_bytes()).map(|p| p.into_string()),
        Ok(path.to_owned()),
        "{input:?} -> {out:?}"
    );
    assert!(query.is_none_or(|q| !q.is_empty()), "{input:?} -> {out:?}");
    assert_eq!(safe_next(Some(&out)), out, "not idempotent: {input:?}");

    if out != "/" {
        match parse_target(input.as_bytes()) {
            Ok(RequestTarget::Path {
                path: p,
                query: q,
                authority: None,
            }) => {
                let mut want = p.into_string();
                if let Some(q) = q.filter(|q| !q.is_empty()) {
                    want.push('?');
                    want.push_str(q);
                }
                assert_eq!(out, want, "{input:?}");
            }
            other => panic!("{input:?} -> {out:?} but parse_target says {other:?}"),
        }
    }
});
