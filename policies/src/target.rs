//! Request-target safety and normalisation (stage `target`, docs/behaviour.md).
//!
//! The gateway and the upstream must agree on which resource a request names,
//! otherwise an access rule for `/admin` can be bypassed with a spelling the
//! gateway does not recognise but the app does (`/%61dmin`, `/x/../admin`,
//! `/admin%2Fsecret`, `/admin;x`, `\admin`). So the path is rejected when it
//! is ambiguous and otherwise rewritten into exactly one canonical form, which
//! is both what routes match and what the upstream receives:
//!
//! * raw bytes are limited to RFC 3986 `pchar` minus `;` (plus `/` and `%`);
//!   backslash, controls, space and raw non-ASCII are refused;
//! * `%XX` must be valid hex; an encoded byte that a path may carry raw
//!   (unreserved, sub-delims but `;`, `:`, `@`) is decoded, so each resource
//!   has one spelling (`/a%3Ab` is `/a:b`, as apps read it); everything else
//!   stays encoded with uppercase hex; encoded `/`, `\`, `;` and controls are
//!   refused, as are decoded bytes that are not UTF-8 (overlong `%C0%AE` and
//!   friends);
//! * runs of `/` collapse to one, and any `.` or `..` segment (after decoding)
//!   is refused rather than resolved, because resolving differently from the
//!   upstream is exactly the bug being prevented;
//! * the query string is passed through untouched (apps parse it themselves),
//!   but bytes that could split or smuggle a request line are refused.

use std::fmt;

/// A request path in the gateway's single canonical form.
///
/// Invariant (only [`normalize_path`] builds one): starts with `/`, contains
/// no `//`, no `.`/`..` segment, only `pchar` bytes (minus `;`), and `%` only
/// as `%XX` with uppercase hex for a byte that may not appear raw.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// The canonical path, as routes match it and the upstream receives it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical path as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NormalizedPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NormalizedPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A validated request-target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget<'a> {
    /// origin-form (`/a?b`) or absolute-form (`http://host/a?b`).
    Path {
        /// The canonical path.
        path: NormalizedPath,
        /// The raw query after the first `?` (not decoded); `Some("")` for a
        /// bare trailing `?`.
        query: Option<&'a str>,
        /// The authority exactly as sent; `Some` only for absolute-form, so
        /// the gateway can require it to equal the host.
        authority: Option<&'a str>,
    },
    /// The asterisk form `*` (the gateway allows it only for `OPTIONS`).
    Asterisk,
}

impl RequestTarget<'_> {
    /// The canonical path, `None` for the asterisk form.
    pub fn path(&self) -> Option<&NormalizedPath> {
        match self {
            RequestTarget::Path { path, .. } => Some(path),
            RequestTarget::Asterisk => None,
        }
    }
}

/// Why a request-target was refused; `Display` is a short reason for logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum TargetError {
    /// Nothing at all.
    #[error("empty request target")]
    Empty,
    /// A `#` anywhere (fragments are never sent by conforming clients).
    #[error("fragment in request target")]
    Fragment,
    /// Neither `/…`, `*` nor an `http(s)://` absolute-form.
    #[error("path does not start with '/'")]
    RelativePath,
    /// Absolute-form with a scheme other than `http` / `https`.
    #[error("unsupported scheme in absolute-form target")]
    UnsupportedScheme,
    /// Absolute-form with nothing between `://` and the path.
    #[error("empty authority in absolute-form target")]
    EmptyAuthority,
    /// Absolute-form carrying `user@` (credential smuggling / host confusion).
    #[error("userinfo in absolute-form target")]
    Userinfo,
    /// Absolute-form authority with a byte outside RFC 3986.
    #[error("invalid character in authority")]
    InvalidAuthority,
    /// Space, control byte or invalid UTF-8 in the query.
    #[error("invalid character in query")]
    InvalidQuery,
    /// A raw `\` (Windows/IIS-style separator).
    #[error("backslash in path")]
    Backslash,
    /// A raw `;` (path parameters, Tomcat/Spring `;jsessionid` tricks).
    #[error("semicolon in path")]
    Semicolon,
    /// A raw control byte (NUL, CR, LF, TAB, DEL, ...).
    #[error("control character in path")]
    ControlChar,
    /// A raw byte >= 0x80; clients must percent-encode.
    #[error("non-ASCII byte in path")]
    NonAscii,
    /// Any other byte outside `pchar` (space, `"<>^`{|}[]`, ...).
    #[error("forbidden character in path")]
    ForbiddenChar,
    /// `%` not followed by two hex digits.
    #[error("invalid percent-encoding in path")]
    BadPercentEncoding,
    /// `%2F`: the upstream may decode it into a separator.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`: the upstream may decode it into a separator.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// `%3B`: the upstream may decode it into a path parameter.
    #[error("encoded semicolon in path")]
    EncodedSemicolon,
    /// `%00`–`%1F` or `%7F`.
    #[error("encoded control character in path")]
    EncodedControlChar,
    /// Decoded bytes that are not UTF-8, overlong forms included.
    #[error("percent-decoded path is not valid UTF-8")]
    InvalidUtf8,
    /// A `.` or `..` segment, literal or encoded.
    #[error("dot segment in path")]
    DotSegment,
}

/// Validates a raw request-target (bytes exactly as on the request line).
pub fn parse_target(raw: &[u8]) -> Result<RequestTarget<'_>, TargetError> {
    if raw.is_empty() {
        return Err(TargetError::Empty);
    }
    if raw == b"*" {
        return Ok(RequestTarget::Asterisk);
    }
    if raw.contains(&b'#') {
        return Err(TargetError::Fragment);
    }
    let mut parts = raw.splitn(2, |&b| b == b'?');
    let before_query = parts.next().unwrap_or_default();
    let query = parts.next().map(check_query).transpose()?;

    let (authority, path) = if before_query.first() == Some(&b'/') {
        (None, before_query)
    } else {
        let (authority, path) = split_absolute(before_query)?;
        (Some(authority), path)
    };
    let path = if path.is_empty() {
        NormalizedPath(String::from("/"))
    } else {
        normalize_path(path)?
    };
    Ok(RequestTarget::Path {
        path,
        query,
        authority,
    })
}

/// The request-target the upstream receives for a validated request: the
/// canonical path (exactly what routes matched) plus `?query` when the client
/// sent one (an empty query keeps its `?`). The gateway forwards this string
/// verbatim, so an upstream parsing it recovers the very path the gateway
/// judged; `tests/differential.rs` and `policies/tests/differential.rs`
/// check that.
pub fn forwarded_target(path: &NormalizedPath, query: Option<&str>) -> String {
    let mut out = String::with_capacity(path.as_str().len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(path.as_str());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether a canonical path names a non-ASCII byte. Raw non-ASCII is
/// refused by [`normalize_path`], so it can only be a `%XX` escape of 0x80 or
/// above. `case_insensitive_paths` refuses such paths: upstreams that fold
/// Unicode case (`/CAF%C3%89` as `/café`, the Kelvin sign as `k`) would
/// otherwise see a resource that ASCII-only folding routed elsewhere.
pub fn has_encoded_non_ascii(path: &NormalizedPath) -> bool {
    path.0
        .as_bytes()
        .windows(2)
        .any(|w| matches!(w, [b'%', b'8'..=b'9' | b'A'..=b'F']))
}

/// Validates and canonicalises a path alone (no query, no fragment).
///
/// Public so configuration (route prefixes) goes through the very same rules
/// as requests and the two always compare like for like.
pub fn normalize_path(raw: &[u8]) -> Result<NormalizedPath, TargetError> {
    let rest = match raw.split_first() {
        None => return Err(TargetError::Empty),
        Some((b'/', rest)) => rest,
        Some(_) => return Err(TargetError::RelativePath),
    };
    let mut out = String::with_capacity(raw.len());
    for segment in rest.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue; // collapses `//`
        }
        out.push('/');
        let start = out.len();
        push_segment(segment, &mut out)?;
        if matches!(out.get(start..), Some(".") | Some("..")) {
            return Err(TargetError::DotSegment);
        }
    }
    if out.is_empty() || raw.ends_with(b"/") {
        out.push('/');
    }
    Ok(NormalizedPath(out))
}

/// Appends one canonical segment. A segment ends at `/` or at the end of the
/// path, both ASCII, so a multi-byte UTF-8 sequence may not straddle it.
fn push_segment(segment: &[u8], out: &mut String) -> Result<(), TargetError> {
    let mut utf8 = Utf8Check::default();
    let mut bytes = segment.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|&h| hex_value(h));
            let lo = bytes.next().and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(TargetError::BadPercentEncoding);
            };
            push_decoded((hi << 4) | lo, out, &mut utf8)?;
        } else if is_path_char(b) {
            utf8.ascii()?;
            out.push(char::from(b));
        } else {
            return Err(match b {
                b'\\' => TargetError::Backslash,
                b';' => TargetError::Semicolon,
                0x00..=0x1F | 0x7F => TargetError::ControlChar,
                0x80..=0xFF => TargetError::NonAscii,
                _ => TargetError::ForbiddenChar,
            });
        }
    }
    utf8.finish()
}

fn push_decoded(byte: u8, out: &mut String, utf8: &mut Utf8Check) -> Result<(), TargetError> {
    match byte {
        b'/' => Err(TargetError::EncodedSlash),
        b'\\' => Err(TargetError::EncodedBackslash),
        b';' => Err(TargetError::EncodedSemicolon),
        0x00..=0x1F | 0x7F => Err(TargetError::EncodedControlChar),
        // Every byte a path may carry raw is decoded, not only unreserved
        // ones: apps decode `%3A` and `:` alike, so keeping one encoded would
        // let `/a%3Ab` slip past a rule for `/a:b`.
        _ if is_path_char(byte) => {
            utf8.ascii()?;
            out.push(char::from(byte));
            Ok(())
        }
        _ => {
            if byte.is_ascii() {
                utf8.ascii()?;
            } else {
                utf8.byte(byte)?;
            }
            out.push('%');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0F));
            Ok(())
        }
    }
}

/// Incremental UTF-8 check over the decoded bytes of one segment, without
/// buffering the segment: only the pending multi-byte sequence (<= 4 bytes)
/// is kept, and `std::str::from_utf8` judges it once complete, which rejects
/// overlongs, surrogates and code points above U+10FFFF.
#[derive(Default)]
struct Utf8Check {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8Check {
    fn ascii(&self) -> Result<(), TargetError> {
        self.finish()
    }

    fn byte(&mut self, b: u8) -> Result<(), TargetError> {
        if self.len == 0 {
            self.need = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(TargetError::InvalidUtf8),
            };
        } else if b & 0xC0 != 0x80 {
            return Err(TargetError::InvalidUtf8);
        }
        let slot = self.buf.get_mut(self.len).ok_or(TargetError::InvalidUtf8)?;
        *slot = b;
        self.len += 1;
        if self.len == self.need {
            let seq = self.buf.get(..self.len).ok_or(TargetError::InvalidUtf8)?;
            std::str::from_utf8(seq).map_err(|_| TargetError::InvalidUtf8)?;
            self.len = 0;
            self.need = 0;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), TargetError> {
        if self.len == 0 {
            Ok(())
        } else {
            Err(TargetError::InvalidUtf8)
        }
    }
}

/// Splits `http(s)://authority/path` into authority and path (maybe empty).
fn split_absolute(target: &[u8]) -> Result<(&str, &[u8]), TargetError> {
    let Some(sep) = target.windows(3).position(|w| w == b"://") else {
        return Err(TargetError::RelativePath);
    };
    let (scheme, rest) = target.split_at(sep);
    let rest = rest.get(3..).unwrap_or_default();
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        let looks_like_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        return Err(if looks_like_scheme {
            TargetError::UnsupportedScheme
        } else {
            TargetError::RelativePath
        });
    }
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(TargetError::EmptyAuthority);
    }
    if authority.contains(&b'@') {
        return Err(TargetError::Userinfo);
    }
    if !authority.iter().all(|&b| is_authority_char(b)) {
        return Err(TargetError::InvalidAuthority);
    }
    let authority = std::str::from_utf8(authority).map_err(|_| TargetError::InvalidAuthority)?;
    Ok((authority, path))
}

/// The query is forwarded verbatim, so only refuse what could break the
/// request line or logs: space, controls, DEL, and bytes that are not UTF-8.
fn check_query(query: &[u8]) -> Result<&str, TargetError> {
    if query.iter().any(|&b| b <= b' ' || b == 0x7F) {
        return Err(TargetError::InvalidQuery);
    }
    std::str::from_utf8(query).map_err(|_| TargetError::InvalidQuery)
}

/// RFC 3986 unreserved: safe to decode, no meaning as a delimiter.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Raw bytes accepted in a path segment: `pchar` minus `;` (and minus `%`,
/// which is handled separately).
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

/// RFC 3986 authority bytes, `@` excluded (checked earlier).
fn is_authority_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'%'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(
        b"0123456789ABCDEF"
            .get(usize::from(nibble & 0x0F))
            .copied()
            .unwrap_or(b'0'),
    )
}

#[cfg(test)]
mod tests {
    use super::TargetError as E;
    use super::*;

    /// Path-only view of `parse_target`, for the corpus.
    fn norm(raw: &str) -> Result<String, TargetError> {
        norm_bytes(raw.as_bytes())
    }

    fn norm_bytes(raw: &[u8]) -> Result<String, TargetError> {
        match parse_target(raw)? {
            RequestTarget::Path { path, .. } => Ok(path.into_string()),
            RequestTarget::Asterisk => Ok(String::from("*")),
        }
    }

    /// (input, expected normalised path or error)
    const CORPUS: &[(&str, Result<&str, TargetError>)] = &[
        // plain and collapsing
        ("/", Ok("/")),
        ("/a/b", Ok("/a/b")),
        ("/a/b/", Ok("/a/b/")),
        ("//", Ok("/")),
        ("///", Ok("/")),
        ("//a///b", Ok("/a/b")),
        ("/a//", Ok("/a/")),
        ("//admin", Ok("/admin")),
        ("/a/b?x=1", Ok("/a/b")),
        ("/?", Ok("/")),
        ("*", Ok("*")),
        // allowed raw characters
        ("/a-b._~c", Ok("/a-b._~c")),
        ("/!$&'()*+,=:@", Ok("/!$&'()*+,=:@")),
        (
            "/.well-known/acme-challenge/x",
            Ok("/.well-known/acme-challenge/x"),
        ),
        ("/...", Ok("/...")),
        ("/..a", Ok("/..a")),
        ("/a..", Ok("/a..")),
        ("/.a/b.", Ok("/.a/b.")),
        // unreserved decoding and canonical re-encoding
        ("/%41%62c", Ok("/Abc")),
        ("/%7e", Ok("/~")),
        ("/%7E%2d%5f%2E", Ok("/~-_.")),
        ("/%61dmin", Ok("/admin")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%3fb", Ok("/a%3Fb")),
        ("/a%23b", Ok("/a%23b")),
        ("/a%25b", Ok("/a%25b")),
        ("/a%25", Ok("/a%25")),
        ("/%252F", Ok("/%252F")),
        ("/a%40b%3a", Ok("/a@b:")),
        ("/%21%24%26%27%28%29%2a%2b%2c%3d", Ok("/!$&'()*+,=")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/%E2%82%AC", Ok("/%E2%82%AC")),
        ("/%f0%9f%98%80", Ok("/%F0%9F%98%80")),
        // encoded separators
        ("/a%2Fb", Err(E::EncodedSlash)),
        ("/a%2fb", Err(E::EncodedSlash)),
        ("/admin%2F", Err(E::EncodedSlash)),
        ("/a%5Cb", Err(E::EncodedBackslash)),
        ("/a%5cb", Err(E::EncodedBackslash)),
        ("/a\\b", Err(E::Backslash)),
        ("\\a", Err(E::RelativePath)),
        ("/a;b", Err(E::Semicolon)),
        ("/a;jsessionid=1", Err(E::Semicolon)),
        ("/a%3Bb", Err(E::EncodedSemicolon)),
        ("/a%3bb", Err(E::EncodedSemicolon)),
        // dot segments, literal and encoded, every position
        ("/.", Err(E::DotSegment)),
        ("/..", Err(E::DotSegment)),
        ("/./a", Err(E::DotSegment)),
        ("/../a", Err(E::DotSegment)),
        ("/a/..", Err(E::DotSegment)),
        ("/a/../b", Err(E::DotSegment)),
        ("/a/.", Err(E::DotSegment)),
        ("/a/./", Err(E::DotSegment)),
        ("/a/../", Err(E::DotSegment)),
        ("//..//a", Err(E::DotSegment)),
        ("/%2e", Err(E::DotSegment)),
        ("/%2E%2e/x", Err(E::DotSegment)),
        ("/%2e%2E/", Err(E::DotSegment)),
        ("/.%2e/", Err(E::DotSegment)),
        ("/%2e./x", Err(E::DotSegment)),
        ("/a/%2E", Err(E::DotSegment)),
        ("/a/%2e%2e", Err(E::DotSegment)),
        ("/a/%2e/b", Err(E::DotSegment)),
        ("/%2e%2e%2f", Err(E::EncodedSlash)),
        ("/%2e%2e%5c", Err(E::EncodedBackslash)),
        // fragments
        ("/a#b", Err(E::Fragment)),
        ("/a?x#y", Err(E::Fragment)),
        ("#", Err(E::Fragment)),
        ("/%23", Ok("/%23")),
        // controls
        ("/a%00b", Err(E::EncodedControlChar)),
        ("/a%0a", Err(E::EncodedControlChar)),
        ("/a%0D%0A", Err(E::EncodedControlChar)),
        ("/a%09", Err(E::EncodedControlChar)),
        ("/a%7f", Err(E::EncodedControlChar)),
        ("/a%7F", Err(E::EncodedControlChar)),
        ("/a\tb", Err(E::ControlChar)),
        ("/a\x7fb", Err(E::ControlChar)),
        ("/a\rb", Err(E::ControlChar)),
        // overlong / invalid UTF-8
        ("/%C0%AE", Err(E::InvalidUtf8)),
        ("/%c0%ae%c0%ae/x", Err(E::InvalidUtf8)),
        ("/%E0%80%AE", Err(E::InvalidUtf8)),
        ("/%C0%AF", Err(E::InvalidUtf8)),
        ("/%C1%9C", Err(E::InvalidUtf8)),
        ("/%F0%80%80%AF", Err(E::InvalidUtf8)),
        ("/%ED%A0%80", Err(E::InvalidUtf8)),
        ("/%F4%90%80%80", Err(E::InvalidUtf8)),
        ("/%F5%80%80%80", Err(E::InvalidUtf8)),
        ("/%FF", Err(E::InvalidUtf8)),
        ("/%80", Err(E::InvalidUtf8)),
        ("/a%80b", Err(E::InvalidUtf8)),
        ("/%E2%82", Err(E::InvalidUtf8)),
        ("/%E2%82/", Err(E::InvalidUtf8)),
        ("/%E2%82a%AC", Err(E::InvalidUtf8)),
        ("/%E2%82%41", Err(E::InvalidUtf8)),
        ("/%C3%A9%A9", Err(E::InvalidUtf8)),
        ("/%C3", Err(E::InvalidUtf8)),
        // bad hex
        ("/%G1", Err(E::BadPercentEncoding)),
        ("/%1G", Err(E::BadPercentEncoding)),
        ("/%2", Err(E::BadPercentEncoding)),
        ("/a%", Err(E::BadPercentEncoding)),
        ("/%", Err(E::BadPercentEncoding)),
        ("/%2/", Err(E::BadPercentEncoding)),
        ("/%%41", Err(E::BadPercentEncoding)),
        ("/%+1", Err(E::BadPercentEncoding)),
        ("/%?", Err(E::BadPercentEncoding)),
        // forbidden raw bytes
        ("/a b", Err(E::ForbiddenChar)),
        ("/a\"b", Err(E::ForbiddenChar)),
        ("/<script>", Err(E::ForbiddenChar)),
        ("/a^b", Err(E::ForbiddenChar)),
        ("/a`b", Err(E::ForbiddenChar)),
        ("/a{b}", Err(E::ForbiddenChar)),
        ("/a|b", Err(E::ForbiddenChar)),
        ("/[::1]", Err(E::ForbiddenChar)),
        ("/caf\u{e9}", Err(E::NonAscii)),
        // shape
        ("", Err(E::Empty)),
        ("a/b", Err(E::RelativePath)),
        ("admin", Err(E::RelativePath)),
        ("?x", Err(E::RelativePath)),
        ("*?x", Err(E::RelativePath)),
        ("**", Err(E::RelativePath)),
        ("example.com:443", Err(E::RelativePath)),
        ("../a", Err(E::RelativePath)),
        // absolute-form
        ("http://h/a", Ok("/a")),
        ("HTTP://h/a", Ok("/a")),
        ("HtTpS://h:8443/a//b", Ok("/a/b")),
        ("http://h", Ok("/")),
        ("http://h?x", Ok("/")),
        ("http://h/%2e%2e/admin", Err(E::DotSegment)),
        ("http://h/a%2Fb", Err(E::EncodedSlash)),
        ("ftp://h/a", Err(E::UnsupportedScheme)),
        ("javascript://h/a", Err(E::UnsupportedScheme)),
        ("httpx://h/a", Err(E::UnsupportedScheme)),
        ("http:/h/a", Err(E::RelativePath)),
        ("http:h", Err(E::RelativePath)),
        ("://h/a", Err(E::RelativePath)),
        ("http:///a", Err(E::EmptyAuthority)),
        ("http://", Err(E::EmptyAuthority)),
        ("http://?x", Err(E::EmptyAuthority)),
        ("http://u:p@h/a", Err(E::Userinfo)),
        ("http://evil@h/a", Err(E::Userinfo)),
        ("http://h\\evil/a", Err(E::InvalidAuthority)),
        ("http://h o/a", Err(E::InvalidAuthority)),
        ("http://h\x00/a", Err(E::InvalidAuthority)),
    ];

    #[test]
    fn corpus() {
        assert!(CORPUS.len() >= 60);
        for (input, expected) in CORPUS {
            let got = norm(input);
            assert_eq!(got.as_deref(), expected.as_deref(), "target {input:?}");
        }
    }

    #[test]
    fn normalised_output_is_a_fixed_point() {
        for (input, expected) in CORPUS {
            if let Ok(out) = expected {
                if *out == "*" {
                    continue;
                }
                assert_eq!(norm(out).as_deref(), Ok(*out), "from {input:?}");
            }
        }
    }

    #[test]
    fn raw_nul_and_non_ascii_bytes() {
        assert_eq!(norm_bytes(b"/a\0b"), Err(E::ControlChar));
        assert_eq!(norm_bytes(b"/\0"), Err(E::ControlChar));
        assert_eq!(norm_bytes(b"/a\xffb"), Err(E::NonAscii));
        assert_eq!(norm_bytes(b"/\xc0\xae"), Err(E::NonAscii));
        assert_eq!(norm_bytes(b"/a?b\0"), Err(E::InvalidQuery));
        assert_eq!(norm_bytes(b"/a?\xff"), Err(E::InvalidQuery));
        assert_eq!(norm_bytes(b"http://h\xc3\xa9/"), Err(E::InvalidAuthority));
    }

    #[test]
    fn query_is_returned_unchanged() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/a", None),
            ("/a?", Some("")),
            ("/a?x=1", Some("x=1")),
            ("/a?x=../../etc/passwd", Some("x=../../etc/passwd")),
            ("/a?p=%2F%2e%2E%5c%00", Some("p=%2F%2e%2E%5c%00")),
            ("/a?x=1?y=2", Some("x=1?y=2")),
            ("/a?b;c\\d", Some("b;c\\d")),
            ("/a?caf\u{e9}", Some("caf\u{e9}")),
            ("http://h/a?q=%2F", Some("q=%2F")),
        ];
        for (input, query) in cases {
            match parse_target(input.as_bytes()) {
                Ok(RequestTarget::Path { query: q, .. }) => assert_eq!(q, *query, "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn query_rejects_line_breaking_bytes() {
        for input in [
            "/a?x y",
            "/a?x\r\nHost: evil",
            "/a?\t",
            "/a?\x7f",
            "/a?\x01",
        ] {
            assert_eq!(norm(input), Err(E::InvalidQuery), "{input:?}");
        }
    }

    #[test]
    fn path_checks_run_even_with_query() {
        assert_eq!(norm("/../a?x=1"), Err(E::DotSegment));
        assert_eq!(norm("/a%2f?x"), Err(E::EncodedSlash));
        assert_eq!(norm("//a?x"), Ok(String::from("/a")));
    }

    #[test]
    fn authority_only_for_absolute_form() {
        let t = parse_target(b"/a?b").unwrap();
        assert_eq!(
            t,
            RequestTarget::Path {
                path: NormalizedPath(String::from("/a")),
                query: Some("b"),
                authority: None
            }
        );
        let t = parse_target(b"HTTPS://Example.COM:8443/x/?q").unwrap();
        assert_eq!(
            t,
            RequestTarget::Path {
                path: NormalizedPath(String::from("/x/")),
                query: Some("q"),
                authority: Some("Example.COM:8443")
            }
        );
        let t = parse_target(b"http://[::1]:8080").unwrap();
        match t {
            RequestTarget::Path {
                path, authority, ..
            } => {
                assert_eq!(path.as_str(), "/");
                assert_eq!(authority, Some("[::1]:8080"));
            }
            RequestTarget::Asterisk => panic!("not asterisk"),
        }
    }

    #[test]
    fn asterisk() {
        let t = parse_target(b"*").unwrap();
        assert_eq!(t, RequestTarget::Asterisk);
        assert_eq!(t.path(), None);
        assert_eq!(
            parse_target(b"/x")
                .unwrap()
                .path()
                .map(NormalizedPath::as_str),
            Some("/x")
        );
    }

    #[test]
    fn normalize_path_directly() {
        assert_eq!(normalize_path(b"").unwrap_err(), E::Empty);
        assert_eq!(normalize_path(b"x").unwrap_err(), E::RelativePath);
        assert_eq!(normalize_path(b"/a?b").unwrap_err(), E::ForbiddenChar);
        assert_eq!(normalize_path(b"/a#b").unwrap_err(), E::ForbiddenChar);
        assert_eq!(normalize_path(b"/%61/").unwrap(), "/a/");
    }

    #[test]
    fn every_single_byte_path_is_judged_consistently() {
        for b in 0u8..=255 {
            let raw = [b'/', b];
            let got = norm_bytes(&raw);
            if b == b'/' {
                assert_eq!(got.as_deref(), Ok("/"));
            } else if b == b'.' {
                assert_eq!(got, Err(E::DotSegment));
            } else if b == b'?' {
                assert_eq!(got.as_deref(), Ok("/"));
            } else if is_path_char(b) {
                assert_eq!(got, Ok(format!("/{}", char::from(b))), "byte {b:#x}");
            } else {
                assert!(got.is_err(), "byte {b:#x}");
            }
        }
    }

    #[test]
    fn every_encoded_byte_is_judged_consistently() {
        for b in 0u8..=255 {
            for raw in [format!("/x%{b:02x}y"), format!("/x%{b:02X}y")] {
                let got = norm(&raw);
                let expected = match b {
                    b'/' => Err(E::EncodedSlash),
                    b'\\' => Err(E::EncodedBackslash),
                    b';' => Err(E::EncodedSemicolon),
                    0x00..=0x1F | 0x7F => Err(E::EncodedControlChar),
                    0x80..=0xFF => Err(E::InvalidUtf8),
                    _ if is_path_char(b) => Ok(format!("/x{}y", char::from(b))),
                    _ => Ok(format!("/x%{b:02X}y")),
                };
                assert_eq!(got, expected, "{raw}");
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Deterministic pseudo-random fuzz over a hostile alphabet.
        let alphabet: &[u8] = b"/%.2eEfF5cC3bB0aA?#;\\\x00\x80\xc0\xffh:t@*x ";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            let mut s = state;
            let raw: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.rotate_left(5).wrapping_mul(31).wrapping_add(7);
                    alphabet[(s % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(RequestTarget::Path { path, .. }) = parse_target(&raw) {
                let p = path.as_str();
                assert!(p.starts_with('/'), "{raw:?} -> {p}");
                assert!(!p.contains("//"), "{raw:?} -> {p}");
                assert!(
                    !p.split('/').any(|seg| seg == "." || seg == ".."),
                    "{raw:?} -> {p}"
                );
                assert_eq!(norm(p).as_deref(), Ok(p), "not a fixed point: {raw:?}");
            }
        }
    }

    #[test]
    fn display_is_short_reason() {
        assert_eq!(E::EncodedSlash.to_string(), "encoded slash in path");
        assert_eq!(E::DotSegment.to_string(), "dot segment in path");
        assert_eq!(NormalizedPath(String::from("/a")).to_string(), "/a");
    }
}
