//! Splitting bytes at one byte value with `memchr`.
//!
//! `<[u8]>::split` with a predicate tests a byte at a time; the head and
//! cookie readers run on every request over a few hundred bytes (issue 22).

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
}
