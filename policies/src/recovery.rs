//! Recovery codes: ten per account, shown once, each good for one sign-in.
//! A code is 80 random bits as four groups of four base32 letters
//! (`abcd-efgh-jkmn-pqrs`); the store keeps only its SHA-256, so a copy of
//! the database gives no usable code (80 bits: no offline search either).

use sha2::{Digest, Sha256};

/// Codes per set.
pub const COUNT: usize = 10;
/// Crockford's base32 alphabet in lower case: no `i l o u` to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new code.
pub fn new_code() -> String {
    let bytes: [u8; 10] = rand::random();
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let index = usize::try_from((bits >> (75 - 5 * i)) & 31).unwrap_or(0);
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'0')));
    }
    out
}

/// A new set of [`COUNT`] codes.
pub fn new_set() -> Vec<String> {
    (0..COUNT).map(|_| new_code()).collect()
}

/// The stored form of a code as typed: case, spaces and dashes do not
/// matter; `None` for anything that cannot be a code.
pub fn code_hash(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = letters.len() == 16 && letters.bytes().all(|b| ALPHABET.contains(&b));
    if !valid {
        return None;
    }
    let digest = Sha256::digest(letters.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fresh_and_typed_loosely() {
        let set = new_set();
        assert_eq!(set.len(), COUNT);
        for c in &set {
            assert_eq!(c.len(), 19, "{c}");
            assert_eq!(c.matches('-').count(), 3, "{c}");
        }
        let mut unique = set.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        let c = &set[0];
        let h = code_hash(c).expect("own code");
        assert_eq!(h.len(), 64);
        assert_eq!(code_hash(&c.to_uppercase()), Some(h.clone()));
        assert_eq!(code_hash(&c.replace('-', " ")), Some(h.clone()));
        assert_eq!(code_hash(&c.replace('-', "")), Some(h.clone()));
        assert_ne!(code_hash(&set[1]), Some(h));
    }

    #[test]
    fn anything_else_is_no_code() {
        let c = new_code();
        for bad in [
            String::new(),
            c[..18].to_string(),
            format!("{c}a"),
            c.replacen(|ch: char| ch.is_ascii_alphanumeric(), "i", 1),
            c.replacen(|ch: char| ch.is_ascii_alphanumeric(), "é", 1),
            c.replace('-', "_"),
            "123456".to_string(),
        ] {
            assert_eq!(code_hash(&bad), None, "{bad}");
        }
    }
}
