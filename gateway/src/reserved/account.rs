//! `/.portcullis/account` (any account session): the own sessions with
//! "sign out" each and "sign out everywhere", and a password change that
//! needs the current password (docs/behaviour.md, "Reserved paths").
//!
//! Every form is CSRF-protected (purpose `account`), every change audited
//! with the account; a password never is. The current-password check
//! counts against the login limits (per IP and per name), so the page is
//! no way around them.

use pingora::prelude::Session;
use policies::session;
use serde_json::json;

use super::forms::{Csrf, Form};
use super::pages::{self, AccountPage, FactorRow, SessionRow};
use super::paths::{self, with_next};
use crate::answer::Answer;
use crate::auth;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};
use identity::{Account, SessionRecord};

const PURPOSE: &str = "account";
const MIN_PASSWORD: usize = 8;

const CHANGED: &str = "Password changed. Your other sessions have ended.";
const WRONG_CURRENT: &str = "The current password is not right.";
const MISMATCH: &str = "The two new passwords differ.";
const SHORT: &str = "The new password needs at least 8 characters.";
const SIGNED_OUT_ONE: &str = "That session has ended.";
const EXPIRED: &str = "The form expired. Please try again.";

/// An audit line about `user`, with `extra` fields.
pub(super) fn audit(event: &str, ctx: &Ctx, user: &str, extra: serde_json::Value) {
    let mut fields = json!({ "user": user });
    if let (Some(map), serde_json::Value::Object(more)) = (fields.as_object_mut(), extra) {
        map.extend(more);
    }
    crate::audit::event(event, &ctx.out.request_id, ctx.client_ip(), fields);
}

/// The page's inputs.
pub struct AccountPages<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

/// Who the page is for: an account session (not the emergency one, which
/// has no account).
fn who(ctx: &Ctx) -> Option<(String, session::Session)> {
    let id = ctx.identity.as_ref()?;
    Some((id.user.clone(), id.session.clone()?))
}

/// Without an account session: browsers go to the login page (or to
/// finish their sign-in) and back.
fn no_session(ctx: &Ctx) -> Answer {
    if ctx.identity_unavailable {
        return Answer::Error(503);
    }
    let page = paths::sign_in_page(ctx.unfinished.as_ref().map(|u| u.need));
    Answer::see_other(with_next(page, paths::ACCOUNT))
}

pub(super) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

impl AccountPages<'_> {
    /// `GET /.portcullis/account`
    pub async fn show(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        self.page(session, ctx, None, 200).await
    }

    pub(super) async fn page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        notice: Option<(bool, &str)>,
        status: u16,
    ) -> Answer {
        let Some((me, current)) = who(ctx) else {
            return no_session(ctx);
        };
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let Some(account) = cache.account(&me) else {
            return no_session(ctx);
        };
        let store = cache.store();
        let read = async {
            Ok::<_, identity::StoreError>((
                store.sessions_of(account.id).await?,
                store.factors(account.id).await?,
                store.recovery_codes_left(account.id).await?,
            ))
        };
        let (records, factors, codes_left) = match read.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "account page: not read");
                return Answer::Error(503);
            }
        };
        let factor_rows: Vec<FactorRow<'_>> = factors
            .iter()
            .map(|f| FactorRow {
                id: f.id,
                kind: &f.kind,
                label: &f.label,
                created: utc(f.created),
            })
            .collect();
        let current_id = current.id_hex();
        let rows: Vec<SessionRow<'_>> = records
            .iter()
            .map(|r| SessionRow {
                id: &r.id,
                method: &r.method,
                client_ip: r.client_ip.as_deref().unwrap_or("-"),
                user_agent: r.user_agent.as_deref().unwrap_or("unknown browser"),
                created: utc(r.created),
                last_seen: utc(r.last_seen),
                current: r.id == current_id.as_str(),
            })
            .collect();
        let csrf = Csrf::for_browser(session, ctx, self.srt).token(PURPOSE);
        let roles = account.all_roles();
        let page = pages::account(&AccountPage {
            csrf: &csrf,
            user: &account.name,
            email: account.email.as_deref(),
            roles: &roles,
            has_password: account.password.is_some(),
            sessions: &rows,
            factors: &factor_rows,
            codes_left,
            factor_required: ctx.rt.login.mfa.applies_to(&roles),
            notice,
        });
        Answer::html(status, page)
    }

    /// The account and the current session for a POST, or the answer.
    pub(super) async fn checked(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        form: &Form,
    ) -> Result<(Account, session::Session), Answer> {
        let Some((me, current)) = who(ctx) else {
            return Err(no_session(ctx));
        };
        if !Csrf::sent(session, self.srt).verify(PURPOSE, form) {
            audit("account_csrf_refused", ctx, &me, json!({}));
            return Err(self.page(session, ctx, Some((false, EXPIRED)), 403).await);
        }
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Err(Answer::Error(503));
        };
        match cache.account(&me) {
            Some(a) => Ok(((*a).clone(), current)),
            None => Err(no_session(ctx)),
        }
    }

    /// `POST /.portcullis/account/sign-out`: ends one of the own sessions.
    pub async fn sign_out(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let (account, current) = match self.checked(session, ctx, form).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let target = form.field("session");
        // Only a session of this account: another's id changes nothing.
        let owned = match cache.store().session(target).await {
            Ok(Some(r)) => r.account_id == account.id,
            Ok(None) => false,
            Err(_) => return Answer::Error(503),
        };
        if !owned {
            audit("account_sign_out_refused", ctx, &account.name, json!({}));
            return Answer::Error(404);
        }
        if cache.store().delete_session(target).await.is_err() {
            return Answer::Error(503);
        }
        cache.forget(target);
        audit("account_sign_out", ctx, &account.name, json!({}));
        if target == current.id_hex().as_str() {
            ctx.out
                .set_cookies
                .push(auth::clear_cookie(auth::SESSION_COOKIE));
            return Answer::see_other(paths::SIGNED_OUT);
        }
        self.page(session, ctx, Some((true, SIGNED_OUT_ONE)), 200)
            .await
    }

    /// `POST /.portcullis/account/sign-out-everywhere`
    pub async fn sign_out_everywhere(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        form: &Form,
    ) -> Answer {
        let (account, _) = match self.checked(session, ctx, form).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        if let Err(e) = cache.store().end_sessions(&account.name).await {
            tracing::error!(error = %e, "sign out everywhere: not written");
            return Answer::Error(503);
        }
        let _ = cache.refresh(now_ms()).await;
        audit("account_sign_out_everywhere", ctx, &account.name, json!({}));
        ctx.out
            .set_cookies
            .push(auth::clear_cookie(auth::SESSION_COOKIE));
        Answer::see_other(paths::SIGNED_OUT)
    }

    /// `POST /.portcullis/account/password`: the current password, then a
    /// new one; every other session ends, this browser gets a fresh one.
    pub async fn change_password(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let (account, current) = match self.checked(session, ctx, form).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        if let Some(refused) =
            super::login::count_attempt(self.shared, ctx, &account.name, PURPOSE).await
        {
            return refused;
        }
        let (old, new, again) = (
            form.field("current"),
            form.field("new"),
            form.field("confirm"),
        );
        let ok = crate::passwords::verify(account.password.clone(), old.to_string()).await;
        if !ok || account.password.is_none() {
            audit("account_password_refused", ctx, &account.name, json!({}));
            return self
                .page(session, ctx, Some((false, WRONG_CURRENT)), 403)
                .await;
        }
        if new != again {
            return self.page(session, ctx, Some((false, MISMATCH)), 400).await;
        }
        if new.chars().count() < MIN_PASSWORD {
            return self.page(session, ctx, Some((false, SHORT)), 400).await;
        }
        let Some(hash) = crate::passwords::hash(new.to_string()).await else {
            return self.page(session, ctx, Some((false, SHORT)), 400).await;
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let method = match cache.store().session(current.id_hex().as_str()).await {
            Ok(Some(r)) => r.method,
            _ => "password".to_string(),
        };
        // The change ends every session, this one included (one
        // transaction); this browser then gets a fresh one.
        let changed = match cache.store().set_password(&account.name, Some(&hash)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "password change: not written");
                return Answer::Error(503);
            }
        };
        let (fresh, record) = super::login::fresh_session(session, ctx, &method);
        let record = SessionRecord {
            account_id: changed.id,
            epoch: changed.epoch.clone(),
            ..record
        };
        let _ = cache.refresh(now_ms()).await;
        audit("account_password_changed", ctx, &account.name, json!({}));
        if cache.store().create_session(&record).await.is_err() {
            ctx.out
                .set_cookies
                .push(auth::clear_cookie(auth::SESSION_COOKIE));
            return Answer::see_other(paths::LOGIN);
        }
        ctx.out
            .set_cookies
            .push(auth::session_cookie(self.srt, &fresh, fresh.issued));
        // The page below is rendered for the new session.
        if let Some(id) = ctx.identity.as_mut() {
            id.session = Some(fresh);
        }
        self.page(session, ctx, Some((true, CHANGED)), 200).await
    }
}
