//! Black-box test harness for portcullis: test PKI, an echo upstream, the
//! real binary under a temp dir, and clients. Every test file does
//! `mod support;` and uses what it needs.
#![allow(dead_code)]
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod agent;
pub mod browser;
pub mod client;
pub mod config;
pub mod flask;
pub mod front;
pub mod gateway;
pub mod github;
pub mod haproxy;
pub mod login;
pub mod oidc;
pub mod pki;
pub mod ports;
pub mod postgres;
pub mod redis;
pub mod upstream;

// Re-exports are for convenience; a test file need not use them all.
#[allow(unused_imports)]
pub use browser::{Browser, BrowserOptions};
#[allow(unused_imports)]
pub use client::{
    http_client, https_client, raw_tcp, raw_tls, websocket_tcp, websocket_tls, websocket_tls_with,
    RawResponse,
};
#[allow(unused_imports)]
pub use gateway::{run_cli, run_cli_in, wait_until, Gateway, GatewayBuilder};
#[allow(unused_imports)]
pub use pki::TestPki;
#[allow(unused_imports)]
pub use ports::{dead_addr, free_port};
#[allow(unused_imports)]
pub use redis::RedisServer;
#[allow(unused_imports)]
pub use upstream::{SeenRequest, Upstream};

/// Installs ring as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
