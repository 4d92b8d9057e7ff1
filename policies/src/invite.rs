//! Invitation tokens: 256 random bits in the link, only their SHA-256 in
//! the identity store (a copy of the database gives no usable link).

use sha2::{Digest, Sha256};

use crate::mac;

/// A new token for an invitation link: 43 base64url characters.
pub fn new_token() -> String {
    mac::b64(&rand::random::<[u8; 32]>())
}

/// The store id of `token`: hex SHA-256, or `None` for anything that is
/// not a token this gateway makes (so a made-up value costs no lookup).
pub fn token_id(token: &str) -> Option<String> {
    let well_formed = token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return None;
    }
    let digest = Sha256::digest(token.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_hash_to_their_id() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        let id = token_id(&a).expect("own token");
        assert_eq!(id.len(), 64);
        assert_eq!(token_id(&a), Some(id));
        assert_ne!(token_id(&a), token_id(&b));
    }

    #[test]
    fn anything_else_is_no_token() {
        let good = new_token();
        for bad in [
            String::new(),
            good[..42].to_string(),
            format!("{good}A"),
            good.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1),
            good.replacen(|c: char| c.is_ascii_alphanumeric(), "=", 1),
            good.replacen(|c: char| c.is_ascii_alphanumeric(), "é", 1),
            " ".repeat(43),
        ] {
            assert_eq!(token_id(&bad), None, "{bad:?}");
        }
    }
}
