//! `/.portcullis/admin`: the console of `[login] admin_role` — accounts
//! (search, roles, disable/enable, delete, sign out everywhere, a one-time
//! password-reset link), invitations (a one-time link with roles and an
//! expiry, revocable) and this instance's recent audit events.
//!
//! Only an account session holding the role gets in, and one that used a
//! second factor unless `[login] mfa = "optional"`. Every form carries a
//! CSRF token (purpose `admin`); every action is audited with the acting
//! account (`by`), never with a link's token. A change that would leave no
//! enabled account holding the role is refused with a sentence.

use pingora::prelude::Session;
use policies::mfa::Requirement;
use serde_json::{json, Value};

use super::forms::{self, Csrf, Form};
use super::pages::{self, AccountRow, AdminPage, EventRow, InvitationRow};
use super::paths::{self, with_next};
use crate::answer::Answer;
use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};
use identity::{Invitation, StoreError};

const PURPOSE: &str = "admin";
const EXPIRED: &str = "The form expired. Please try again.";
const DAY_MS: i64 = 86_400_000;
/// How long a password-reset link works.
const RESET_MS: i64 = DAY_MS;
const MAX_INVITE_DAYS: i64 = 90;

fn audit(event: &str, ctx: &Ctx, by: &str, fields: Value) {
    let mut all = json!({ "by": by });
    if let (Some(map), Value::Object(more)) = (all.as_object_mut(), fields) {
        map.extend(more);
    }
    crate::audit::event(event, &ctx.out.request_id, ctx.client_ip(), all);
}

/// The acting admin, or where the request goes instead.
fn admin_of(ctx: &Ctx) -> Result<Identity, Answer> {
    let login = &ctx.rt.login;
    let Some(id) = ctx.identity.as_ref().filter(|i| i.session.is_some()) else {
        if ctx.identity_unavailable {
            return Err(Answer::Error(503));
        }
        let page = paths::sign_in_page(ctx.unfinished.as_ref().map(|u| u.need));
        return Err(Answer::see_other(with_next(page, paths::ADMIN)));
    };
    if !id.roles.contains(&login.admin_role) {
        audit("admin_refused", ctx, &id.user, json!({ "reason": "role" }));
        return Err(Answer::Error(403));
    }
    // A session that has not used a factor here has none (stage `session`
    // sets aside the others): it gets one first.
    if login.mfa != Requirement::Optional && !id.multi_factor() {
        audit("admin_refused", ctx, &id.user, json!({ "reason": "mfa" }));
        return Err(Answer::see_other(with_next(
            paths::ACCOUNT_TOTP,
            paths::ADMIN,
        )));
    }
    Ok(id.clone())
}

fn utc(ms: i64) -> String {
    super::account::utc(ms)
}

/// Role names from a text field: separated by spaces or commas, each valid.
fn parse_roles(text: &str) -> Result<Vec<String>, String> {
    let mut roles: Vec<String> = Vec::new();
    for r in text.split([' ', ',']).filter(|r| !r.is_empty()) {
        if !policies::access::valid_role_name(r) {
            return Err(format!("{r:?} is not a role name (A-Z a-z 0-9 . _ -)."));
        }
        if !roles.iter().any(|x| x == r) {
            roles.push(r.to_string());
        }
    }
    Ok(roles)
}

/// `https://HOST{path}?token=…`
fn link(ctx: &Ctx, path: &str, token: &str) -> String {
    let host = ctx.host.as_deref().unwrap_or("localhost");
    format!("https://{host}{path}?token={token}")
}

/// The console's inputs.
pub struct Admin<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl Admin<'_> {
    /// `GET /.portcullis/admin?q=…`
    pub async fn show(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let me = match admin_of(ctx) {
            Ok(me) => me,
            Err(answer) => return answer,
        };
        let query = forms::query_param(session, "q").unwrap_or_default();
        self.page(session, ctx, &me, &query, None, None, 200).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        me: &Identity,
        query: &str,
        notice: Option<(bool, &str)>,
        link: Option<&str>,
        status: u16,
    ) -> Answer {
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let invitations = match cache.store().invitations().await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "admin console: invitations not read");
                return Answer::Error(503);
            }
        };
        let needle = query.trim().to_lowercase();
        let accounts = cache.accounts();
        let rows: Vec<AccountRow<'_>> = accounts
            .iter()
            .filter(|a| {
                needle.is_empty()
                    || a.name.to_lowercase().contains(&needle)
                    || a.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase().contains(&needle))
            })
            .map(|a| AccountRow {
                name: &a.name,
                email: a.email.as_deref().unwrap_or(""),
                roles: a.roles.join(" "),
                mapped: a.mapped_roles.join(" "),
                disabled: a.disabled,
                factors: a.factors,
                last_sign_in: a.last_sign_in.map(utc).unwrap_or_else(|| "never".into()),
            })
            .collect();
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let invitation_rows: Vec<InvitationRow<'_>> = invitations
            .iter()
            .map(|i| InvitationRow {
                id: &i.id,
                email: i.email.as_deref().unwrap_or("any"),
                roles: i.roles.join(" "),
                created: utc(i.created),
                expires: utc(i.expires),
                state: match (i.used, now >= i.expires) {
                    (Some(_), _) => "used",
                    (None, true) => "expired",
                    (None, false) => "open",
                },
            })
            .collect();
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let events: Vec<EventRow> = crate::audit::recent()
            .iter()
            .take(50)
            .map(|e| EventRow {
                time: e
                    .get("time")
                    .and_then(Value::as_f64)
                    .map(|t| utc((t * 1000.0) as i64))
                    .unwrap_or_default(),
                event: text(e, "event"),
                user: text(e, "user"),
                by: text(e, "by"),
                client_ip: text(e, "client_ip"),
            })
            .collect();
        let csrf = Csrf::for_browser(session, ctx, self.srt).token(PURPOSE);
        Answer::html(
            status,
            pages::admin(&AdminPage {
                csrf: &csrf,
                me: &me.user,
                query,
                accounts: &rows,
                invitations: &invitation_rows,
                events: &events,
                notice,
                link,
            }),
        )
    }

    /// The acting admin of a POST with a valid token, or the answer.
    async fn checked(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        form: &Form,
    ) -> Result<Identity, Answer> {
        let me = admin_of(ctx)?;
        if !Csrf::sent(session, self.srt).verify(PURPOSE, form) {
            audit("admin_csrf_refused", ctx, &me.user, json!({}));
            return Err(self
                .page(session, ctx, &me, "", Some((false, EXPIRED)), None, 403)
                .await);
        }
        Ok(me)
    }

    /// `POST /.portcullis/admin/account`: one action on one account.
    pub async fn account(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let me = match self.checked(session, ctx, form).await {
            Ok(me) => me,
            Err(answer) => return answer,
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let (store, name, action) = (cache.store(), form.field("account"), form.field("action"));
        let keep = ctx.rt.login.admin_role.clone();
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let mut shown_link = None;
        let done: Result<String, StoreError> = match action {
            "roles" => match parse_roles(form.field("roles")) {
                Ok(roles) => store
                    .set_roles_keeping(name, &roles, &keep)
                    .await
                    .map(|a| format!("Roles of {} are now: {}.", a.name, a.roles.join(" "))),
                Err(sentence) => {
                    return self
                        .page(session, ctx, &me, "", Some((false, &sentence)), None, 400)
                        .await
                }
            },
            "disable" => store
                .set_disabled_keeping(name, true, &keep)
                .await
                .map(|a| format!("{} is disabled; its sessions have ended.", a.name)),
            "enable" => store
                .set_disabled(name, false)
                .await
                .map(|a| format!("{} is enabled.", a.name)),
            "sign-out" => store
                .end_sessions(name)
                .await
                .map(|a| format!("Every session of {} has ended.", a.name)),
            "clear-factors" => store.clear_factors(name).await.map(|n| {
                format!("{name} has no second factor now ({n} removed) and is signed out.")
            }),
            "delete" if form.field("confirm") == "yes" => {
                match store.delete_account_keeping(name, &keep).await {
                    Ok(true) => Ok(format!("{name} is deleted.")),
                    Ok(false) => Err(StoreError::NoSuchAccount(name.to_string())),
                    Err(e) => Err(e),
                }
            }
            "reset-link" => {
                let token = policies::invite::new_token();
                let id = policies::invite::token_id(&token).unwrap_or_default();
                let made = store
                    .create_reset_link(&id, name, now, now.saturating_add(RESET_MS))
                    .await;
                shown_link = Some(link(ctx, paths::RESET, &token));
                made.map(|()| format!("A password-reset link for {name} (valid for a day):"))
            }
            _ => return Answer::Error(400),
        };
        let sentence = match done {
            Ok(sentence) => sentence,
            Err(e @ (StoreError::LastAdmin { .. } | StoreError::NoSuchAccount(_))) => {
                audit(
                    "admin_refused",
                    ctx,
                    &me.user,
                    json!({ "user": name, "action": action, "reason": e.to_string() }),
                );
                let sentence = format!("Refused: {e}.");
                return self
                    .page(session, ctx, &me, "", Some((false, &sentence)), None, 409)
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "admin console: not written");
                return Answer::Error(503);
            }
        };
        let _ = cache.refresh(now_ms()).await;
        let event = format!("admin_{}", action.replace('-', "_"));
        audit(&event, ctx, &me.user, json!({ "user": name }));
        self.page(
            session,
            ctx,
            &me,
            "",
            Some((true, &sentence)),
            shown_link.as_deref(),
            200,
        )
        .await
    }

    /// `POST /.portcullis/admin/invite`: a one-time link with roles.
    pub async fn invite(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let me = match self.checked(session, ctx, form).await {
            Ok(me) => me,
            Err(answer) => return answer,
        };
        let bad = |s: String| (false, s);
        let roles = parse_roles(form.field("roles")).map_err(bad);
        let email = match form.field("email").trim() {
            "" => Ok(None),
            e if e.contains('@') && e.len() <= 254 && !e.contains(char::is_whitespace) => {
                Ok(Some(e.to_string()))
            }
            _ => Err(bad("That is not an e-mail address.".to_string())),
        };
        let days = match form.field("days").trim() {
            "" => Ok(7),
            d => d
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=MAX_INVITE_DAYS).contains(d))
                .ok_or_else(|| bad(format!("Days must be 1 to {MAX_INVITE_DAYS}."))),
        };
        let (roles, email, days) = match (roles, email, days) {
            (Ok(r), Ok(e), Ok(d)) => (r, e, d),
            (Err(n), _, _) | (_, Err(n), _) | (_, _, Err(n)) => {
                return self
                    .page(session, ctx, &me, "", Some((n.0, &n.1)), None, 400)
                    .await
            }
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let token = policies::invite::new_token();
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let inv = Invitation {
            id: policies::invite::token_id(&token).unwrap_or_default(),
            email,
            roles,
            created: now,
            expires: now.saturating_add(days * DAY_MS),
            used: None,
        };
        if let Err(e) = cache.store().create_invitation(&inv).await {
            tracing::error!(error = %e, "admin console: invitation not stored");
            return Answer::Error(503);
        }
        audit(
            "admin_invitation_created",
            ctx,
            &me.user,
            json!({ "roles": inv.roles, "email": inv.email, "days": days }),
        );
        let url = link(ctx, paths::INVITE, &token);
        let sentence = format!("Invitation made (valid for {days} days):");
        self.page(
            session,
            ctx,
            &me,
            "",
            Some((true, &sentence)),
            Some(&url),
            200,
        )
        .await
    }

    /// `POST /.portcullis/admin/revoke-invitation`
    pub async fn revoke(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let me = match self.checked(session, ctx, form).await {
            Ok(me) => me,
            Err(answer) => return answer,
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        match cache
            .store()
            .revoke_invitation(form.field("invitation"))
            .await
        {
            Ok(true) => {
                audit("admin_invitation_revoked", ctx, &me.user, json!({}));
                let notice = Some((true, "The invitation is revoked."));
                self.page(session, ctx, &me, "", notice, None, 200).await
            }
            Ok(false) => Answer::Error(404),
            Err(e) => {
                tracing::error!(error = %e, "admin console: invitation not revoked");
                Answer::Error(503)
            }
        }
    }
}
