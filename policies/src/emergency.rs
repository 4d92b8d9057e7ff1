//! The emergency gate's secrets: checking a submitted emergency secret and
//! the `__Host-portcullis-emergency` cookie.
//!
//! The configured secret is turned into a [`Verifier`] at load and then
//! dropped (zeroed): `verifier = HMAC-SHA256(LABEL, secret)`. A submitted
//! secret is put through the same HMAC and the two tags compared in constant
//! time, so neither the secret nor its length leaks through timing. The
//! cookie is signed with a key derived from the verifier, so changing the
//! secret voids every emergency cookie at once.
//!
//! Cookie: `e1|<id hex>|<issued>|<expires>.<base64url tag>`.

use crate::mac::{self, HmacSha256};
use crate::session::{parse_decimal, parse_id, push_hex};

const LABEL: &[u8] = b"portcullis emergency secret v1";
const COOKIE_LABEL: &[u8] = b"portcullis emergency cookie v1";
const VERSION: &str = "e1";
/// Longer values are refused before any parsing.
const MAX_COOKIE_LEN: usize = 128;

/// What remains of the emergency secret in memory.
pub struct Verifier {
    tag: [u8; mac::TAG_LEN],
    cookie: HmacSha256,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

impl Verifier {
    /// Derives the verifier; the caller zeroes and drops `secret`.
    pub fn derive(secret: &[u8]) -> Verifier {
        let tag = mac::tag(&mac::keyed(LABEL), &[secret]);
        let cookie = mac::keyed(&mac::tag(&mac::keyed(&tag), &[COOKIE_LABEL]));
        Verifier { tag, cookie }
    }

    /// A value that changes with the secret and cannot verify anything:
    /// what the config fingerprint includes (through argon2id, see
    /// [`crate::fingerprint::secrets_digest`]).
    pub fn commitment(&self) -> [u8; 32] {
        mac::tag(&mac::keyed(&self.tag), &[b"portcullis fingerprint"])
    }

    /// Whether `candidate` is the secret, in time independent of both.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        mac::tags_equal(&mac::tag(&mac::keyed(LABEL), &[candidate]), &self.tag)
    }

    /// Signs a grant as a cookie value.
    pub fn encode(&self, grant: &Grant) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(MAX_COOKIE_LEN);
        out.push_str(VERSION);
        out.push('|');
        push_hex(&grant.id, &mut out);
        let _ = write!(out, "|{}|{}", grant.issued, grant.expires);
        let tag = mac::tag(&self.cookie, &[out.as_bytes()]);
        out.push('.');
        mac::push_b64(&tag, &mut out);
        out
    }

    /// Verifies a cookie value: tag (constant time), strict fields, then
    /// `issued <= now + 60 s` and `now < expires`, and a lifetime no longer
    /// than `max_ttl` (a grant cannot outlive the configured ttl).
    pub fn decode(&self, value: &str, now: u64, max_ttl: u64) -> Option<Grant> {
        if value.len() > MAX_COOKIE_LEN {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = mac::decode_tag(tag)?;
        if !mac::tags_equal(&mac::tag(&self.cookie, &[payload.as_bytes()]), &tag) {
            return None;
        }
        let mut fields = payload.split('|');
        if fields.next()? != VERSION {
            return None;
        }
        let id = parse_id(fields.next()?)?;
        let issued = parse_decimal(fields.next()?)?;
        let expires = parse_decimal(fields.next()?)?;
        if fields.next().is_some() {
            return None;
        }
        let fresh = issued <= now.saturating_add(60)
            && now < expires
            && expires.saturating_sub(issued) <= max_ttl;
        fresh.then_some(Grant {
            id,
            issued,
            expires,
        })
    }
}

/// One emergency session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Random id (for revocation at logout).
    pub id: [u8; 16],
    /// Unix seconds of the grant.
    pub issued: u64,
    /// Unix seconds after which it is void.
    pub expires: u64,
}

impl Grant {
    /// A fresh grant for `ttl` seconds from `now`.
    pub fn new(now: u64, ttl: u64) -> Grant {
        Grant {
            id: crate::session::new_id(),
            issued: now,
            expires: now.saturating_add(ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"an emergency secret of at least 32 chars!";

    #[test]
    fn verify_accepts_only_the_secret() {
        let v = Verifier::derive(SECRET);
        assert!(v.verify(SECRET));
        for bad in [
            &b""[..],
            b"an emergency secret of at least 32 chars",
            b"an emergency secret of at least 32 chars!!",
            b"AN EMERGENCY SECRET OF AT LEAST 32 CHARS!",
            b" an emergency secret of at least 32 chars!",
        ] {
            assert!(!v.verify(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!format!("{v:?}").contains("emergency secret"));
    }

    #[test]
    fn cookie_round_trip_and_lifetimes() {
        let v = Verifier::derive(SECRET);
        let g = Grant::new(1_000, 900);
        let c = v.encode(&g);
        assert!(c.starts_with("e1|") && c.len() <= MAX_COOKIE_LEN, "{c}");
        assert_eq!(v.decode(&c, 1_000, 900), Some(g));
        assert_eq!(v.decode(&c, 1_899, 900), Some(g));
        assert_eq!(v.decode(&c, 1_900, 900), None, "expired");
        assert_eq!(
            v.decode(&c, 1_000, 899),
            None,
            "longer than the ttl now allows"
        );
        assert_eq!(v.decode(&c, 940, 900), Some(g), "a minute of skew");
        assert_eq!(v.decode(&c, 939, 900), None, "more than a minute ahead");
        let future = v.encode(&Grant {
            issued: 5_000,
            expires: 5_100,
            ..g
        });
        assert_eq!(v.decode(&future, 1_000, 900), None, "from the future");
    }

    #[test]
    fn another_secret_or_any_tampering_is_refused() {
        let v = Verifier::derive(SECRET);
        let c = v.encode(&Grant::new(1_000, 900));
        let other = Verifier::derive(b"another emergency secret, also 32+ chars");
        assert_eq!(other.decode(&c, 1_000, 900), None, "secret changed");
        let (payload, tag) = c.rsplit_once('.').expect("tag");
        let cases = [
            c.replace("|1900", "|9900"),
            c.replace("e1|", "e2|"),
            format!("{payload}|1.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            format!("{payload}.{tag}="),
            payload.to_string(),
            c.to_uppercase(),
            format!("{c}{}", "A".repeat(200)),
            String::new(),
        ];
        for bad in cases {
            assert_eq!(v.decode(&bad, 1_000, 900), None, "{bad}");
        }
        // Each byte flipped, one at a time.
        for i in 0..c.len() {
            let mut b = c.clone().into_bytes();
            b[i] ^= 1;
            if let Ok(s) = String::from_utf8(b) {
                assert_eq!(v.decode(&s, 1_000, 900), None, "byte {i}");
            }
        }
    }
}
