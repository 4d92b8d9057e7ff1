//! Security events as JSON lines with `"audit": true` on stdout, beside the
//! access log. Never a secret or a password. Each is also counted
//! (`metrics::audit_event`), and the last [`KEPT`] are kept in memory for
//! the admin console (this instance's; the log is the record).

use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Events kept for the admin console.
pub const KEPT: usize = 200;

static RECENT: LazyLock<Mutex<VecDeque<Value>>> =
    LazyLock::new(|| Mutex::new(VecDeque::with_capacity(KEPT)));

/// The last events of this instance, newest first.
pub fn recent() -> Vec<Value> {
    RECENT
        .lock()
        .map(|r| r.iter().rev().cloned().collect())
        .unwrap_or_default()
}

/// Writes one audit line. `fields` is merged into the line.
pub fn event(event: &str, request_id: &str, client_ip: Option<IpAddr>, fields: Value) {
    crate::metrics::audit_event(event, &fields);
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1e3);
    let mut line = json!({
        "time": time,
        "audit": true,
        "event": event,
        "request_id": request_id,
        "client_ip": client_ip,
    });
    if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
    }
    if let Ok(mut buf) = serde_json::to_vec(&line) {
        buf.push(b'\n');
        let _ = std::io::stdout().lock().write_all(&buf);
    }
    if let Ok(mut kept) = RECENT.lock() {
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}
