//! Client address resolution (stage `client_ip`, docs/behaviour.md).
//!
//! `X-Forwarded-For` is written by whoever sends the request, so it is only
//! believed when the socket peer is a configured trusted proxy; otherwise the
//! client is the peer and the header is ignored entirely (the gateway strips
//! it). From a trusted peer the list is walked from the right, because each
//! proxy appends the address it saw: the rightmost address that is not itself
//! a trusted proxy is the first one no trusted party vouches for beyond, i.e.
//! the client. Anything further left was written by the client and may be
//! forged.
//!
//! Details chosen for safety:
//! * IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is treated as IPv4 everywhere, so a
//!   dual-stack socket cannot dodge an IPv4 trusted range or rate-limit key.
//! * A malformed entry stops the walk: nothing left of it can be trusted.
//! * At most [`MAX_ENTRIES`] list items (empty ones included) are examined, so
//!   a huge header costs bounded work and a bounded upstream chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// Most `X-Forwarded-For` items examined (from the right); the rest are ignored.
pub const MAX_ENTRIES: usize = 64;

/// The `[server] trusted_proxies` ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Builds the set; ranges inside `::ffff:0:0/96` are stored as their IPv4
    /// equivalent because addresses are compared in IPv4 form.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies {
            nets: nets.into_iter().map(canonical_net).collect(),
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 read as IPv4) lies in a trusted range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// No trusted proxies configured: every peer is the client.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The configured ranges (mapped ranges in IPv4 form).
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// The resolved client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client address used for logs, rate limits and `X-Real-IP`.
    pub ip: IpAddr,
    /// Whether the socket peer is a trusted proxy (its forwarding headers
    /// may then be kept).
    pub peer_trusted: bool,
    peer: IpAddr,
    /// Parsed `X-Forwarded-For` entries from a trusted peer, left to right.
    chain: Vec<IpAddr>,
}

/// `ip` as `Display` writes it. An address is written several times a
/// request (`X-Real-IP`, `X-Forwarded-For`, the rate-limit key): IPv4 without
/// the formatter, which cost more than the rest of those headers' work.
pub fn ip_string(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// Appends `ip` to `out` as `Display` writes it (a `String`, or any other
/// text sink such as the access log's byte buffer).
pub fn push_ip(out: &mut impl std::fmt::Write, ip: IpAddr) {
    // Writing to a String or a Vec cannot fail.
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_char('.');
                }
                let _ = out.write_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

impl ClientAddr {
    /// Value for the upstream `X-Forwarded-For`: the parsed chain a trusted
    /// peer sent with the peer appended, else just the peer. Ports and
    /// brackets are dropped and mapped addresses are written as IPv4, so the
    /// upstream sees one canonical spelling.
    pub fn forwarded_for(&self) -> String {
        let mut out = String::with_capacity((self.chain.len() + 1) * 16);
        for ip in self.chain.iter().chain(std::iter::once(&self.peer)) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            push_ip(&mut out, *ip);
        }
        out
    }

    /// The socket peer (canonical form).
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The believed `X-Forwarded-For` entries, left to right, without the peer.
    pub fn chain(&self) -> &[IpAddr] {
        &self.chain
    }
}

/// Resolves the client of a request from its socket `peer` and every
/// `X-Forwarded-For` header value in order.
pub fn resolve<'a>(
    peer: IpAddr,
    x_forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    trusted: &TrustedProxies,
) -> ClientAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return ClientAddr {
            ip: peer,
            peer_trusted: false,
            peer,
            chain: Vec::new(),
        };
    }
    // Several headers form one list; walking from the right needs them all.
    let values: Vec<&[u8]> = x_forwarded_for.into_iter().collect();
    let items = values
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(|&b| b == b','))
        .take(MAX_ENTRIES);

    let mut chain = Vec::new();
    let mut client = None;
    let mut leftmost_trusted = None;
    for item in items {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let Some(ip) = parse_entry(item) else {
            break; // nothing left of a malformed entry is believed
        };
        chain.push(ip);
        if client.is_none() {
            if trusted.contains(ip) {
                leftmost_trusted = Some(ip);
            } else {
                client = Some(ip);
            }
        }
    }
    chain.reverse();
    ClientAddr {
        ip: client.or(leftmost_trusted).unwrap_or(peer),
        peer_trusted: true,
        peer,
        chain,
    }
}

/// One list entry: `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`. Anything else (`unknown`, hostnames, zone ids,
/// obfuscated identifiers) is malformed.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        let ip: Ipv6Addr = inner.parse().ok()?;
        return Some(IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = s.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    let ip: Ipv4Addr = host.parse().ok()?;
    Some(IpAddr::V4(ip))
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

/// `::ffff:a.b.c.d/n` (n >= 96) becomes `a.b.c.d/(n-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net.trunc());
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written exactly as `Display` writes it, IPv4 and IPv6 (mapped too).
    #[test]
    fn ip_string_is_display() {
        use proptest::prelude::*;
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "::",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_string(ip), ip.to_string());
        }
        proptest!(|(v4 in any::<[u8; 4]>(), v6 in any::<[u16; 8]>())| {
            let a = IpAddr::from(v4);
            let b = IpAddr::from(v6);
            prop_assert_eq!(ip_string(a), a.to_string());
            prop_assert_eq!(ip_string(b), b.to_string());
        });
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn lb() -> TrustedProxies {
        trusted(&["10.0.0.0/8", "2001:db8:ffff::/48"])
    }

    fn run(peer: &str, xff: &[&str], t: &TrustedProxies) -> ClientAddr {
        resolve(ip(peer), xff.iter().map(|v| v.as_bytes()), t)
    }

    #[test]
    fn untrusted_peer_ignores_spoofed_xff() {
        let c = run("203.0.113.9", &["1.2.3.4", "10.0.0.1"], &lb());
        assert_eq!(c.ip, ip("203.0.113.9"));
        assert!(!c.peer_trusted);
        assert_eq!(c.forwarded_for(), "203.0.113.9");
        assert!(c.chain().is_empty());
    }

    #[test]
    fn no_trusted_proxies_means_peer() {
        let t = TrustedProxies::default();
        assert!(t.is_empty());
        let c = run("10.0.0.1", &["1.2.3.4"], &t);
        assert_eq!(c.ip, ip("10.0.0.1"));
        assert!(!c.peer_trusted);
        assert_eq!(c.forwarded_for(), "10.0.0.1");
    }

    #[test]
    fn trusted_peer_without_xff_is_client() {
        let c = run("10.0.0.1", &[], &lb());
        assert_eq!(c.ip, ip("10.0.0.1"));
        assert!(c.peer_trusted);
        assert_eq!(c.forwarded_for(), "10.0.0.1");
    }

    #[test]
    fn trusted_peer_single_hop() {
        let c = run("10.0.0.1", &["198.51.100.7"], &lb());
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.forwarded_for(), "198.51.100.7, 10.0.0.1");
    }

    #[test]
    fn client_cannot_spoof_left_of_itself() {
        // The client prepends fake entries; the trusted LB appends the real one.
        let c = run("10.0.0.1", &["6.6.6.6, 10.0.0.5, 198.51.100.7"], &lb());
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(
            c.forwarded_for(),
            "6.6.6.6, 10.0.0.5, 198.51.100.7, 10.0.0.1"
        );
    }

    #[test]
    fn multiple_trusted_hops_are_skipped() {
        let c = run("10.0.0.1", &["198.51.100.7, 10.1.1.1, 10.2.2.2"], &lb());
        assert_eq!(c.ip, ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_gives_leftmost() {
        let c = run("10.0.0.1", &["10.9.9.9, 10.1.1.1, 10.2.2.2"], &lb());
        assert_eq!(c.ip, ip("10.9.9.9"));
        assert_eq!(c.forwarded_for(), "10.9.9.9, 10.1.1.1, 10.2.2.2, 10.0.0.1");
    }

    #[test]
    fn malformed_before_untrusted_stops_walk() {
        let c = run("10.0.0.1", &["1.2.3.4, garbage, 10.2.2.2"], &lb());
        assert_eq!(c.ip, ip("10.2.2.2"));
        assert_eq!(c.forwarded_for(), "10.2.2.2, 10.0.0.1");
        let c = run("10.0.0.1", &["1.2.3.4, unknown"], &lb());
        assert_eq!(c.ip, ip("10.0.0.1"));
        assert_eq!(c.forwarded_for(), "10.0.0.1");
    }

    #[test]
    fn malformed_left_of_client_truncates_chain_only() {
        let c = run(
            "10.0.0.1",
            &["9.9.9.9, _hidden, 1.2.3.4, 198.51.100.7, 10.2.2.2"],
            &lb(),
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(
            c.forwarded_for(),
            "1.2.3.4, 198.51.100.7, 10.2.2.2, 10.0.0.1"
        );
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for bad in [
            "unknown",
            "example.com",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "256.1.1.1",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4:-1",
            "1.2.3.4:+80",
            "1.2.3.4:80:80",
            "[1.2.3.4]",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "[2001:db8::1]:http",
            "2001:db8::1:443:x",
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "1.2.3.4 5.6.7.8",
            "\"1.2.3.4\"",
            "for=1.2.3.4",
        ] {
            assert_eq!(parse_entry(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_entry(b"\xff1.2.3.4"), None);
    }

    #[test]
    fn entry_forms() {
        for (entry, want) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:567", "1.2.3.4"),
            ("1.2.3.4:0", "1.2.3.4"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
            ("::ffff:102:304", "1.2.3.4"),
            ("::1", "::1"),
        ] {
            assert_eq!(parse_entry(entry.as_bytes()), Some(ip(want)), "{entry:?}");
        }
    }

    #[test]
    fn ports_and_brackets_in_chain() {
        let c = run("10.0.0.1", &["[2001:db8::7]:51000, 10.1.1.1:443"], &lb());
        assert_eq!(c.ip, ip("2001:db8::7"));
        assert_eq!(c.forwarded_for(), "2001:db8::7, 10.1.1.1, 10.0.0.1");
    }

    #[test]
    fn ipv6_trusted_peer() {
        let c = run(
            "2001:db8:ffff::1",
            &["2001:db8:1::5, 2001:db8:ffff::2"],
            &lb(),
        );
        assert!(c.peer_trusted);
        assert_eq!(c.ip, ip("2001:db8:1::5"));
        assert_eq!(
            c.forwarded_for(),
            "2001:db8:1::5, 2001:db8:ffff::2, 2001:db8:ffff::1"
        );
    }

    #[test]
    fn mapped_v4_peer_matches_v4_range() {
        let c = run("::ffff:10.0.0.1", &["::ffff:198.51.100.7"], &lb());
        assert!(c.peer_trusted);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.peer(), ip("10.0.0.1"));
        assert_eq!(c.forwarded_for(), "198.51.100.7, 10.0.0.1");
    }

    #[test]
    fn mapped_v4_untrusted_peer_is_reported_as_v4() {
        let c = run("::ffff:203.0.113.9", &["1.1.1.1"], &lb());
        assert!(!c.peer_trusted);
        assert_eq!(c.ip, ip("203.0.113.9"));
        assert_eq!(c.forwarded_for(), "203.0.113.9");
    }

    #[test]
    fn mapped_entries_cannot_dodge_trusted_ranges() {
        // A mapped spelling of a trusted proxy is still skipped as trusted.
        let c = run("10.0.0.1", &["198.51.100.7, ::ffff:10.3.3.3"], &lb());
        assert_eq!(c.ip, ip("198.51.100.7"));
    }

    #[test]
    fn mapped_ranges_are_stored_as_v4() {
        let t = trusted(&["::ffff:10.0.0.0/104", "::/0"]);
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("::ffff:10.1.2.3")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("2001:db8::1")));
        assert_eq!(t.nets()[0], "10.0.0.0/8".parse::<IpNet>().unwrap());
        // `::/0` is an IPv6 range; it does not swallow IPv4 clients.
        let v6_only = trusted(&["::/0"]);
        assert!(!v6_only.contains(ip("::ffff:1.2.3.4")));
        assert!(!v6_only.contains(ip("1.2.3.4")));
    }

    #[test]
    fn multiple_headers_form_one_list() {
        let c = run(
            "10.0.0.1",
            &["6.6.6.6", "198.51.100.7, 10.1.1.1", "10.2.2.2"],
            &lb(),
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(
            c.forwarded_for(),
            "6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2, 10.0.0.1"
        );
    }

    #[test]
    fn empty_values_and_whitespace() {
        let c = run(
            "10.0.0.1",
            &["", " ,, ", "\t198.51.100.7 ,  10.1.1.1\t", ""],
            &lb(),
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.forwarded_for(), "198.51.100.7, 10.1.1.1, 10.0.0.1");
        let c = run("10.0.0.1", &[""], &lb());
        assert_eq!(c.ip, ip("10.0.0.1"));
        assert_eq!(c.forwarded_for(), "10.0.0.1");
    }

    #[test]
    fn cap_bounds_work_and_chain() {
        let mut list: Vec<String> = vec![String::from("6.6.6.6")];
        list.extend((0..100).map(|i| format!("10.0.{}.{}", i / 256, i % 256)));
        let joined = list.join(",");
        let c = run("10.0.0.1", &[&joined], &lb());
        // The untrusted entry is beyond the cap: the leftmost examined wins.
        assert_eq!(c.chain().len(), MAX_ENTRIES);
        assert_eq!(c.ip, ip("10.0.0.36"));
        assert_eq!(c.chain()[0], ip("10.0.0.36"));

        // A huge header of commas costs at most MAX_ENTRIES items.
        let commas = ",".repeat(1_000_000) + "1.2.3.4";
        let c = run("10.0.0.1", &["5.5.5.5", &commas], &lb());
        assert_eq!(c.ip, ip("1.2.3.4"));
        assert_eq!(c.forwarded_for(), "1.2.3.4, 10.0.0.1");
    }

    #[test]
    fn spoofed_xff_through_untrusted_v6_peer() {
        let c = run("2001:db8:1::1", &["10.0.0.1"], &lb());
        assert!(!c.peer_trusted);
        assert_eq!(c.ip, ip("2001:db8:1::1"));
    }
}
