//! Facts read from the raw HTTP/1 request head, for what a parsed request
//! has already lost.
//!
//! pingora's parser drops a `#fragment` from the target and, when both
//! `Content-Length` and `Transfer-Encoding` arrive, deletes `Content-Length`
//! (RFC 9112 §6.3 lets a proxy do that). Stage `target` refuses both with
//! 400 instead, since a client sending either is probing for a parser
//! disagreement. These functions look at the bytes as they came off the wire.

use crate::split::split_byte;

/// The request-target of the request line (`METHOD SP target SP version`),
/// exactly as sent. `None` when the first line has no two spaces.
pub fn request_target(head: &[u8]) -> Option<&[u8]> {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = head.get(..line_end)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = line.iter().position(|&b| b == b' ')?;
    let last = line.iter().rposition(|&b| b == b' ')?;
    if last <= first {
        return None;
    }
    line.get(first + 1..last)
}

/// Values of every header line named `name` (ASCII case-insensitive), trimmed.
pub fn header_values<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    header_lines(head)
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| value)
}

/// Every header line after the request line as (name, trimmed value);
/// lines without a colon are skipped. Lines and colons are found with
/// `memchr` (stage `target` reads every head this way).
fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    split_byte(head, b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        let (n, rest) = line.split_at(colon);
        Some((n, rest.get(1..).unwrap_or_default().trim_ascii()))
    })
}

/// Stage `target`'s framing rule: `Content-Length` with `Transfer-Encoding`,
/// either repeated with different values, or a `Content-Length` that is not
/// a plain decimal number. Each is a request-smuggling attempt.
///
/// Stricter than RFC 9112 asks for `Transfer-Encoding`: the only one accepted is a
/// single `chunked` (any case). A coding list (`identity, chunked`,
/// `gzip, chunked`, `chunked, chunked`) or the header repeated is refused:
/// pingora frames the body by the last token only and forwards plain
/// `chunked`, so anything more is either a probe or a coding the upstream
/// would silently lose.
pub fn ambiguous_framing(head: &[u8]) -> bool {
    // One pass over the head: the first of each header and whether any
    // later one differs.
    let mut te: Option<&[u8]> = None;
    let mut cl: Option<&[u8]> = None;
    for (name, value) in header_lines(head) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te.is_some() || !value.eq_ignore_ascii_case(b"chunked") {
                return true;
            }
            te = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match cl {
                Some(first) if first != value => return true,
                Some(_) => {}
                None if value.is_empty() || !value.iter().all(u8::is_ascii_digit) => return true,
                None => cl = Some(value),
            }
        }
    }
    te.is_some() && cl.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_target_is_taken_verbatim() {
        assert_eq!(
            request_target(b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(&b"/a#b"[..])
        );
        assert_eq!(request_target(b"GET /a b HTTP/1.1\r\n"), Some(&b"/a b"[..]));
        assert_eq!(request_target(b"OPTIONS * HTTP/1.1\n"), Some(&b"*"[..]));
        assert_eq!(
            request_target(b"GET http://h/x?y HTTP/1.1\r\n"),
            Some(&b"http://h/x?y"[..])
        );
        assert_eq!(request_target(b"GET /x\r\n"), None);
        assert_eq!(request_target(b""), None);
        assert_eq!(request_target(b"GET  HTTP/1.1"), Some(&b""[..]));
    }

    fn head(headers: &str) -> Vec<u8> {
        format!("POST / HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn framing() {
        let ok = [
            "",
            "Content-Length: 5\r\n",
            "content-length: 5\r\nContent-Length:  5\r\n",
            "Transfer-Encoding: chunked\r\n",
            "transfer-encoding:\tChunked \r\n",
        ];
        for h in ok {
            assert!(!ambiguous_framing(&head(h)), "{h:?}");
        }
        let bad = [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "transfer-encoding: chunked\r\nCONTENT-LENGTH: 0\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +5\r\n",
            "Content-Length:\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity, chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: xchunked\r\n",
        ];
        for h in bad {
            assert!(ambiguous_framing(&head(h)), "{h:?}");
        }
        // The request line is not a header, whatever it contains.
        assert!(!ambiguous_framing(
            b"GET /content-length:5 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    /// The one-pass check decides as the rule reads (each header's values
    /// gathered, then judged), on heads built from the lines that matter.
    #[test]
    fn framing_matches_the_rule_as_written() {
        use proptest::prelude::*;
        fn by_the_rule(head: &[u8]) -> bool {
            let te: Vec<_> = header_values(head, "transfer-encoding").collect();
            let cl: Vec<_> = header_values(head, "content-length").collect();
            let te_bad = match te.as_slice() {
                [] => false,
                [v] => !v.eq_ignore_ascii_case(b"chunked"),
                _ => true,
            };
            let cl_bad = cl.first().is_some_and(|first| {
                first.is_empty()
                    || !first.iter().all(u8::is_ascii_digit)
                    || cl.iter().any(|o| o != first)
            });
            te_bad || cl_bad || (!te.is_empty() && !cl.is_empty())
        }
        let line = prop_oneof![
            Just("Content-Length: 5"),
            Just("content-length:5"),
            Just("Content-Length: 6"),
            Just("Content-Length: "),
            Just("Content-Length: 5x"),
            Just("Transfer-Encoding: chunked"),
            Just("TRANSFER-ENCODING: Chunked"),
            Just("Transfer-Encoding: gzip"),
            Just("Transfer-Encoding chunked"),
            Just("X-Other: 1"),
        ];
        proptest!(ProptestConfig::with_cases(5_000), |(lines in proptest::collection::vec(line, 0..5))| {
            let h = head(&lines.iter().map(|l| format!("{l}\r\n")).collect::<String>());
            prop_assert_eq!(ambiguous_framing(&h), by_the_rule(&h), "{:?}", lines);
        });
    }
}
