//! Stage `response` (pingora's `response_filter`): what the app answered is
//! checked, then carries the same headers as the gateway's own answers.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use policies::forwarding;

use crate::ctx::Ctx;

fn values(h: &http::HeaderMap, name: http::HeaderName) -> impl Iterator<Item = &[u8]> {
    h.get_all(name).iter().map(|v| v.as_bytes())
}

pub fn check(session: &Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
    // A 101 turns the connection into a raw tunnel: only as the answer to
    // the client's own upgrade request, for a protocol it asked for.
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        let asked = values(&session.req_header().headers, http::header::UPGRADE);
        let upgrade = values(&resp.headers, http::header::UPGRADE);
        let connection = values(&resp.headers, http::header::CONNECTION);
        if !forwarding::is_upgrade_answer(asked, upgrade, connection) {
            return Error::e_explain(InvalidHTTPHeader, "upstream 101 answers no upgrade request");
        }
    }
    // With `[cors]` the gateway owns the CORS answer: the app's own headers
    // could allow an origin the policy refuses.
    if ctx.rt.cors.is_some() {
        let app_cors: Vec<http::HeaderName> = resp
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in app_cors {
            resp.remove_header(&name);
        }
    }
    ctx.status = resp.status.as_u16();
    ctx.out.apply(resp)
}
