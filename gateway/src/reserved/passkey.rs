//! Passkeys (WebAuthn): adding one on the account page
//! (`/.portcullis/account/passkey`), using one as the second step of a
//! sign-in, and — with `[login] passkeys = true` — signing in with one
//! alone (`/.portcullis/login/passkey`).
//!
//! Each ceremony's state is kept in the identity store under a random id
//! the browser holds in `__Host-portcullis-ceremony` (five minutes, taken
//! once on any instance); the library checks the challenge, the origin
//! and relying party (the request's host), the signature, user
//! verification and the counter. The answer comes back in an ordinary
//! CSRF-protected form; the only script is `/.portcullis/passkey.js`.

use pingora::prelude::Session;
use policies::mfa::{self, Gate, Second};
use policies::redirect;
use serde_json::json;
use std::sync::Arc;

use webauthn_rs::prelude::{Passkey, Webauthn};

use super::account::audit;
use super::forms::{self, Csrf, Form};
use super::pages::{self, PasskeyPage};
use super::paths;
use crate::answer::Answer;
use crate::auth::{self, Identity};
use crate::ctx::Ctx;
use crate::passkeys::{self, PasskeyError};
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};
use identity::{Account, Cache, Ceremony, Factor, SessionRecord};

pub const CEREMONY_COOKIE: &str = "__Host-portcullis-ceremony";
const CEREMONY_MS: i64 = 300_000;
const ADD: &str = "passkey";
const SIGN_IN: &str = "passkey-sign-in";
const KIND: &str = "passkey";
const NOT_ADDED: &str = "The passkey was not added. Please try again.";
const NOT_USED: &str = "That passkey did not sign in. Please try again.";
const TAKEN: &str = "This passkey belongs to another account.";

fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

/// The account's passkeys, with their factor ids.
async fn passkeys_of(cache: &Cache, account_id: i64) -> Result<Vec<(i64, Passkey)>, Answer> {
    let factors = cache
        .store()
        .factors(account_id)
        .await
        .map_err(|_| Answer::Error(503))?;
    Ok(factors
        .iter()
        .filter(|f| f.kind == KIND)
        .filter_map(|f| Some((f.id, serde_json::from_str(&f.data).ok()?)))
        .collect())
}

fn failed(e: &PasskeyError, what: &str) {
    tracing::info!(error = %e, "passkey {what} refused");
}

/// The pages' inputs.
pub struct Passkeys<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl Passkeys<'_> {
    /// Keeps a ceremony's state and gives the browser its id.
    async fn begin(
        &self,
        ctx: &mut Ctx,
        cache: &Cache,
        account_id: Option<i64>,
        state: String,
    ) -> Result<(), Answer> {
        let id = policies::invite::new_token();
        let c = Ceremony {
            account_id,
            data: state,
        };
        let at = now();
        if let Err(e) = cache
            .store()
            .put_ceremony(&id, &c, at, at.saturating_add(CEREMONY_MS))
            .await
        {
            tracing::error!(error = %e, "passkey ceremony not stored");
            return Err(Answer::Error(503));
        }
        let cookie = auth::strict_cookie(CEREMONY_COOKIE, &id, (CEREMONY_MS / 1000) as u64);
        ctx.out.set_cookies.push(cookie);
        Ok(())
    }

    /// Takes the browser's ceremony back, once; it must be for `account_id`.
    async fn take(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        cache: &Cache,
        account_id: Option<i64>,
    ) -> Option<String> {
        ctx.out
            .set_cookies
            .push(auth::clear_cookie(CEREMONY_COOKIE));
        let id = auth::cookie(session.req_header(), CEREMONY_COOKIE).ok()??;
        let c = cache.store().take_ceremony(id, now()).await.ok()??;
        (c.account_id == account_id).then_some(c.data)
    }

    fn rp(ctx: &Ctx) -> Result<Webauthn, Answer> {
        let host = ctx.host.as_deref().unwrap_or("");
        passkeys::relying_party(host).map_err(|e| {
            failed(&e, "setup");
            Answer::Error(400)
        })
    }

    fn page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        purpose: &str,
        p: PasskeyPage<'_>,
        status: u16,
    ) -> Answer {
        let csrf = Csrf::for_browser(session, ctx, self.srt).token(purpose);
        Answer::html(status, pages::passkey(&PasskeyPage { csrf: &csrf, ..p }))
    }

    /// What adding a passkey for `who` needs: the cache, the account, the
    /// relying party.
    async fn enrolling(
        &self,
        ctx: &Ctx,
        who: &Identity,
    ) -> Result<(Arc<Cache>, Arc<Account>, Webauthn), Answer> {
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Err(Answer::Error(503));
        };
        let Some(account) = cache.account(&who.user) else {
            return Err(super::totp::not_enrollee(ctx));
        };
        Ok((cache, account, Self::rp(ctx)?))
    }

    /// `GET /.portcullis/account/passkey`: a new passkey for the account.
    pub async fn add_form(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let Some((who, forced)) = super::totp::enrollee(ctx) else {
            return super::totp::not_enrollee(ctx);
        };
        let next = redirect::safe_next(forms::query_next(session).as_deref());
        self.add_page(session, ctx, &who, forced, &next, None, 200)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn add_page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        who: &Identity,
        forced: bool,
        next: &str,
        error: Option<&str>,
        status: u16,
    ) -> Answer {
        let (cache, account, rp) = match self.enrolling(ctx, who).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let existing: Vec<Passkey> = match passkeys_of(&cache, account.id).await {
            Ok(list) => list.into_iter().map(|(_, p)| p).collect(),
            Err(answer) => return answer,
        };
        let (options, state) =
            match passkeys::start_registration(&rp, account.id, &account.name, &existing) {
                Ok(v) => v,
                Err(e) => {
                    failed(&e, "registration start");
                    return Answer::Error(500);
                }
            };
        if let Err(answer) = self.begin(ctx, &cache, Some(account.id), state).await {
            return answer;
        }
        let p = PasskeyPage {
            csrf: "",
            title: "Add a passkey",
            intro: "Your device will ask you to create a passkey for this site (with your screen lock, fingerprint or security key).",
            action: paths::ACCOUNT_PASSKEY,
            ceremony: "create",
            options: &options,
            next,
            label: true,
            forced,
            error,
        };
        self.page(session, ctx, ADD, p, status)
    }

    /// `POST /.portcullis/account/passkey`: the browser's new credential.
    pub async fn add(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let Some((who, forced)) = super::totp::enrollee(ctx) else {
            return super::totp::not_enrollee(ctx);
        };
        let next = redirect::safe_next(Some(form.field("next")));
        if !Csrf::sent(session, self.srt).verify(ADD, form) {
            audit("passkey_csrf_refused", ctx, &who.user, json!({}));
            return Answer::Error(403);
        }
        let (cache, account, rp) = match self.enrolling(ctx, &who).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let state = self.take(session, ctx, &cache, Some(account.id)).await;
        let made = state
            .ok_or(PasskeyError::Unknown)
            .and_then(|s| passkeys::finish_registration(&rp, &s, form.field("credential")));
        let passkey = match made {
            Ok(p) => p,
            Err(e) => {
                failed(&e, "registration");
                audit("passkey_add_failed", ctx, &who.user, json!({}));
                return self
                    .add_page(session, ctx, &who, forced, &next, Some(NOT_ADDED), 400)
                    .await;
            }
        };
        // A credential is one account's.
        let all = match cache.store().factors_of_kind(KIND).await {
            Ok(all) => all,
            Err(_) => return Answer::Error(503),
        };
        let taken = all.iter().any(|f| {
            serde_json::from_str::<Passkey>(&f.data).is_ok_and(|p| p.cred_id() == passkey.cred_id())
        });
        if taken {
            audit(
                "passkey_add_refused",
                ctx,
                &who.user,
                json!({ "reason": "taken" }),
            );
            return self
                .add_page(session, ctx, &who, forced, &next, Some(TAKEN), 409)
                .await;
        }
        let Ok(data) = serde_json::to_string(&passkey) else {
            return Answer::Error(500);
        };
        let label: String = match form.field("label").trim() {
            "" => "Passkey".to_string(),
            l => l.chars().take(40).collect(),
        };
        let factor = Factor {
            id: 0,
            account_id: account.id,
            kind: KIND.to_string(),
            label,
            data,
            created: now(),
            last_used: None,
        };
        let done = super::totp::Enrolled {
            who: &who,
            forced,
            second: Second::Passkey,
            next,
        };
        done.store(self.srt, session, ctx, &cache, factor).await
    }

    /// The passkey part of the second-factor page for `account`, if it has
    /// passkeys: the options, with the ceremony begun.
    pub async fn second_factor_options(
        &self,
        ctx: &mut Ctx,
        cache: &Cache,
        account: &Account,
    ) -> Option<String> {
        let list = passkeys_of(cache, account.id).await.ok()?;
        if list.is_empty() {
            return None;
        }
        let rp = Self::rp(ctx).ok()?;
        let keys: Vec<Passkey> = list.into_iter().map(|(_, p)| p).collect();
        let (options, state) = passkeys::start_authentication(&rp, &keys).ok()?;
        self.begin(ctx, cache, Some(account.id), state).await.ok()?;
        Some(options)
    }

    /// `GET /.portcullis/login/passkey?next=/x` (`[login] passkeys = true`):
    /// sign in with a passkey alone.
    pub async fn sign_in_form(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let next = redirect::safe_next(forms::query_next(session).as_deref());
        self.sign_in_page(session, ctx, &next, None, 200).await
    }

    async fn sign_in_page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        next: &str,
        error: Option<&str>,
        status: u16,
    ) -> Answer {
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let rp = match Self::rp(ctx) {
            Ok(rp) => rp,
            Err(answer) => return answer,
        };
        let (options, state) = match passkeys::start_discoverable(&rp) {
            Ok(v) => v,
            Err(e) => {
                failed(&e, "sign-in start");
                return Answer::Error(500);
            }
        };
        if let Err(answer) = self.begin(ctx, &cache, None, state).await {
            return answer;
        }
        let p = PasskeyPage {
            csrf: "",
            title: "Sign in with a passkey",
            intro: "Your device will ask which passkey to use for this site.",
            action: paths::LOGIN_PASSKEY,
            ceremony: "get",
            options: &options,
            next,
            label: false,
            forced: false,
            error,
        };
        self.page(session, ctx, SIGN_IN, p, status)
    }

    /// `POST /.portcullis/login/passkey`: a passkey as the second step of a
    /// sign-in, or (`passkeys = true`, no session) as the whole sign-in.
    pub async fn sign_in(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let next = redirect::safe_next(Some(form.field("next")));
        let waiting = ctx
            .unfinished
            .as_ref()
            .filter(|u| u.need == Gate::StepUp)
            .map(|u| u.identity.clone());
        match waiting {
            Some(who) => self.second_factor(session, ctx, form, who, next).await,
            None if ctx.rt.login.passkeys && ctx.identity.is_none() => {
                self.alone(session, ctx, form, next).await
            }
            None => Answer::Error(404),
        }
    }

    async fn second_factor(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        form: &Form,
        who: Identity,
        next: String,
    ) -> Answer {
        if let Some(refused) = super::login::count_attempt(self.shared, ctx, &who.user, ADD).await {
            return refused;
        }
        if !Csrf::sent(session, self.srt).verify("second-factor", form) {
            audit("second_factor_csrf_refused", ctx, &who.user, json!({}));
            return Answer::Error(403);
        }
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let Some(account) = cache.account(&who.user) else {
            return Answer::see_other(paths::with_next(paths::LOGIN, &next));
        };
        let used = self
            .check(session, ctx, &cache, &account, form, false)
            .await;
        let Some(()) = used else {
            audit(
                "second_factor_failed",
                ctx,
                &who.user,
                json!({ "factor": KIND }),
            );
            return Answer::see_other(paths::with_next(paths::SECOND_FACTOR, &next));
        };
        let method = mfa::completed(&who.method, Second::Passkey);
        if let Err(answer) =
            super::login::replace_session(session, ctx, self.srt, &cache, &account, &who, &method)
                .await
        {
            return answer;
        }
        audit(
            "second_factor_ok",
            ctx,
            &who.user,
            json!({ "factor": KIND }),
        );
        Answer::see_other(next)
    }

    /// Takes the ceremony and checks the answer against the account's
    /// passkeys (a discoverable one when `alone`); the used passkey's
    /// counter is stored.
    async fn check(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        cache: &Cache,
        account: &Account,
        form: &Form,
        alone: bool,
    ) -> Option<()> {
        let rp = Self::rp(ctx).ok()?;
        let owner = (!alone).then_some(account.id);
        let state = self.take(session, ctx, cache, owner).await?;
        let list = passkeys_of(cache, account.id).await.ok()?;
        let (ids, mut keys): (Vec<i64>, Vec<Passkey>) = list.into_iter().unzip();
        let credential = form.field("credential");
        let used = if alone {
            passkeys::identify(&rp, credential)
                .and_then(|(c, _)| passkeys::finish_discoverable(&rp, &state, &c, &mut keys))
        } else {
            passkeys::finish_authentication(&rp, &state, credential, &mut keys)
        };
        let used = match used {
            Ok(i) => i,
            Err(e) => {
                failed(&e, "authentication");
                return None;
            }
        };
        let (id, key) = (ids.get(used)?, keys.get(used)?);
        let data = serde_json::to_string(key).ok()?;
        if let Err(e) = cache.store().update_factor(*id, &data, now()).await {
            tracing::warn!(error = %e, "passkey counter not stored");
        }
        Some(())
    }

    async fn alone(&self, session: &Session, ctx: &mut Ctx, form: &Form, next: String) -> Answer {
        if !Csrf::sent(session, self.srt).verify(SIGN_IN, form) {
            return self
                .sign_in_page(session, ctx, &next, Some(NOT_USED), 403)
                .await;
        }
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let named = Self::rp(ctx)
            .ok()
            .and_then(|rp| passkeys::identify(&rp, form.field("credential")).ok())
            .map(|(_, id)| id);
        let account = named.and_then(|id| cache.accounts().into_iter().find(|a| a.id == id));
        let Some(account) = account.filter(|a| !a.disabled) else {
            audit("passkey_sign_in_failed", ctx, "", json!({}));
            ctx.out
                .set_cookies
                .push(auth::clear_cookie(CEREMONY_COOKIE));
            return self
                .sign_in_page(session, ctx, &next, Some(NOT_USED), 401)
                .await;
        };
        if let Some(refused) =
            super::login::count_attempt(self.shared, ctx, &account.name, SIGN_IN).await
        {
            return refused;
        }
        if self
            .check(session, ctx, &cache, &account, form, true)
            .await
            .is_none()
        {
            audit("passkey_sign_in_failed", ctx, &account.name, json!({}));
            return self
                .sign_in_page(session, ctx, &next, Some(NOT_USED), 401)
                .await;
        }
        let (s, record) = super::login::fresh_session(session, ctx, mfa::PASSKEY);
        let record = SessionRecord {
            account_id: account.id,
            epoch: account.epoch.clone(),
            ..record
        };
        if let Err(e) = cache.store().create_session(&record).await {
            tracing::error!(error = %e, "passkey sign-in: the session could not be stored");
            return Answer::Error(503);
        }
        ctx.out
            .set_cookies
            .push(auth::session_cookie(self.srt, &s, s.issued));
        audit(
            "login_ok",
            ctx,
            &account.name,
            json!({ "method": mfa::PASSKEY }),
        );
        super::login::after_sign_in(ctx, &account, mfa::PASSKEY, next)
    }
}
