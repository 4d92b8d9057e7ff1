//! The `__Host-portcullis` session cookie codec (stage `session`, docs/behaviour.md).
//!
//! A cookie value is `payload.tag`, where the payload is readable text
//!
//! ```text
//! v3|<id: 32 lowercase hex>|<issued ms>|<seen ms>
//! ```
//!
//! and `tag` is the unpadded base64url HMAC-SHA256 of the payload under the
//! first configured key. Every byte is a cookie-octet, so no quoting or
//! escaping is ever involved. Design points:
//!
//! * **The cookie names a record.** `id` is the key of a session record in
//!   the identity store; the record says whose session it is and under which
//!   account epoch it was issued, so the cookie carries no name and no
//!   generation. The MAC keeps forged ids from costing a store read.
//! * **Authenticate, then parse.** The tag is checked with every key
//!   (rotation: the first signs, all verify) in constant time before any
//!   field is looked at; fields are then parsed strictly (exact field count,
//!   plain decimal without sign or leading zeros, lowercase hex id), so one
//!   session has exactly one valid spelling.
//! * **Cheap rejection.** Verification runs on every request: the tag is
//!   decoded into a stack buffer and the keyed HMAC states are precomputed,
//!   so a rejected cookie costs no allocation.
//! * **Two clocks.** `issued` bounds the absolute lifetime (`ttl`), `seen`
//!   the idle time (`idle`); past half of `idle` the gateway re-issues the
//!   cookie with `seen = now` (same id and `issued`), so an active user stays
//!   logged in until `ttl` and an abandoned browser does not. Both are Unix
//!   milliseconds: in whole seconds a 3 s idle window could end after 2.1 s.
//! * **Earlier versions are retired.** `v1` and `v2` cookies were stateless
//!   (a user name and a generation, no record): with the store there is
//!   nothing they could name, so they verify as [`SessionError::Retired`]
//!   and the gateway clears them. The upgrade signs everybody out once.

use std::fmt;

use crate::hex_id::HexId;
use crate::mac::{self, HmacSha256};
use crate::split::{rsplit_once_str, split_str};

/// Tolerated clock skew between gateway instances, in milliseconds.
pub const MAX_FUTURE_SKEW: u64 = 60_000;

/// Longest cookie value [`decode`] looks at: a maximal valid one is ~120
/// bytes, so anything far longer is refused before any MAC work.
pub const MAX_COOKIE_LEN: usize = 256;

/// The version written and read.
const VERSION: &str = "v3";
/// Stateless versions from before the identity store.
const RETIRED: [&str; 2] = ["v1", "v2"];

/// The configured session keys: the first signs, every one verifies, so keys
/// can be rotated without logging everybody out.
///
/// Each key should be at least 32 bytes; the configuration loader enforces
/// that. `Debug` shows only the number of keys.
#[derive(Clone)]
pub struct SessionKeys {
    keys: Vec<Vec<u8>>,
    macs: Vec<HmacSha256>,
}

impl SessionKeys {
    /// `None` when `keys` is empty (nothing could sign).
    pub fn new(keys: Vec<Vec<u8>>) -> Option<SessionKeys> {
        if keys.is_empty() {
            return None;
        }
        let macs = keys.iter().map(|k| mac::keyed(k)).collect();
        Some(SessionKeys { keys, macs })
    }

    /// The key that signs new cookies (the first one).
    pub fn signing(&self) -> &[u8] {
        self.keys.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// Every key, the signing one first.
    pub fn all(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(Vec::as_slice)
    }

    /// How many keys verify.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a `SessionKeys` holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn signing_mac(&self) -> Option<&HmacSha256> {
        self.macs.first()
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// A logged-in browser session, as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random session id: the key of its record in the identity store.
    pub id: [u8; 16],
    /// Unix milliseconds of the login.
    pub issued: u64,
    /// Unix milliseconds of the last (re)issue.
    pub seen: u64,
}

impl Session {
    /// The id as 32 lowercase hex digits, as it appears in the cookie.
    pub fn id_hex(&self) -> HexId {
        HexId::new(&self.id)
    }
}

/// Session lifetimes, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Absolute lifetime from `issued`.
    pub ttl: u64,
    /// Sliding lifetime from `seen`.
    pub idle: u64,
}

impl Lifetimes {
    /// From durations (saturating: no lifetime is longer than `u64` ms).
    pub fn new(ttl: std::time::Duration, idle: std::time::Duration) -> Lifetimes {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Lifetimes {
            ttl: ms(ttl),
            idle: ms(idle),
        }
    }
}

/// Why a cookie value is not a valid session; all are treated as "no
/// session" by the gateway, the variants exist for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not `payload.tag` with a 43-character canonical base64url tag, or the
    /// authenticated payload does not have the expected fields.
    #[error("malformed session cookie")]
    Malformed,
    /// The tag matches none of the keys.
    #[error("session cookie signature does not verify")]
    BadMac,
    /// A payload version this gateway does not know.
    #[error("unknown session cookie version")]
    UnknownVersion,
    /// A stateless cookie from before the identity store (`v1`, `v2`).
    #[error("session cookie from before the identity store")]
    Retired,
    /// `issued + ttl` has passed.
    #[error("session expired")]
    Expired,
    /// `seen + idle` has passed.
    #[error("session idle too long")]
    Idle,
    /// `issued` or `seen` is more than [`MAX_FUTURE_SKEW`] seconds ahead.
    #[error("session issued in the future")]
    FromFuture,
}

/// Encodes and signs `session` with the signing key.
pub fn encode(session: &Session, keys: &SessionKeys) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(128);
    out.push_str(VERSION);
    out.push('|');
    push_hex(&session.id, &mut out);
    // Writing to a String cannot fail.
    let _ = write!(out, "|{}|{}", session.issued, session.seen);
    let tag = keys
        .signing_mac()
        .map(|m| mac::tag(m, &[out.as_bytes()]))
        .unwrap_or_default();
    out.push('.');
    mac::push_b64(&tag, &mut out);
    out
}

/// Verifies and parses a cookie value; `now` in Unix milliseconds.
///
/// The tag is checked against every key (constant time each, all keys always
/// tried), then the fields are parsed strictly, then the clocks: expired
/// (`issued + ttl <= now`), idle (`seen + idle <= now`), from the future
/// (more than [`MAX_FUTURE_SKEW`] ms ahead). On success the second value says
/// whether the gateway should re-issue the cookie (`now - seen >= idle / 2`)
/// with `seen = now` and the same id and `issued`.
pub fn decode(
    value: &str,
    keys: &SessionKeys,
    now: u64,
    life: Lifetimes,
) -> Result<(Session, bool), SessionError> {
    if value.len() > MAX_COOKIE_LEN {
        return Err(SessionError::Malformed);
    }
    let (payload, tag) = rsplit_once_str(value, b'.').ok_or(SessionError::Malformed)?;
    let tag = mac::decode_tag(tag).ok_or(SessionError::Malformed)?;
    let mut valid = false;
    for key in &keys.macs {
        // Non-short-circuiting `|` so every key is always tried.
        valid |= mac::tags_equal(&mac::tag(key, &[payload.as_bytes()]), &tag);
    }
    if !valid {
        return Err(SessionError::BadMac);
    }

    let session = parse_payload(payload)?;
    if session.issued.saturating_add(life.ttl) <= now {
        return Err(SessionError::Expired);
    }
    if session.seen.saturating_add(life.idle) <= now {
        return Err(SessionError::Idle);
    }
    let horizon = now.saturating_add(MAX_FUTURE_SKEW);
    if session.issued > horizon || session.seen > horizon {
        return Err(SessionError::FromFuture);
    }
    let refresh = now.saturating_sub(session.seen) >= life.idle / 2;
    Ok((session, refresh))
}

/// A fresh random 128-bit session id.
pub fn new_id() -> [u8; 16] {
    rand::random()
}

fn parse_payload(payload: &str) -> Result<Session, SessionError> {
    let mut fields = split_str(payload, b'|');
    let mut next = || fields.next().ok_or(SessionError::Malformed);
    match next()? {
        VERSION => {}
        v if RETIRED.contains(&v) => return Err(SessionError::Retired),
        _ => return Err(SessionError::UnknownVersion),
    }
    let id = parse_id(next()?).ok_or(SessionError::Malformed)?;
    let issued = parse_decimal(next()?).ok_or(SessionError::Malformed)?;
    let seen = parse_decimal(next()?).ok_or(SessionError::Malformed)?;
    if next().is_ok() || seen < issued {
        return Err(SessionError::Malformed);
    }
    Ok(Session { id, issued, seen })
}

/// Plain decimal: ASCII digits only, no sign, no leading zero (except "0"),
/// no overflow.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    // `u64::from_str` also takes a leading `+`: require a digit first.
    let plain = bytes.first().is_some_and(u8::is_ascii_digit)
        && (bytes.len() == 1 || bytes.first() != Some(&b'0'));
    if plain {
        s.parse().ok()
    } else {
        None
    }
}

pub(crate) fn parse_id(s: &str) -> Option<[u8; 16]> {
    // Lowercase hex only, exactly 32 digits: one spelling per id. Decoded by
    // hand: `u128::from_str_radix` costs several times more on this path.
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
            _ => return None,
        };
        *o = hi << 4 | lo;
    }
    Some(out)
}

/// A 16-byte id as 32 lowercase hex digits, appended to `out`.
pub(crate) fn push_hex(bytes: &[u8; 16], out: &mut String) {
    out.push_str(HexId::new(bytes).as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-key-a";
    const KEY_B: &[u8] = b"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB-key-b";
    const KEY_C: &[u8] = b"CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC-key-c";
    const NOW: u64 = 1_700_000_000;
    const LIFE: Lifetimes = Lifetimes {
        ttl: 12 * 3600,
        idle: 2 * 3600,
    };

    fn keys(list: &[&[u8]]) -> SessionKeys {
        SessionKeys::new(list.iter().map(|k| k.to_vec()).collect()).unwrap()
    }

    fn session() -> Session {
        Session {
            id: [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff,
            ],
            issued: NOW - 100,
            seen: NOW - 50,
        }
    }

    /// Signs an arbitrary payload, to test the parser behind a valid MAC.
    fn sign(payload: &str, k: &SessionKeys) -> String {
        format!(
            "{payload}.{}",
            mac::b64(&mac::tag(k.signing_mac().unwrap(), &[payload.as_bytes()]))
        )
    }

    fn dec(value: &str) -> Result<(Session, bool), SessionError> {
        decode(value, &keys(&[KEY_A]), NOW, LIFE)
    }

    #[test]
    fn round_trip() {
        let k = keys(&[KEY_A]);
        let s = session();
        let cookie = encode(&s, &k);
        assert!(cookie.starts_with("v3|00112233445566778899aabbccddeeff|1699999900|1699999950."));
        assert_eq!(decode(&cookie, &k, NOW, LIFE), Ok((s, false)));
    }

    #[test]
    fn clocks_have_millisecond_precision() {
        let k = keys(&[KEY_A]);
        let life = Lifetimes::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(3),
        );
        assert_eq!(
            life,
            Lifetimes {
                ttl: 60_000,
                idle: 3_000
            }
        );
        let mut s = session();
        (s.issued, s.seen) = (10_900, 10_900);
        let cookie = encode(&s, &k);
        // 2.1 s after the last use of a 3 s window: still valid (whole
        // seconds would have said 10 + 3 <= 13).
        assert!(decode(&cookie, &k, 13_000, life).is_ok());
        assert!(decode(&cookie, &k, 13_899, life).is_ok());
        assert_eq!(decode(&cookie, &k, 13_900, life), Err(SessionError::Idle));
        assert_eq!(
            decode(
                &cookie,
                &k,
                70_900,
                Lifetimes {
                    ttl: 60_000,
                    idle: 90_000
                }
            ),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn stateless_versions_are_retired() {
        // Correctly signed cookies of the versions before the store: they
        // name no record, so they are refused (and cleared) as such.
        let k = keys(&[KEY_A]);
        let id = "00112233445566778899aabbccddeeff";
        for payload in [
            format!("v1|{id}|3|{}|{}|alice", 1_699_999, 1_699_999),
            format!("v2|{id}|3|{}|{}|alice", NOW - 100, NOW - 50),
            format!("v2|{id}"),
        ] {
            assert_eq!(
                decode(&sign(&payload, &k), &k, NOW, LIFE),
                Err(SessionError::Retired),
                "{payload:?}"
            );
        }
        // Unsigned, they are just a bad MAC.
        let forged = format!("v2|{id}|3|1|1|alice.{}", "A".repeat(43));
        assert_eq!(dec(&forged), Err(SessionError::BadMac));
    }

    #[test]
    fn cookie_octets_only() {
        let mut s = session();
        s.issued = u64::MAX - 10;
        s.seen = u64::MAX - 10;
        let cookie = encode(&s, &keys(&[KEY_A]));
        // RFC 6265 cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
        assert!(cookie
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)));
        assert!(cookie.len() < MAX_COOKIE_LEN / 2, "{}", cookie.len());
    }

    #[test]
    fn rotation() {
        let cookie = encode(&session(), &keys(&[KEY_A]));
        assert!(decode(&cookie, &keys(&[KEY_B, KEY_A]), NOW, LIFE).is_ok());
        assert!(decode(&cookie, &keys(&[KEY_B, KEY_C, KEY_A]), NOW, LIFE).is_ok());
        assert_eq!(
            decode(&cookie, &keys(&[KEY_B]), NOW, LIFE),
            Err(SessionError::BadMac)
        );
        // After rotation the new first key signs.
        let rotated = keys(&[KEY_B, KEY_A]);
        assert_eq!(rotated.signing(), KEY_B);
        let fresh = encode(&session(), &rotated);
        assert!(decode(&fresh, &keys(&[KEY_B]), NOW, LIFE).is_ok());
        assert_eq!(dec(&fresh), Err(SessionError::BadMac));
    }

    #[test]
    fn keys_constructor() {
        assert!(SessionKeys::new(vec![]).is_none());
        let k = keys(&[KEY_A, KEY_B]);
        assert_eq!(k.len(), 2);
        assert!(!k.is_empty());
        assert_eq!(k.signing(), KEY_A);
        let debug = format!("{k:?}");
        assert!(!debug.contains("AAAA"), "{debug}");
    }

    #[test]
    fn other_key_set_refused() {
        let cookie = encode(&session(), &keys(&[KEY_C]));
        assert_eq!(dec(&cookie), Err(SessionError::BadMac));
        // A key that is a prefix or extension of the real one is a different key.
        let cookie = encode(&session(), &keys(&[&KEY_A[..KEY_A.len() - 1]]));
        assert_eq!(dec(&cookie), Err(SessionError::BadMac));
        let longer = [KEY_A, b"x"].concat();
        let cookie = encode(&session(), &keys(&[&longer]));
        assert_eq!(dec(&cookie), Err(SessionError::BadMac));
    }

    #[test]
    fn flipped_bits() {
        let cookie = encode(&session(), &keys(&[KEY_A]));
        let bytes = cookie.as_bytes();
        let dot = cookie.rfind('.').unwrap();
        for i in 0..bytes.len() {
            for bit in 0..7 {
                let mut b = bytes.to_vec();
                b[i] ^= 1 << bit;
                let Ok(s) = String::from_utf8(b) else {
                    continue;
                };
                let r = dec(&s);
                assert!(
                    matches!(r, Err(SessionError::BadMac | SessionError::Malformed)),
                    "byte {i} bit {bit}: {s:?} -> {r:?}"
                );
                if i < dot && s.rfind('.') == Some(dot) {
                    // Payload changed, tag intact: the MAC must catch it.
                    assert_eq!(r, Err(SessionError::BadMac), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn truncated_and_extended() {
        let cookie = encode(&session(), &keys(&[KEY_A]));
        for end in 0..cookie.len() {
            assert!(dec(&cookie[..end]).is_err(), "{:?}", &cookie[..end]);
        }
        for start in 1..cookie.len() {
            assert!(dec(&cookie[start..]).is_err(), "{:?}", &cookie[start..]);
        }
        for suffix in ["A", "=", ".", "|", " ", "\0", ".x"] {
            assert!(dec(&format!("{cookie}{suffix}")).is_err(), "{suffix:?}");
        }
        for prefix in [" ", "\"", "v2|", "x"] {
            assert!(dec(&format!("{prefix}{cookie}")).is_err(), "{prefix:?}");
        }
        assert_eq!(dec(&format!("\"{cookie}\"")), Err(SessionError::Malformed));
    }

    #[test]
    fn shapes_refused_before_mac() {
        let cookie = encode(&session(), &keys(&[KEY_A]));
        let (payload, _) = cookie.rsplit_once('.').unwrap();
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "no-dot-at-all".into(),
            payload.to_string(),
            format!("{payload}."),
            format!("{payload}.{}", "!".repeat(43)),
            format!("{payload}.{}", "A".repeat(42)),
            format!("{payload}.{}", "A".repeat(44)),
            format!("{payload}.{}=", "A".repeat(42)),
            format!("{payload}.{}", "+".repeat(43)), // standard alphabet
            format!("{payload}.{}", "/".repeat(43)),
            "x".repeat(MAX_COOKIE_LEN + 1),
            format!("{}.{}", "v3|".repeat(200), "A".repeat(43)),
        ] {
            assert_eq!(dec(&bad), Err(SessionError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn extra_dots() {
        let k = keys(&[KEY_A]);
        let cookie = encode(&session(), &k);
        // A dot smuggled after the tag moves the split point: refused.
        assert!(dec(&format!("{cookie}.")).is_err());
        let (payload, tag) = cookie.rsplit_once('.').unwrap();
        assert!(dec(&format!("{payload}.{tag}.{tag}")).is_err());
        // A dot inside a signed payload is a malformed field.
        let dotted = format!(
            "v3|00112233445566778899aabbccddeeff|{}|{}.5",
            NOW - 100,
            NOW - 50
        );
        assert_eq!(dec(&sign(&dotted, &k)), Err(SessionError::Malformed));
    }

    #[test]
    fn strict_fields_behind_valid_mac() {
        let k = keys(&[KEY_A]);
        let id = "00112233445566778899aabbccddeeff";
        let (i, s) = (NOW - 100, NOW - 50);
        let ok = format!("v3|{id}|{i}|{s}");
        assert!(decode(&sign(&ok, &k), &k, NOW, LIFE).is_ok());
        for (payload, err) in [
            (format!("v4|{id}|{i}|{s}"), SessionError::UnknownVersion),
            (format!("V3|{id}|{i}|{s}"), SessionError::UnknownVersion),
            (format!("v3 |{id}|{i}|{s}"), SessionError::UnknownVersion),
            (format!("V2|{id}|{i}|{s}"), SessionError::UnknownVersion),
            (String::new(), SessionError::UnknownVersion),
            ("v3".to_string(), SessionError::Malformed),
            (format!("v3|{id}|{i}"), SessionError::Malformed),
            (format!("v3|{id}|{i}|{s}|"), SessionError::Malformed),
            (format!("v3|{id}|{i}|{s}|alice"), SessionError::Malformed),
            (format!("v3|{id}|3|{i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}||{s}"), SessionError::Malformed),
            (format!("v3|{id}|0{i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}|+{i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}|-{i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}| {i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}|{i} |{s}"), SessionError::Malformed),
            (format!("v3|{id}|{i}|+{s}"), SessionError::Malformed),
            (format!("v3|{id}|{i}|0{s}"), SessionError::Malformed),
            (format!("v3|{id}|0x{i}|{s}"), SessionError::Malformed),
            (format!("v3|{id}|{i}.0|{s}"), SessionError::Malformed),
            (format!("v3|{id}|３|{s}"), SessionError::Malformed),
            (
                format!("v3|{id}|{i}|18446744073709551616"),
                SessionError::Malformed,
            ),
            (
                format!("v3|{}|{i}|{s}", id.to_uppercase()),
                SessionError::Malformed,
            ),
            (
                format!("v3|00112233445566778899AABBCCDDEEFF|{i}|{s}"),
                SessionError::Malformed,
            ),
            (format!("v3|{}|{i}|{s}", &id[..31]), SessionError::Malformed),
            (format!("v3|{id}0|{i}|{s}"), SessionError::Malformed),
            (
                format!("v3|0011223344556677889gaabbccddeeff|{i}|{s}"),
                SessionError::Malformed,
            ),
            (format!("v3||{i}|{s}"), SessionError::Malformed),
            // seen before issued is never produced by the gateway.
            (format!("v3|{id}|{s}|{i}"), SessionError::Malformed),
        ] {
            assert_eq!(
                decode(&sign(&payload, &k), &k, NOW, LIFE),
                Err(err),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn uppercase_hex_id_refused() {
        let k = keys(&[KEY_A]);
        let cookie = encode(&session(), &k);
        let upper = cookie.replacen("aabbccddeeff", "AABBCCDDEEFF", 1);
        // Re-sign so only the spelling of the id is wrong.
        let (payload, _) = upper.rsplit_once('.').unwrap();
        assert_eq!(dec(&sign(payload, &k)), Err(SessionError::Malformed));
    }

    #[test]
    fn expiry_and_idle() {
        let k = keys(&[KEY_A]);
        let mut s = session();
        s.issued = NOW - LIFE.ttl;
        s.seen = NOW - 10;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::Expired)
        );
        s.issued = NOW - LIFE.ttl + 1;
        assert!(decode(&encode(&s, &k), &k, NOW, LIFE).is_ok());

        let mut s = session();
        s.issued = NOW - LIFE.idle - 100;
        s.seen = NOW - LIFE.idle;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::Idle)
        );
        s.seen = NOW - LIFE.idle + 1;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE).map(|r| r.1),
            Ok(true)
        );

        // Both past: the absolute lifetime is reported.
        let mut s = session();
        s.issued = 0;
        s.seen = 0;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::Expired)
        );
        // Huge values never overflow into validity.
        let life = Lifetimes {
            ttl: u64::MAX,
            idle: u64::MAX,
        };
        let s = session();
        assert!(decode(&encode(&s, &k), &k, NOW, life).is_ok());
        let life = Lifetimes { ttl: 0, idle: 0 };
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, life),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn refresh_threshold() {
        let k = keys(&[KEY_A]);
        let half = LIFE.idle / 2;
        let mut s = session();
        s.issued = NOW - half - 10;
        for (seen, refresh) in [
            (NOW, false),
            (NOW - 1, false),
            (NOW - half + 1, false),
            (NOW - half, true),
            (NOW - half - 1, true),
        ] {
            s.seen = seen;
            assert_eq!(
                decode(&encode(&s, &k), &k, NOW, LIFE).map(|r| r.1),
                Ok(refresh),
                "seen = now - {}",
                NOW - seen
            );
        }
        // Seen slightly in the future (another instance's clock): no refresh.
        s.seen = NOW + 30;
        s.issued = NOW + 30;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE).map(|r| r.1),
            Ok(false)
        );
    }

    #[test]
    fn from_the_future() {
        let k = keys(&[KEY_A]);
        let mut s = session();
        s.issued = NOW + MAX_FUTURE_SKEW;
        s.seen = NOW + MAX_FUTURE_SKEW;
        assert!(decode(&encode(&s, &k), &k, NOW, LIFE).is_ok());
        s.seen = NOW + MAX_FUTURE_SKEW + 1;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::FromFuture)
        );
        s.issued = NOW + MAX_FUTURE_SKEW + 1;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::FromFuture)
        );
        s.issued = u64::MAX;
        s.seen = u64::MAX;
        assert_eq!(
            decode(&encode(&s, &k), &k, NOW, LIFE),
            Err(SessionError::FromFuture)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let k = keys(&[KEY_A]);
        for v in [
            "\u{0}",
            "é.é",
            "\u{1f512}.\u{1f512}",
            "v3|||.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "....................................................",
            "v3|00112233445566778899aabbccddeeff|1|1é.€AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(decode(v, &k, NOW, LIFE).is_err(), "{v:?}");
        }
    }

    #[test]
    fn ids_are_random() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 16]);
        let s = Session { id: a, ..session() };
        assert_eq!(s.id_hex().as_str().len(), 32);
        assert_eq!(parse_id(s.id_hex().as_str()), Some(a));
    }

    #[test]
    fn decimal_parser() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("10"), Some(10));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1_0",
            "18446744073709551616",
            "99999999999999999999",
            "1e3",
            "٣",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
