//! Stage `forward`: `/.portcullis/auth`, a front proxy asking whether the
//! request it holds may pass (docs/forward-auth.md). Only a trusted peer
//! may ask. The original request is read from the proxy's headers
//! (`policies::forward_auth`) and then judged by the very stages a proxied
//! request goes through (`target` onwards); [`answer`] turns their outcome
//! into what the proxy understands.

use std::ops::ControlFlow;

use bytes::Bytes;
use pingora::prelude::*;
use policies::forward_auth::{self, ForwardError};

use crate::answer::{Answer, Step};
use crate::ctx::{Ctx, Forward};

/// The forward-auth endpoint, matched on the exact bytes of the path.
pub const AUTH_PATH: &str = "/.portcullis/auth";

pub fn run(session: &Session, ctx: &mut Ctx) -> Step {
    let req = session.req_header();
    let asks = req.uri.path() == AUTH_PATH;
    if ctx.auth_listener && !asks {
        return Step::Break(Answer::Error(404));
    }
    // On the plain listener that only redirects, the path is nothing special.
    if !asks || !(ctx.tls || ctx.rt.tls_off || ctx.auth_listener) {
        return Step::Continue(());
    }
    if !ctx.client.as_ref().is_some_and(|c| c.peer_trusted) {
        crate::metrics::METRICS
            .auth_failures
            .with_label_values(&["forbidden"])
            .inc();
        return Step::Break(Answer::Error(403));
    }
    let nginx = req
        .headers
        .get("x-portcullis-auth-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"nginx"));
    let headers = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let original = forward_auth::original(headers).and_then(|o| {
        let method = http::Method::from_bytes(o.method).map_err(|_| ForwardError::BadMethod)?;
        Ok((o, method))
    });
    let (original, method) = match original {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(request_id = %ctx.out.request_id, reason = %e, "unusable forward-auth request");
            let refused = Answer::Error(400);
            return Step::Break(if nginx {
                for_nginx(refused, ctx)
            } else {
                refused
            });
        }
    };
    ctx.https = original.https;
    ctx.out.https = original.https;
    ctx.forward = Some(Forward {
        method,
        host: original.host.to_vec(),
        target: original.target.to_vec(),
        nginx,
    });
    Step::Continue(())
}

/// What the front proxy gets for the pipeline's outcome: 200 with the
/// identity headers to copy; a 302 to the login page on the original host
/// (nginx: 401 with `X-Portcullis-Login`); every other refusal as is, except
/// that nginx only understands 401 and 403: anything else becomes 403 with
/// `X-Portcullis-Status`.
pub fn answer(step: Step, ctx: &mut Ctx) -> Answer {
    let nginx = ctx.forward.as_ref().is_some_and(|f| f.nginx);
    let answer = match step {
        ControlFlow::Continue(()) => {
            ctx.out.forward = crate::identity_headers::headers(ctx);
            return Answer::Empty(200);
        }
        // A CORS preflight: the app answers it, with these headers to copy.
        ControlFlow::Break(Answer::Empty(_)) => return Answer::Empty(200),
        ControlFlow::Break(a) => a,
    };
    if let Answer::Redirect { location, .. } = &answer {
        let scheme = if ctx.https { "https" } else { "http" };
        let host = ctx.host.as_deref().unwrap_or_default();
        // Stages redirect to the gateway's own pages, by path.
        let location = format!("{scheme}://{host}{location}");
        if !nginx {
            return Answer::Redirect {
                status: 302,
                location,
            };
        }
        ctx.out
            .forward
            .push((Bytes::from_static(b"x-portcullis-login"), location));
        return Answer::Error(401);
    }
    if !nginx {
        return answer;
    }
    for_nginx(answer, ctx)
}

/// nginx's `auth_request` knows 2xx, 401 and 403 only: any other refusal
/// is sent as 403 with `X-Portcullis-Status` (and `Retry-After` for 429).
fn for_nginx(answer: Answer, ctx: &mut Ctx) -> Answer {
    let status = answer.status();
    if matches!(status, 0 | 401 | 403) {
        return answer;
    }
    ctx.out.forward.push((
        Bytes::from_static(b"x-portcullis-status"),
        status.to_string(),
    ));
    match answer {
        Answer::TooMany(retry_after) => {
            ctx.out.forward.push((
                Bytes::from_static(b"retry-after"),
                crate::respond::retry_after_secs(retry_after),
            ));
            Answer::Error(403)
        }
        Answer::Fatal { drain, .. } => Answer::Fatal { status: 403, drain },
        _ => Answer::Error(403),
    }
}
