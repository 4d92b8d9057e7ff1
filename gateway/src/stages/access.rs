//! Stages `access` (the rule of the matched route: 303 to sign in, 401,
//! 403, or on to its upstream) and `body_limit` (a declared body over
//! `max_body` is refused before it is read).

use pingora::prelude::*;
use policies::access::{self, Decision};

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

pub fn run(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let rule = rt.rule(ctx.route);
    let navigation = respond::is_navigation(session);
    let roles = ctx.identity.as_ref().map(|i| i.roles.as_slice());
    match access::decide(&rule.access, roles, navigation) {
        Decision::Allow => {}
        // The session could not be checked: never a silent anonymous pass,
        // never a sign-in page the store could not serve either.
        _ if ctx.identity_unavailable => return Step::Break(Answer::Error(503)),
        Decision::LoginRedirect => {
            let target = ctx.upstream_target.as_deref().unwrap_or("/");
            let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
            return Step::Break(Answer::see_other(format!("{}?next={next}", paths::LOGIN)));
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
    let Some(upstream) = rule.upstream else {
        return Step::Break(Answer::Error(404));
    };
    ctx.upstream = Some(upstream);
    ctx.max_body = rule.max_body;
    Step::Continue(())
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
