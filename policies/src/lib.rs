#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
// Client-controlled input must never panic the gateway: forbid the usual
// panicking shortcuts in library code (tests may still use them).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

//! Pure request-policy decisions for portcullis.
//!
//! Everything here is synchronous, allocation-light and free of I/O so the
//! gateway can call it on the hot path and so every rule can be unit-tested
//! exhaustively, bypass attempts included. The gateway owns sockets, headers
//! and responses; this crate only answers "is this safe / who is this / which
//! route".
//!
//! * [`target`] — request-target validation and path normalisation (stage `target`).
//! * [`client_ip`] — client address from the peer and `X-Forwarded-For` (stage `client_ip`).
//! * [`host`] — the request's host, parsed strictly into one canonical value (stage `target`).
//! * [`method`] — accepted method spellings and method-override headers.
//! * [`cookies`] — `Cookie` headers as bytes: find the gateway's, strip them for the app.
//! * [`forwarding`] — header-name rules for the upstream request.
//! * [`hex_id`] — 16-byte ids as 32 hex digits on the stack (request and session ids).
//! * [`head`] — facts from the raw HTTP/1 request head: verbatim target, framing (stage `target`).
//! * [`simple_head`] — which HTTP/1 heads the gateway's lean proxy path may serve (issue 22).
//! * [`ratelimit`] — rate rules, in-process GCRA, `RateLimit` headers (stage `limits`).
//! * [`ratekey`] — what a limit counts a request by: IP, user or a header.
//! * [`upstream`] — which client headers the upstream request loses.
//! * [`failure`] — the status of a request the proxy could not complete.
//! * [`routes`] — `[[route]]` matching on host, path prefix and method.
//! * [`users`] — user names and argon2id password hashing with one-shape
//!   verification (unknown users cost the same as wrong passwords).
//! * [`session`] — the signed `__Host-portcullis` cookie: key rotation,
//!   absolute and idle lifetimes, sliding re-issue (stage `session`).
//! * [`csrf`] — CSRF tokens for the gateway's forms, bound to one browser.
//! * [`fingerprint`] — digests of an instance's effective policy, to spot instances that differ.
//! * [`forward_auth`] — the request a front proxy asks about on `/.portcullis/auth`.
//! * [`redirect`] — the login `next` parameter, local paths only.
//! * [`oauth_state`] — a provider sign-in's `state`, bound to one browser,
//!   and the PKCE verifier and nonce derived from it.
//! * [`invite`] — invitation link tokens and the hash the store keeps.
//! * [`mfa`] — who must have a second factor, which sessions used one, step-up.
//! * [`totp`] — TOTP codes (RFC 6238), each step accepted once.
//! * [`recovery`] — single-use recovery codes and the hash the store keeps.
//! * [`signin`] — a provider's rules (domains, addresses, orgs) and `role_map`.
//! * [`access`] — `public` / `login` / `role:` / `deny` and the 303/401/403
//!   decision (stage `access`).
//! * [`assertion`] — the JWT claims for `X-Forwarded-Assertion`, and HS256.
//! * [`signing`] — ES256 / EdDSA assertion keys: PKCS#8, JWK, thumbprint `kid`, JWS.
//! * [`headers`] — security response headers, merged per route key by key (the response).
//! * [`cors`] — exact-origin CORS: preflight answers and response headers (the response).

pub mod access;
pub mod assertion;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod csrf;
pub mod emergency;
pub mod failure;
pub mod fingerprint;
pub mod forward_auth;
pub mod forwarding;
pub mod head;
pub mod headers;
pub mod hex_id;
pub mod host;
pub mod invite;
pub mod lease;
mod mac;
pub mod method;
pub mod mfa;
pub mod oauth_state;
pub mod ratekey;
pub mod ratelimit;
pub mod recovery;
pub mod redirect;
pub mod routes;
pub mod session;
pub mod signin;
pub mod signing;
pub mod simple_head;
mod split;
pub mod target;
mod token;
pub mod totp;
pub mod upstream;
pub mod users;
