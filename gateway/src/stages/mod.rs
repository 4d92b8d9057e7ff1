//! The request pipeline: an ordered list of small stages, each returning
//! "continue" or an [`Answer`] (docs/behaviour.md, "Pipeline"). Stages
//! decide; only `answer::send` writes.

mod access;
mod body;
mod client_ip;
mod cors;
mod forward;
mod limits;
mod listener;
mod reserved;
mod route;
mod session;
mod target;

use std::ops::ControlFlow;

use pingora::prelude::*;

use crate::answer::Step;
use crate::ctx::Ctx;
use crate::state::Shared;

/// Runs every stage in order; `Continue` means "forward to the app". A
/// forward-auth request always ends in an answer for the front proxy.
pub async fn run(shared: &Shared, s: &mut Session, ctx: &mut Ctx) -> Step {
    let step = pipeline(shared, s, ctx).await;
    if ctx.forward.is_none() {
        return step;
    }
    ControlFlow::Break(forward::answer(step, ctx))
}

async fn pipeline(shared: &Shared, s: &mut Session, ctx: &mut Ctx) -> Step {
    // One handle for every stage: they read the rules while filling in `ctx`.
    let rt = ctx.rt.clone();
    let rt = &*rt;
    client_ip::run(s, ctx)?;
    forward::run(s, ctx)?;
    target::run(s, ctx)?;
    listener::run(shared, s, ctx)?;
    limits::global(ctx).await?;
    session::run(rt, shared, s, ctx).await?;
    reserved::run(shared, s, ctx).await?;
    route::run(rt, s, ctx)?;
    cors::run(rt, s, ctx)?;
    limits::route(rt, s, ctx).await?;
    access::run(rt, s, ctx)?;
    if ctx.forward.is_some() {
        // The front proxy holds the body; nothing more to judge here.
        return ControlFlow::Continue(());
    }
    access::body_limit(rt, s, ctx)?;
    body::run(s, ctx).await?;
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    /// The stages in the order they run, as docs/behaviour.md names them.
    pub const ORDER: [&str; 13] = [
        "client_ip",
        "forward",
        "target",
        "listener",
        "limits",
        "session",
        "reserved",
        "route",
        "cors",
        "route_limit",
        "access",
        "body_limit",
        "body",
    ];

    /// docs/behaviour.md lists the stages in the order `run` calls them;
    /// tests/stage_order.rs checks that order black-box.
    #[test]
    fn the_doc_lists_the_stages_in_order() {
        let doc = include_str!("../../../docs/behaviour.md");
        let mut at = 0;
        for stage in ORDER {
            let needle = format!("`{stage}`");
            let found = doc.get(at..).and_then(|rest| rest.find(&needle));
            let Some(found) = found else {
                panic!("docs/behaviour.md does not list `{stage}` after the stage before it");
            };
            at += found + needle.len();
        }
    }
}
