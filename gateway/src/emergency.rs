//! The emergency ("break-glass") gate: `/.portcullis/emergency…` (SPEC
//! `[emergency]`).
//!
//! While the gate is disabled, or for a client outside `allow_from`, none of
//! this runs: the paths fall through to the generic 404. While enabled, the
//! secret is checked against a derived verifier in constant time after the
//! attempt limits; success sets `__Host-portcullis-emergency` for `ttl`, and
//! the dashboard's CSRF-protected forms create users and reset passwords in
//! the users file (locked, atomic). Every attempt, grant, action and logout
//! is an audit line without secrets or passwords.

use std::net::IpAddr;

use pingora::prelude::*;
use policies::csrf;
use policies::emergency::Grant;
use serde_json::json;

use crate::auth;
use crate::login::{binding, fail, field, html, read_form, CSRF_MAX_AGE};
use crate::pages::{self, Notice, UserRow};
use crate::proxy::Ctx;
use crate::respond;
use crate::runtime::{EmergencyRt, SessionRt};
use crate::state::{now, Attempt, Shared};
use crate::users_file::{self, User};

const FORM: &str = "/.portcullis/emergency";
const DASHBOARD: &str = "/.portcullis/emergency/dashboard";
/// CSRF purposes: the secret form, and the dashboard's actions.
const PURPOSE_GATE: &str = "emergency";
const PURPOSE_ACTION: &str = "emergency-action";
const MIN_PASSWORD: usize = 8;

fn audit(event: &str, ctx: &Ctx, fields: serde_json::Value) {
    crate::audit::event(event, &ctx.out.request_id, client_ip(ctx), fields);
}

fn client_ip(ctx: &Ctx) -> Option<IpAddr> {
    ctx.client.as_ref().map(|c| c.ip)
}

/// Routes an emergency path; `None` when it is not one (the caller's 404).
pub async fn handle(
    session: &mut Session,
    ctx: &mut Ctx,
    em: &EmergencyRt,
    srt: &SessionRt,
    shared: &Shared,
    path: &str,
    grant: Option<Grant>,
) -> Option<Result<bool>> {
    let method = session.req_header().method.clone();
    let get = method == http::Method::GET || method == http::Method::HEAD;
    let post = method == http::Method::POST;
    Some(match (path, grant) {
        (FORM, Some(_)) if get => redirect(session, ctx, DASHBOARD).await,
        (FORM, None) if get => form(session, ctx, srt, None, None, 200).await,
        (FORM, _) if post => submit(session, ctx, em, srt, shared).await,
        (DASHBOARD, Some(g)) if get => dashboard(session, ctx, srt, shared, g, None, 200).await,
        (
            DASHBOARD
            | "/.portcullis/emergency/create-user"
            | "/.portcullis/emergency/reset-password"
            | "/.portcullis/emergency/logout",
            None,
        ) if get || post => {
            // No emergency session: back to the secret form (a browser) or 401.
            let navigation = policies::access::is_navigation(
                method.as_str(),
                &mut session
                    .req_header()
                    .headers
                    .get_all(http::header::ACCEPT)
                    .iter()
                    .map(|v| v.as_bytes()),
            );
            if navigation {
                redirect(session, ctx, FORM).await
            } else {
                fail(session, ctx, 401).await
            }
        }
        ("/.portcullis/emergency/create-user", Some(g)) if post => {
            action(session, ctx, srt, shared, g, Action::CreateUser).await
        }
        ("/.portcullis/emergency/reset-password", Some(g)) if post => {
            action(session, ctx, srt, shared, g, Action::ResetPassword).await
        }
        ("/.portcullis/emergency/logout", Some(g)) if post => {
            action(session, ctx, srt, shared, g, Action::Logout).await
        }
        _ => return None,
    })
}

async fn redirect(session: &mut Session, ctx: &mut Ctx, to: &str) -> Result<bool> {
    ctx.status = 303;
    respond::redirect(session, &ctx.out, 303, to).await?;
    Ok(true)
}

async fn form(
    session: &mut Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    error: Option<&str>,
    note: Option<&str>,
    status: u16,
) -> Result<bool> {
    let b = binding(session, ctx);
    let token = csrf::token(&srt.csrf_key, &b, PURPOSE_GATE, now());
    let note = note.or_else(|| {
        session
            .req_header()
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "ended=1"))
            .then_some("The emergency session has ended. Disable the gate now.")
    });
    html(session, ctx, status, pages::emergency(&token, error, note)).await
}

/// `POST /.portcullis/emergency`: limits, CSRF, then the secret.
async fn submit(
    session: &mut Session,
    ctx: &mut Ctx,
    em: &EmergencyRt,
    srt: &SessionRt,
    shared: &Shared,
) -> Result<bool> {
    let Some(form_body) = read_form(session).await? else {
        return fail(session, ctx, 400).await;
    };
    let Some(ip) = client_ip(ctx) else {
        return fail(session, ctx, 400).await;
    };
    match shared.emergency_limits.attempt(ip, now()).await {
        Attempt::Open => {}
        Attempt::Limited(wait) => {
            audit("emergency_attempt", ctx, json!({ "outcome": "limited" }));
            return too_many(session, ctx, wait).await;
        }
        Attempt::LockedOut(wait, first) => {
            if first {
                audit(
                    "emergency_lockout",
                    ctx,
                    json!({ "seconds": wait.as_secs(), "attempts": crate::config::EMERGENCY_GLOBAL_ATTEMPTS }),
                );
            }
            audit("emergency_attempt", ctx, json!({ "outcome": "locked" }));
            return too_many(session, ctx, wait).await;
        }
        Attempt::Refused => {
            audit(
                "emergency_attempt",
                ctx,
                json!({ "outcome": "store_unavailable" }),
            );
            return fail(session, ctx, 503).await;
        }
    }
    let b = binding(session, ctx);
    if !csrf::verify(
        &srt.csrf_key,
        &b,
        PURPOSE_GATE,
        field(&form_body, "csrf"),
        now(),
        CSRF_MAX_AGE,
    ) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "csrf_refused" }),
        );
        let msg = "The form expired. Please try again.";
        return form(session, ctx, srt, Some(msg), None, 403).await;
    }
    if !em.verifier.verify(field(&form_body, "secret").as_bytes()) {
        audit(
            "emergency_attempt",
            ctx,
            json!({ "outcome": "wrong_secret" }),
        );
        return form(
            session,
            ctx,
            srt,
            Some("That is not the emergency secret."),
            None,
            401,
        )
        .await;
    }
    let t = now();
    let grant = Grant::new(t, em.ttl);
    ctx.out
        .set_cookies
        .push(auth::emergency_cookie(em.verifier.encode(&grant), em.ttl));
    audit(
        "emergency_grant",
        ctx,
        json!({ "expires": grant.expires, "roles": em.roles }),
    );
    redirect(session, ctx, DASHBOARD).await
}

async fn too_many(session: &mut Session, ctx: &mut Ctx, wait: std::time::Duration) -> Result<bool> {
    ctx.status = 429;
    respond::too_many(session, &ctx.out, wait).await?;
    Ok(true)
}

async fn dashboard(
    session: &mut Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    shared: &Shared,
    grant: Grant,
    notice: Option<Notice<'_>>,
    status: u16,
) -> Result<bool> {
    // The file itself, not the cached copy: an action just wrote it.
    shared.users.refresh();
    let users = shared.users.get();
    let rows: Vec<UserRow<'_>> = users
        .iter()
        .map(|u| UserRow {
            name: &u.name,
            roles: &u.roles,
            disabled: u.disabled,
        })
        .collect();
    let b = binding(session, ctx);
    let token = csrf::token(&srt.csrf_key, &b, PURPOSE_ACTION, now());
    let minutes = grant.expires.saturating_sub(now()).div_ceil(60);
    let page = pages::emergency_dashboard(&token, &rows, minutes, notice);
    html(session, ctx, status, page).await
}

#[derive(Debug, Clone, Copy)]
enum Action {
    CreateUser,
    ResetPassword,
    Logout,
}

async fn action(
    session: &mut Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    shared: &Shared,
    grant: Grant,
    what: Action,
) -> Result<bool> {
    let Some(form_body) = read_form(session).await? else {
        return fail(session, ctx, 400).await;
    };
    let b = binding(session, ctx);
    if !csrf::verify(
        &srt.csrf_key,
        &b,
        PURPOSE_ACTION,
        field(&form_body, "csrf"),
        now(),
        CSRF_MAX_AGE,
    ) {
        audit("emergency_action", ctx, json!({ "action": "csrf_refused" }));
        let notice = Notice {
            ok: false,
            text: "The form expired. Please try again.",
        };
        return dashboard(session, ctx, srt, shared, grant, Some(notice), 403).await;
    }
    let name = field(&form_body, "username").trim().to_string();
    let password = field(&form_body, "password").to_string();
    let result = match what {
        Action::Logout => {
            shared.revocations.revoke(grant.id, grant.expires).await;
            ctx.out
                .set_cookies
                .push(auth::clear_cookie(auth::EMERGENCY_COOKIE));
            audit("emergency_logout", ctx, json!({}));
            return redirect(session, ctx, "/.portcullis/emergency?ended=1").await;
        }
        Action::CreateUser => {
            let roles: Vec<String> = field(&form_body, "roles")
                .split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect();
            create_user(shared, &name, password, roles.clone())
                .await
                .map(|()| ("create_user", roles))
        }
        Action::ResetPassword => reset_password(shared, &name, password)
            .await
            .map(|()| ("reset_password", Vec::new())),
    };
    match result {
        Ok((action, roles)) => {
            let mut fields = json!({ "action": action, "user": name });
            if action == "create_user" {
                fields["roles"] = json!(roles);
            }
            audit("emergency_action", ctx, fields);
            let text = if action == "create_user" {
                "User created. They can sign in now."
            } else {
                "Password reset. That user's existing sessions have ended."
            };
            dashboard(
                session,
                ctx,
                srt,
                shared,
                grant,
                Some(Notice { ok: true, text }),
                200,
            )
            .await
        }
        Err(refusal) => {
            audit(
                "emergency_action_refused",
                ctx,
                json!({ "action": match what { Action::CreateUser => "create_user", _ => "reset_password" }, "user": name, "reason": refusal.text() }),
            );
            let notice = Notice {
                ok: false,
                text: refusal.text(),
            };
            dashboard(session, ctx, srt, shared, grant, Some(notice), 400).await
        }
    }
}

/// Why an action was refused: fixed sentences, so no input is echoed.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    BadName,
    BadRoles,
    ShortPassword,
    Exists,
    NoSuchUser,
    Storage,
}

impl Refusal {
    fn text(self) -> &'static str {
        match self {
            Refusal::BadName => "Not a valid user name (1-64 of A-Z a-z 0-9 . _ @ + -).",
            Refusal::BadRoles => "Roles need at least one name of A-Z a-z 0-9 . _ -.",
            Refusal::ShortPassword => "The password needs at least 8 characters.",
            Refusal::Exists => "A user with that name exists already.",
            Refusal::NoSuchUser => "There is no such user.",
            Refusal::Storage => "The users file could not be written; see the gateway's log.",
        }
    }
}

async fn hash(password: String) -> Result<String, Refusal> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(Refusal::ShortPassword);
    }
    crate::passwords::hash(password)
        .await
        .ok_or(Refusal::Storage)
}

/// Runs a users-file update on the blocking pool (it takes the file lock
/// shared with `portcullis user`, and fsyncs).
async fn update(
    shared: &Shared,
    change: impl FnOnce(&mut users_file::Users) -> Result<(), Refusal> + Send + 'static,
) -> Result<(), Refusal> {
    let path = shared.users.path.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut refused = None;
        let written = users_file::update(&path, |users| {
            change(users).map_err(|r| {
                refused = Some(r);
                String::new()
            })
        });
        (written, refused)
    })
    .await;
    match outcome {
        Ok((Ok(()), _)) => {
            shared.users.refresh();
            Ok(())
        }
        Ok((Err(_), Some(r))) => Err(r),
        Ok((Err(e), None)) => {
            tracing::error!(error = %e, "emergency: the users file could not be updated");
            Err(Refusal::Storage)
        }
        Err(_) => Err(Refusal::Storage),
    }
}

async fn create_user(
    shared: &Shared,
    name: &str,
    password: String,
    roles: Vec<String>,
) -> Result<(), Refusal> {
    if !policies::users::valid_user_name(name) {
        return Err(Refusal::BadName);
    }
    if roles.is_empty() || !roles.iter().all(|r| users_file::valid_role(r)) {
        return Err(Refusal::BadRoles);
    }
    let hash = hash(password).await?;
    let name = name.to_string();
    update(shared, move |users| {
        let user = User {
            name,
            password: hash,
            roles,
            disabled: false,
            generation: 1,
        };
        users.insert(user).then_some(()).ok_or(Refusal::Exists)
    })
    .await
}

async fn reset_password(shared: &Shared, name: &str, password: String) -> Result<(), Refusal> {
    if shared.users.get().get(name).is_none() {
        return Err(Refusal::NoSuchUser);
    }
    let hash = hash(password).await?;
    let name = name.to_string();
    update(shared, move |users| {
        let user = users.get_mut(&name).ok_or(Refusal::NoSuchUser)?;
        user.password = hash;
        user.disabled = false;
        // Every session of the old generation is void from now on.
        user.generation += 1;
        Ok(())
    })
    .await
}
