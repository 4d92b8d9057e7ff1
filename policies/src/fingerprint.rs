//! A fingerprint of an instance's effective policy, so instances behind one
//! load balancer can tell that they run different configs.
//!
//! The gateway renders each part of its compiled config (routes, limits,
//! access, headers, …) to canonical text — without listener addresses,
//! ports or local paths, which differ by design — and this module digests
//! them. Each section's digest is published with the instance's heartbeat,
//! so an operator learns *which* part differs, not only that something
//! does.
//!
//! Secrets enter through [`secrets_digest`] only: an argon2id digest of
//! every session key, the emergency verifier's commitment and the
//! assertion key together. The published value reveals nothing a reader of
//! the shared store could test guesses against cheaply, and the session
//! keys' entropy shields a weak emergency secret.

use std::fmt::Write as _;

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// Hex characters of a section digest: 64 bits, plenty to tell configs
/// apart (this is not a security boundary; the secrets digest is).
const SHORT: usize = 16;

/// One instance's fingerprint: a digest per named section and one over all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// (section name, hex digest), in the order given.
    pub sections: Vec<(String, String)>,
}

impl Fingerprint {
    /// Digests each section's canonical text.
    pub fn new<'a>(sections: impl IntoIterator<Item = (&'a str, String)>) -> Fingerprint {
        Fingerprint {
            sections: sections
                .into_iter()
                .map(|(name, text)| (name.to_string(), short_hex(text.as_bytes())))
                .collect(),
        }
    }

    /// The digest over every section: equal exactly when all sections are.
    pub fn digest(&self) -> String {
        short_hex(self.encode().as_bytes())
    }

    /// `name=digest` pairs separated by `,`: what the heartbeat publishes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (name, digest)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{name}={digest}");
        }
        out
    }

    /// Reads [`Fingerprint::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Fingerprint> {
        let sections = text
            .split(',')
            .map(|pair| {
                let (name, digest) = pair.split_once('=')?;
                let name_ok = !name.is_empty()
                    && name.len() <= 32
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                let digest_ok =
                    digest.len() == SHORT && digest.bytes().all(|b| b.is_ascii_hexdigit());
                (name_ok && digest_ok).then(|| (name.to_string(), digest.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Fingerprint { sections })
    }

    /// The sections whose digests differ from `other`'s (a section only
    /// one side has counts as differing).
    pub fn differing<'a>(&'a self, other: &'a Fingerprint) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for (name, digest) in &self.sections {
            let theirs = other.sections.iter().find(|(n, _)| n == name);
            if theirs.is_none_or(|(_, d)| d != digest) {
                out.push(name);
            }
        }
        for (name, _) in &other.sections {
            if !self.sections.iter().any(|(n, _)| n == name) {
                out.push(name);
            }
        }
        out
    }
}

/// The secrets section's text: argon2id (19 MiB, 2 passes) over the session
/// keys in sorted order (a rolling rotation changes their order, not the
/// set), the emergency verifier's commitment and the assertion key, under a
/// fixed salt so equal secrets give equal digests on every instance.
pub fn secrets_digest(
    session_keys: &[&[u8]],
    emergency: Option<[u8; 32]>,
    assertion_key: Option<&[u8]>,
) -> String {
    let mut keys: Vec<&[u8]> = session_keys.to_vec();
    keys.sort_unstable();
    let mut input = Vec::new();
    let mut push = |part: &[u8]| {
        input.extend_from_slice(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        input.extend_from_slice(part);
    };
    push(b"session keys");
    for k in &keys {
        push(k);
    }
    push(b"emergency");
    push(emergency.as_ref().map_or(&[][..], |c| &c[..]));
    push(b"assertion key");
    push(assertion_key.unwrap_or_default());
    let mut out = [0u8; 32];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default());
    if argon
        .hash_password_into(&input, b"portcullis fingerprint v1", &mut out)
        .is_err()
    {
        // Unreachable with default parameters and this salt; a fixed
        // digest of the input still tells configs apart.
        out.copy_from_slice(&Sha256::digest(&input));
    }
    hex::encode(out)
}

/// SHA-256 of `text`, its first 64 bits in hex: a name derived from a
/// definition (a rate-limit rule's counters, a section's digest).
pub fn short_digest(text: &str) -> String {
    short_hex(text.as_bytes())
}

fn short_hex(bytes: &[u8]) -> String {
    let mut h = hex::encode(Sha256::digest(bytes));
    h.truncate(SHORT);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(routes: &str, limits: &str) -> Fingerprint {
        Fingerprint::new([
            ("routes", routes.to_string()),
            ("limits", limits.to_string()),
        ])
    }

    #[test]
    fn equal_sections_give_equal_fingerprints_and_differences_are_named() {
        let a = fp("r1", "l1");
        assert_eq!(a, fp("r1", "l1"));
        assert_eq!(a.digest(), fp("r1", "l1").digest());
        assert_eq!(a.digest().len(), SHORT);
        let b = fp("r2", "l1");
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.differing(&b), vec!["routes"]);
        assert_eq!(a.differing(&a), Vec::<&str>::new());
        let fewer = Fingerprint::new([("routes", "r1".to_string())]);
        assert_eq!(a.differing(&fewer), vec!["limits"]);
        assert_eq!(fewer.differing(&a), vec!["limits"]);
    }

    #[test]
    fn the_published_form_round_trips_and_junk_is_refused() {
        let a = fp("r1", "l1");
        assert_eq!(Fingerprint::decode(&a.encode()), Some(a.clone()));
        let good = a.encode();
        for bad in [
            "",
            "routes",
            "routes=",
            "Routes=0123456789abcdef",
            "routes=0123456789abcdeg",
            "routes=0123456789abcdef0",
            &format!("{good},"),
            "rou tes=0123456789abcdef",
        ] {
            assert_eq!(Fingerprint::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_secrets_digest_ignores_key_order_but_not_keys() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let base = secrets_digest(&[&k1, &k2], Some([9; 32]), None);
        assert_eq!(base, secrets_digest(&[&k2, &k1], Some([9; 32]), None));
        assert_eq!(base.len(), 64);
        assert_ne!(base, secrets_digest(&[&k1], Some([9; 32]), None));
        assert_ne!(base, secrets_digest(&[&k1, &k2], Some([8; 32]), None));
        assert_ne!(base, secrets_digest(&[&k1, &k2], None, None));
        assert_ne!(base, secrets_digest(&[&k1, &k2], Some([9; 32]), Some(&k1)));
        // Length prefixes: moving bytes between keys is another input.
        assert_ne!(
            secrets_digest(&[b"ab", b"c"], None, None),
            secrets_digest(&[b"a", b"bc"], None, None)
        );
    }
}
