//! HMAC-SHA256 and base64url helpers shared by the signed formats (session
//! cookie, CSRF token, identity assertion). Crate-private: callers get whole
//! formats, never loose primitives.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A keyed HMAC-SHA256 state; cloning it skips re-deriving the pads.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const TAG_LEN: usize = 32;

/// Length of a tag in unpadded base64url.
pub(crate) const TAG_B64_LEN: usize = 43;

/// A keyed HMAC state. HMAC takes keys of any length, so this cannot fail;
/// the fallback exists only to stay panic-free.
pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn tag(mac: &HmacSha256, parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut mac = mac.clone();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of a computed tag with a received one.
///
/// XOR-folds the tags as four words and tests the fold once: no branch or
/// early exit depends on where they differ. `subtle::ConstantTimeEq` does the
/// same byte by byte behind an optimisation barrier per byte; measured here it
/// cost 86 ns of a ~1 µs cookie check, this costs a few. The `black_box` keeps
/// the compiler from turning the fold back into an early-exit comparison.
pub(crate) fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    std::hint::black_box(diff) == 0
}

/// Unpadded base64url.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Unpadded base64url appended to `out`.
pub(crate) fn push_b64(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Decodes exactly one canonical base64url tag into a stack buffer; `None`
/// for any other length, alphabet, padding or non-zero trailing bits (so one
/// tag has exactly one spelling).
pub(crate) fn decode_tag(text: &str) -> Option<[u8; TAG_LEN]> {
    if text.len() != TAG_B64_LEN {
        return None;
    }
    // 43 characters may decode to 33 bytes by the engine's estimate; the
    // extra byte is never written for canonical input.
    let mut buf = [0u8; TAG_LEN + 1];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut buf) {
        Ok(TAG_LEN) => {
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(buf.get(..TAG_LEN)?);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_equal_sees_every_byte() {
        let a = [0x5au8; TAG_LEN];
        assert!(tags_equal(&a, &a));
        for i in 0..TAG_LEN {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!tags_equal(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn rfc4231_case_2() {
        let mac = keyed(b"Jefe");
        let out = tag(&mac, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tag_codec() {
        let t = tag(&keyed(b"k"), &[b"x"]);
        let text = b64(&t);
        assert_eq!(text.len(), TAG_B64_LEN);
        assert_eq!(decode_tag(&text), Some(t));
        assert_eq!(decode_tag(""), None);
        assert_eq!(decode_tag(&text[1..]), None);
        assert_eq!(decode_tag(&format!("{text}A")), None);
        assert_eq!(decode_tag(&format!("{}=", &text[1..])), None);
        // Standard-alphabet characters are not base64url.
        for std_char in ["+", "/"] {
            assert_eq!(decode_tag(&format!("{std_char}{}", &text[1..])), None);
        }
        assert_eq!(decode_tag(&"!".repeat(TAG_B64_LEN)), None);
        // Non-canonical trailing bits: the last char carries 2 unused bits.
        let mut chars: Vec<char> = text.chars().collect();
        let last = chars.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let tweaked = alphabet.chars().nth(idx ^ 1).unwrap();
        chars.push(tweaked);
        let tweaked: String = chars.into_iter().collect();
        assert_eq!(decode_tag(&tweaked), None);
    }

    #[test]
    fn comparison() {
        let a = [7u8; TAG_LEN];
        let mut b = a;
        assert!(tags_equal(&a, &b));
        b[31] ^= 1;
        assert!(!tags_equal(&a, &b));
    }
}
