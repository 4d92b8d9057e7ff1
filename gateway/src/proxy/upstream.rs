//! Stage `upstream` (pingora's `upstream_request_filter`): the request the
//! app receives. The client's spoofable headers go (`policies::upstream`),
//! then the gateway sets its own: forwarding headers, the request id, the
//! identity headers and assertion, the canonical `Host`; its own cookies
//! never reach the app.

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use policies::cookies;
use policies::host::Host;
use policies::upstream::UpstreamPlan;

use crate::auth;
use crate::ctx::Ctx;

pub fn rewrite(up: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    let Some(client) = ctx.client.as_ref() else {
        return Error::e_explain(InternalError, "pipeline did not run");
    };
    // Most HTTP/1.1 clients send the canonical target already: an
    // origin-form target round-trips through pingora's `Uri` byte for byte,
    // so parsing it again would store the very same state. Anything else
    // (another target, an HTTP/2 `Uri` with scheme and authority) is set.
    if let Some(t) = ctx.upstream_target.as_deref() {
        if up.raw_path() != t.as_bytes() || up.uri.authority().is_some() {
            up.set_raw_path(t.as_bytes())?;
        }
    }
    let trusted = client.peer_trusted;
    // A trusted proxy's X-Forwarded-Host is kept only if it is a host.
    let kept_host = trusted
        .then(|| up.headers.get("x-forwarded-host").cloned())
        .flatten()
        .filter(|h| Host::parse(h.as_bytes()).is_ok());
    let ids = &ctx.rt.identity;
    let plan = UpstreamPlan {
        trusted,
        keep_method_override: ctx.keep_method_override,
        identity: &ids.strip,
        pass: &ctx.rt.pass_client_headers,
    };
    let doomed: Vec<String> = up
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|name| plan.removes(name))
        .map(str::to_string)
        .collect();
    for name in &doomed {
        up.remove_header(name.as_str());
    }
    up.insert_header("x-forwarded-for", client.forwarded_for())?;
    let proto = if ctx.https { "https" } else { "http" };
    up.insert_header("x-forwarded-proto", HeaderValue::from_static(proto))?;
    match (kept_host, ctx.host.as_deref()) {
        (Some(h), _) => up.insert_header("x-forwarded-host", h)?,
        (None, Some(h)) => up.insert_header("x-forwarded-host", h)?,
        (None, None) => {}
    }
    up.insert_header("x-real-ip", policies::client_ip::ip_string(client.ip))?;
    up.insert_header("x-request-id", ctx.out.request_id.as_str())?;
    for (name, value) in crate::identity_headers::headers(ctx) {
        up.insert_header(name, value)?;
    }
    own_cookies(up)?;
    // A buffered body was read already, any `100 Continue` sent by us.
    if ctx.buffer_body {
        up.remove_header(&http::header::EXPECT);
    }
    // The host the routes matched, in canonical form (HTTP/2 clients send
    // :authority, not Host; an HTTP/1.1 upstream needs Host).
    if let Some(h) = ctx.host.as_deref() {
        up.insert_header(http::header::HOST, h)?;
    }
    Ok(())
}

/// The gateway's cookies (the session token) never reach the app.
fn own_cookies(up: &mut RequestHeader) -> Result<()> {
    match auth::strip_own_cookies(up) {
        cookies::Stripped::Unchanged => {}
        cookies::Stripped::Empty => {
            up.remove_header(&http::header::COOKIE);
        }
        cookies::Stripped::Rest(rest) => {
            let rest = HeaderValue::from_bytes(&rest)
                .map_err(|_| Error::explain(InternalError, "cookie header"))?;
            up.insert_header(http::header::COOKIE, rest)?;
        }
    }
    Ok(())
}
