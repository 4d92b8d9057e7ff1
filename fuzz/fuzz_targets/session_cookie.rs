//! Session cookie and CSRF token verification (policies/src/session.rs,
//! csrf.rs, and the crate-private mac.rs under both).
//!
//! The input is read two ways:
//! 1. as a cookie value handed to `session::decode` under two rotation keys
//!    (and as a CSRF token handed to `csrf::verify`);
//! 2. as the fields of a session (id, issued, seen) and a
//!    clock, which is encoded, decoded, then tampered with.
//!
//! Properties:
//! * a cookie that verifies re-encodes to exactly itself under the key that
//!   signed it (one spelling per session), respects the clocks
//!   (`issued + ttl > now`, `seen + idle > now`, nothing beyond the skew),
//!   and has `seen >= issued`;
//! * an encoded session round-trips through `decode`
//!   (with `refresh` exactly when half of `idle` has passed);
//! * changing any byte of a valid cookie, or verifying it under an
//!   unrelated key, never verifies;
//! * CSRF: a minted token verifies for its binding and purpose only, and a
//!   fuzzed token that verifies is the token minted for its `issued`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::csrf;
use policies::session::{self, Lifetimes, Session, SessionKeys, MAX_FUTURE_SKEW};

const K1: &[u8] = b"fuzz-session-key-one-0123456789abcdef";
const K2: &[u8] = b"fuzz-session-key-two-0123456789abcdef";
const OTHER: &[u8] = b"fuzz-session-key-unrelated-0123456789";
const NOW: u64 = 1_800_000_000;
const LIFE: Lifetimes = Lifetimes {
    ttl: 43_200,
    idle: 3_600,
};

fn keys(k: &[&[u8]]) -> SessionKeys {
    SessionKeys::new(k.iter().map(|k| k.to_vec()).collect()).expect("keys")
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fn check_verified(value: &str, s: &Session, refresh: bool, now: u64, life: Lifetimes) {
    assert!(s.seen >= s.issued, "{value:?}");
    assert!(s.issued.saturating_add(life.ttl) > now, "{value:?}");
    assert!(s.seen.saturating_add(life.idle) > now, "{value:?}");
    assert!(s.issued <= now.saturating_add(MAX_FUTURE_SKEW), "{value:?}");
    assert!(s.seen <= now.saturating_add(MAX_FUTURE_SKEW), "{value:?}");
    assert_eq!(refresh, now.saturating_sub(s.seen) >= life.idle / 2);
}

fuzz_target!(|data: &[u8]| {
    let rotated = keys(&[K1, K2]);

    // 1. Arbitrary bytes as a cookie value.
    if let Ok(value) = std::str::from_utf8(data) {
        if let Ok((s, refresh)) = session::decode(value, &rotated, NOW, LIFE) {
            check_verified(value, &s, refresh, NOW, LIFE);
            let by_k1 = session::encode(&s, &keys(&[K1]));
            let by_k2 = session::encode(&s, &keys(&[K2]));
            assert!(
                value == by_k1 || value == by_k2,
                "{value:?} has a second spelling"
            );
            assert!(session::decode(value, &keys(&[OTHER]), NOW, LIFE).is_err());
        }
        let ck = csrf::derive_key(K1, "csrf");
        if csrf::verify(&ck, "binding", "login", value, NOW, 3_600) {
            let issued: u64 = value.split('.').next().unwrap().parse().unwrap();
            assert_eq!(value, csrf::token(&ck, "binding", "login", issued));
        }
    }

    // 2. Bytes as session fields: encode, decode, tamper.
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = data.get(i).copied().unwrap_or(0);
    }
    let issued = u64_at(data, 24) % (NOW + 2 * MAX_FUTURE_SKEW);
    let seen = issued.saturating_add(u64_at(data, 32) % 200_000);
    let s = Session { id, issued, seen };
    let life = Lifetimes {
        ttl: 1 + u64_at(data, 8) % 100_000,
        idle: 1 + u64_at(data, 0) % 10_000,
    };
    let now = seen
        .saturating_add(u64_at(data, 4) % 2_000)
        .saturating_sub(100);
    let cookie = session::encode(&s, &keys(&[K1]));
    // RFC 6265 cookie-octets only, so no quoting is ever needed.
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')),
        "not a cookie-octet string: {cookie:?}"
    );
    let decoded = session::decode(&cookie, &rotated, now, life);
    let expect_ok = cookie.len() <= session::MAX_COOKIE_LEN
        && s.issued.saturating_add(life.ttl) > now
        && s.seen.saturating_add(life.idle) > now
        && s.issued <= now.saturating_add(MAX_FUTURE_SKEW)
        && s.seen <= now.saturating_add(MAX_FUTURE_SKEW);
    match decoded {
        Ok((back, refresh)) => {
            assert!(expect_ok, "{cookie:?} verified at {now} {life:?}");
            assert_eq!(back, s);
            check_verified(&cookie, &back, refresh, now, life);
        }
        Err(e) => assert!(!expect_ok, "{cookie:?} refused at {now} {life:?}: {e}"),
    }
    // Signed with the second (old) key: still verifies under rotation.
    if expect_ok {
        let old = session::encode(&s, &keys(&[K2]));
        assert!(session::decode(&old, &rotated, now, life).is_ok());
        assert!(session::decode(&cookie, &keys(&[OTHER]), now, life).is_err());
        // Any single-byte change breaks it.
        let pos = usize::from(data.first().copied().unwrap_or(0)) % cookie.len();
        let flip = data.get(1).copied().unwrap_or(1) | 1;
        let mut bytes = cookie.clone().into_bytes();
        bytes[pos] ^= flip & 0x7F;
        if let Ok(tampered) = String::from_utf8(bytes) {
            if tampered != cookie {
                assert!(
                    session::decode(&tampered, &rotated, now, life).is_err(),
                    "{cookie:?} tampered at {pos} still verifies"
                );
            }
        }
    }

    // CSRF tokens are bound to binding and purpose.
    let ck = csrf::derive_key(K1, "csrf");
    let binding = String::from_utf8_lossy(data.get(..22).unwrap_or(data)).into_owned();
    let t = csrf::token(&ck, &binding, "login", now);
    assert_eq!(
        csrf::verify(&ck, &binding, "login", &t, now, 60),
        !binding.is_empty()
    );
    assert!(!csrf::verify(&ck, &binding, "logout", &t, now, 60));
    assert!(!csrf::verify(
        &ck,
        &format!("{binding}x"),
        "login",
        &t,
        now,
        60
    ));
    assert!(!csrf::verify(
        &csrf::derive_key(K2, "csrf"),
        &binding,
        "login",
        &t,
        now,
        60
    ));
});
