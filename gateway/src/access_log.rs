//! One JSON line per request on stdout (docs/configuration.md "Operations"). `time` is
//! RFC 3339 in UTC with milliseconds (`2026-12-06T07:43:38.123Z`), the form
//! log shippers (Vector, Fluent Bit, Loki's promtail, Elastic) parse without
//! configuration.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339, UTC, always three fractional digits (sortable as text).
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

#[derive(Serialize)]
pub struct Line<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub bytes: usize,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    pub upstream: Option<&'a str>,
    pub user: Option<&'a str>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

#[derive(Serialize)]
struct Stamped<'a> {
    time: String,
    #[serde(flatten)]
    line: &'a Line<'a>,
    limited: bool,
}

thread_local! {
    /// Each worker thread formats its lines in one reused buffer.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
}

/// A line longer than this (a huge path) does not keep its buffer.
const KEEP_BUFFER: usize = 16 * 1024;

/// Writes the line with one `write` so concurrent lines never interleave.
pub fn write(line: &Line<'_>) {
    let time = timestamp(OffsetDateTime::now_utc());
    let stamped = Stamped {
        time,
        line,
        limited: line.status == 429,
    };
    BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        if serde_json::to_writer(&mut *buf, &stamped).is_ok() {
            buf.push(b'\n');
            let _ = std::io::stdout().lock().write_all(buf);
        }
        if buf.capacity() > KEEP_BUFFER {
            *buf = Vec::with_capacity(512);
        }
    });
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(RFC3339_MILLIS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc_with_milliseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_796_542_218_123_456_789)
            .expect("a valid instant");
        assert_eq!(timestamp(at), "2026-12-06T07:30:18.123Z");
        let whole = OffsetDateTime::from_unix_timestamp(0).expect("epoch");
        assert_eq!(timestamp(whole), "1970-01-01T00:00:00.000Z");
    }
}
