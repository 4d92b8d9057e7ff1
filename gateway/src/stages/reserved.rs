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
    let path = if ci {
        ctx.path.to_ascii_lowercase()
    } else {
        ctx.path.clone()
    };
    ControlFlow::Break(reserved::answer(shared, session, ctx, &path).await)
}
