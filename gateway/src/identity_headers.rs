//! The identity headers the app receives (on the upstream request, or on a
//! forward-auth answer for the front proxy to copy): user, roles, e-mail
//! for an account with an address, the name when the preset has one, and,
//! with an assertion key, the signed assertion.

use bytes::Bytes;

use crate::ctx::Ctx;
use crate::state;

/// Names and values; none without an identity.
pub fn headers(ctx: &Ctx) -> Vec<(Bytes, String)> {
    let Some(who) = ctx.identity.as_ref() else {
        return Vec::new();
    };
    let ids = &ctx.rt.identity;
    let mut out = Vec::with_capacity(5);
    out.push((ids.user_name.clone(), who.user.clone()));
    out.push((ids.roles_name.clone(), who.roles.join(",")));
    if let Some(email) = who.email.as_deref() {
        out.push((ids.email_name.clone(), email.to_string()));
    }
    if let Some(name) = &ids.name_name {
        out.push((name.clone(), who.user.clone()));
    }
    if let Some(key) = ids.assertion_key.as_deref() {
        let subject = policies::assertion::Subject {
            sub: &who.user,
            email: who.email.as_deref(),
            roles: &who.roles,
        };
        let jwt = policies::assertion::assertion(key, subject, audience(ctx), state::now());
        out.push((ids.assertion_name.clone(), jwt));
    }
    out
}

/// The assertion's `aud`: the route's upstream; for forward auth on a
/// route without one, the original host.
fn audience(ctx: &Ctx) -> &str {
    match ctx.upstream.and_then(|i| ctx.rt.upstreams.get(i)) {
        Some(u) => u.name.as_str(),
        None => ctx.host.as_deref().unwrap_or_default(),
    }
}
