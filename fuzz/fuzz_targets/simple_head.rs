//! Which heads the gateway's lean path takes (policies/src/simple_head.rs).
//!
//! Properties, for any bytes:
//! * no panic;
//! * a head called simple is one by an independent reading of the same
//!   bytes (`policies::head`'s line splitter, not httparse): the buffer ends
//!   where the head does, the request line is `GET`/`HEAD`, an origin-form
//!   target of visible ASCII and `HTTP/1.1`, exactly one `Host` line, no
//!   line naming a body-framing, upgrade or hop-by-hop field, at most one
//!   `Connection` line, with `keep-alive` or `close`;
//! * every strict prefix of a simple head asks for more bytes (the loop
//!   never gives up early on a head that would have been simple).
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::head::{header_values, request_target};
use policies::simple_head::{classify, Head};

const NEVER: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

fuzz_target!(|data: &[u8]| {
    if classify(data) != Head::Simple {
        return;
    }
    assert!(data.ends_with(b"\n\n") || data.ends_with(b"\n\r\n"), "{data:?}");
    let line_end = data.iter().position(|&b| b == b'\n').unwrap();
    let line = data[..line_end].strip_suffix(b"\r").unwrap_or(&data[..line_end]);
    assert!(line.starts_with(b"GET ") || line.starts_with(b"HEAD "), "{line:?}");
    assert!(line.ends_with(b" HTTP/1.1"), "{line:?}");
    let target = request_target(data).unwrap();
    assert!(target.first() == Some(&b'/'), "{target:?}");
    assert!(target.iter().all(u8::is_ascii_graphic), "{target:?}");
    assert_eq!(header_values(data, "host").count(), 1, "{data:?}");
    for name in NEVER {
        assert_eq!(header_values(data, name).count(), 0, "{name} in {data:?}");
    }
    let connection: Vec<&[u8]> = header_values(data, "connection").collect();
    assert!(connection.len() <= 1, "{data:?}");
    for v in connection {
        assert!(
            v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close"),
            "{v:?}"
        );
    }
    if data.len() <= 1024 {
        for cut in 0..data.len() {
            assert_eq!(classify(&data[..cut]), Head::Partial, "{:?}", &data[..cut]);
        }
    }
});
