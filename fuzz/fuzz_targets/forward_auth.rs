//! The original request of a forward-auth request
//! (policies/src/forward_auth.rs).
//!
//! Input: header lines `name:value` separated by `\n` (names lowercased as
//! the gateway sees them).
//!
//! Properties:
//! * never panics;
//! * an answer's method, host and target are byte-for-byte one header's
//!   value (or a part of `X-Original-URL`): nothing is made up;
//! * any of the six headers given twice is an error;
//! * with `X-Original-URL`, the answer re-assembles into that URL;
//! * without both families' method/target headers, nothing is answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::forward_auth::{original, ForwardError};

const NAMES: [&str; 6] = [
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-original-method",
    "x-original-url",
];

fuzz_target!(|data: &[u8]| {
    let lower = data.to_ascii_lowercase();
    let mut headers: Vec<(String, &[u8])> = Vec::new();
    for (line, raw) in lower.split(|&b| b == b'\n').zip(data.split(|&b| b == b'\n')) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        headers.push((name.to_string(), &raw[colon + 1..]));
    }
    let got = original(headers.iter().map(|(n, v)| (n.as_str(), *v)));
    let count = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    if NAMES.iter().any(|n| count(n) > 1) {
        assert!(matches!(got, Err(ForwardError::Duplicate(_))), "{got:?}");
        return;
    }
    let Ok(o) = got else {
        return;
    };
    match value("x-original-url") {
        Some(url) => {
            assert_eq!(value("x-original-method"), Some(o.method));
            let scheme: &[u8] = if o.https { b"https" } else { b"http" };
            let mut rest = b"://".to_vec();
            rest.extend_from_slice(o.host);
            rest.extend_from_slice(o.target);
            assert!(url.ends_with(&rest));
            assert!(url[..url.len() - rest.len()].eq_ignore_ascii_case(scheme));
            assert!(o.target.starts_with(b"/"));
        }
        None => {
            assert_eq!(value("x-forwarded-method"), Some(o.method));
            assert_eq!(value("x-forwarded-host"), Some(o.host));
            assert_eq!(value("x-forwarded-uri"), Some(o.target));
        }
    }
});
