//! Stage `target`: framing, method, request target and host, each judged
//! strictly before anything is counted or looked up.

use pingora::prelude::*;
use policies::host::request_host;
use policies::target::{self, RequestTarget};
use policies::{head, method};

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;

pub fn run(session: &Session, ctx: &mut Ctx) -> Step {
    let req = session.req_header();
    // For HTTP/1 framing and target are judged on the bytes as sent:
    // pingora's parser has already dropped a fragment and, when TE came
    // with CL, the CL. (The h2 layer refuses TE and a CL that disagrees
    // with the data.)
    let raw_head = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
    if raw_head.as_deref().is_some_and(head::ambiguous_framing) {
        // Where this body ends is anyone's guess: not a byte more is read.
        return Step::Break(Answer::Fatal {
            status: 400,
            drain: false,
        });
    }
    // An auth request's original request is judged here instead, by the
    // same rules: its method, its target verbatim, its one host.
    let forward = ctx.forward.clone();
    let method = forward.as_ref().map_or(&req.method, |f| &f.method);
    // `post` must not fall through a POST rule to a public route while
    // the app upper-cases it and runs the POST view.
    if !method::is_accepted(method.as_str().as_bytes()) {
        return Step::Break(Answer::malformed());
    }
    let wire_target = match (&forward, raw_head.as_deref()) {
        (Some(f), _) => f.target.as_slice(),
        (None, Some(h)) => head::request_target(h).unwrap_or_default(),
        (None, None) => req.raw_path(),
    };
    let (path, query, authority) = match target::parse_target(wire_target) {
        Ok(RequestTarget::Path {
            path,
            query,
            authority,
        }) => (path, query, authority),
        Ok(RequestTarget::Asterisk) if forward.is_none() && *method == http::Method::OPTIONS => {
            return Step::Break(Answer::Empty(204));
        }
        Ok(RequestTarget::Asterisk) => return Step::Break(Answer::Error(400)),
        Err(e) => {
            tracing::debug!(request_id = %ctx.out.request_id, reason = %e, "unsafe request target");
            return Step::Break(Answer::Error(400));
        }
    };
    let host = match &forward {
        // The proxy names the host once; an absolute-form original target
        // would be a second opinion.
        Some(_) if authority.is_some() => return Step::Break(Answer::Error(400)),
        Some(f) => request_host(std::iter::once(f.host.as_slice()), None),
        None => {
            let hosts = req.headers.get_all(http::header::HOST);
            let authority = authority.or_else(|| req.uri.authority().map(|a| a.as_str()));
            request_host(
                hosts.iter().map(|h| h.as_bytes()),
                authority.map(str::as_bytes),
            )
        }
    };
    let host = match host {
        Ok(host) => host,
        Err(e) => {
            tracing::debug!(request_id = %ctx.out.request_id, reason = %e, "no usable host");
            return Step::Break(Answer::malformed());
        }
    };
    ctx.method = method.clone();
    ctx.host = Some(host.into_string());
    // Upstreams that fold Unicode case would read `/CAF%C3%89` as a
    // denied `/café`: in that mode only ASCII paths are routed.
    if ctx.rt.table.case_insensitive() && target::has_encoded_non_ascii(&path) {
        return Step::Break(Answer::Error(400));
    }
    ctx.upstream_target = Some(target::forwarded_target(&path, query));
    ctx.path = path.into_string();
    Step::Continue(())
}
