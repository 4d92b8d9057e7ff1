//! Second factors on the account page: adding an authenticator app
//! (`/.portcullis/account/totp`, also where a forced enrolment lands),
//! removing a factor, and a new set of recovery codes.
//!
//! Enrolment is stateless until it succeeds: the new secret travels in the
//! form, and the form's CSRF token is issued for that secret, so a POST
//! cannot swap in another one. The first code must verify before anything
//! is stored; then the factor, and the recovery codes when the account had
//! none, are written in one transaction and shown once. A session waiting
//! for its second factor can never add one (that would let a password
//! alone replace the factor).

use pingora::prelude::Session;
use policies::mfa::{self, Gate, Second};
use policies::{recovery, redirect, totp};
use qrcode::render::svg;
use qrcode::QrCode;
use serde_json::json;

use super::account::audit;

use super::account::AccountPages;
use super::forms::{self, Csrf, Form};
use super::pages::{self, EnrolPage};
use super::paths::{self, with_next};
use crate::answer::Answer;
use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now, now_ms, Shared};
use identity::{Cache, Factor, Removed};

const WRONG: &str =
    "That code is not right. Check that the device's clock is correct and try the next code.";
const EXPIRED: &str = "The form expired. Please try again.";
const MUST_KEEP: &str = "Your account must keep a second factor: add another one first.";
const REMOVED: &str = "Second factor removed.";
const LABEL_MAX: usize = 40;

/// CSRF purpose of an enrolment form: bound to its secret.
fn purpose(secret: &str) -> String {
    format!("totp:{secret}")
}

/// Who may add a factor: an account session, or one whose account must
/// have a factor before anything else (`forced`).
pub(super) fn enrollee(ctx: &Ctx) -> Option<(Identity, bool)> {
    if let Some(id) = ctx.identity.as_ref().filter(|i| i.session.is_some()) {
        return Some((id.clone(), false));
    }
    let u = ctx.unfinished.as_ref().filter(|u| u.need == Gate::Enrol)?;
    Some((u.identity.clone(), true))
}

/// Anyone else: finish the sign-in first, or sign in.
pub(super) fn not_enrollee(ctx: &Ctx) -> Answer {
    if ctx.identity_unavailable {
        return Answer::Error(503);
    }
    let page = match &ctx.unfinished {
        Some(u) if u.need == Gate::StepUp => paths::SECOND_FACTOR,
        _ => paths::LOGIN,
    };
    Answer::see_other(with_next(page, paths::ACCOUNT_TOTP))
}

/// The QR code of `url` as an `<svg>` element.
fn qr_svg(url: &str) -> Option<String> {
    let svg = QrCode::new(url.as_bytes())
        .ok()?
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // An element for the page, not a document.
    let start = svg.find("<svg")?;
    svg.get(start..).map(str::to_string)
}

/// A factor that proved itself (a TOTP code, a passkey's registration).
pub(super) struct Enrolled<'a> {
    pub who: &'a Identity,
    /// The account had to have a factor before anything else.
    pub forced: bool,
    pub second: Second,
    pub next: String,
}

impl Enrolled<'_> {
    /// Stores `factor` (with a first set of recovery codes when the account
    /// has none: one transaction), makes this browser's session one that
    /// used it (a new session; the old record goes), and shows the codes
    /// once — or goes on.
    pub(super) async fn store(
        self,
        srt: &SessionRt,
        session: &Session,
        ctx: &mut Ctx,
        cache: &Cache,
        factor: Factor,
    ) -> Answer {
        let store = cache.store();
        // Recovery codes come with the first factor; later ones keep them.
        let codes = match store.recovery_codes_left(factor.account_id).await {
            Ok(0) => Some(recovery::new_set()),
            Ok(_) => None,
            Err(_) => return Answer::Error(503),
        };
        let hashes: Option<Vec<String>> = codes
            .as_ref()
            .map(|c| c.iter().filter_map(|c| recovery::code_hash(c)).collect());
        if let Err(e) = store.add_factor(&factor, hashes.as_deref()).await {
            tracing::error!(error = %e, "second factor not stored");
            return Answer::Error(503);
        }
        let _ = cache.refresh(now_ms()).await;
        let event = format!("{}_added", factor.kind);
        audit(
            &event,
            ctx,
            &self.who.user,
            json!({ "forced": self.forced }),
        );
        let method = mfa::completed(&self.who.method, self.second);
        let Some(account) = cache.account(&self.who.user) else {
            return not_enrollee(ctx);
        };
        if let Err(answer) =
            super::login::replace_session(session, ctx, srt, cache, &account, self.who, &method)
                .await
        {
            return answer;
        }
        let back = if self.forced || self.next != "/" {
            self.next
        } else {
            paths::ACCOUNT.to_string()
        };
        let added = if factor.kind == "totp" {
            "Authenticator app added."
        } else {
            "Passkey added."
        };
        match codes {
            Some(codes) => Answer::html(200, pages::recovery_codes(&codes, &back, added)),
            None => Answer::see_other(back),
        }
    }
}

/// The pages' inputs.
pub struct Factors<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl Factors<'_> {
    /// The account page, for its checks and its notices.
    fn pages(&self) -> AccountPages<'_> {
        AccountPages {
            srt: self.srt,
            shared: self.shared,
        }
    }

    /// `GET /.portcullis/account/totp?next=/x`: a new secret to scan.
    pub fn form(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let Some((who, forced)) = enrollee(ctx) else {
            return not_enrollee(ctx);
        };
        let next = redirect::safe_next(forms::query_next(session).as_deref());
        let secret = totp::encode(&totp::new_secret());
        self.page(session, ctx, &who, forced, &secret, &next, None, 200)
    }

    #[allow(clippy::too_many_arguments)]
    fn page(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        who: &Identity,
        forced: bool,
        secret: &str,
        next: &str,
        error: Option<&str>,
        status: u16,
    ) -> Answer {
        let issuer = ctx.host.clone().unwrap_or_else(|| "portcullis".to_string());
        let qr = totp::decode(secret)
            .and_then(|bytes| totp::otpauth_url(&bytes, &issuer, &who.user))
            .and_then(|url| qr_svg(&url));
        let Some(qr) = qr else {
            return Answer::Error(500);
        };
        let csrf = Csrf::for_browser(session, ctx, self.srt).token(&purpose(secret));
        Answer::html(
            status,
            pages::enrol(&EnrolPage {
                csrf: &csrf,
                next,
                secret,
                qr_svg: &qr,
                forced,
                error,
            }),
        )
    }

    /// `POST /.portcullis/account/totp`: the first code proves the app has
    /// the secret; then it is stored.
    pub async fn confirm(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let Some((who, forced)) = enrollee(ctx) else {
            return not_enrollee(ctx);
        };
        let next = redirect::safe_next(Some(form.field("next")));
        let text = form.field("secret");
        let Some(secret) = totp::decode(text) else {
            return Answer::Error(400);
        };
        if !Csrf::sent(session, self.srt).verify(&purpose(text), form) {
            audit("totp_csrf_refused", ctx, &who.user, json!({}));
            let fresh = totp::encode(&totp::new_secret());
            return self.page(
                session,
                ctx,
                &who,
                forced,
                &fresh,
                &next,
                Some(EXPIRED),
                403,
            );
        }
        if let Some(refused) =
            super::login::count_attempt(self.shared, ctx, &who.user, "totp").await
        {
            return refused;
        }
        let Some(step) = totp::matching_step(&secret, form.field("code"), now()) else {
            audit("totp_enrol_failed", ctx, &who.user, json!({}));
            return self.page(session, ctx, &who, forced, text, &next, Some(WRONG), 400);
        };
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let Some(account) = cache.account(&who.user) else {
            return not_enrollee(ctx);
        };
        let label: String = match form.field("label").trim() {
            "" => "Authenticator app".to_string(),
            l => l.chars().take(LABEL_MAX).collect(),
        };
        let factor = Factor {
            id: 0,
            account_id: account.id,
            kind: "totp".to_string(),
            label,
            data: text.to_string(),
            created: i64::try_from(now_ms()).unwrap_or(i64::MAX),
            // The code just typed is used: it cannot sign in again.
            last_used: i64::try_from(step).ok(),
        };
        let done = Enrolled {
            who: &who,
            forced,
            second: Second::Totp,
            next,
        };
        done.store(self.srt, session, ctx, &cache, factor).await
    }

    /// `POST /.portcullis/account/recovery-codes`: a new set; the old ones
    /// stop working.
    pub async fn new_codes(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let account = match self.pages().checked(session, ctx, form).await {
            Ok((account, _)) => account,
            Err(answer) => return answer,
        };
        if account.factors == 0 {
            return Answer::Error(404);
        }
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let codes = recovery::new_set();
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| recovery::code_hash(c))
            .collect();
        if let Err(e) = cache
            .store()
            .replace_recovery_codes(account.id, &hashes)
            .await
        {
            tracing::error!(error = %e, "recovery codes not stored");
            return Answer::Error(503);
        }
        audit("recovery_codes_replaced", ctx, &account.name, json!({}));
        Answer::html(200, pages::recovery_codes(&codes, paths::ACCOUNT, ""))
    }

    /// `POST /.portcullis/account/remove-factor`
    pub async fn remove(&self, session: &Session, ctx: &mut Ctx, form: &Form) -> Answer {
        let pages = self.pages();
        let account = match pages.checked(session, ctx, form).await {
            Ok((account, _)) => account,
            Err(answer) => return answer,
        };
        let Ok(id) = form.field("factor").parse::<i64>() else {
            return Answer::Error(400);
        };
        let Some(cache) = self.shared.accounts.cache() else {
            return Answer::Error(503);
        };
        let keep_one = ctx.rt.login.mfa.applies_to(&account.all_roles());
        match cache.store().remove_factor(account.id, id, keep_one).await {
            Ok(Removed::Removed) => {
                let _ = cache.refresh(now_ms()).await;
                audit("factor_removed", ctx, &account.name, json!({}));
                pages.page(session, ctx, Some((true, REMOVED)), 200).await
            }
            Ok(Removed::LastOne) => {
                audit("factor_remove_refused", ctx, &account.name, json!({}));
                pages
                    .page(session, ctx, Some((false, MUST_KEEP)), 409)
                    .await
            }
            Ok(Removed::NotFound) => Answer::Error(404),
            Err(e) => {
                tracing::error!(error = %e, "second factor not removed");
                Answer::Error(503)
            }
        }
    }
}
