//! Stage `cors`: a preflight is answered here, before access rules (it
//! carries no credentials) and without reaching the app; an actual request
//! from an allowed origin gets its CORS headers on whatever answers it.

use pingora::prelude::*;
use policies::cors::{CorsPolicy, PREFLIGHT_VARY};

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;
use crate::runtime::Runtime;

pub fn run(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let Some(cors) = rt.cors.as_ref() else {
        return Step::Continue(());
    };
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(origin) = header("origin") else {
        return Step::Continue(());
    };
    let acr_method = header("access-control-request-method");
    if !CorsPolicy::is_preflight(ctx.method.as_str(), Some(origin), acr_method) {
        ctx.out.cors = cors.actual(origin);
        return Step::Continue(());
    }
    ctx.out.cors = cors.preflight(
        origin,
        acr_method.unwrap_or_default(),
        header("access-control-request-headers"),
    );
    // A preflight's answer also varies with what it asked for.
    ctx.out.vary_origin = false;
    ctx.out.cors.push(("vary", PREFLIGHT_VARY.to_string()));
    Step::Break(Answer::Empty(204))
}
