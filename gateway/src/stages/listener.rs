//! Stage `listener`: the plain-HTTP listener answers ACME HTTP-01
//! challenges and otherwise only redirects to HTTPS (unless TLS is off
//! because a platform in front terminates it).

use bytes::Bytes;
use pingora::prelude::*;
use policies::host::Host;

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;
use crate::state::Shared;

const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

pub fn run(shared: &Shared, session: &Session, ctx: &Ctx) -> Step {
    let rt = &ctx.rt;
    if ctx.tls || rt.tls_off || ctx.auth_listener {
        return Step::Continue(());
    }
    if rt.acme.is_some() {
        if let Some(token) = ctx.path.strip_prefix(ACME_CHALLENGE) {
            return Step::Break(match shared.challenges.get(token) {
                Some(answer) => Answer::Page {
                    status: 200,
                    content_type: "application/octet-stream",
                    body: Bytes::from(answer),
                },
                None => Answer::Error(404),
            });
        }
    }
    let req = session.req_header();
    let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) {
        301
    } else {
        308
    };
    let location = ctx
        .host
        .as_deref()
        .and_then(|h| Host::parse(h.as_bytes()).ok())
        .zip(ctx.upstream_target.as_deref())
        .map(|(h, t)| h.https_url(rt.https_port, t));
    Step::Break(match location {
        Some(location) => Answer::Redirect { status, location },
        None => Answer::Error(400),
    })
}
