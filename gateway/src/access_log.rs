//! One JSON line per request on stdout (docs/configuration.md "Operations"). `time` is
//! RFC 3339 in UTC with milliseconds (`2026-12-06T07:43:38.123Z`), the form
//! log shippers (Vector, Fluent Bit, Loki's promtail, Elastic) parse without
//! configuration.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339, UTC, to the second; the milliseconds and `Z` are appended.
const RFC3339_SECONDS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// One request's fields, in the order they appear in the line (after `time`).
pub struct Line<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    pub upstream: Option<&'a str>,
    pub user: Option<&'a str>,
}

thread_local! {
    /// Each worker thread formats its lines in one reused buffer.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The second the last line was stamped in, and its text: formatting a
    /// date is most of a line's cost, and a busy worker stamps thousands of
    /// lines in the same second.
    static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
}

/// A line longer than this (a huge path) does not keep its buffer.
const KEEP_BUFFER: usize = 16 * 1024;

/// Writes the line with one `write` so concurrent lines never interleave.
pub fn write(line: &Line<'_>) {
    let at = OffsetDateTime::now_utc();
    BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        if encode(buf, at, line).is_ok() {
            buf.push(b'\n');
            let _ = std::io::stdout().lock().write_all(buf);
        }
        if buf.capacity() > KEEP_BUFFER {
            *buf = Vec::with_capacity(512);
        }
    });
}

/// The JSON object of one line, written by hand rather than by a derived
/// `Serialize` (issue 22: serde's map machinery was a tenth of the gateway's
/// own per-request work); strings and the duration still go through
/// `serde_json`, so escaping and number formatting are its own. The tests
/// hold the output byte for byte to the derived serialisation it replaced.
fn encode(buf: &mut Vec<u8>, at: OffsetDateTime, line: &Line<'_>) -> serde_json::Result<()> {
    buf.extend_from_slice(b"{\"time\":\"");
    push_time(buf, at);
    buf.extend_from_slice(b"\",\"request_id\":");
    serde_json::to_writer(&mut *buf, line.request_id)?;
    buf.extend_from_slice(b",\"client_ip\":");
    match line.client_ip {
        Some(ip) => {
            buf.push(b'"');
            policies::client_ip::push_ip(&mut Text(buf), ip);
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"method\":");
    serde_json::to_writer(&mut *buf, line.method)?;
    buf.extend_from_slice(b",\"path\":");
    serde_json::to_writer(&mut *buf, line.path)?;
    buf.extend_from_slice(b",\"route\":");
    serde_json::to_writer(&mut *buf, line.route)?;
    let mut digits = itoa::Buffer::new();
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(digits.format(line.status).as_bytes());
    buf.extend_from_slice(b",\"bytes\":");
    buf.extend_from_slice(digits.format(line.bytes).as_bytes());
    buf.extend_from_slice(b",\"duration\":");
    serde_json::to_writer(&mut *buf, &millis(line.duration))?;
    buf.extend_from_slice(b",\"upstream\":");
    serde_json::to_writer(&mut *buf, &line.upstream)?;
    buf.extend_from_slice(b",\"user\":");
    serde_json::to_writer(&mut *buf, &line.user)?;
    buf.extend_from_slice(if line.status == 429 {
        b",\"limited\":true}"
    } else {
        b",\"limited\":false}"
    });
    Ok(())
}

/// The line's bytes as a text sink (everything written to them is UTF-8).
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Milliseconds, rounded to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `at` in RFC 3339, UTC, with three fractional digits (sortable as text).
fn push_time(buf: &mut Vec<u8>, at: OffsetDateTime) {
    let second = at.unix_timestamp();
    let (cached, mut text) = SECOND.get();
    if cached != second {
        let mut out = Vec::with_capacity(text.len());
        if at.format_into(&mut out, RFC3339_SECONDS).is_err() {
            return;
        }
        if out.len() != text.len() {
            // A year past 9999: not cached.
            buf.extend_from_slice(&out);
            push_millis(buf, at);
            return;
        }
        text.copy_from_slice(&out);
        SECOND.set((second, text));
    }
    buf.extend_from_slice(&text);
    push_millis(buf, at);
}

fn push_millis(buf: &mut Vec<u8>, at: OffsetDateTime) {
    let ms = at.millisecond();
    buf.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100 % 10) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use serde::Serialize;

    fn timestamp(at: OffsetDateTime) -> String {
        let mut buf = Vec::new();
        push_time(&mut buf, at);
        String::from_utf8(buf).expect("ASCII")
    }

    #[test]
    fn time_is_rfc3339_utc_with_milliseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_796_542_218_123_456_789)
            .expect("a valid instant");
        assert_eq!(timestamp(at), "2026-12-06T07:30:18.123Z");
        // The same second again (cached), a later millisecond.
        let later = OffsetDateTime::from_unix_timestamp_nanos(1_796_542_218_999_000_000)
            .expect("a valid instant");
        assert_eq!(timestamp(later), "2026-12-06T07:30:18.999Z");
        let whole = OffsetDateTime::from_unix_timestamp(0).expect("epoch");
        assert_eq!(timestamp(whole), "1970-01-01T00:00:00.000Z");
        let next = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_007).expect("epoch + 1 s");
        assert_eq!(timestamp(next), "1970-01-01T00:00:01.000Z");
    }

    /// What `push_time` replaced.
    const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

    /// What `encode` replaced: the line as serde derived it.
    #[derive(Serialize)]
    struct Reference<'a> {
        time: String,
        request_id: &'a str,
        client_ip: Option<IpAddr>,
        method: &'a str,
        path: &'a str,
        route: &'a str,
        status: u16,
        bytes: usize,
        #[serde(serialize_with = "reference_millis")]
        duration: Duration,
        upstream: Option<&'a str>,
        user: Option<&'a str>,
        limited: bool,
    }

    fn reference_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
    }

    /// Strings with everything JSON must escape, and what it must not.
    fn string(rng: &mut rand::rngs::StdRng) -> String {
        const PIECES: &[&str] = &[
            "a", "/", "\\", "\"", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}", "\u{7f}",
            "é", "\u{2028}", "😀", "%22", "<", "&", "'", " ", "GET", "abc/def",
        ];
        let len = rng.random_range(0..12);
        (0..len)
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    }

    /// Byte for byte the derived serialisation, for every kind of field.
    #[test]
    fn lines_are_what_serde_wrote() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        for case in 0..20_000 {
            let strings: Vec<String> = (0..6).map(|_| string(&mut rng)).collect();
            let client_ip = match rng.random_range(0..3) {
                0 => None,
                1 => Some(IpAddr::from(rng.random::<[u8; 4]>())),
                _ => Some(IpAddr::from(rng.random::<[u8; 16]>())),
            };
            let duration = match rng.random_range(0..3) {
                0 => Duration::ZERO,
                1 => Duration::from_nanos(rng.random_range(0..10_000_000)),
                _ => Duration::from_nanos(rng.random()),
            };
            let status = [200, 429, 502, rng.random()][rng.random_range(0..4)];
            let line = Line {
                request_id: &strings[0],
                client_ip,
                method: &strings[1],
                path: &strings[2],
                route: &strings[3],
                status,
                bytes: rng.random::<u32>() as usize,
                duration,
                upstream: rng.random::<bool>().then_some(strings[4].as_str()),
                user: rng.random::<bool>().then_some(strings[5].as_str()),
            };
            let at = OffsetDateTime::from_unix_timestamp_nanos(
                rng.random_range(0..253_402_300_799_999_999_999),
            )
            .expect("a year before 10000");
            let mut ours = Vec::new();
            encode(&mut ours, at, &line).expect("encodes");
            let reference = serde_json::to_vec(&Reference {
                time: at.format(RFC3339_MILLIS).expect("formats"),
                request_id: line.request_id,
                client_ip: line.client_ip,
                method: line.method,
                path: line.path,
                route: line.route,
                status: line.status,
                bytes: line.bytes,
                duration: line.duration,
                upstream: line.upstream,
                user: line.user,
                limited: line.status == 429,
            })
            .expect("serialises");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference),
                "case {case}"
            );
        }
    }
}
