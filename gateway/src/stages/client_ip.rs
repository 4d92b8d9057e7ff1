//! Stage `client_ip`: who is connecting, over which scheme, under which
//! request id.

use pingora::prelude::*;
use policies::{client_ip, forwarding};

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;

pub fn run(session: &Session, ctx: &mut Ctx) -> Step {
    let rt = &ctx.rt;
    let Some(peer) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    else {
        return Step::Break(Answer::Error(400));
    };
    let req = session.req_header();
    let xff = req.headers.get_all("x-forwarded-for");
    let client = client_ip::resolve(peer, xff.iter().map(|v| v.as_bytes()), &rt.trusted);
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    // Behind a platform that terminates TLS, its X-Forwarded-Proto is believed.
    let https = tls
        || (rt.tls_off
            && client.peer_trusted
            && req
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    if client.peer_trusted {
        if let Some(id) = req.headers.get("x-request-id") {
            if forwarding::is_valid_request_id(id.as_bytes()) {
                ctx.out.request_id = String::from_utf8_lossy(id.as_bytes()).into_owned();
            }
        }
    }
    ctx.tls = tls;
    ctx.https = https;
    ctx.out.https = https;
    ctx.out.vary_origin = rt.cors.is_some();
    ctx.client = Some(client);
    Step::Continue(())
}
