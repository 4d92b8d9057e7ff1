//! Security events as JSON lines with `"audit": true` on stdout, beside the
//! access log. Never a secret or a password. Each is also counted
//! (`metrics::audit_event`).

use std::io::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

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
}
