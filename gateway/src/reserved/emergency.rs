//! The emergency ("break-glass") gate: `/.portcullis/emergency…`
//! (docs/behaviour.md, "The emergency gate").
//!
//! While the gate is disabled, or for a client outside `allow_from`, none of
//! this runs: the paths get the generic 404. While enabled, the secret is
//! checked against a derived verifier in constant time after the attempt
//! limits; success sets `__Host-portcullis-emergency` for `ttl`, and the
//! dashboard's CSRF-protected forms create users and reset passwords in the
//! users file (locked, atomic; `emergency_users`). Every attempt, grant,
//! action and logout is an audit line without secrets or passwords.

use pingora::prelude::*;
use policies::emergency::Grant;
use serde_json::json;

use super::emergency_users;
use super::forms::{self, Csrf, Form};
use super::pages::{self, Notice, UserRow};
use super::paths;
use crate::answer::Answer;
use crate::auth;
use crate::ctx::Ctx;
use crate::runtime::{EmergencyRt, SessionRt};
use crate::state::{now, Attempt, Shared};

/// CSRF purposes: the secret form, and the dashboard's actions.
const PURPOSE_GATE: &str = "emergency";
const PURPOSE_ACTION: &str = "emergency-action";
const EXPIRED: &str = "The form expired. Please try again.";

/// The gate's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Form,
    Dashboard,
    CreateUser,
    ResetPassword,
    Logout,
}

/// A dashboard action.
#[derive(Debug, Clone, Copy)]
enum Action {
    CreateUser,
    ResetPassword,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::CreateUser => "create_user",
            Action::ResetPassword => "reset_password",
        }
    }
}

/// What one request to the gate needs.
pub struct Gate<'a> {
    pub em: &'a EmergencyRt,
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

fn audit(event: &str, ctx: &Ctx, fields: serde_json::Value) {
    crate::audit::event(event, &ctx.out.request_id, ctx.client_ip(), fields);
}

/// Answers `page` for method `get`/`post`; `None`: no such page for this
/// method (the caller's 404).
pub async fn handle(
    gate: &Gate<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    page: Page,
    get: bool,
    post: bool,
) -> Option<Result<Answer>> {
    let grant = ctx.emergency;
    Some(match (page, grant) {
        (Page::Form, Some(_)) if get => Ok(Answer::see_other(paths::EMERGENCY_DASHBOARD)),
        (Page::Form, None) if get => Ok(secret_form(session, ctx, gate.srt, None, 200)),
        (Page::Form, _) if post => submit(gate, session, ctx).await,
        (Page::Dashboard, Some(g)) if get => Ok(dashboard(gate, session, ctx, g, None, 200)),
        // No emergency session: back to the secret form (a browser) or 401.
        (_, None) if get || post => Ok(if navigation(session) {
            Answer::see_other(paths::EMERGENCY)
        } else {
            Answer::Error(401)
        }),
        (Page::Logout, Some(g)) if post => logout(gate, session, ctx, g).await,
        (Page::CreateUser, Some(g)) if post => {
            action(gate, session, ctx, g, Action::CreateUser).await
        }
        (Page::ResetPassword, Some(g)) if post => {
            action(gate, session, ctx, g, Action::ResetPassword).await
        }
        _ => return None,
    })
}

fn navigation(session: &Session) -> bool {
    let req = session.req_header();
    policies::access::is_navigation(
        req.method.as_str(),
        &mut req
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

fn secret_form(
    session: &Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    error: Option<&str>,
    status: u16,
) -> Answer {
    let token = Csrf::for_browser(session, ctx, srt).token(PURPOSE_GATE);
    let note = forms::query_flag(session, "ended=1")
        .then_some("The emergency session has ended. Disable the gate now.");
    Answer::html(status, pages::emergency(&token, error, note))
}

/// `POST /.portcullis/emergency`: limits, CSRF, then the secret.
async fn submit(gate: &Gate<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<Answer> {
    let Some(form) = forms::read(session).await? else {
        return Ok(Answer::Error(400));
    };
    let Some(ip) = ctx.client_ip() else {
        return Ok(Answer::Error(400));
    };
    let outcome = match gate.shared.emergency_limits.attempt(ip, now()).await {
        Attempt::Open => None,
        Attempt::Limited(wait) => Some(("limited", Answer::TooMany(wait))),
        Attempt::LockedOut(wait, first) => {
            if first {
                let attempts = crate::config::EMERGENCY_GLOBAL_ATTEMPTS;
                let fields = json!({ "seconds": wait.as_secs(), "attempts": attempts });
                audit("emergency_lockout", ctx, fields);
            }
            Some(("locked", Answer::TooMany(wait)))
        }
        Attempt::Refused => Some(("store_unavailable", Answer::Error(503))),
    };
    if let Some((outcome, answer)) = outcome {
        audit("emergency_attempt", ctx, json!({ "outcome": outcome }));
        return Ok(answer);
    }
    if !Csrf::for_browser(session, ctx, gate.srt).verify(PURPOSE_GATE, &form) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "csrf_refused" }),
        );
        return Ok(secret_form(session, ctx, gate.srt, Some(EXPIRED), 403));
    }
    if !gate.em.verifier.verify(form.field("secret").as_bytes()) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "wrong_secret" }),
        );
        let wrong = Some("That is not the emergency secret.");
        return Ok(secret_form(session, ctx, gate.srt, wrong, 401));
    }
    let grant = Grant::new(now(), gate.em.ttl);
    let value = gate.em.verifier.encode(&grant);
    ctx.out
        .set_cookies
        .push(auth::emergency_cookie(value, gate.em.ttl));
    let fields = json!({ "expires": grant.expires, "roles": gate.em.roles });
    audit("emergency_grant", ctx, fields);
    Ok(Answer::see_other(paths::EMERGENCY_DASHBOARD))
}

fn dashboard(
    gate: &Gate<'_>,
    session: &Session,
    ctx: &mut Ctx,
    grant: Grant,
    notice: Option<Notice<'_>>,
    status: u16,
) -> Answer {
    // The file itself, not the cached copy: an action just wrote it.
    gate.shared.users.refresh();
    let users = gate.shared.users.get();
    let rows: Vec<UserRow<'_>> = users
        .iter()
        .map(|u| UserRow {
            name: &u.name,
            roles: &u.roles,
            disabled: u.disabled,
        })
        .collect();
    let token = Csrf::for_browser(session, ctx, gate.srt).token(PURPOSE_ACTION);
    let minutes = grant.expires.saturating_sub(now()).div_ceil(60);
    Answer::html(
        status,
        pages::emergency_dashboard(&token, &rows, minutes, notice),
    )
}

/// Reads a dashboard form and checks its CSRF token; `Err` is the answer.
async fn action_form(
    gate: &Gate<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    grant: Grant,
) -> Result<std::result::Result<Form, Answer>> {
    let Some(form) = forms::read(session).await? else {
        return Ok(Err(Answer::Error(400)));
    };
    if !Csrf::for_browser(session, ctx, gate.srt).verify(PURPOSE_ACTION, &form) {
        audit("emergency_action", ctx, json!({ "action": "csrf_refused" }));
        let notice = Notice {
            ok: false,
            text: EXPIRED,
        };
        return Ok(Err(dashboard(gate, session, ctx, grant, Some(notice), 403)));
    }
    Ok(Ok(form))
}

/// `POST /.portcullis/emergency/logout`: ends the emergency session.
async fn logout(
    gate: &Gate<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    grant: Grant,
) -> Result<Answer> {
    if let Err(answer) = action_form(gate, session, ctx, grant).await? {
        return Ok(answer);
    }
    gate.shared
        .revocations
        .revoke(grant.id, grant.expires)
        .await;
    ctx.out
        .set_cookies
        .push(auth::clear_cookie(auth::EMERGENCY_COOKIE));
    audit("emergency_logout", ctx, json!({}));
    Ok(Answer::see_other(paths::EMERGENCY_ENDED))
}

/// `POST …/create-user` and `…/reset-password`.
async fn action(
    gate: &Gate<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    grant: Grant,
    what: Action,
) -> Result<Answer> {
    let form = match action_form(gate, session, ctx, grant).await? {
        Ok(form) => form,
        Err(answer) => return Ok(answer),
    };
    let name = form.field("username").trim().to_string();
    let password = form.field("password").to_string();
    let shared = gate.shared;
    let (result, fields) = match what {
        Action::CreateUser => {
            let roles: Vec<String> = form
                .field("roles")
                .split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect();
            let fields = json!({ "action": what.name(), "user": name, "roles": roles });
            let done = emergency_users::create(shared, &name, password, roles).await;
            (done, fields)
        }
        Action::ResetPassword => {
            let fields = json!({ "action": what.name(), "user": name });
            let done = emergency_users::reset_password(shared, &name, password).await;
            (done, fields)
        }
    };
    let notice = match result {
        Ok(()) => {
            audit("emergency_action", ctx, fields);
            Notice {
                ok: true,
                text: match what {
                    Action::CreateUser => "User created. They can sign in now.",
                    Action::ResetPassword => {
                        "Password reset. That user's existing sessions have ended."
                    }
                },
            }
        }
        Err(refusal) => {
            let fields = json!({ "action": what.name(), "user": name, "reason": refusal.text() });
            audit("emergency_action_refused", ctx, fields);
            Notice {
                ok: false,
                text: refusal.text(),
            }
        }
    };
    let status = if notice.ok { 200 } else { 400 };
    Ok(dashboard(gate, session, ctx, grant, Some(notice), status))
}
