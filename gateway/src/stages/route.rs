//! Stage `route`: the first route matching host, path and method (the
//! fallback rule otherwise); its security headers from here on; and the
//! method-override headers of a route that opted in.

use pingora::prelude::*;
use policies::method;

use crate::answer::{Answer, Step};
use crate::ctx::Ctx;
use crate::runtime::Runtime;

pub fn run(rt: &Runtime, session: &Session, ctx: &mut Ctx) -> Step {
    let req = session.req_header();
    let host = ctx.host.as_deref();
    let found = rt.table.find(host, &ctx.path, ctx.method.as_str());
    ctx.route = found;
    let rule = rt.rule(found);
    // Method-override headers reach the app only on a route that opted in
    // and that the overriding method matches as well: the app runs one of
    // two methods, and the gateway checked the route for both.
    if rule.method_override {
        let headers = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        match method::override_method(headers) {
            Ok(None) => {}
            Ok(Some(m)) if rt.table.find(host, &ctx.path, m) == found => {
                ctx.keep_method_override = true;
            }
            Ok(Some(_)) | Err(_) => return Step::Break(Answer::Error(400)),
        }
    }
    ctx.out.headers = Some(rule.headers.clone());
    Step::Continue(())
}
