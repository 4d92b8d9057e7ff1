//! What every form the gateway serves shares: the browser binding cookie,
//! CSRF tokens bound to it, and a bounded urlencoded body.

use pingora::prelude::*;
use policies::csrf;

use crate::auth;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::now;

/// CSRF tokens are good for this long (a login form left open over lunch).
const CSRF_MAX_AGE: u64 = 2 * 3600;
/// Largest form body accepted.
const FORM_LIMIT: usize = 16 * 1024;

/// A parsed urlencoded form.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of field `name`, or `""`.
    pub fn field(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Reads an urlencoded form body; `None` when it is too large or not a form.
pub async fn read(session: &mut Session) -> Result<Option<Form>> {
    let is_form = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let mut buf = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > FORM_LIMIT {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    if !is_form {
        return Ok(None);
    }
    Ok(Some(Form(
        form_urlencoded::parse(&buf).into_owned().collect(),
    )))
}

/// The browser's binding cookie, if it sent exactly one plausible value.
fn sent_binding(session: &Session) -> Option<String> {
    match auth::cookie(session.req_header(), auth::CSRF_COOKIE) {
        Ok(Some(b)) if !b.is_empty() && b.len() <= 64 => Some(b.to_string()),
        _ => None,
    }
}

/// CSRF tokens for one browser: bound to its binding cookie.
pub struct Csrf<'a> {
    srt: &'a SessionRt,
    binding: String,
}

impl<'a> Csrf<'a> {
    /// The browser's binding, or a new one set on this response (its next
    /// form can then succeed).
    pub fn for_browser(session: &Session, ctx: &mut Ctx, srt: &'a SessionRt) -> Csrf<'a> {
        let binding = sent_binding(session).unwrap_or_else(|| {
            let b = csrf::new_binding();
            ctx.out.set_cookies.push(auth::csrf_cookie(&b));
            b
        });
        Csrf { srt, binding }
    }

    /// The binding the browser sent, without issuing one: no binding, no
    /// valid token.
    pub fn sent(session: &Session, srt: &'a SessionRt) -> Csrf<'a> {
        let binding = sent_binding(session).unwrap_or_default();
        Csrf { srt, binding }
    }

    /// A fresh token for a form with `purpose`.
    pub fn token(&self, purpose: &str) -> String {
        csrf::token(self.srt.csrf_keys.signing(), &self.binding, purpose, now())
    }

    /// Whether the form's `csrf` field was issued to this browser for
    /// `purpose` within [`CSRF_MAX_AGE`].
    pub fn verify(&self, purpose: &str, form: &Form) -> bool {
        csrf::verify_any(
            &self.srt.csrf_keys,
            &self.binding,
            purpose,
            form.field("csrf"),
            now(),
            CSRF_MAX_AGE,
        )
    }
}

/// Whether the query has the flag `name=1` (`?signed_out=1`).
pub fn query_flag(session: &Session, flag: &str) -> bool {
    session
        .req_header()
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == flag))
}

/// The query's `next` parameter.
pub fn query_next(session: &Session) -> Option<String> {
    query_param(session, "next")
}

/// The query's first parameter `name`.
pub fn query_param(session: &Session, name: &str) -> Option<String> {
    let q = session.req_header().uri.query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
