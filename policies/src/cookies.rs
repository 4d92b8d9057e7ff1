//! `Cookie` request headers, read and rewritten as bytes.
//!
//! Browsers send cookie values byte for byte as they were set, UTF-8 and
//! all, and a sibling subdomain can plant a cookie with any bytes in it. A
//! parser that first insists on a valid (ASCII) header string skips the whole
//! header on one such byte: the gateway's own cookies are then neither found
//! nor removed, and reach the app. So everything here works on the raw bytes
//! of every `Cookie` header:
//!
//! * a header is split on `;` into crumbs; a crumb's name is what comes before
//!   its first `=`, without surrounding whitespace (a crumb with no `=` is
//!   all name, as browsers send it);
//! * [`values`] finds the crumbs with exactly one name;
//! * [`strip`] removes every crumb whose name starts with a given prefix
//!   compared ASCII case-insensitively (a planted `__host-portcullis` is the
//!   gateway's business, never the app's), and keeps every other crumb byte
//!   for byte.

use crate::split::split_byte;

/// The values of every crumb named exactly `name`, in order, across all
/// `Cookie` headers.
pub fn values<'a, I>(headers: I, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: 'a,
{
    headers
        .into_iter()
        .flat_map(crumbs)
        .filter_map(move |crumb| match split(crumb) {
            (n, Some(v)) if n == name => Some(v),
            _ => None,
        })
}

/// Why a cookie the gateway reads is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Sent more than once: someone planted one, so neither is believed.
    #[error("cookie sent more than once")]
    Duplicate,
    /// Not ASCII: no cookie the gateway sets ever is.
    #[error("cookie value is not ASCII")]
    NotAscii,
}

/// The single value of cookie `name` across all `Cookie` headers: `None`
/// when absent.
pub fn single<'a, I>(headers: I, name: &'a [u8]) -> Result<Option<&'a str>, CookieError>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: 'a,
{
    let mut it = values(headers, name);
    let first = it.next();
    if it.next().is_some() {
        return Err(CookieError::Duplicate);
    }
    first
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .filter(|v| v.is_ascii())
                .ok_or(CookieError::NotAscii)
        })
        .transpose()
}

/// What [`strip`] made of the `Cookie` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stripped {
    /// No crumb had the prefix: forward the headers as they came.
    Unchanged,
    /// Every crumb had it: forward no `Cookie` header.
    Empty,
    /// The remaining crumbs, joined with `; ` into one header value.
    Rest(Vec<u8>),
}

/// The `Cookie` headers without the crumbs whose name starts with `prefix`
/// (ASCII case-insensitively).
/// `headers` yields the `Cookie` header values afresh on each call: they are
/// read once to see whether anything is to be removed, and copied only then.
pub fn strip<'a, I>(headers: impl Fn() -> I, prefix: &[u8]) -> Stripped
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let own = |crumb: &[u8]| {
        split(crumb)
            .0
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    // Most requests carry none of the gateway's cookies: answer them
    // without copying anything.
    if !headers().into_iter().flat_map(crumbs).any(own) {
        return Stripped::Unchanged;
    }
    let mut kept: Vec<u8> = Vec::new();
    for crumb in headers().into_iter().flat_map(crumbs).filter(|c| !own(c)) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(crumb);
    }
    if kept.is_empty() {
        Stripped::Empty
    } else {
        Stripped::Rest(kept)
    }
}

/// The non-empty crumbs of one header, trimmed of whitespace.
fn crumbs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_byte(header, b';').map(trim).filter(|c| !c.is_empty())
}

/// A crumb's trimmed name and, if it has an `=`, its trimmed value.
fn split(crumb: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'=', crumb) {
        Some(i) => {
            let (name, value) = crumb.split_at(i);
            (trim(name), Some(trim(value.get(1..).unwrap_or_default())))
        }
        None => (crumb, None),
    }
}

/// Trims every byte some cookie parser skips as whitespace (Python's
/// `str.strip` the widest: also CR, LF, VT, FF), so no parser finds a name
/// the gateway did not see.
fn trim(bytes: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &[u8] = b"__Host-portcullis";

    fn found<'a>(headers: &'a [&'a [u8]], name: &'a [u8]) -> Vec<&'a [u8]> {
        values(headers.iter().copied(), name).collect()
    }

    #[test]
    fn values_are_found_next_to_any_bytes() {
        let h: &[&[u8]] = &[b"__Host-portcullis=tok; name=Jos\xc3\xa9"];
        assert_eq!(found(h, OWN), [b"tok"]);
        let h: &[&[u8]] = &[b"name=Jos\xc3\xa9", b"__Host-portcullis=tok"];
        assert_eq!(found(h, OWN), [b"tok"]);
        let h: &[&[u8]] = &[b"x=\xff\x80;__Host-portcullis = tok ;y"];
        assert_eq!(found(h, OWN), [b"tok"]);
        let h: &[&[u8]] = &[b"__Host-portcullis=a", b"a=1; __Host-portcullis=b"];
        assert_eq!(found(h, OWN), [b"a", b"b"]);
    }

    #[test]
    fn values_match_the_exact_name_only() {
        for header in [
            &b"__Host-portcullis-csrf=x"[..],
            b"__host-portcullis=x",
            b"__Host-portcullisx=x",
            b"x__Host-portcullis=x",
            b"__Host-portcullis",
            b"a=__Host-portcullis=x",
        ] {
            assert!(found(&[header], OWN).is_empty(), "{header:?}");
        }
        // A value with '=' in it is kept whole.
        assert_eq!(found(&[b"__Host-portcullis=a=b"], OWN), [b"a=b"]);
    }

    #[test]
    fn strip_removes_every_own_crumb_and_keeps_the_rest_byte_for_byte() {
        let s = |h: &[&[u8]]| strip(|| h.iter().copied(), OWN);
        assert_eq!(s(&[b"a=1; b=2"]), Stripped::Unchanged);
        assert_eq!(s(&[b"name=Jos\xc3\xa9"]), Stripped::Unchanged);
        assert_eq!(s(&[]), Stripped::Unchanged);
        assert_eq!(
            s(&[b"__Host-portcullis=t; name=Jos\xc3\xa9"]),
            Stripped::Rest(b"name=Jos\xc3\xa9".to_vec())
        );
        assert_eq!(
            s(&[b"name=Jos\xc3\xa9", b"app=1; __Host-portcullis=t"]),
            Stripped::Rest(b"name=Jos\xc3\xa9; app=1".to_vec())
        );
        assert_eq!(
            s(&[
                b"a=1; __Host-portcullis=x; b=2",
                b"__Host-portcullis-csrf=y; __Host-portcullis-emergency=z"
            ]),
            Stripped::Rest(b"a=1; b=2".to_vec())
        );
        for own in [
            &b"__Host-portcullis=x"[..],
            b"__host-PORTCULLIS=x",
            b" __Host-portcullis =x",
            b"\t__Host-portcullis-csrf=\xc3\xa9",
            b"__Host-portcullis",
            b"__HOST-portcullis-anything=1",
        ] {
            assert_eq!(s(&[own]), Stripped::Empty, "{own:?}");
        }
        // Crumbs keep their own bytes, '=' and spaces inside a value included.
        assert_eq!(
            s(&[b"__Host-portcullis=x;q=\"a b\";  e=a=b ; \xff=\xfe"]),
            Stripped::Rest(b"q=\"a b\"; e=a=b; \xff=\xfe".to_vec())
        );
    }

    #[test]
    fn trim_handles_edges() {
        assert_eq!(trim(b""), b"");
        assert_eq!(trim(b"  \t "), b"");
        assert_eq!(trim(b" a b "), b"a b");
    }

    #[test]
    fn single_refuses_duplicates_and_non_ascii() {
        fn one(hs: &'static [&'static [u8]]) -> Result<Option<&'static str>, CookieError> {
            single(hs.iter().copied(), b"__Host-portcullis")
        }
        assert_eq!(one(&[]), Ok(None));
        assert_eq!(one(&[b"a=1; __Host-portcullis=x"]), Ok(Some("x")));
        assert_eq!(
            one(&[b"__Host-portcullis=x; __Host-portcullis=y"]),
            Err(CookieError::Duplicate)
        );
        // Two headers with one copy each are two copies.
        assert_eq!(
            one(&[b"__Host-portcullis=x", b"__Host-portcullis=x"]),
            Err(CookieError::Duplicate)
        );
        // A longer name, or another case, is another cookie.
        assert_eq!(one(&[b"__Host-portcullis-csrf=z"]), Ok(None));
        assert_eq!(one(&[b"__host-portcullis=z"]), Ok(None));
        assert_eq!(
            one(&[b"__Host-portcullis=\xc3\xa9"]),
            Err(CookieError::NotAscii)
        );
        // A non-ASCII neighbour hides nothing.
        assert_eq!(one(&[b"__Host-portcullis=x; n=Jos\xc3\xa9"]), Ok(Some("x")));
    }
}
