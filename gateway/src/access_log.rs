//! One JSON line per request on stdout (SPEC "Operations: Logs").

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

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
    time: f64,
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
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1e3);
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
