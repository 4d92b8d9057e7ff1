//! The identity headers the app receives (on the upstream request, or on a
//! forward-auth answer for the front proxy to copy): user, roles, e-mail
//! for an account with an address, the name when the preset has one, and,
//! with an assertion key, the signed assertion.

use bytes::Bytes;

use policies::assertion::{Claims, Subject};
use policies::hex_id::HexId;

use crate::ctx::Ctx;
use crate::runtime::AssertionRt;
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
    if let Some(jwt) = assertion(ctx, who) {
        out.push((ids.assertion_name.clone(), jwt));
    }
    out
}

/// The signed assertion, when one is configured and a key can sign now.
fn assertion(ctx: &Ctx, who: &crate::auth::Identity) -> Option<String> {
    let ids = &ctx.rt.identity;
    if ids.assertion == AssertionRt::Off {
        return None;
    }
    let jti = HexId::new(&rand::random());
    let claims = Claims {
        subject: Subject {
            sub: &who.user,
            email: who.email.as_deref(),
            roles: &who.roles,
        },
        aud: audience(ctx),
        iat: state::now(),
        iss: ids.issuer.as_deref(),
        jti: Some(jti.as_str()),
        amr: policies::assertion::amr(&who.method),
    };
    match &ids.assertion {
        AssertionRt::Off => None,
        AssertionRt::Hs256(key) => Some(policies::assertion::hs256(key, &claims.to_json())),
        AssertionRt::Keys(alg) => {
            let ring = crate::assertion_keys::RING.load();
            let now = i64::try_from(state::now_ms()).unwrap_or(i64::MAX);
            // No key yet (the store was not read since start): no assertion
            // rather than an unverifiable one; /readyz waits for the keys.
            let key = ring.signer(*alg, now)?;
            key.sign(&claims.to_json())
                .map_err(|e| tracing::error!(error = %e, "assertion not signed"))
                .ok()
        }
    }
}

/// The assertion's `aud`: the route's upstream; for forward auth on a
/// route without one, the original host.
fn audience(ctx: &Ctx) -> &str {
    match ctx.upstream.and_then(|i| ctx.rt.upstreams.get(i)) {
        Some(u) => u.name.as_str(),
        None => ctx.host.as_deref().unwrap_or_default(),
    }
}
