//! The `state` of a provider sign-in, and the PKCE verifier and `nonce`
//! derived from it.
//!
//! `GET /.portcullis/oauth2/start` gives the browser a random *binding* in
//! a cookie of its own (SameSite=Lax: the provider's redirect back is a
//! cross-site navigation) and sends the provider
//!
//! ```text
//! state = <provider>.<base64url(next)>.<issued unix seconds>.<nonce>.<base64url HMAC-SHA256>
//! ```
//!
//! with the MAC over (issued, provider, next, nonce, binding); the 128-bit
//! random nonce makes two starts in the same second two states (each is
//! taken once). The callback accepts
//! a state only with the binding cookie it was made for (a state from
//! another browser — login CSRF — fails), at most [`STATE_MAX_AGE`] old,
//! and only once (the gateway records taken states in the identity store).
//!
//! The PKCE verifier and the nonce are MACs of the state under the same
//! key: nothing is stored between the two requests, any instance that has
//! the key can finish a sign-in another started, and someone who sees the
//! state (it travels in URLs) learns neither.

use crate::csrf::DerivedKeys;
use crate::mac;
use crate::session::{parse_decimal, MAX_FUTURE_SKEW};

/// A state is good for ten minutes.
pub const STATE_MAX_AGE: u64 = 600;
/// Longest `next` carried through a sign-in (longer: `/`).
pub const MAX_NEXT: usize = 2048;

/// What a verified state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The provider's configured id.
    pub provider: String,
    /// Where to go afterwards, as given at the start (re-check it with
    /// [`crate::redirect::safe_next`] before use).
    pub next: String,
    /// Unix seconds.
    pub issued: u64,
}

/// Why a state was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Not a state this gateway makes.
    Malformed,
    /// Made for another browser, or under another key.
    OtherBrowser,
    /// Older than [`STATE_MAX_AGE`].
    Expired,
}

/// A state for a sign-in with `provider` going to `next`, bound to
/// `binding`, issued at `now`. `provider` is `[a-z0-9-]{1,32}` (config).
pub fn state(key: &[u8; 32], binding: &str, provider: &str, next: &str, now: u64) -> String {
    let next = if next.len() > MAX_NEXT { "/" } else { next };
    let salt = mac::b64(&rand::random::<[u8; 16]>());
    let mut out = String::with_capacity(provider.len() + next.len() * 4 / 3 + 96);
    out.push_str(provider);
    out.push('.');
    mac::push_b64(next.as_bytes(), &mut out);
    out.push('.');
    out.push_str(&now.to_string());
    out.push('.');
    out.push_str(&salt);
    out.push('.');
    mac::push_b64(&tag(key, binding, provider, next, &salt, now), &mut out);
    out
}

/// Checks `state` against the browser's `binding` at `now`. The tag is
/// compared in constant time before the age is looked at, so a forged
/// state is always `OtherBrowser`, never `Expired`.
pub fn verify(key: &[u8; 32], binding: &str, state: &str, now: u64) -> Result<Flow, StateError> {
    let mut parts = state.split('.');
    let (Some(provider), Some(next), Some(issued), Some(salt), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(StateError::Malformed);
    };
    let valid_provider = (1..=32).contains(&provider.len())
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let next = decode_b64(next)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|n| n.len() <= MAX_NEXT);
    let valid_salt = salt.len() == 22
        && salt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let (Some(next), Some(issued), Some(sig), true, true) = (
        next,
        parse_decimal(issued),
        mac::decode_tag(sig),
        valid_provider,
        valid_salt,
    ) else {
        return Err(StateError::Malformed);
    };
    if binding.is_empty()
        || !mac::tags_equal(&tag(key, binding, provider, &next, salt, issued), &sig)
    {
        return Err(StateError::OtherBrowser);
    }
    if issued > now.saturating_add(MAX_FUTURE_SKEW) {
        return Err(StateError::Malformed);
    }
    if now.saturating_sub(issued) > STATE_MAX_AGE {
        return Err(StateError::Expired);
    }
    Ok(Flow {
        provider: provider.to_string(),
        next,
        issued,
    })
}

/// [`verify`] with each of `keys`; on success also the key that signed the
/// state, from which its nonce and PKCE verifier derive. A tag that no key
/// makes is `OtherBrowser`; once a key matches, its verdict stands.
pub fn verify_any<'k>(
    keys: &'k DerivedKeys,
    binding: &str,
    state: &str,
    now: u64,
) -> Result<(Flow, &'k [u8; 32]), StateError> {
    for key in keys.all() {
        match verify(key, binding, state, now) {
            Ok(flow) => return Ok((flow, key)),
            Err(StateError::OtherBrowser) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateError::OtherBrowser)
}

/// The PKCE code verifier for `state`: 43 base64url characters (RFC 7636
/// asks for 43–128 of them, 256 bits of entropy here).
pub fn pkce_verifier(key: &[u8; 32], state: &str) -> String {
    mac::b64(&mac::tag(&mac::keyed(key), &[b"pkce ", state.as_bytes()]))
}

/// The OpenID Connect `nonce` for `state`.
pub fn nonce(key: &[u8; 32], state: &str) -> String {
    mac::b64(&mac::tag(&mac::keyed(key), &[b"nonce ", state.as_bytes()]))
}

fn tag(
    key: &[u8; 32],
    binding: &str,
    provider: &str,
    next: &str,
    salt: &str,
    issued: u64,
) -> [u8; 32] {
    let len = |s: &str| u64::try_from(s.len()).unwrap_or(u64::MAX).to_be_bytes();
    mac::tag(
        &mac::keyed(key),
        &[
            b"oauth2 state ",
            &issued.to_be_bytes(),
            &len(provider),
            provider.as_bytes(),
            &len(next),
            next.as_bytes(),
            &len(salt),
            salt.as_bytes(),
            binding.as_bytes(),
        ],
    )
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const NOW: u64 = 1_800_000_000;

    fn made(next: &str) -> String {
        state(&KEY, "binding-a", "corp", next, NOW)
    }

    #[test]
    fn a_state_verifies_for_its_browser_within_ten_minutes() {
        let s = made("/admin?x=1");
        let flow = verify(&KEY, "binding-a", &s, NOW + STATE_MAX_AGE).expect("valid");
        assert_eq!(
            flow,
            Flow {
                provider: "corp".into(),
                next: "/admin?x=1".into(),
                issued: NOW
            }
        );
        assert_eq!(
            verify(&KEY, "binding-a", &s, NOW + STATE_MAX_AGE + 1),
            Err(StateError::Expired)
        );
    }

    fn keys(list: &[&[u8]]) -> DerivedKeys {
        let keys = crate::session::SessionKeys::new(list.iter().map(|k| k.to_vec()).collect());
        DerivedKeys::derive(&keys.expect("keys"), "oauth2 state")
    }

    #[test]
    fn a_state_signed_with_either_rotating_key_verifies_with_the_other_order() {
        let (old, new): (&[u8], &[u8]) = (&[1; 32], &[2; 32]);
        let a = keys(&[new, old]);
        let b = keys(&[old, new]);
        let s = state(a.signing(), "binding-a", "corp", "/x", NOW);
        let (flow, key) = verify_any(&b, "binding-a", &s, NOW).expect("valid on b");
        assert_eq!(flow.next, "/x");
        // The nonce and PKCE verifier derive from the key that signed.
        assert_eq!(key, a.signing());
        assert_eq!(nonce(key, &s), nonce(a.signing(), &s));
        // A key set without the signer refuses it; the other browser too.
        assert_eq!(
            verify_any(&keys(&[old]), "binding-a", &s, NOW),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            verify_any(&b, "binding-b", &s, NOW),
            Err(StateError::OtherBrowser)
        );
        // Expiry is reported once a key matched, whichever position it has.
        assert_eq!(
            verify_any(&b, "binding-a", &s, NOW + STATE_MAX_AGE + 1),
            Err(StateError::Expired)
        );
        assert_eq!(
            verify_any(&b, "binding-a", "x.y", NOW),
            Err(StateError::Malformed)
        );
    }

    #[test]
    fn another_browser_key_or_edit_fails() {
        let s = made("/");
        assert_eq!(
            verify(&KEY, "binding-b", &s, NOW),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(verify(&KEY, "", &s, NOW), Err(StateError::OtherBrowser));
        assert_eq!(
            verify(&[8; 32], "binding-a", &s, NOW),
            Err(StateError::OtherBrowser)
        );
        // Every part is covered by the MAC.
        let parts: Vec<&str> = s.split('.').collect();
        let swap = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            p.join(".")
        };
        let evil_next = mac::b64(b"//evil.example");
        let other_salt = mac::b64(&[0u8; 16]);
        for forged in [
            swap(0, "other"),
            swap(1, &evil_next),
            swap(2, &(NOW - 1).to_string()),
            swap(3, &other_salt),
        ] {
            assert_eq!(
                verify(&KEY, "binding-a", &forged, NOW),
                Err(StateError::OtherBrowser),
                "{forged}"
            );
        }
        // A forged state older than ten minutes is still "another browser".
        assert_eq!(
            verify(&KEY, "binding-b", &s, NOW + 10_000),
            Err(StateError::OtherBrowser)
        );
    }

    #[test]
    fn malformed_states_are_refused() {
        let s = made("/");
        let parts: Vec<&str> = s.split('.').collect();
        for bad in [
            String::new(),
            "x".into(),
            format!("{s}.extra"),
            parts[..4].join("."),
            [parts[0], parts[1], parts[2], "short", parts[4]].join("."),
            s.replacen("corp", "CORP", 1),
            s.replacen("corp", "c_rp", 1),
            s.replacen("corp", "ćorp", 1),
            [parts[0], "!!", parts[2], parts[3], parts[4]].join("."),
            [
                parts[0],
                parts[1],
                &format!("+{}", parts[2]),
                parts[3],
                parts[4],
            ]
            .join("."),
            [parts[0], parts[1], parts[2], parts[3], "short"].join("."),
            [
                parts[0],
                &mac::b64(&[0xff, 0xfe]),
                parts[2],
                parts[3],
                parts[4],
            ]
            .join("."),
        ] {
            assert_eq!(
                verify(&KEY, "binding-a", &bad, NOW),
                Err(StateError::Malformed),
                "{bad:?}"
            );
        }
        // From the future beyond the skew.
        let future = state(&KEY, "binding-a", "corp", "/", NOW + MAX_FUTURE_SKEW + 1);
        assert_eq!(
            verify(&KEY, "binding-a", &future, NOW),
            Err(StateError::Malformed)
        );
    }

    #[test]
    fn two_starts_in_one_second_are_two_states() {
        let (a, b) = (made("/"), made("/"));
        assert_ne!(a, b);
        assert!(
            verify(&KEY, "binding-a", &a, NOW).is_ok()
                && verify(&KEY, "binding-a", &b, NOW).is_ok()
        );
        assert_ne!(pkce_verifier(&KEY, &a), pkce_verifier(&KEY, &b));
    }

    #[test]
    fn an_overlong_next_becomes_the_root() {
        let long = format!("/{}", "a".repeat(MAX_NEXT));
        let s = made(&long);
        assert_eq!(
            verify(&KEY, "binding-a", &s, NOW).map(|f| f.next),
            Ok("/".into())
        );
    }

    #[test]
    fn verifier_and_nonce_depend_on_key_and_state() {
        let (a, b) = (made("/a"), made("/b"));
        let v = pkce_verifier(&KEY, &a);
        assert_eq!(v.len(), 43);
        assert!(v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(v, pkce_verifier(&KEY, &a));
        assert_ne!(v, pkce_verifier(&KEY, &b));
        assert_ne!(v, pkce_verifier(&[8; 32], &a));
        assert_ne!(nonce(&KEY, &a), v, "two purposes, two values");
        assert_ne!(nonce(&KEY, &a), nonce(&KEY, &b));
    }
}
