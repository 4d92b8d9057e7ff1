//! CSRF tokens for the gateway's own forms, bound to one browser.
//!
//! The gateway gives each browser a random *binding* in a cookie of its own
//! and puts into every form a token
//!
//! ```text
//! <issued unix seconds>.<base64url HMAC-SHA256(key, issued, purpose, binding)>
//! ```
//!
//! A POST is accepted only when the token verifies for the binding cookie the
//! same request carries and for the form's purpose. A cross-site attacker can
//! neither read the victim's binding nor mint a token for it, and a token
//! issued to the attacker's own browser is useless in the victim's (another
//! binding). The purpose keeps a logout token from authorising, say, a
//! password reset. Tokens are stateless, so they work across instances.
//!
//! The MAC input is length-prefixed (`issued` as 8 bytes big-endian, then the
//! purpose length as 8 bytes big-endian, the purpose, and the binding), so no
//! two (issued, purpose, binding) triples share one input.

use crate::mac;
use crate::session::{parse_decimal, SessionKeys, MAX_FUTURE_SKEW};

/// One purpose's keys, derived from every session key in order: the first
/// signs, any verifies, so a value signed by an instance that already signs
/// with a new key (or still with the old one) verifies on every instance
/// during a rolling key rotation.
#[derive(Clone)]
pub struct DerivedKeys {
    signing: [u8; 32],
    others: Vec<[u8; 32]>,
}

impl DerivedKeys {
    /// The keys for `label`, one per session key, in the same order.
    pub fn derive(keys: &SessionKeys, label: &str) -> DerivedKeys {
        let mut all = keys.all().map(|k| derive_key(k, label));
        DerivedKeys {
            signing: all.next().unwrap_or_default(),
            others: all.collect(),
        }
    }

    /// The key new values are signed with.
    pub fn signing(&self) -> &[u8; 32] {
        &self.signing
    }

    /// Every key, the signing one first.
    pub fn all(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.signing).chain(&self.others)
    }
}

impl std::fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKeys")
            .field("keys", &(1 + self.others.len()))
            .finish_non_exhaustive()
    }
}

/// [`verify`] with each of `keys`: true when any verifies.
pub fn verify_any(
    keys: &DerivedKeys,
    binding: &str,
    purpose: &str,
    token: &str,
    now: u64,
    max_age: u64,
) -> bool {
    keys.all()
        .any(|k| verify(k, binding, purpose, token, now, max_age))
}

/// A fresh random binding for a browser: 128 bits as 22 base64url chars.
pub fn new_binding() -> String {
    mac::b64(&rand::random::<[u8; 16]>())
}

/// A per-purpose key from a master secret: HMAC-SHA256(master,
/// `"portcullis " + label`), so one configured secret never serves two
/// different jobs directly.
pub fn derive_key(master: &[u8], label: &str) -> [u8; 32] {
    mac::tag(&mac::keyed(master), &[b"portcullis ", label.as_bytes()])
}

/// A token for `binding` and `purpose`, issued at `now`.
pub fn token(key: &[u8; 32], binding: &str, purpose: &str, now: u64) -> String {
    let mut out = now.to_string();
    out.push('.');
    mac::push_b64(&token_tag(key, binding, purpose, now), &mut out);
    out
}

/// True only for a well-formed token for this `binding` and `purpose`, at
/// most `max_age` seconds old and not more than 60 s in the future. Always
/// false for an empty binding (a browser without the binding cookie). The
/// tag comparison is constant time.
pub fn verify(
    key: &[u8; 32],
    binding: &str,
    purpose: &str,
    token: &str,
    now: u64,
    max_age: u64,
) -> bool {
    if binding.is_empty() {
        return false;
    }
    let Some((issued, tag)) = token.split_once('.') else {
        return false;
    };
    let (Some(issued), Some(tag)) = (parse_decimal(issued), mac::decode_tag(tag)) else {
        return false;
    };
    if issued > now.saturating_add(MAX_FUTURE_SKEW) || now.saturating_sub(issued) > max_age {
        return false;
    }
    mac::tags_equal(&token_tag(key, binding, purpose, issued), &tag)
}

fn token_tag(key: &[u8; 32], binding: &str, purpose: &str, issued: u64) -> [u8; 32] {
    let purpose_len = u64::try_from(purpose.len()).unwrap_or(u64::MAX);
    mac::tag(
        &mac::keyed(key),
        &[
            &issued.to_be_bytes(),
            &purpose_len.to_be_bytes(),
            purpose.as_bytes(),
            binding.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const HOUR: u64 = 3600;

    fn key() -> [u8; 32] {
        derive_key(b"master secret master secret master secret", "csrf")
    }

    #[test]
    fn round_trip() {
        let k = key();
        let b = new_binding();
        let t = token(&k, &b, "login", NOW);
        assert!(t.starts_with("1700000000."), "{t}");
        assert!(verify(&k, &b, "login", &t, NOW, HOUR));
        assert!(verify(&k, &b, "login", &t, NOW + HOUR, HOUR));
        assert!(!verify(&k, &b, "login", &t, NOW + HOUR + 1, HOUR));
    }

    #[test]
    fn tokens_verify_with_every_session_key_in_any_order() {
        let (old, new) = (vec![1u8; 32], vec![2u8; 32]);
        let derive = |list: Vec<Vec<u8>>| {
            DerivedKeys::derive(&SessionKeys::new(list).expect("keys"), "csrf")
        };
        let a = derive(vec![new.clone(), old.clone()]);
        let b = derive(vec![old.clone(), new.clone()]);
        let only_old = derive(vec![old]);
        let bind = new_binding();
        let t = token(a.signing(), &bind, "login", NOW);
        assert!(verify_any(&a, &bind, "login", &t, NOW, HOUR));
        assert!(verify_any(&b, &bind, "login", &t, NOW, HOUR));
        assert!(!verify_any(&only_old, &bind, "login", &t, NOW, HOUR));
        // Other bindings, purposes and ages still fail with every key.
        assert!(!verify_any(&b, &new_binding(), "login", &t, NOW, HOUR));
        assert!(!verify_any(&b, &bind, "logout", &t, NOW, HOUR));
        assert!(!verify_any(&b, &bind, "login", &t, NOW + HOUR + 1, HOUR));
        assert_eq!(format!("{b:?}"), "DerivedKeys { keys: 2, .. }");
    }

    #[test]
    fn bindings() {
        let a = new_binding();
        let b = new_binding();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn other_binding_refused() {
        let k = key();
        let t = token(&k, "binding-A", "logout", NOW);
        assert!(verify(&k, "binding-A", "logout", &t, NOW, HOUR));
        for other in [
            "binding-B",
            "binding-a",
            "binding-A ",
            "binding-",
            "binding-AA",
        ] {
            assert!(!verify(&k, other, "logout", &t, NOW, HOUR), "{other:?}");
        }
    }

    #[test]
    fn other_purpose_refused() {
        let k = key();
        let b = new_binding();
        let t = token(&k, &b, "logout", NOW);
        for other in ["login", "Logout", "logout ", "", "emergency/reset-password"] {
            assert!(!verify(&k, &b, other, &t, NOW, HOUR), "{other:?}");
        }
    }

    /// Moving bytes between purpose and binding does not keep a token valid.
    #[test]
    fn no_field_shifting() {
        let k = key();
        let t = token(&k, "bc", "a", NOW);
        assert!(!verify(&k, "c", "ab", &t, NOW, HOUR));
        assert!(!verify(&k, "abc", "", &t, NOW, HOUR));
    }

    #[test]
    fn other_key_refused() {
        let b = new_binding();
        let t = token(&key(), &b, "login", NOW);
        let other = derive_key(b"master secret master secret master secret", "csrf2");
        assert!(!verify(&other, &b, "login", &t, NOW, HOUR));
    }

    #[test]
    fn empty_binding_always_refused() {
        let k = key();
        let t = token(&k, "", "login", NOW);
        assert!(!verify(&k, "", "login", &t, NOW, HOUR));
    }

    #[test]
    fn expiry_and_future() {
        let k = key();
        let b = new_binding();
        let t = token(&k, &b, "login", NOW);
        assert!(!verify(&k, &b, "login", &t, NOW + 2 * HOUR, HOUR));
        assert!(verify(&k, &b, "login", &t, NOW - MAX_FUTURE_SKEW, HOUR));
        assert!(!verify(
            &k,
            &b,
            "login",
            &t,
            NOW - MAX_FUTURE_SKEW - 1,
            HOUR
        ));
        assert!(!verify(&k, &b, "login", &t, 0, u64::MAX));
        let t = token(&k, &b, "login", 0);
        assert!(verify(&k, &b, "login", &t, NOW, u64::MAX));
        assert!(!verify(&k, &b, "login", &t, NOW, NOW - 1));
        let t = token(&k, &b, "login", u64::MAX);
        assert!(!verify(&k, &b, "login", &t, NOW, u64::MAX));
    }

    #[test]
    fn tampered() {
        let k = key();
        let b = new_binding();
        let t = token(&k, &b, "login", NOW);
        let (issued, tag) = t.split_once('.').unwrap();
        // Re-dating a token invalidates it.
        assert!(!verify(
            &k,
            &b,
            "login",
            &format!("{}.{tag}", NOW + 1),
            NOW,
            HOUR
        ));
        for bad in [
            String::new(),
            ".".into(),
            issued.to_string(),
            format!("{issued}."),
            format!(".{tag}"),
            tag.to_string(),
            format!("{issued}.{tag}="),
            format!("{issued}.{tag}A"),
            format!("{issued}.{}", &tag[1..]),
            format!("+{issued}.{tag}"),
            format!("0{issued}.{tag}"),
            format!(" {issued}.{tag}"),
            format!("{issued}.{tag} "),
            format!("{issued}.{tag}.{tag}"),
            format!("{issued}..{tag}"),
            format!("{issued}.{}", tag.replace('-', "+").replace('_', "/")),
        ] {
            if bad == t {
                continue;
            }
            assert!(!verify(&k, &b, "login", &bad, NOW, HOUR), "{bad:?}");
        }
        let bytes = t.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..7 {
                let mut v = bytes.to_vec();
                v[i] ^= 1 << bit;
                if let Ok(s) = String::from_utf8(v) {
                    assert!(!verify(&k, &b, "login", &s, NOW, HOUR), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn derive_key_separates_labels() {
        let a = derive_key(b"master", "csrf");
        assert_ne!(a, derive_key(b"master", "assertion"));
        assert_ne!(a, derive_key(b"master2", "csrf"));
        assert_eq!(a, derive_key(b"master", "csrf"));
        // Exactly HMAC-SHA256(master, "portcullis csrf").
        assert_eq!(a, mac::tag(&mac::keyed(b"master"), &[b"portcullis csrf"]));
    }
}
