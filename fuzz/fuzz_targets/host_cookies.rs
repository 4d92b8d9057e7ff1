//! The request host, `Cookie` headers and method spellings
//! (policies/src/host.rs, cookies.rs, method.rs).
//!
//! Properties, for any input:
//! * `Host::parse` accepts only printable ASCII; its canonical form parses to
//!   the same host again; the name has no uppercase letter and no trailing dot;
//! * whatever it accepts, a WHATWG URL parser (the `url` crate, what browsers
//!   and Node implement) accepts as the authority of an `http://` URL, with
//!   the same host and port (inputs with punycode labels aside: `url`
//!   validates punycode, the gateway does not need to);
//! * after `cookies::strip`, no crumb of the result has a name starting with
//!   the prefix in any case, `values` finds no session cookie in it, and the
//!   crumbs left are the input's other crumbs, in order;
//! * an accepted method has no lowercase letter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::cookies::{self, Stripped};
use policies::host::Host;
use url::Url;

const PREFIX: &[u8] = b"__Host-portcullis";

fuzz_target!(|data: &[u8]| {
    host(data);
    cookie(data);
    if policies::method::is_accepted(data) {
        assert!(!data.iter().any(u8::is_ascii_lowercase), "{data:?}");
    }
});

fn host(data: &[u8]) {
    let Ok(h) = Host::parse(data) else {
        return;
    };
    assert!(data.iter().all(u8::is_ascii_graphic), "{data:?}");
    let canonical = h.to_string();
    assert_eq!(Host::parse(canonical.as_bytes()).as_ref(), Ok(&h), "{canonical}");
    assert!(!h.name().bytes().any(|b| b.is_ascii_uppercase()), "{canonical}");
    assert!(!h.name().ends_with('.'), "{canonical}");

    let text = std::str::from_utf8(data).expect("ASCII");
    if text.to_ascii_lowercase().contains("xn--") {
        return;
    }
    let url = Url::parse(&format!("http://{text}/"))
        .unwrap_or_else(|e| panic!("{text:?}: the gateway accepts, a URL parser does not: {e}"));
    let theirs = url.host_str().expect("http URLs have a host");
    assert_eq!(
        theirs.trim_end_matches('.'),
        h.name(),
        "{text:?}: host differs"
    );
    assert_eq!(
        url.port_or_known_default(),
        Some(h.port().unwrap_or(80)),
        "{text:?}: port differs"
    );
}

/// Whitespace as the widest cookie parser (Python's `str.strip`) skips it.
fn trim(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

fn cookie(data: &[u8]) {
    // Up to three headers, split on NUL.
    let headers: Vec<&[u8]> = data.split(|&b| b == 0).take(3).collect();
    let is_own = |crumb: &[u8]| {
        let name = crumb.split(|&b| b == b'=').next().unwrap_or_default();
        let name = trim(name);
        name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
    };
    let crumbs = |h: &[u8]| -> Vec<Vec<u8>> {
        h.split(|&b| b == b';')
            .map(|c| trim(c).to_vec())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let others: Vec<Vec<u8>> = headers
        .iter()
        .flat_map(|h| crumbs(h))
        .filter(|c| !is_own(c))
        .collect();
    match cookies::strip(|| headers.iter().copied(), PREFIX) {
        Stripped::Unchanged => {
            assert!(headers.iter().flat_map(|h| crumbs(h)).all(|c| !is_own(&c)));
        }
        Stripped::Empty => assert!(others.is_empty(), "{headers:?}"),
        Stripped::Rest(rest) => {
            let left = crumbs(&rest);
            assert_eq!(left, others, "{headers:?}");
            assert!(left.iter().all(|c| !is_own(c)));
            assert_eq!(cookies::values([rest.as_slice()], PREFIX).count(), 0);
        }
    }
}
