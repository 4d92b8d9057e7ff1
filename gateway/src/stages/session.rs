//! Stage `session`: who is asking. Runs before `reserved` (logout needs to
//! know who) and after `limits` (a limited client costs no session work).

use pingora::prelude::*;

use crate::answer::{Answer, Step};
use crate::auth::{self, Identity, Unfinished};
use crate::ctx::Ctx;
use crate::runtime::Runtime;
use crate::state::{self, Shared};
use policies::mfa::{self, Gate};

pub async fn run(rt: &Runtime, shared: &Shared, session: &Session, ctx: &mut Ctx) -> Step {
    let Some(srt) = rt.session.as_ref() else {
        return Step::Continue(());
    };
    let req = session.req_header();
    let auth = auth::authenticate(srt, &shared.accounts, req, state::now_ms()).await;
    ctx.identity = auth.identity;
    unfinished(rt, ctx);
    ctx.identity_unavailable = auth.unavailable;
    ctx.out.set_cookies.extend(auth.set_cookie);
    // The emergency session: only while the gate is on for this client.
    let Some(em) = rt.emergency.as_ref().filter(|e| e.admits(ctx.client_ip())) else {
        return Step::Continue(());
    };
    // Boxed, as `reserved` is: its lockout's store calls would size the
    // pipeline's future for every request.
    let Ok((grant, clear)) = Box::pin(auth::emergency(em, shared, req, state::now())).await else {
        return Step::Break(Answer::Error(503));
    };
    ctx.out.set_cookies.extend(clear);
    ctx.emergency = grant;
    if grant.is_some() && ctx.identity.is_none() {
        ctx.identity = Some(Identity {
            user: auth::EMERGENCY_USER.to_string(),
            roles: em.roles.clone(),
            email: None,
            session: None,
            method: "emergency".to_string(),
            factors: 0,
        });
    }
    Step::Continue(())
}

/// A session whose account has a factor it has not used, or must have one
/// and has none, is set aside: not an identity until the sign-in is done.
fn unfinished(rt: &Runtime, ctx: &mut Ctx) {
    let Some(id) = ctx.identity.take() else {
        return;
    };
    match mfa::gate(
        &rt.login.mfa,
        &id.roles,
        id.factors,
        id.multi_factor(),
        false,
    ) {
        Gate::Pass => ctx.identity = Some(id),
        need => ctx.unfinished = Some(Unfinished { identity: id, need }),
    }
}
