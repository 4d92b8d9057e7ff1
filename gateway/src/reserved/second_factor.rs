//! `/.portcullis/login/second-factor`: the second step of a sign-in, and
//! the step up a route with `mfa = true` asks for (docs/sign-in.md,
//! "Second factors").
//!
//! Only a session set aside by stage `session` as needing its factor gets
//! the form; a right code replaces that session with a new one (new id,
//! method `…+totp` or `…+recovery`), the old record is deleted. Attempts
//! count against the login limits (per IP and per account), a TOTP step
//! is accepted once on every instance, a recovery code once.

use pingora::prelude::Session;
use policies::mfa::{self, Gate, Second};
use policies::{recovery, redirect, totp};
use serde_json::json;

use super::account::audit;

use super::forms::{self, Csrf, Form};
use super::login;
use super::pages::{self, CodePage};
use super::paths::{self, with_next};
use crate::answer::Answer;
use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now, now_ms, Shared};
use identity::{Account, Cache};

const PURPOSE: &str = "second-factor";
const WRONG: &str = "That code is not right, or was used already.";
const EXPIRED: &str = "The form expired. Please try again.";

/// Where a browser goes that has no sign-in waiting for a code: enrolment,
/// the page it wanted (nothing to do), or the login page.
fn elsewhere(ctx: &Ctx, next: &str) -> Answer {
    match &ctx.unfinished {
        Some(u) if u.need == Gate::Enrol => Answer::see_other(with_next(paths::ACCOUNT_TOTP, next)),
        _ if ctx.identity.is_some() => Answer::see_other(next.to_string()),
        _ if ctx.identity_unavailable => Answer::Error(503),
        _ => Answer::see_other(with_next(paths::LOGIN, next)),
    }
}

/// The sign-in waiting for its second factor.
fn waiting(ctx: &Ctx) -> Option<Identity> {
    ctx.unfinished
        .as_ref()
        .filter(|u| u.need == Gate::StepUp)
        .map(|u| u.identity.clone())
}

/// The page's inputs.
pub struct SecondFactor<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl SecondFactor<'_> {
    /// `GET /.portcullis/login/second-factor?next=/x`
    pub async fn form(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let next = redirect::safe_next(forms::query_next(session).as_deref());
        let Some(who) = waiting(ctx) else {
            return elsewhere(ctx, &next);
        };
        self.page(session, ctx, &who.user, &next, None, 200).await
    }

    /// The code form, and the passkey button when the account has passkeys
    /// (a ceremony is begun for them).
    async fn page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        user: &str,
        next: &str,
        error: Option<&str>,
        status: u16,
    ) -> Answer {
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let passkey = match cache.account(user) {
            Some(account) if account.factors > 0 => {
                let keys = super::passkey::Passkeys {
                    srt: self.srt,
                    shared: self.shared,
                };
                keys.second_factor_options(ctx, &cache, &account).await
            }
            _ => None,
        };
        let csrf = Csrf::for_browser(session, ctx, self.srt).token(PURPOSE);
        let page = pages::second_factor(&CodePage {
            csrf: &csrf,
            next,
            user,
            error,
            passkey: passkey.as_deref(),
        });
        Answer::html(status, page)
    }

    /// `POST /.portcullis/login/second-factor`
    pub async fn submit(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let next = redirect::safe_next(Some(form.field("next")));
        let Some(who) = waiting(ctx) else {
            return elsewhere(ctx, &next);
        };
        if let Some(refused) = login::count_attempt(self.shared, ctx, &who.user, PURPOSE).await {
            return refused;
        }
        if !Csrf::sent(session, self.srt).verify(PURPOSE, form) {
            audit("second_factor_csrf_refused", ctx, &who.user, json!({}));
            return self
                .page(session, ctx, &who.user, &next, Some(EXPIRED), 403)
                .await;
        }
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let Some(account) = cache.account(&who.user) else {
            return Answer::see_other(with_next(paths::LOGIN, &next));
        };
        let used = match check_code(&cache, &account, form.field("code")).await {
            Ok(used) => used,
            Err(e) => {
                tracing::error!(error = %e, "second factor: the store did not answer");
                return Answer::Error(503);
            }
        };
        let Some(second) = used else {
            audit("second_factor_failed", ctx, &who.user, json!({}));
            return self
                .page(session, ctx, &who.user, &next, Some(WRONG), 401)
                .await;
        };
        let method = mfa::completed(&who.method, second);
        if let Err(answer) =
            login::replace_session(session, ctx, self.srt, &cache, &account, &who, &method).await
        {
            return answer;
        }
        let factor = if second == Second::Totp {
            "totp"
        } else {
            "recovery"
        };
        audit(
            "second_factor_ok",
            ctx,
            &who.user,
            json!({ "factor": factor }),
        );
        Answer::see_other(next)
    }
}

/// Which second factor `code` is for this account, if any: a TOTP code of
/// one of its apps not used before, or one of its unused recovery codes.
async fn check_code(
    cache: &Cache,
    account: &Account,
    code: &str,
) -> Result<Option<Second>, identity::StoreError> {
    let store = cache.store();
    let at = now();
    for f in store.factors(account.id).await? {
        let Some(secret) = (f.kind == "totp").then(|| totp::decode(&f.data)).flatten() else {
            continue;
        };
        let Some(step) = totp::matching_step(&secret, code, at) else {
            continue;
        };
        let last = f.last_used.and_then(|l| u64::try_from(l).ok());
        let step_i = i64::try_from(step).unwrap_or(i64::MAX);
        // Checked here and, for two requests racing, once more by the store.
        if totp::fresh(step, last) && store.use_totp_step(f.id, step_i).await? {
            return Ok(Some(Second::Totp));
        }
        return Ok(None);
    }
    let Some(hash) = recovery::code_hash(code) else {
        return Ok(None);
    };
    let at_ms = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    Ok(store
        .use_recovery_code(account.id, &hash, at_ms)
        .await?
        .then_some(Second::Recovery))
}
