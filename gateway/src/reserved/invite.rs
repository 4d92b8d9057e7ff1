//! `/.portcullis/invite?token=…`: an invitation link (made in the admin
//! console or by `portcullis user invite`). With passwords on, the invitee
//! picks a name and a password here; with providers that take invitations
//! (`signup = "invite"`), the link is kept in a cookie for the provider
//! sign-in that follows. Either way the account gets the invited roles and
//! the link is used once (docs/sign-in.md, "Invitations").

use pingora::prelude::Session;
use policies::users::valid_user_name;
use serde_json::json;

use super::forms::{Csrf, Form};
use super::oauth::{
    audit, query, refused, unusable, INVITED, INVITE_BAD, INVITE_COOKIE, INVITE_COOKIE_MAX_AGE,
};
use super::pages::{self, SignUpPage};
use crate::answer::Answer;
use crate::auth;
use crate::config::Signup;
use crate::ctx::Ctx;
use crate::runtime::SessionRt;
use crate::state::{now_ms, Shared};
use identity::{StoreError, Unusable};

const PURPOSE: &str = "invite";
const MIN_PASSWORD: usize = 8;
const TAKEN: &str = "That name is taken. Please choose another.";
const BAD_NAME: &str = "Names are 1 to 64 letters, digits, dots, dashes or underscores.";
const MISMATCH: &str = "The two passwords differ.";
const SHORT: &str = "The password needs at least 8 characters.";
const EXPIRED: &str = "The form expired. Please try again.";

/// Providers that can use an invitation: only with `signup = "invite"`.
fn providers(ctx: &Ctx) -> Vec<(String, String)> {
    let login = &ctx.rt.login;
    if login.signup != Signup::Invite {
        return Vec::new();
    }
    login
        .list
        .iter()
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect()
}

fn sign_up_page(
    session: &Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    token: &str,
    username: &str,
    error: Option<&str>,
    status: u16,
) -> Answer {
    let csrf = Csrf::for_browser(session, ctx, srt).token(PURPOSE);
    let owned = providers(ctx);
    let list: Vec<(&str, &str)> = owned
        .iter()
        .map(|(i, n)| (i.as_str(), n.as_str()))
        .collect();
    let page = pages::sign_up(&SignUpPage {
        csrf: &csrf,
        token,
        username,
        error,
        providers: &list,
    });
    Answer::html(status, page)
}

/// `GET /.portcullis/invite?token=…`
pub async fn show(session: &Session, ctx: &mut Ctx, srt: &SessionRt, shared: &Shared) -> Answer {
    let token = query(session, &["token"])
        .and_then(|mut v| v.pop())
        .flatten()
        .unwrap_or_default();
    let Some(id) = policies::invite::token_id(&token) else {
        return refused(ctx, "", "invitation_unknown", INVITE_BAD, "/");
    };
    let Some(cache) = shared.accounts.fresh_soon().await else {
        return Answer::Error(503);
    };
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let usable = match cache.store().invitation(&id).await {
        Ok(Some(inv)) => inv.check(now, None).or_else(|why| match why {
            // The address is checked at the provider sign-in.
            Unusable::OtherEmail => Ok(()),
            other => Err(other),
        }),
        Ok(None) => Err(Unusable::Unknown),
        Err(e) => {
            tracing::error!(error = %e, "invitation not checked: the identity store did not answer");
            return Answer::Error(503);
        }
    };
    if let Err(why) = usable {
        return refused(ctx, "", unusable(why), INVITE_BAD, "/");
    }
    if !providers(ctx).is_empty() {
        ctx.out.set_cookies.push(auth::lax_cookie(
            INVITE_COOKIE,
            &token,
            INVITE_COOKIE_MAX_AGE,
        ));
    }
    audit("invitation_opened", ctx, json!({}));
    if ctx.rt.login.password {
        return sign_up_page(session, ctx, srt, &token, "", None, 200);
    }
    let csrf = Csrf::for_browser(session, ctx, srt).token("login");
    Answer::html(
        200,
        super::login::page(ctx, &csrf, "/", "", None, Some(INVITED)),
    )
}

/// `POST /.portcullis/invite`: a password account from the invitation.
pub async fn sign_up(
    session: &Session,
    ctx: &mut Ctx,
    srt: &SessionRt,
    shared: &Shared,
    form: &Form,
) -> Answer {
    let (token, name) = (form.field("token"), form.field("username").trim());
    let Some(id) = policies::invite::token_id(token) else {
        return refused(ctx, "", "invitation_unknown", INVITE_BAD, "/");
    };
    if !Csrf::sent(session, srt).verify(PURPOSE, form) {
        audit("invitation_csrf_refused", ctx, json!({}));
        return sign_up_page(session, ctx, srt, token, name, Some(EXPIRED), 403);
    }
    let (password, again) = (form.field("password"), form.field("confirm"));
    let problem = if !valid_user_name(name) {
        Some(BAD_NAME)
    } else if password != again {
        Some(MISMATCH)
    } else if password.chars().count() < MIN_PASSWORD {
        Some(SHORT)
    } else {
        None
    };
    if let Some(sentence) = problem {
        return sign_up_page(session, ctx, srt, token, name, Some(sentence), 400);
    }
    let Some(hash) = crate::passwords::hash(password.to_string()).await else {
        return sign_up_page(session, ctx, srt, token, name, Some(SHORT), 400);
    };
    let Some(cache) = shared.accounts.fresh_soon().await else {
        return Answer::Error(503);
    };
    let (s, record) = super::login::fresh_session(session, ctx, "password");
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let account = match cache
        .store()
        .sign_up_invited(&id, name, &hash, now, record)
        .await
    {
        Ok(Ok((account, _))) => account,
        Ok(Err(why)) => return refused(ctx, "", unusable(why), INVITE_BAD, "/"),
        Err(StoreError::Exists(_)) => {
            return sign_up_page(session, ctx, srt, token, name, Some(TAKEN), 409)
        }
        Err(e) => {
            tracing::error!(error = %e, "invited sign-up not stored");
            return Answer::Error(503);
        }
    };
    let _ = cache.refresh(now_ms()).await;
    audit(
        "invitation_used",
        ctx,
        json!({ "user": account.name, "roles": account.roles }),
    );
    ctx.out
        .set_cookies
        .push(auth::session_cookie(srt, &s, s.issued));
    super::login::after_sign_in(ctx, &account, "password", "/".to_string())
}
