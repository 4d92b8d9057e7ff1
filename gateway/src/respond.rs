//! The one writer of responses the gateway makes itself: errors, redirects,
//! small text answers. pingora's `response_filter` does not run for these, so
//! everything a gateway response must carry is added here.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::sync::Arc;

use pingora::prelude::*;

use crate::response_headers::ResponseHeaders;

/// What every gateway response carries besides its own content: the request
/// id and any cookies the pipeline decided to set or clear.
///
/// Both the gateway's own responses and proxied ones go through
/// [`Extras::apply`], so security headers, CORS and cookies are the same on
/// every response (pingora's `response_filter` never sees the former).
#[derive(Debug, Default)]
pub struct Extras {
    pub request_id: String,
    pub set_cookies: Vec<String>,
    /// The security headers of the matched route (the global set before routing).
    pub headers: Option<Arc<ResponseHeaders>>,
    /// The client's scheme: HSTS only over https.
    pub https: bool,
    /// CORS headers for this request's Origin.
    pub cors: Vec<(&'static str, String)>,
    /// CORS is configured: responses vary by Origin.
    pub vary_origin: bool,
    /// `RateLimit-Policy` / `RateLimit` of the rule that applied.
    pub ratelimit: Vec<(&'static str, String)>,
    /// A forward-auth answer's headers for the front proxy to copy: the
    /// identity headers and assertion, or where to sign in.
    pub forward: Vec<(bytes::Bytes, String)>,
}

impl Extras {
    /// Adds everything a response must carry to its header.
    pub fn apply(&self, h: &mut ResponseHeader) -> Result<()> {
        h.insert_header("x-request-id", self.request_id.as_str())?;
        for c in &self.set_cookies {
            h.append_header(http::header::SET_COOKIE, c.as_str())?;
        }
        if let Some(set) = &self.headers {
            set.apply(self.https, h)?;
        }
        for (name, value) in self.cors.iter().chain(&self.ratelimit) {
            h.insert_header(*name, value.as_str())?;
        }
        for (name, value) in &self.forward {
            h.insert_header(name.clone(), value.as_str())?;
        }
        if self.vary_origin {
            let varies = h.headers.get_all(http::header::VARY).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
                })
            });
            if !varies {
                h.append_header(http::header::VARY, "Origin")?;
            }
        }
        Ok(())
    }
}

/// Short, fixed wording per status: never a path, address or backtrace.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        405 => "method not allowed",
        408 => "request timeout",
        413 => "payload too large",
        429 => "too many requests",
        431 => "request header fields too large",
        500 => "internal error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    }
}

/// Whether the client reads HTML (a browser) rather than JSON.
pub fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| {
            v.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

/// Whether the request is a browser navigation (GET/HEAD asking for
/// HTML): those are sent to a page, anything else gets a status. `method`:
/// the one the rules judge (an auth request's original method).
pub fn is_navigation(session: &Session, method: &http::Method) -> bool {
    let req = session.req_header();
    policies::access::is_navigation(
        method.as_str(),
        &mut req
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

/// The body of a gateway error: JSON, or a small HTML page for browsers.
pub fn error_body(status: u16, html: bool) -> (&'static str, String) {
    let reason = reason(status);
    if html {
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {reason}</title></head>\
                 <body><h1>{status}</h1><p>{reason}</p></body></html>\n"
            ),
        )
    } else {
        (
            "application/json",
            format!("{{\"error\":\"{reason}\",\"status\":{status}}}\n"),
        )
    }
}

/// Builds the header of a gateway-made response.
pub fn header(
    status: u16,
    extras: &Extras,
    content_type: Option<&str>,
    len: usize,
) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(6 + extras.set_cookies.len()))?;
    if let Some(ct) = content_type {
        h.insert_header(http::header::CONTENT_TYPE, ct)?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    extras.apply(&mut h)?;
    Ok(h)
}

/// Writes a complete response; a HEAD request gets the headers only.
pub async fn send(session: &mut Session, mut h: ResponseHeader, body: Bytes) -> Result<()> {
    let head = session.req_header().method == http::Method::HEAD;
    if head || body.is_empty() {
        if head {
            // Keep the length of the body a GET would have had.
            h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        session.write_response_header(Box::new(h), true).await
    } else {
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    }
}

/// Most request-body bytes [`linger`] reads and drops. Draining amplifies
/// nothing (the gateway reads only what the client sends), so the bound is
/// generous: an upload several times `max_body` still gets its 413.
const LINGER_MAX_BYTES: usize = 64 << 20;
/// Longest [`linger`] waits for them (nginx's `lingering_timeout`).
const LINGER_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// After an answer that did not read the request body (413 on a declared
/// length, 401/403/404, a reserved path): read and drop what the client is
/// still sending, within bounds, before the connection closes. Closing a TCP
/// socket with unread data sends a reset, and a reset can destroy the answer
/// in the client's buffers before the client reads it; a client blocked
/// writing its body sees only "broken pipe". nginx's `lingering_close` does
/// the same. HTTP/2 needs none of this: the stream ends, not the connection.
pub async fn linger(session: &mut Session) {
    if session.is_http2() || session.is_body_done() {
        return;
    }
    let drain = async {
        let mut seen = 0;
        while seen < LINGER_MAX_BYTES {
            match session.read_request_body().await {
                Ok(Some(chunk)) => seen += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
    };
    // Past either bound the client gets the reset; it was told to stop.
    let _ = tokio::time::timeout(LINGER_MAX_TIME, drain).await;
}

/// An error page: HTML for browsers, `{"error", "status"}` JSON otherwise.
pub async fn error(session: &mut Session, extras: &Extras, status: u16) -> Result<()> {
    let (ct, body) = error_body(status, wants_html(session));
    let h = header(status, extras, Some(ct), body.len())?;
    send(session, h, Bytes::from(body)).await
}

/// A redirect with an empty body.
pub async fn redirect(
    session: &mut Session,
    extras: &Extras,
    status: u16,
    location: &str,
) -> Result<()> {
    let mut h = header(status, extras, None, 0)?;
    h.insert_header(http::header::LOCATION, location)?;
    send(session, h, Bytes::new()).await
}

/// A page or asset the gateway renders itself.
pub async fn body(
    session: &mut Session,
    extras: &Extras,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> Result<()> {
    let h = header(status, extras, Some(content_type), body.len())?;
    send(session, h, body).await
}

/// `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(retry_after: std::time::Duration) -> String {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1).to_string()
}

/// 429 with `Retry-After` in whole seconds, rounded up.
pub async fn too_many(
    session: &mut Session,
    extras: &Extras,
    retry_after: std::time::Duration,
) -> Result<()> {
    let (ct, body) = error_body(429, wants_html(session));
    let mut h = header(429, extras, Some(ct), body.len())?;
    h.insert_header(http::header::RETRY_AFTER, retry_after_secs(retry_after))?;
    send(session, h, Bytes::from(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_never_echo_anything() {
        for status in [400, 401, 403, 404, 413, 429, 502, 503, 504] {
            let (ct, json) = error_body(status, false);
            assert_eq!(ct, "application/json");
            let v: serde_json::Value = serde_json::from_str(&json).expect("json");
            assert_eq!(v["status"], status);
            assert_eq!(v["error"], reason(status));
            let (ct, html) = error_body(status, true);
            assert!(ct.starts_with("text/html"));
            assert!(html.contains(&status.to_string()));
        }
    }
}
