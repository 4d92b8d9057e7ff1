//! Limiter keys: what a rate limit counts a request by (stage `limits`).
//!
//! Keys of every kind share one store (memory or Redis), so each carries a
//! prefix: `i:` a client IP, `u:` a user, `h:` a header value. A route keyed
//! by user or header counts by IP when the request has no user or no header,
//! so leaving it out buys nothing.

use std::net::IpAddr;

/// What a route's limit counts by (`rate_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client IP.
    Ip,
    /// The signed-in user (case-insensitively), else the client IP.
    User,
    /// A request header's value (lowercase name), else the client IP.
    Header(String),
}

/// A header named by `rate_key` came more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the rate-limit key header is sent more than once")]
pub struct DuplicateKeyHeader;

/// Longest header value used as a key: a huge value must not become a huge key.
const MAX_HEADER_KEY: usize = 256;

impl RateKey {
    /// The limiter key of one request. `headers` yields (name, value) of
    /// every request header.
    pub fn key<'a>(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<String, DuplicateKeyHeader> {
        Ok(match self {
            RateKey::Ip => ip_key(ip),
            RateKey::User => user.map_or_else(|| ip_key(ip), user_key),
            RateKey::Header(name) => header_key(headers, name)?.unwrap_or_else(|| ip_key(ip)),
        })
    }
}

/// The key of a client IP.
pub fn ip_key(ip: IpAddr) -> String {
    let mut key = String::with_capacity(17);
    key.push_str("i:");
    crate::client_ip::push_ip(&mut key, ip);
    key
}

/// The key of a user: `Alice` and `alice` are one budget.
pub fn user_key(user: &str) -> String {
    format!("u:{}", user.to_ascii_lowercase())
}

/// The key of header `name`: `None` when it is absent or empty, `Err` when
/// it comes more than once in any spelling (`X-Api-Key` and `X_Api_Key` are
/// one variable to many app servers, and which one the app believes is
/// anyone's guess).
pub fn header_key<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    name: &str,
) -> Result<Option<String>, DuplicateKeyHeader> {
    let mut values = headers
        .into_iter()
        .filter(|(n, _)| crate::forwarding::header_name_eq(n, name))
        .map(|(_, v)| v);
    let first = values.next();
    if values.next().is_some() {
        return Err(DuplicateKeyHeader);
    }
    Ok(first.filter(|v| !v.is_empty()).map(|v| {
        let v = v.get(..MAX_HEADER_KEY).unwrap_or(v);
        format!("h:{}", String::from_utf8_lossy(v))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn key(
        by: &RateKey,
        user: Option<&str>,
        hs: &[(&'static str, &'static [u8])],
    ) -> Result<String, DuplicateKeyHeader> {
        by.key(IP, user, hs.iter().copied())
    }

    #[test]
    fn ip_and_user_keys_are_prefixed() {
        assert_eq!(
            key(&RateKey::Ip, Some("alice"), &[]),
            Ok("i:192.0.2.7".into())
        );
        assert_eq!(
            key(&RateKey::User, Some("Alice"), &[]),
            Ok("u:alice".into())
        );
        // No user: the IP's budget, never a shared anonymous one.
        assert_eq!(key(&RateKey::User, None, &[]), Ok("i:192.0.2.7".into()));
        assert_eq!(ip_key("2001:db8::1".parse().unwrap_or(IP)), "i:2001:db8::1");
    }

    /// The key is `i:` and the address as `Display` writes it, for any
    /// address (an instance on an older release counts under the same key).
    #[test]
    fn ip_keys_are_the_displayed_address() {
        use proptest::prelude::*;
        proptest!(|(v4 in any::<[u8; 4]>(), v6 in any::<[u16; 8]>())| {
            for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
                prop_assert_eq!(ip_key(ip), format!("i:{ip}"));
            }
        });
    }

    #[test]
    fn header_keys_refuse_duplicates_in_any_spelling() {
        let by = RateKey::Header("x-api-key".into());
        assert_eq!(key(&by, None, &[("x-api-key", b"k1")]), Ok("h:k1".into()));
        assert_eq!(key(&by, None, &[("X_Api_Key", b"k1")]), Ok("h:k1".into()));
        assert_eq!(
            key(&by, None, &[("x-api-key", b"")]),
            Ok("i:192.0.2.7".into())
        );
        assert_eq!(
            key(&by, None, &[("x-api-keys", b"k")]),
            Ok("i:192.0.2.7".into())
        );
        assert_eq!(
            key(&by, None, &[("x-api-key", b"k1"), ("x_api_key", b"k2")]),
            Err(DuplicateKeyHeader)
        );
        // Even the same value twice: the rule is one header.
        assert_eq!(
            key(&by, None, &[("x-api-key", b"k1"), ("X-API-KEY", b"k1")]),
            Err(DuplicateKeyHeader)
        );
        // A header key is never a user's or an IP's.
        assert_eq!(
            key(&by, None, &[("x-api-key", b"u:alice")]),
            Ok("h:u:alice".into())
        );
    }

    #[test]
    fn header_keys_are_bounded_and_lossless_enough() {
        let long = [b'a'; 1000];
        let hs = [("x-api-key", &long[..])];
        let k = header_key(hs.iter().copied(), "x-api-key");
        assert_eq!(k.map(|k| k.map(|k| k.len())), Ok(Some(2 + MAX_HEADER_KEY)));
        let hs: [(&str, &[u8]); 1] = [("x-api-key", b"\xff\xfe")];
        assert_eq!(
            header_key(hs.iter().copied(), "x-api-key"),
            Ok(Some("h:\u{fffd}\u{fffd}".into()))
        );
    }
}
