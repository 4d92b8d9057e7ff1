//! Stages `limits` (the global per-IP limit, over all traffic, before any
//! session work) and `route_limit` (the matched route's own limit, keyed by
//! IP, user or a header).

use pingora::prelude::*;
use policies::ratekey;
use policies::ratelimit::{self, Outcome, Rate};

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;
use crate::limits::Verdict;
use crate::runtime::Runtime;

/// `RateLimit-Policy` and `RateLimit` for one rule's outcome.
fn headers(name: &str, rate: Rate, outcome: Outcome) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-policy", ratelimit::policy_header(name, rate)),
        ("ratelimit", ratelimit::ratelimit_header(name, outcome)),
    ]
}

pub async fn global(ctx: &mut Ctx) -> Step {
    let (Some(limiter), Some(ip)) = (ctx.rt.default_limit.as_ref(), ctx.client_ip()) else {
        return Step::Continue(());
    };
    match limiter.check(&ratekey::ip_key(ip)).await {
        Verdict::Counted(outcome @ Outcome::Limited { retry_after }) => {
            ctx.out.ratelimit = headers(&limiter.name, limiter.rate(), outcome);
            Step::Break(Answer::TooMany(retry_after))
        }
        Verdict::Refused => Step::Break(Answer::Error(503)),
        Verdict::Counted(_) | Verdict::Unknown => Step::Continue(()),
    }
}

pub async fn route(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let Some(limit) = rt.rule(ctx.route).limit.as_ref() else {
        return Step::Continue(());
    };
    let Some(ip) = ctx.client_ip() else {
        return Step::Continue(());
    };
    let user = ctx.identity.as_ref().map(|i| i.user.as_str());
    let headers_seen = session
        .req_header()
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    // Two keys: which one the app believes is anyone's guess.
    let Ok(key) = limit.key.key(ip, user, headers_seen) else {
        return Step::Break(Answer::Error(400));
    };
    match limit.store.check(&key).await {
        Verdict::Counted(outcome) => {
            ctx.out.ratelimit = headers(&limit.name, limit.store.rate(), outcome);
            match outcome {
                Outcome::Limited { retry_after } => Step::Break(Answer::TooMany(retry_after)),
                _ => Step::Continue(()),
            }
        }
        Verdict::Unknown => Step::Continue(()),
        Verdict::Refused => Step::Break(Answer::Error(503)),
    }
}
