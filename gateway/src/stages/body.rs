//! Stage `body`: a slow body must not hold the app. A body declared up to
//! `buffer_body` is read whole, within `body_timeout`, before the upstream
//! is contacted (pingora replays it from its retry buffer); larger and
//! chunked bodies stream, each HTTP/1 read waiting at most `body_timeout`
//! (and `request_body_filter` holds them to `body_min_rate`).

use std::time::Instant;

use pingora::prelude::*;

use crate::answer::{Answer, OrAnswer, Step};
use crate::ctx::Ctx;

/// `Expect: 100-continue` (RFC 9110 §10.1.1: HTTP/1.1 and later only).
fn expects_continue(session: &Session) -> bool {
    let req = session.req_header();
    req.version >= http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

pub async fn run(session: &mut Session, ctx: &mut Ctx) -> Step {
    let timeout = ctx.rt.body_timeout;
    if !ctx.buffer_body {
        if !session.is_body_empty() {
            session.set_read_timeout(Some(timeout));
            ctx.body_started = Some(Instant::now());
        }
        return Step::Continue(());
    }
    session.enable_retry_buffering();
    // A client waiting for `100 Continue` (curl does above 1 KiB) would
    // otherwise stall until its own timeout: the app is not asked yet, so
    // the gateway answers for it (and drops `Expect` upstream).
    if expects_continue(session) {
        session.write_continue_response().await.or_answer()?;
    }
    let read_all = async {
        while !session.is_body_done() {
            if session.read_request_body().await?.is_none() {
                break;
            }
        }
        Ok::<(), Box<Error>>(())
    };
    match tokio::time::timeout(timeout, read_all).await {
        Ok(read) => read.or_answer(),
        // Too slow: what is left is not read, not even to be dropped.
        Err(_) => Step::Break(Answer::Fatal {
            status: 408,
            drain: false,
        }),
    }
}
