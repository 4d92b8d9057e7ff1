//! A 16-byte id as 32 lowercase hex digits, held on the stack.
//!
//! Request ids, session ids and assertion `jti`s are such ids, made or read
//! on every request. `hex::encode` builds its `String` a `char` at a time
//! (about 950 instructions for 16 bytes, measured in issue 22); this encodes
//! into a fixed array with `hex::encode_to_slice` and borrows it as `str`.

use std::fmt;

/// 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId([u8; 32]);

impl HexId {
    /// `bytes` in lowercase hex.
    pub fn new(bytes: &[u8; 16]) -> HexId {
        let mut digits = [b'0'; 32];
        // 32 digits for 16 bytes: the only way this errs cannot happen.
        let _ = hex::encode_to_slice(bytes, &mut digits);
        HexId(digits)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII: never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Borrows as `str` wherever one is asked for, as `String` does.
impl std::ops::Deref for HexId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<HexId> for String {
    fn from(id: HexId) -> String {
        id.as_str().to_owned()
    }
}

impl fmt::Display for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn digits_are_what_hex_encode_writes() {
        assert_eq!(HexId::new(&[0; 16]).as_str(), "0".repeat(32));
        assert_eq!(HexId::new(&[0xff; 16]).as_str(), "f".repeat(32));
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        for _ in 0..10_000 {
            let bytes: [u8; 16] = rng.random();
            let id = HexId::new(&bytes);
            assert_eq!(id.as_str(), hex::encode(bytes));
            assert_eq!(id.to_string(), hex::encode(bytes));
            assert_eq!(String::from(id), hex::encode(bytes));
            assert_eq!(&*id, hex::encode(bytes));
            assert_eq!(hex::decode(id.as_str()).unwrap(), bytes);
        }
    }
}
