//! `/.portcullis/login` and `/.portcullis/logout` (SPEC "Reserved paths").
//!
//! Forms carry a CSRF token bound to the browser's `__Host-portcullis-csrf`
//! cookie; a token issued to one browser is refused from another. Login
//! attempts are limited per IP and per user name before any password work,
//! and unknown users cost the same argon2id verification as wrong passwords.

use bytes::Bytes;
use pingora::prelude::*;
use policies::{csrf, redirect, session};
use serde_json::json;

use policies::ratelimit::Outcome;

use crate::auth::{self, Identity};
use crate::limits::Verdict;
use crate::pages;
use crate::proxy::Ctx;
use crate::respond;
use crate::runtime::SessionRt;
use crate::state::{now, Shared};

/// CSRF tokens are good for this long (a login form left open over lunch).
pub(crate) const CSRF_MAX_AGE: u64 = 2 * 3600;
/// Largest login/logout form body accepted.
const FORM_LIMIT: usize = 16 * 1024;
/// The one failure message, for unknown users and wrong passwords alike.
const FAILED: &str = "Wrong username or password.";

/// The browser binding from its cookie, or a new one to set.
pub(crate) fn binding(session: &Session, ctx: &mut Ctx) -> String {
    match auth::single_cookie(session.req_header(), auth::CSRF_COOKIE) {
        Ok(Some(b)) if !b.is_empty() && b.len() <= 64 => b.to_string(),
        _ => {
            let b = csrf::new_binding();
            ctx.out.set_cookies.push(auth::csrf_cookie(&b));
            b
        }
    }
}

/// Reads an urlencoded form body; `None` when it is too large or not a form.
pub(crate) async fn read_form(session: &mut Session) -> Result<Option<Vec<(String, String)>>> {
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
    Ok(Some(form_urlencoded::parse(&buf).into_owned().collect()))
}

/// First value of a form field.
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn query_next(session: &Session) -> Option<String> {
    let q = session.req_header().uri.query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn html(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    page: String,
) -> Result<bool> {
    ctx.status = status;
    respond::body(
        session,
        &ctx.out,
        status,
        "text/html; charset=utf-8",
        Bytes::from(page),
    )
    .await?;
    Ok(true)
}

/// `GET /.portcullis/login?next=/x`
pub async fn login_form(session: &mut Session, ctx: &mut Ctx, rt: &SessionRt) -> Result<bool> {
    let next = redirect::safe_next(query_next(session).as_deref());
    let b = binding(session, ctx);
    let token = csrf::token(&rt.csrf_key, &b, "login", now());
    let note = session
        .req_header()
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "signed_out=1"))
        .then_some("You are signed out.");
    html(
        session,
        ctx,
        200,
        pages::login(&token, &next, "", None, note),
    )
    .await
}

/// `POST /.portcullis/login`
pub async fn login_submit(
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &SessionRt,
    shared: &Shared,
) -> Result<bool> {
    let Some(form) = read_form(session).await? else {
        return fail(session, ctx, 400).await;
    };
    let (username, password) = (field(&form, "username").trim(), field(&form, "password"));
    let next = redirect::safe_next(Some(field(&form, "next")));
    let ip = ctx.client.as_ref().map(|c| c.ip);

    // Limits first: a refused attempt costs no password work.
    if let Some(ip) = ip {
        match shared.login_limits.check(ip, username).await {
            Verdict::Counted(Outcome::Limited { retry_after }) => {
                crate::audit::event(
                    "login_limited",
                    &ctx.out.request_id,
                    Some(ip),
                    json!({ "user": username }),
                );
                ctx.status = 429;
                respond::too_many(session, &ctx.out, retry_after).await?;
                return Ok(true);
            }
            // Attempts cannot be counted: no password is checked uncounted.
            Verdict::Refused => return fail(session, ctx, 503).await,
            Verdict::Counted(_) | Verdict::Unknown => {}
        }
    }

    let b = binding(session, ctx);
    let fresh_token = csrf::token(&rt.csrf_key, &b, "login", now());
    if !csrf::verify(
        &rt.csrf_key,
        &b,
        "login",
        field(&form, "csrf"),
        now(),
        CSRF_MAX_AGE,
    ) {
        crate::audit::event(
            "login_csrf_refused",
            &ctx.out.request_id,
            ip,
            json!({ "user": username }),
        );
        let page = pages::login(
            &fresh_token,
            &next,
            username,
            Some("The form expired. Please sign in again."),
            None,
        );
        return html(session, ctx, 403, page).await;
    }

    // The same argon2id work whether or not the user exists (timing).
    let users = shared.users.get();
    let account = users.get(username).filter(|u| !u.disabled).cloned();
    let phc = account.as_ref().map(|u| u.password.clone());
    let pw = password.to_string();
    let ok = crate::passwords::verify(phc, pw).await;
    let Some(user) = account.filter(|_| ok) else {
        crate::audit::event(
            "login_failed",
            &ctx.out.request_id,
            ip,
            json!({ "user": username }),
        );
        return html(
            session,
            ctx,
            401,
            pages::login(&fresh_token, &next, username, Some(FAILED), None),
        )
        .await;
    };

    // Always a fresh session id: never reuse one the client brought.
    let t = now();
    let s = session::Session {
        id: session::new_id(),
        user: user.name.clone(),
        generation: user.epoch(),
        issued: t,
        seen: t,
    };
    ctx.out.set_cookies.push(auth::session_cookie(rt, &s, t));
    crate::audit::event(
        "login_ok",
        &ctx.out.request_id,
        ip,
        json!({ "user": user.name }),
    );
    ctx.status = 303;
    respond::redirect(session, &ctx.out, 303, &next).await?;
    Ok(true)
}

/// `GET /.portcullis/logout`: a confirmation page whose form POSTs.
pub async fn logout_form(
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &SessionRt,
    who: Option<&Identity>,
) -> Result<bool> {
    let b = binding(session, ctx);
    let token = csrf::token(&rt.csrf_key, &b, "logout", now());
    html(
        session,
        ctx,
        200,
        pages::logout(&token, who.map(|i| i.user.as_str())),
    )
    .await
}

/// `POST /.portcullis/logout`: revoke, clear, back to the login page.
pub async fn logout_submit(
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &SessionRt,
    shared: &Shared,
    who: Option<&Identity>,
) -> Result<bool> {
    let Some(form) = read_form(session).await? else {
        return fail(session, ctx, 400).await;
    };
    let b = match auth::single_cookie(session.req_header(), auth::CSRF_COOKIE) {
        Ok(Some(b)) => b.to_string(),
        _ => String::new(),
    };
    if !csrf::verify(
        &rt.csrf_key,
        &b,
        "logout",
        field(&form, "csrf"),
        now(),
        CSRF_MAX_AGE,
    ) {
        return fail(session, ctx, 403).await;
    }
    let ip = ctx.client.as_ref().map(|c| c.ip);
    if let Some((who, s)) = who.and_then(|w| Some((w, w.session.as_ref()?))) {
        shared
            .revocations
            .revoke(s.id, s.issued + rt.life.ttl)
            .await;
        crate::audit::event(
            "logout",
            &ctx.out.request_id,
            ip,
            json!({ "user": who.user }),
        );
    }
    ctx.out
        .set_cookies
        .push(auth::clear_cookie(auth::SESSION_COOKIE));
    ctx.status = 303;
    respond::redirect(session, &ctx.out, 303, "/.portcullis/login?signed_out=1").await?;
    Ok(true)
}

pub(crate) async fn fail(session: &mut Session, ctx: &mut Ctx, status: u16) -> Result<bool> {
    ctx.status = status;
    session.set_keepalive(None);
    respond::error(session, &ctx.out, status).await?;
    Ok(true)
}
