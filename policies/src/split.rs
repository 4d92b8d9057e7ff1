//! Splitting bytes at one byte value with `memchr`.
//!
//! `<[u8]>::split` with a predicate tests a byte at a time, and `str`'s
//! char patterns search with a word-at-a-time loop; the head, cookie and
//! session readers run on every request (issue 22).

/// `haystack` split at every `byte`, exactly as
/// `haystack.split(|&b| b == byte)` splits it: the piece after the last
/// `byte` is yielded even when empty, and an empty haystack yields one
/// empty piece.
pub(crate) fn split_byte(haystack: &[u8], byte: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(haystack);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(byte, r) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `s.split(char::from(byte))` for an ASCII `byte` (at which every split is
/// on a char boundary; a non-ASCII `byte` ends the pieces early).
pub(crate) fn split_str(s: &str, byte: u8) -> impl Iterator<Item = &str> {
    debug_assert!(byte.is_ascii());
    let mut start = 0;
    split_byte(s.as_bytes(), byte).map_while(move |piece| {
        let p = s.get(start..start + piece.len());
        start += piece.len() + 1;
        p
    })
}

/// `s.rsplit_once(char::from(byte))` for an ASCII `byte`.
pub(crate) fn rsplit_once_str(s: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let i = memchr::memrchr(byte, s.as_bytes())?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn both(h: &[u8], byte: u8) {
        let mine: Vec<&[u8]> = split_byte(h, byte).collect();
        let reference: Vec<&[u8]> = h.split(|&b| b == byte).collect();
        assert_eq!(mine, reference, "{h:?} at {byte}");
    }

    #[test]
    fn pieces_are_what_slice_split_gives() {
        for fixed in [
            &b""[..],
            b";",
            b";;",
            b"a",
            b"a;",
            b";a",
            b"a;;b",
            b" ; \n;",
        ] {
            both(fixed, b';');
            both(fixed, b'\n');
        }
        // Mostly the separators that matter, so runs of them and empty
        // pieces are common.
        let alphabet = b";\n=:\r a\x00\xff";
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        for _ in 0..20_000 {
            let len = rng.random_range(0..300u32);
            let h: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            both(&h, b';');
            both(&h, b'\n');
        }
    }

    fn both_str(s: &str, byte: u8) {
        let c = char::from(byte);
        let mine: Vec<&str> = split_str(s, byte).collect();
        let reference: Vec<&str> = s.split(c).collect();
        assert_eq!(mine, reference, "{s:?} at {c:?}");
        assert_eq!(rsplit_once_str(s, byte), s.rsplit_once(c), "{s:?} at {c:?}");
    }

    /// The `str` forms are `str::split` and `str::rsplit_once`, also around
    /// multi-byte characters.
    #[test]
    fn str_pieces_are_what_str_split_gives() {
        for fixed in [
            "",
            "|",
            "||",
            "a",
            "a|",
            "|a",
            "a||b",
            "é|ü.€",
            "v2|ab|1|2.tag",
        ] {
            both_str(fixed, b'|');
            both_str(fixed, b'.');
        }
        let alphabet = ['|', '.', 'a', '0', 'é', '€', '\u{10348}', ' '];
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for _ in 0..20_000 {
            let len = rng.random_range(0..120u32);
            let s: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            both_str(&s, b'|');
            both_str(&s, b'.');
        }
    }
}
