//! `/.portcullis/reset?token=…`: a one-time password-reset link made in the
//! admin console. The form sets a new password; every session of the
//! account ends and the link is used, in one transaction. Tokens are 256
//! random bits (only their hash is stored), so guessing is no way in.

use pingora::prelude::Session;
use serde_json::json;

use super::forms::{self, Csrf, Form};
use super::oauth::{audit, unusable};
use super::pages;
use crate::answer::Answer;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};

const PURPOSE: &str = "reset";
const BAD: &str = "This password-reset link is not valid: it was used already or has expired.";
const MISMATCH: &str = "The two passwords differ.";
const SHORT: &str = "The password needs at least 8 characters.";
const EXPIRED: &str = "The form expired. Please try again.";
const MIN_PASSWORD: usize = 8;

/// An unusable link: audited with the reason, a fixed sentence on a 403 page.
fn bad(ctx: &Ctx, why: &str) -> Answer {
    audit("reset_link_refused", ctx, json!({ "reason": why }));
    Answer::html(403, pages::sign_in_failed(BAD, "/"))
}

/// `GET /.portcullis/reset?token=…`
pub async fn show(session: &Session, ctx: &mut Ctx, srt: &SessionRt, shared: &Shared) -> Answer {
    let token = forms::query_param(session, "token").unwrap_or_default();
    let Some(id) = policies::invite::token_id(&token) else {
        return bad(ctx, "reset_unknown");
    };
    let Some(cache) = shared.accounts.fresh_soon().await else {
        return Answer::Error(503);
    };
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let link = match cache.store().reset_link(&id).await {
        Ok(Some(link)) => link,
        Ok(None) => return bad(ctx, "reset_unknown"),
        Err(_) => return Answer::Error(503),
    };
    if let Err(why) = link.check(now) {
        return bad(ctx, unusable(why));
    }
    let csrf = Csrf::for_browser(session, ctx, srt).token(PURPOSE);
    Answer::html(200, pages::reset(&csrf, &token, &link.account, None))
}

/// `POST /.portcullis/reset`
pub async fn submit(
    session: &Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    shared: &Shared,
    form: &Form,
) -> Answer {
    let token = form.field("token");
    let Some(id) = policies::invite::token_id(token) else {
        return bad(ctx, "reset_unknown");
    };
    let Some(cache) = shared.accounts.fresh_soon().await else {
        return Answer::Error(503);
    };
    let link = match cache.store().reset_link(&id).await {
        Ok(Some(link)) => link,
        Ok(None) => return bad(ctx, "reset_unknown"),
        Err(_) => return Answer::Error(503),
    };
    let again = |ctx: &mut Ctx, sentence: &str, status: u16| {
        let csrf = Csrf::for_browser(session, ctx, srt).token(PURPOSE);
        Answer::html(
            status,
            pages::reset(&csrf, token, &link.account, Some(sentence)),
        )
    };
    if !Csrf::sent(session, srt).verify(PURPOSE, form) {
        return again(ctx, EXPIRED, 403);
    }
    let (new, confirm) = (form.field("new"), form.field("confirm"));
    if new != confirm {
        return again(ctx, MISMATCH, 400);
    }
    if new.chars().count() < MIN_PASSWORD {
        return again(ctx, SHORT, 400);
    }
    let Some(hash) = crate::passwords::hash(new.to_string()).await else {
        return again(ctx, SHORT, 400);
    };
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    match cache.store().use_reset_link(&id, &hash, now).await {
        Ok(Ok(account)) => {
            let _ = cache.refresh(now_ms()).await;
            audit("password_reset_used", ctx, json!({ "user": account.name }));
            Answer::html(200, pages::reset_done(&account.name))
        }
        Ok(Err(why)) => bad(ctx, unusable(why)),
        Err(e) => {
            tracing::error!(error = %e, "password reset not written");
            Answer::Error(503)
        }
    }
}
