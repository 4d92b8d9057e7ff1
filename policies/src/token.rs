//! RFC 9110 tokens: header names, methods, `Connection` options.

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_matches_rfc_9110() {
        let allowed: Vec<u8> = (0u8..=255).filter(|b| is_tchar(*b)).collect();
        assert_eq!(allowed.len(), 26 * 2 + 10 + 15);
        for b in [
            b' ', b'"', b'(', b')', b',', b'/', b':', b';', b'<', b'=', b'>', b'?', b'@', b'[',
            b'\\', b']', b'{', b'}', 0x7f, 0x80,
        ] {
            assert!(!is_tchar(b), "{b:#x}");
        }
    }
}
