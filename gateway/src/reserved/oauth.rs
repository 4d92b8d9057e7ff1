//! `/.portcullis/oauth2/start` and `/.portcullis/oauth2/callback`: sign-in
//! with a provider (docs/behaviour.md, "Provider sign-in").
//!
//! The start binds a `state` to the browser (`policies::oauth_state`) and
//! sends it to the provider with a nonce and a PKCE S256 challenge derived
//! from it. The callback takes the state once (in the identity store, so a
//! replay fails on every instance), lets the provider module exchange the
//! code and verify the answer, applies the provider's rules, and signs the
//! identity in through one store transaction. Every refusal is a fixed
//! sentence on a 403 page (502 when the provider is unreachable) and an
//! audit line with a one-word reason; nothing is forwarded.

use pingora::prelude::Session;
use policies::oauth_state::{self, StateError, STATE_MAX_AGE};
use policies::{mfa, redirect, signin};
use serde_json::json;

use super::pages;
use super::paths;
use crate::answer::Answer;
use crate::auth;
use crate::config::Signup;
use crate::ctx::Ctx;
use crate::oauth::{Failure, Person, Provider, Start};
use crate::runtime::SessionRt;
use crate::state::{now, now_ms, Shared};
use identity::{Found, ProviderSignIn, SignInOutcome, Unusable};

/// The browser binding for provider sign-ins: SameSite=Lax, because the
/// provider's redirect back is a top-level cross-site navigation.
pub const OAUTH_COOKIE: &str = "__Host-portcullis-oauth";
/// The binding outlives a state by a little, so an old state is reported
/// as expired, not as coming from another browser.
const COOKIE_MAX_AGE: u64 = STATE_MAX_AGE + 300;
/// An opened invitation link, until the sign-in it is for (Lax, like the
/// binding: it must survive the provider's redirect back).
pub const INVITE_COOKIE: &str = "__Host-portcullis-invite";
/// How long an opened invitation waits for its sign-in.
pub(super) const INVITE_COOKIE_MAX_AGE: u64 = 3600;

const SORRY: &str = "The sign-in could not be completed. Please try again.";
const UNREACHABLE: &str =
    "The sign-in provider could not be reached or gave an unusable answer. Please try again later.";
const NOT_ALLOWED: &str = "This account is not allowed to sign in here.";
const NO_ACCOUNT: &str =
    "There is no account here for this sign-in. Ask an administrator for access.";
const INVITE_NEEDED: &str = "An invitation is needed to create an account here.";
const EXPIRED: &str = "The sign-in took too long. Please start again.";
pub(super) const INVITE_BAD: &str = "This invitation link is not valid: it was used already, has expired, or is not for this address.";
pub(super) const INVITED: &str =
    "You are invited. Sign in with a provider below to create your account.";

pub(super) fn audit(event: &str, ctx: &Ctx, fields: serde_json::Value) {
    crate::audit::event(event, &ctx.out.request_id, ctx.client_ip(), fields);
}

/// A refusal: audited with its reason, a fixed sentence on a 403 page.
pub(super) fn refused(
    ctx: &Ctx,
    provider: &str,
    reason: &str,
    sentence: &str,
    next: &str,
) -> Answer {
    audit(
        "oauth2_refused",
        ctx,
        json!({ "provider": provider, "reason": reason }),
    );
    Answer::html(403, pages::sign_in_failed(sentence, next))
}

fn unreachable(ctx: &Ctx, provider: &str, reason: &str, next: &str) -> Answer {
    audit(
        "oauth2_unreachable",
        ctx,
        json!({ "provider": provider, "reason": reason }),
    );
    Answer::html(502, pages::sign_in_failed(UNREACHABLE, next))
}

/// The query's parameters; `None` when one of `names` appears twice (a
/// callback with two states or two codes is not one a provider sends).
pub(super) fn query(session: &Session, names: &[&str]) -> Option<Vec<Option<String>>> {
    let q = session.req_header().uri.query().unwrap_or("");
    let mut out: Vec<Option<String>> = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            let slot = out.get_mut(i)?;
            if slot.is_some() {
                return None;
            }
            *slot = Some(v.into_owned());
        }
    }
    Some(out)
}

fn redirect_uri(ctx: &Ctx) -> Option<String> {
    ctx.host
        .as_deref()
        .map(|h| format!("https://{h}{}", paths::OAUTH_CALLBACK))
}

/// The audit reason for an unusable invitation.
pub(super) fn unusable(why: Unusable) -> &'static str {
    match why {
        Unusable::Unknown => "invitation_unknown",
        Unusable::Used => "invitation_used",
        Unusable::Expired => "invitation_expired",
        Unusable::OtherEmail => "invitation_other_email",
    }
}

/// The binding the browser sent, if plausible.
fn sent_binding(session: &Session) -> Option<String> {
    match auth::cookie(session.req_header(), OAUTH_COOKIE) {
        Ok(Some(b)) if !b.is_empty() && b.len() <= 64 => Some(b.to_string()),
        _ => None,
    }
}

/// `GET /.portcullis/oauth2/start?provider=ID&next=/x`
pub async fn start(session: &Session, ctx: &mut Ctx, srt: &SessionRt) -> Answer {
    let rt = ctx.rt.clone();
    let Some([id, next]) =
        query(session, &["provider", "next"]).and_then(|v| <[_; 2]>::try_from(v).ok())
    else {
        return Answer::Error(400);
    };
    let next = redirect::safe_next(next.as_deref());
    let Some(provider) = id.as_deref().and_then(|id| rt.login.get(id)).cloned() else {
        return Answer::Error(404);
    };
    let Some(redirect_uri) = redirect_uri(ctx) else {
        return Answer::Error(400);
    };
    let binding = sent_binding(session).unwrap_or_else(policies::csrf::new_binding);
    let key = srt.oauth_keys.signing();
    let state = oauth_state::state(key, &binding, &provider.id, &next, now());
    let (nonce, verifier) = (
        oauth_state::nonce(key, &state),
        oauth_state::pkce_verifier(key, &state),
    );
    let start = Start {
        state: &state,
        nonce: &nonce,
        pkce_verifier: &verifier,
        redirect_uri: &redirect_uri,
    };
    match provider.authorize_url(&start).await {
        Ok(url) => {
            ctx.out
                .set_cookies
                .push(auth::lax_cookie(OAUTH_COOKIE, &binding, COOKIE_MAX_AGE));
            audit("oauth2_start", ctx, json!({ "provider": provider.id }));
            Answer::see_other(url)
        }
        Err(f) => unreachable(ctx, &provider.id, f.reason(), &next),
    }
}

/// The POST-less handler's shared inputs.
pub struct Callback<'a> {
    pub srt: &'a SessionRt,
    pub shared: &'a Shared,
}

impl Callback<'_> {
    /// `GET /.portcullis/oauth2/callback?code=…&state=…[&iss=…]` (or `?error=…`)
    pub async fn answer(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let rt = ctx.rt.clone();
        let names = ["state", "code", "error", "iss"];
        let Some([state, code, error, iss]) =
            query(session, &names).and_then(|v| <[_; 4]>::try_from(v).ok())
        else {
            return refused(ctx, "", "duplicate_parameter", SORRY, "/");
        };
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return refused(ctx, "", "state_missing", SORRY, "/");
        };
        let binding = sent_binding(session).unwrap_or_default();
        let (flow, key) =
            match oauth_state::verify_any(&self.srt.oauth_keys, &binding, &state, now()) {
                Ok(verified) => verified,
                Err(StateError::Expired) => return refused(ctx, "", "state_expired", EXPIRED, "/"),
                Err(StateError::OtherBrowser) => {
                    return refused(ctx, "", "state_other_browser", SORRY, "/")
                }
                Err(StateError::Malformed) => {
                    return refused(ctx, "", "state_malformed", SORRY, "/")
                }
            };
        let next = redirect::safe_next(Some(&flow.next));
        let Some(provider) = rt.login.get(&flow.provider).cloned() else {
            return refused(ctx, &flow.provider, "provider_unknown", SORRY, &next);
        };
        let pid = provider.id.as_str();
        if error.is_some() {
            // The provider's error text is not shown, nor logged verbatim.
            return refused(ctx, pid, "provider_error", SORRY, &next);
        }
        if iss.is_some_and(|i| !provider.issued_by(&i)) {
            return refused(ctx, pid, "issuer_mismatch", SORRY, &next);
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return refused(ctx, pid, "code_missing", SORRY, &next);
        };
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let expires_ms = flow.issued.saturating_add(STATE_MAX_AGE + 60) * 1000;
        let at = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        match cache
            .store()
            .take_state(&state, i64::try_from(expires_ms).unwrap_or(i64::MAX), at)
            .await
        {
            Ok(true) => {}
            Ok(false) => return refused(ctx, pid, "state_reused", SORRY, &next),
            Err(e) => {
                tracing::error!(error = %e, "sign-in refused: the state could not be recorded");
                return Answer::Error(503);
            }
        }
        let Some(redirect_uri) = redirect_uri(ctx) else {
            return Answer::Error(400);
        };
        let (nonce, verifier) = (
            oauth_state::nonce(key, &state),
            oauth_state::pkce_verifier(key, &state),
        );
        let start = Start {
            state: &state,
            nonce: &nonce,
            pkce_verifier: &verifier,
            redirect_uri: &redirect_uri,
        };
        let person = match provider.finish(&code, &start).await {
            Ok(p) => p,
            Err(Failure::Unreachable(reason)) => return unreachable(ctx, pid, reason, &next),
            Err(Failure::Refused(reason)) => return refused(ctx, pid, reason, SORRY, &next),
        };
        self.sign_in(session, ctx, &provider, &person, &next).await
    }

    async fn sign_in(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        provider: &Provider,
        person: &Person,
        next: &str,
    ) -> Answer {
        let rt = ctx.rt.clone();
        let pid = provider.id.as_str();
        let claims = signin::Claims {
            email: person.email.as_deref(),
            email_verified: person.email_verified,
            hosted_domain: person.hosted_domain.as_deref(),
            groups: &person.groups,
        };
        let email = match signin::check(&provider.rules(), &claims) {
            Ok(email) => email,
            Err(r) => return refused(ctx, pid, r.reason(), NOT_ALLOWED, next),
        };
        let mapped = signin::mapped_roles(&provider.role_map, &person.groups);
        let names = candidate_names(pid, person, email);
        let login = &rt.login;
        let invitation = match auth::cookie(session.req_header(), INVITE_COOKIE) {
            Ok(Some(token)) => policies::invite::token_id(token),
            _ => None,
        };
        let signup = match login.signup {
            Signup::Open => identity::Signup::Open {
                roles: &login.default_roles,
            },
            Signup::Invite => identity::Signup::Invite {
                invitation: invitation.as_deref(),
            },
            Signup::Existing => identity::Signup::Existing,
        };
        // The store fills in the account and its epoch.
        // The provider's own second factor counts only when `amr` says so.
        let method = if mfa::amr_is_multi_factor(person.amr.iter().map(String::as_str)) {
            mfa::completed(pid, mfa::Second::Amr)
        } else {
            pid.to_string()
        };
        let (s, record) = super::login::fresh_session(session, ctx, &method);
        let Some(cache) = self.shared.accounts.fresh_soon().await else {
            return Answer::Error(503);
        };
        let outcome = cache
            .store()
            .provider_sign_in(ProviderSignIn {
                provider: pid,
                subject: &person.subject,
                email,
                names: &names,
                signup,
                link_by_email: login.link_by_email,
                mapped_roles: &mapped,
                session: record,
            })
            .await;
        let account = match outcome {
            Ok(SignInOutcome::SignedIn { account, how }) => {
                let how = match how {
                    Found::Linked => "linked",
                    Found::LinkedByEmail => "linked_by_email",
                    Found::Created => "created",
                    Found::Invited => {
                        ctx.out.set_cookies.push(auth::clear_cookie(INVITE_COOKIE));
                        "invited"
                    }
                };
                if how != "linked" {
                    audit(
                        "oauth2_link",
                        ctx,
                        json!({ "provider": pid, "user": account.name, "how": how }),
                    );
                }
                account
            }
            Ok(SignInOutcome::NoAccount) => {
                let (reason, sentence) = match login.signup {
                    Signup::Invite => ("invitation_required", INVITE_NEEDED),
                    _ => ("no_account", NO_ACCOUNT),
                };
                return refused(ctx, pid, reason, sentence, next);
            }
            Ok(SignInOutcome::Disabled(name)) => {
                audit(
                    "login_failed",
                    ctx,
                    json!({ "user": name, "provider": pid }),
                );
                return refused(ctx, pid, "account_disabled", NOT_ALLOWED, next);
            }
            Ok(SignInOutcome::NoFreeName) => {
                return refused(ctx, pid, "no_free_name", NO_ACCOUNT, next)
            }
            Ok(SignInOutcome::Invitation(why)) => {
                return refused(ctx, pid, unusable(why), INVITE_BAD, next)
            }
            Err(e) => {
                tracing::error!(error = %e, "sign-in refused: the identity store could not record it");
                return Answer::Error(503);
            }
        };
        // The account (or its roles) just changed: this instance's cache
        // must know it before the browser's next request.
        if let Err(e) = cache.refresh(now_ms()).await {
            tracing::warn!(error = %e, "sign-in stored, but the cache could not be refreshed");
        }
        ctx.out
            .set_cookies
            .push(auth::session_cookie(self.srt, &s, s.issued));
        audit(
            "oauth2_ok",
            ctx,
            json!({ "provider": pid, "user": account.name, "roles": account.all_roles(), "method": method }),
        );
        super::login::after_sign_in(ctx, &account, &method, next.to_string())
    }
}

/// Names for an account created at a first sign-in, best first: the
/// verified address, the provider's handle, then `provider-subject`.
fn candidate_names(provider: &str, person: &Person, email: Option<&str>) -> Vec<String> {
    let valid = policies::users::valid_user_name;
    let mut out: Vec<String> = Vec::new();
    for name in [email, person.login.as_deref()].into_iter().flatten() {
        if valid(name) && !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            out.push(name.to_string());
        }
    }
    let subject: String = person
        .subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let fallback: String = format!("{provider}-{subject}").chars().take(64).collect();
    if valid(&fallback) {
        out.push(fallback);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefer_the_address_then_the_handle_then_the_subject() {
        let person = Person {
            subject: "1234".into(),
            login: Some("octocat".into()),
            ..Person::default()
        };
        assert_eq!(
            candidate_names("github", &person, Some("o@example.com")),
            ["o@example.com", "octocat", "github-1234"]
        );
        // Odd subjects and handles still give a valid, bounded name.
        let odd = Person {
            subject: format!("a b/{}", "x".repeat(100)),
            login: Some("not valid!".into()),
            ..Person::default()
        };
        let names = candidate_names("corp", &odd, None);
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("corp-a-b-x") && names[0].len() == 64);
    }
}
