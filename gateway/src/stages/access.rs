//! Stages `access` (the rule of the matched route: 303 to sign in, 401,
//! 403, or on to its upstream) and `body_limit` (a declared body over
//! `max_body` is refused before it is read).

use pingora::prelude::*;
use policies::access::{self, Decision};
use policies::mfa::{self, Gate};

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;
use crate::reserved::paths;
use crate::respond;
use crate::runtime::Runtime;

fn count_failure(kind: &str) {
    crate::metrics::METRICS
        .auth_failures
        .with_label_values(&[kind])
        .inc();
}

/// `page?next=` (the request's own target).
fn back_here(page: &str, ctx: &Ctx) -> Answer {
    let target = ctx.upstream_target.as_deref().unwrap_or("/");
    Answer::see_other(paths::with_next(page, target))
}

pub fn run(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let rule = rt.rule(ctx.route);
    let navigation = respond::is_navigation(session, &ctx.method);
    let roles = ctx.identity.as_ref().map(|i| i.roles.as_slice());
    match access::decide(&rule.access, roles, navigation) {
        Decision::Allow => {}
        // The session could not be checked: never a silent anonymous pass,
        // never a sign-in page the store could not serve either.
        _ if ctx.identity_unavailable => return Step::Break(Answer::Error(503)),
        // Sign in, or finish a sign-in waiting for its second factor; then back.
        Decision::LoginRedirect => {
            let page = paths::sign_in_page(ctx.unfinished.as_ref().map(|u| u.need));
            return Step::Break(back_here(page, ctx));
        }
        Decision::Unauthorized => {
            count_failure("unauthorized");
            return Step::Break(Answer::Error(401));
        }
        Decision::Forbidden => {
            count_failure("forbidden");
            return Step::Break(Answer::Error(403));
        }
    }
    if rule.mfa {
        if let Some(answer) = step_up(rt, ctx, navigation) {
            return Step::Break(answer);
        }
    }
    if ctx.forward.is_some() {
        // The front proxy forwards: any upstream here only names the audience.
        ctx.upstream = rule.upstream;
        return Step::Continue(());
    }
    let Some(upstream) = rule.upstream else {
        return Step::Break(Answer::Error(404));
    };
    ctx.upstream = Some(upstream);
    ctx.max_body = rule.max_body;
    Step::Continue(())
}

/// `mfa = true`: a session that has not used a second factor is sent to
/// use one (or to get one first); scripts get 401, the emergency session
/// (no account, no factor) 403.
fn step_up(rt: &Runtime, ctx: &Ctx, navigation: bool) -> Option<Answer> {
    let id = ctx.identity.as_ref()?;
    let need = mfa::gate(
        &rt.login.mfa,
        &id.roles,
        id.factors,
        id.multi_factor(),
        true,
    );
    if need == Gate::Pass {
        return None;
    }
    if id.session.is_none() {
        count_failure("forbidden");
        return Some(Answer::Error(403));
    }
    if !navigation {
        count_failure("unauthorized");
        return Some(Answer::Error(401));
    }
    Some(back_here(paths::finish_sign_in(need), ctx))
}

pub fn body_limit(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let rule = rt.rule(ctx.route);
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > ctx.max_body) {
        return Step::Break(Answer::Error(413));
    }
    ctx.buffer_body = declared.is_some_and(|n| n > 0 && n <= rule.buffer_body);
    Step::Continue(())
}
