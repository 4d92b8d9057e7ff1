//! Client address from `X-Forwarded-For` (policies/src/client_ip.rs) and the
//! forwarding-header name rules (policies/src/forwarding.rs).
//!
//! Input: byte 0 picks the peer and the trusted ranges, the rest is one or
//! more `X-Forwarded-For` values separated by `\n`.
//!
//! Properties:
//! * an untrusted peer is the client and its header is ignored;
//! * from a trusted peer the result equals an independent model of the walk
//!   (from the right, at most `MAX_ENTRIES` items, stop at the first malformed
//!   entry, the rightmost untrusted address is the client);
//! * the client is always the peer or an entry of the believed chain, and
//!   every address is canonical (no IPv4-mapped IPv6);
//! * the upstream `X-Forwarded-For` re-parses to exactly chain + peer;
//! * header names: `is_forwarding_header` equals a model on the folded name
//!   and is invariant under case and `_`/`-` changes; request ids and
//!   `Connection` tokens keep their shape.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use policies::client_ip::{resolve, TrustedProxies, MAX_ENTRIES};
use policies::forwarding::{
    connection_tokens, header_name_eq, is_forwarding_header, is_valid_request_id,
};

const PEERS: [&str; 4] = [
    "10.0.0.1",
    "203.0.113.9",
    "::ffff:10.1.2.3",
    "2001:db8:ffff::7",
];
const NETS: [&str; 4] = [
    "10.0.0.0/8",
    "2001:db8:ffff::/48",
    "::ffff:192.168.0.0/112",
    "203.0.113.0/24",
];

fn model_port(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u32>().is_ok_and(|p| p <= 65_535)
}

fn model_entry(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ok = after.is_empty() || after.strip_prefix(':').is_some_and(model_port);
        return if ok {
            inner
                .parse::<Ipv6Addr>()
                .ok()
                .map(|a| IpAddr::V6(a).to_canonical())
        } else {
            None
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = s.split_once(':')?;
    if model_port(port) {
        host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        None
    }
}

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = PEERS[usize::from(sel & 3)].parse().unwrap();
    let nets = NETS
        .iter()
        .enumerate()
        .filter(|(i, _)| sel >> (2 + i) & 1 == 1)
        .map(|(_, n)| n.parse().unwrap())
        .collect();
    let trusted = TrustedProxies::new(nets);
    let values: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();

    let got = resolve(peer, values.iter().copied(), &trusted);
    let canon = peer.to_canonical();
    assert_eq!(got.peer(), canon);
    for ip in got.chain().iter().chain([&got.ip]) {
        assert_eq!(*ip, ip.to_canonical(), "mapped address leaked: {ip}");
    }

    if !trusted.contains(peer) {
        assert!(!got.peer_trusted);
        assert_eq!(got.ip, canon);
        assert!(got.chain().is_empty());
        assert_eq!(got.forwarded_for(), canon.to_string());
    } else {
        assert!(got.peer_trusted);
        // Independent model of the walk.
        let mut chain = Vec::new();
        let items: Vec<&[u8]> = values
            .iter()
            .rev()
            .flat_map(|v| v.rsplit(|&b| b == b','))
            .take(MAX_ENTRIES)
            .collect();
        for item in items {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            match std::str::from_utf8(item).ok().and_then(model_entry) {
                Some(ip) => chain.push(ip),
                None => break,
            }
        }
        let client = chain
            .iter()
            .find(|ip| !trusted.contains(**ip))
            .or(chain.last())
            .copied()
            .unwrap_or(canon);
        chain.reverse();
        assert_eq!(got.chain(), chain.as_slice(), "{values:?}");
        assert_eq!(got.ip, client, "{values:?}");
        assert!(got.chain().len() <= MAX_ENTRIES);
        assert!(got.ip == canon || got.chain().contains(&got.ip));
        // Everything right of the client is a trusted proxy.
        if let Some(pos) = got.chain().iter().rposition(|ip| *ip == got.ip) {
            if !trusted.contains(got.ip) {
                assert!(got.chain()[pos + 1..]
                    .iter()
                    .all(|ip| trusted.contains(*ip)));
            }
        }
    }
    let xff = got.forwarded_for();
    let back: Vec<IpAddr> = xff.split(", ").map(|s| s.parse().unwrap()).collect();
    let mut want = got.chain().to_vec();
    want.push(canon);
    assert_eq!(back, want, "{xff:?}");
    assert!(xff.bytes().all(|b| b.is_ascii_graphic() || b == b' '));

    // Header-name rules on the same bytes.
    if let Ok(name) = std::str::from_utf8(rest) {
        let f = fold(name);
        let want = f == "forwarded"
            || f == "x-real-ip"
            || f == "x-forwarded"
            || f.starts_with("x-forwarded-");
        assert_eq!(is_forwarding_header(name), want, "{name:?}");
        let upper: String = name
            .bytes()
            .map(|b| match b {
                b'-' => '_',
                b'_' => '-',
                _ => char::from(b.to_ascii_uppercase()),
            })
            .collect();
        if name.is_ascii() {
            assert_eq!(is_forwarding_header(&upper), want, "{upper:?}");
            assert!(header_name_eq(name, &upper));
        }
        assert!(header_name_eq(name, name));
        for t in connection_tokens(name) {
            assert!(!t.is_empty() && !t.contains(','), "{t:?}");
            assert!(
                !t.starts_with([' ', '\t']) && !t.ends_with([' ', '\t']),
                "{t:?}"
            );
            assert_eq!(t, t.to_ascii_lowercase());
        }
    }
    let id_ok = (1..=128).contains(&rest.len())
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    assert_eq!(is_valid_request_id(rest), id_ok);
});
