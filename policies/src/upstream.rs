//! Which request headers reach the app (stage `upstream`).
//!
//! The gateway speaks for the client on the upstream request: forwarding
//! headers, the request id and the identity headers are its own, so a
//! client's copy never passes, in any spelling (`_` for `-`, any case). What
//! else is dropped depends on the peer and the route; the gateway then sets
//! its own values.

use crate::forwarding::{header_name_eq, is_forwarding_header, spoofable_header};
use crate::method::is_override_header;

/// Headers the gateway sets on every upstream request.
pub const SET_BY_GATEWAY: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
];

/// The header rules for one request.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamPlan<'a> {
    /// The peer is a trusted proxy: its forwarding headers spelt with `-`
    /// pass (the gateway still sets `X-Forwarded-For` and the rest itself).
    pub trusted: bool,
    /// The route opted in to method overrides and matched the overriding
    /// method too.
    pub keep_method_override: bool,
    /// The `[identity]` header names (user, roles, e-mail, name, assertion,
    /// and those of every preset): removed from every client request,
    /// trusted peer or not.
    pub identity: &'a [String],
    /// `[server] pass_client_headers`: spoofable headers the operator keeps.
    pub pass: &'a [&'static str],
}

impl UpstreamPlan<'_> {
    /// Whether the client's header `name` is removed before forwarding.
    pub fn removes(&self, name: &str) -> bool {
        let ours = SET_BY_GATEWAY
            .iter()
            .copied()
            .chain(self.identity.iter().map(String::as_str))
            .any(|t| header_name_eq(name, t));
        ours || (is_forwarding_header(name) && (!self.trusted || name.contains('_')))
            || (!self.keep_method_override && is_override_header(name))
            || spoofable_header(name).is_some_and(|h| !self.pass.contains(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> &'static [String] {
        static IDS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            [
                "x-forwarded-user",
                "x-forwarded-roles",
                "x-forwarded-email",
                "x-forwarded-assertion",
            ]
            .map(String::from)
            .to_vec()
        });
        &IDS
    }

    fn plan(
        trusted: bool,
        keep_method_override: bool,
        pass: &'static [&'static str],
    ) -> UpstreamPlan<'static> {
        UpstreamPlan {
            trusted,
            keep_method_override,
            identity: ids(),
            pass,
        }
    }

    #[test]
    fn the_gateways_own_headers_never_pass() {
        for p in [plan(false, false, &[]), plan(true, true, &["x-client-ip"])] {
            for name in [
                "x-forwarded-for",
                "X_Forwarded_For",
                "X-REAL-IP",
                "x-request-id",
                "X_Request_Id",
                "x-forwarded-user",
                "X_Forwarded_User",
                "x-forwarded-roles",
                "x-forwarded-email",
                "X_FORWARDED_EMAIL",
                "x-forwarded-assertion",
            ] {
                assert!(p.removes(name), "{name} with {p:?}");
            }
            for name in [
                "accept",
                "cookie",
                "x-forwardedfor",
                "authorization",
                "x-user",
            ] {
                assert!(!p.removes(name), "{name} with {p:?}");
            }
        }
    }

    #[test]
    fn a_trusted_peer_keeps_forwarding_headers_spelt_with_dashes() {
        assert!(plan(false, false, &[]).removes("forwarded"));
        assert!(plan(false, false, &[]).removes("x-forwarded-prefix"));
        assert!(!plan(true, false, &[]).removes("forwarded"));
        assert!(!plan(true, false, &[]).removes("x-forwarded-prefix"));
        assert!(plan(true, false, &[]).removes("x_forwarded_prefix"));
    }

    #[test]
    fn method_overrides_only_on_opted_in_routes() {
        for name in [
            "x-http-method-override",
            "X_HTTP_Method",
            "x-method-override",
        ] {
            assert!(plan(true, false, &[]).removes(name));
            assert!(!plan(false, true, &[]).removes(name));
        }
    }

    #[test]
    fn spoofable_headers_pass_only_by_name() {
        let p = plan(false, false, &["cf-connecting-ip"]);
        assert!(!p.removes("CF_Connecting_IP"));
        assert!(p.removes("true-client-ip"));
        assert!(p.removes("x-original-url"));
        assert!(plan(true, false, &[]).removes("cf-connecting-ip"));
    }
}
