//! The emergency ("break-glass") gate: `/.portcullis/emergency…`
//! (docs/behaviour.md, "The emergency gate").
//!
//! While the gate is disabled, or for a client outside `allow_from`, none of
//! this runs: the paths get the generic 404. While enabled, the secret is
//! checked against a derived verifier in constant time after the attempt
//! limits; success sets `__Host-portcullis-emergency` for `ttl`, and the
//! dashboard's CSRF-protected forms create users and reset passwords in the
//! identity store (one transaction each; `emergency_users`). Every attempt, grant,
//! action and logout is an audit line without secrets or passwords.

use pingora::prelude::Session;
use policies::emergency::Grant;
use serde_json::json;

use super::emergency_users;
use super::forms::{self, Csrf, Form};
use super::pages::{self, Notice, UserRow};
use super::paths;
use crate::answer::Answer;
use crate::auth;
use crate::ctx::Ctx;
use crate::respond;
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

/// What answers a request to the gate (decided before any I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The secret form, with an emergency session already: on to the dashboard.
    ToDashboard,
    SecretForm,
    Submit,
    Dashboard,
    /// An inner page without an emergency session.
    NoSession,
    CreateUser,
    ResetPassword,
    Logout,
}

impl Handler {
    /// Handlers that read the posted form.
    pub fn takes_form(self) -> bool {
        matches!(
            self,
            Handler::Submit | Handler::CreateUser | Handler::ResetPassword | Handler::Logout
        )
    }
}

/// The handler of `page` for this method and emergency session; `None`: no
/// such page for this method (the caller's 404).
pub fn dispatch(page: Page, get: bool, post: bool, grant: bool) -> Option<Handler> {
    Some(match page {
        Page::Form if get && grant => Handler::ToDashboard,
        Page::Form if get => Handler::SecretForm,
        Page::Form if post => Handler::Submit,
        _ if !grant && (get || post) => Handler::NoSession,
        Page::Dashboard if get => Handler::Dashboard,
        Page::CreateUser if post => Handler::CreateUser,
        Page::ResetPassword if post => Handler::ResetPassword,
        Page::Logout if post => Handler::Logout,
        _ => return None,
    })
}

/// Runs a handler; `form` is the posted form of handlers that take one.
pub async fn run(
    gate: &Gate<'_>,
    handler: Handler,
    session: &Session,
    ctx: &mut Ctx,
    form: &Form,
) -> Answer {
    match (handler, ctx.emergency) {
        (Handler::ToDashboard, _) => Answer::see_other(paths::EMERGENCY_DASHBOARD),
        (Handler::SecretForm, _) => secret_form(session, ctx, gate.srt, None, 200),
        (Handler::Submit, _) => submit(gate, session, ctx, form).await,
        (Handler::Dashboard, Some(g)) => {
            // Right after start the store may not be open yet: wait for it
            // (the dashboard lists its accounts) rather than answer 503.
            let _ = gate.shared.accounts.fresh_soon().await;
            dashboard(gate, session, ctx, g, None, 200)
        }
        (Handler::Logout, Some(g)) => logout(gate, session, ctx, g, form).await,
        (Handler::CreateUser, Some(g)) => {
            action(gate, session, ctx, g, Action::CreateUser, form).await
        }
        (Handler::ResetPassword, Some(g)) => {
            action(gate, session, ctx, g, Action::ResetPassword, form).await
        }
        // No emergency session: back to the secret form (a browser) or 401.
        _ if respond::is_navigation(session, &ctx.method) => Answer::see_other(paths::EMERGENCY),
        _ => Answer::Error(401),
    }
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
async fn submit(gate: &Gate<'_>, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
    let Some(ip) = ctx.client_ip() else {
        return Answer::Error(400);
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
        return answer;
    }
    if !Csrf::for_browser(session, ctx, gate.srt).verify(PURPOSE_GATE, form) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "csrf_refused" }),
        );
        return secret_form(session, ctx, gate.srt, Some(EXPIRED), 403);
    }
    if !gate.em.verifier.verify(form.field("secret").as_bytes()) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "wrong_secret" }),
        );
        let wrong = Some("That is not the emergency secret.");
        return secret_form(session, ctx, gate.srt, wrong, 401);
    }
    let grant = Grant::new(now(), gate.em.ttl);
    let value = gate.em.verifier.encode(&grant);
    ctx.out
        .set_cookies
        .push(auth::emergency_cookie(value, gate.em.ttl));
    let fields = json!({ "expires": grant.expires, "roles": gate.em.roles });
    audit("emergency_grant", ctx, fields);
    Answer::see_other(paths::EMERGENCY_DASHBOARD)
}

fn dashboard(
    gate: &Gate<'_>,
    session: &Session,
    ctx: &mut Ctx,
    grant: Grant,
    notice: Option<Notice<'_>>,
    status: u16,
) -> Answer {
    // An action refreshed the cache after writing: this lists its result.
    let Some(cache) = gate.shared.accounts.fresh() else {
        return Answer::Error(503);
    };
    let accounts = cache.accounts();
    let rows: Vec<UserRow<'_>> = accounts
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

/// Checks a dashboard form's CSRF token; `Err` is the answer.
fn checked(
    gate: &Gate<'_>,
    session: &Session,
    ctx: &mut Ctx,
    grant: Grant,
    form: &Form,
) -> Result<(), Answer> {
    if Csrf::for_browser(session, ctx, gate.srt).verify(PURPOSE_ACTION, form) {
        return Ok(());
    }
    audit("emergency_action", ctx, json!({ "action": "csrf_refused" }));
    let notice = Notice {
        ok: false,
        text: EXPIRED,
    };
    Err(dashboard(gate, session, ctx, grant, Some(notice), 403))
}

/// `POST /.portcullis/emergency/logout`: ends the emergency session.
async fn logout(
    gate: &Gate<'_>,
    session: &Session,
    ctx: &mut Ctx,
    grant: Grant,
    form: &Form,
) -> Answer {
    if let Err(answer) = checked(gate, session, ctx, grant, form) {
        return answer;
    }
    gate.shared
        .revocations
        .revoke(grant.id, grant.expires)
        .await;
    ctx.out
        .set_cookies
        .push(auth::clear_cookie(auth::EMERGENCY_COOKIE));
    audit("emergency_logout", ctx, json!({}));
    Answer::see_other(paths::EMERGENCY_ENDED)
}

/// `POST …/create-user` and `…/reset-password`.
async fn action(
    gate: &Gate<'_>,
    session: &Session,
    ctx: &mut Ctx,
    grant: Grant,
    what: Action,
    form: &Form,
) -> Answer {
    if let Err(answer) = checked(gate, session, ctx, grant, form) {
        return answer;
    }
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
    dashboard(gate, session, ctx, grant, Some(notice), status)
}
