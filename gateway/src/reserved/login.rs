//! `/.portcullis/login` and `/.portcullis/logout` (docs/behaviour.md,
//! "Reserved paths").
//!
//! Forms carry a CSRF token bound to the browser's `__Host-portcullis-csrf`
//! cookie; a token issued to one browser is refused from another. Login
//! attempts are limited per IP and per user name before any password work,
//! and unknown users cost the same argon2id verification as wrong passwords.
//! A sign-in writes a session record to the identity store; logout deletes
//! it. With the store unavailable both answer 503: nothing is pretended.

use pingora::prelude::Session;
use policies::mfa::{self, Gate};
use policies::ratelimit::Outcome;
use policies::{redirect, session};
use serde_json::json;

use super::forms::{self, Csrf, Form};
use super::pages;
use super::paths::{self, with_next};
use crate::answer::Answer;
use crate::auth::{self, Identity};
use crate::ctx::Ctx;
use crate::limits::Verdict;
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};
use identity::{Account, Cache, SessionRecord};

/// Longest `User-Agent` kept with a session (for the account page).
const MAX_USER_AGENT: usize = 256;

/// The browser's `User-Agent`, cut to [`MAX_USER_AGENT`] bytes of text.
fn user_agent(session: &Session) -> Option<String> {
    let ua = session.req_header().headers.get(http::header::USER_AGENT)?;
    let text = String::from_utf8_lossy(ua.as_bytes());
    let mut end = text.len().min(MAX_USER_AGENT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).map(str::to_string)
}

/// A fresh session (never an id the client brought) established by
/// `method` from this request's client, and its record; the record's
/// account and epoch are left for the caller (or the store) to fill in.
pub(super) fn fresh_session(
    session: &Session,
    ctx: &Ctx,
    method: &str,
) -> (session::Session, SessionRecord) {
    let t = now_ms();
    let s = session::Session {
        id: session::new_id(),
        issued: t,
        seen: t,
    };
    let at = i64::try_from(t).unwrap_or(i64::MAX);
    let record = SessionRecord {
        id: s.id_hex().to_string(),
        account_id: 0,
        epoch: String::new(),
        created: at,
        last_seen: at,
        method: method.to_string(),
        client_ip: ctx.client_ip().map(|ip| ip.to_string()),
        user_agent: user_agent(session),
    };
    (s, record)
}

/// Counts one attempt for `name` from this client against the login
/// limits (per IP and per name, shared through Redis when configured):
/// `Some` answer when the attempt may not go on. `page` goes in the audit
/// line. Nothing is checked uncounted: when attempts cannot be counted the
/// answer is 503.
pub(super) async fn count_attempt(
    shared: &Shared,
    ctx: &Ctx,
    name: &str,
    page: &str,
) -> Option<Answer> {
    let ip = ctx.client_ip()?;
    match shared.login_limits.check(ip, name).await {
        Verdict::Counted(Outcome::Limited { retry_after }) => {
            crate::audit::event(
                "login_limited",
                &ctx.out.request_id,
                ctx.client_ip(),
                json!({ "user": name, "page": page }),
            );
            Some(Answer::TooMany(retry_after))
        }
        Verdict::Refused => Some(Answer::Error(503)),
        Verdict::Counted(_) | Verdict::Unknown => None,
    }
}

/// Where a browser goes after a first factor: to its second factor when
/// the account has one and `method` did not use it, to enrolment when it
/// must have one, else to `next`.
pub(super) fn after_sign_in(ctx: &Ctx, account: &Account, method: &str, next: String) -> Answer {
    let roles = account.all_roles();
    let multi = mfa::is_multi_factor(method);
    match mfa::gate(&ctx.rt.login.mfa, &roles, account.factors, multi, false) {
        Gate::Pass => Answer::see_other(next),
        need => Answer::see_other(with_next(paths::finish_sign_in(need), &next)),
    }
}

/// Replaces the request's session (`old`) with a fresh one established by
/// `method` (a finished sign-in): a new id, so nothing learned about the
/// old cookie carries over; the old record is deleted.
pub(super) async fn replace_session(
    session: &Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    cache: &Cache,
    account: &Account,
    old: &Identity,
    method: &str,
) -> Result<(), Answer> {
    let (s, record) = fresh_session(session, ctx, method);
    let record = SessionRecord {
        account_id: account.id,
        epoch: account.epoch.clone(),
        ..record
    };
    if let Err(e) = cache.store().create_session(&record).await {
        tracing::error!(error = %e, "the new session could not be stored");
        return Err(Answer::Error(503));
    }
    if let Some(previous) = old.session.as_ref() {
        let id = previous.id_hex();
        if let Err(e) = cache.store().delete_session(id.as_str()).await {
            tracing::warn!(error = %e, "the replaced session record stays until it expires");
        }
        cache.forget(&id);
    }
    ctx.out
        .set_cookies
        .push(auth::session_cookie(srt, &s, s.issued));
    Ok(())
}

/// The one failure message, for unknown users and wrong passwords alike.
const FAILED: &str = "Wrong username or password.";
/// CSRF purposes.
const LOGIN: &str = "login";
const LOGOUT: &str = "logout";
/// The method of a password sign-in.
const PASSWORD: &str = "password";

fn audit(event: &str, ctx: &Ctx, user: &str) {
    crate::audit::event(
        event,
        &ctx.out.request_id,
        ctx.client_ip(),
        json!({ "user": user }),
    );
}

/// The login page as configured: the password form and the providers.
pub(super) fn page(
    ctx: &Ctx,
    csrf: &str,
    next: &str,
    username: &str,
    error: Option<&str>,
    note: Option<&str>,
) -> String {
    let login = &ctx.rt.login;
    let providers: Vec<(&str, &str)> = login
        .list
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    pages::login(&pages::LoginPage {
        csrf,
        next,
        username,
        error,
        note,
        password: login.password,
        providers: &providers,
        passkeys: login.passkeys,
    })
}

/// `GET /.portcullis/login?next=/x` (a sign-in waiting for its second
/// factor is sent on to finish it).
pub fn form(session: &Session, ctx: &mut Ctx, srt: &SessionRt) -> Answer {
    let next = redirect::safe_next(forms::query_next(session).as_deref());
    if let Some(u) = ctx.unfinished.as_ref() {
        return Answer::see_other(with_next(paths::finish_sign_in(u.need), &next));
    }
    let token = Csrf::for_browser(session, ctx, srt).token(LOGIN);
    let note = forms::query_flag(session, "signed_out=1").then_some("You are signed out.");
    Answer::html(200, page(ctx, &token, &next, "", None, note))
}

/// `GET /.portcullis/logout`: a confirmation page whose form POSTs.
pub fn logout_form(session: &Session, ctx: &mut Ctx, srt: &SessionRt) -> Answer {
    let token = Csrf::for_browser(session, ctx, srt).token(LOGOUT);
    let who = ctx
        .identity
        .as_ref()
        .or(ctx.unfinished.as_ref().map(|u| &u.identity))
        .map(|i| i.user.as_str());
    Answer::html(200, pages::logout(&token, who))
}

/// The POST handlers' shared inputs.
pub struct Login<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl Login<'_> {
    /// `POST /.portcullis/login`
    pub async fn submit(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let (srt, shared) = (self.srt, self.shared);
        let (username, password) = (form.field("username").trim(), form.field("password"));
        let next = redirect::safe_next(Some(form.field("next")));

        // Limits first: a refused attempt costs no password work.
        if let Some(refused) = count_attempt(shared, ctx, username, LOGIN).await {
            return refused;
        }

        let csrf = Csrf::for_browser(session, ctx, srt);
        let fresh_token = csrf.token(LOGIN);
        if !csrf.verify(LOGIN, form) {
            audit("login_csrf_refused", ctx, username);
            let expired = Some("The form expired. Please sign in again.");
            let page = page(ctx, &fresh_token, &next, username, expired, None);
            return Answer::html(403, page);
        }

        let Some(cache) = shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        // The same argon2id work whether or not the user exists (timing).
        let account = cache.account(username).filter(|a| !a.disabled);
        let phc = account.as_ref().and_then(|a| a.password.clone());
        let ok = crate::passwords::verify(phc, password.to_string()).await;
        let Some(account) = account.filter(|_| ok) else {
            audit("login_failed", ctx, username);
            let page = page(ctx, &fresh_token, &next, username, Some(FAILED), None);
            return Answer::html(401, page);
        };

        let (s, record) = fresh_session(session, ctx, PASSWORD);
        let record = SessionRecord {
            account_id: account.id,
            epoch: account.epoch.clone(),
            ..record
        };
        if let Err(e) = cache.store().create_session(&record).await {
            tracing::error!(error = %e, "sign-in refused: the session could not be stored");
            return Answer::Error(503);
        }
        ctx.out
            .set_cookies
            .push(auth::session_cookie(srt, &s, s.issued));
        audit("login_ok", ctx, &account.name);
        after_sign_in(ctx, &account, PASSWORD, next)
    }

    /// `POST /.portcullis/logout`: revoke, clear, back to the login page.
    pub async fn logout(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        if !Csrf::sent(session, self.srt).verify(LOGOUT, form) {
            return Answer::Error(403);
        }
        if ctx.identity_unavailable {
            // The record cannot be deleted now: say so rather than clear
            // the cookie of a session that would go on elsewhere.
            return Answer::Error(503);
        }
        // An unfinished sign-in is signed out the same way.
        let who = ctx
            .identity
            .as_ref()
            .or(ctx.unfinished.as_ref().map(|u| &u.identity));
        if let Some(who) = who {
            if let Some(s) = who.session.as_ref() {
                let Some(cache) = self.shared.accounts.cache() else {
                    return Answer::Error(503);
                };
                let id = s.id_hex();
                if let Err(e) = cache.store().delete_session(id.as_str()).await {
                    tracing::error!(error = %e, "logout refused: the session record could not be deleted");
                    return Answer::Error(503);
                }
                cache.forget(&id);
                audit("logout", ctx, &who.user);
            }
        }
        ctx.out
            .set_cookies
            .push(auth::clear_cookie(auth::SESSION_COOKIE));
        Answer::see_other(paths::SIGNED_OUT)
    }
}
