//! Stage `reserved`: paths under `/.portcullis/` are answered by the
//! gateway (`crate::reserved`) and never reach the app, in any case when
//! routes are case-insensitive.

use std::ops::ControlFlow;

use pingora::prelude::*;

use crate::answer::Step;
use crate::ctx::Ctx;
use crate::reserved::{self, paths};
use crate::state::Shared;

pub async fn run(shared: &Shared, session: &mut Session, ctx: &mut Ctx) -> Step {
    let ci = ctx.rt.table.case_insensitive();
    if !paths::is_reserved(&ctx.path, ci) {
        return ControlFlow::Continue(());
    }
    ctx.reserved = true;
    if ctx.forward.is_some() {
        // The gateway's pages are reached through the front proxy, never
        // authorised for the app: the proxy must send them here.
        tracing::debug!(request_id = %ctx.out.request_id, "forward auth asked about a /.portcullis/ path");
        return ControlFlow::Break(crate::answer::Answer::Error(403));
    }
    let path = if ci {
        ctx.path.to_ascii_lowercase()
    } else {
        ctx.path.clone()
    };
    // Boxed: the pages' futures (provider sign-in, the store) are ~8 KiB,
    // and unboxed they would size the whole pipeline's future, which
    // pingora's `request_filter` allocates and copies for every request.
    ControlFlow::Break(Box::pin(reserved::answer(shared, session, ctx, &path)).await)
}
