//! Config text for the common test setups.

use std::net::SocketAddr;

use super::pki::TestPki;
use super::ports::free_port;

/// A files-mode config on free loopback ports in front of `upstreams`
/// (one upstream named `app` with these addresses), everything public.
/// `extra` is appended verbatim (more tables, `[[route]]`s).
pub fn basic(pki: &TestPki, addrs: &[SocketAddr], extra: &str) -> String {
    basic_with(pki, addrs, "", extra)
}

/// As [`basic`], with `server_extra` lines added to `[server]`.
pub fn basic_with(pki: &TestPki, addrs: &[SocketAddr], server_extra: &str, extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\nhttps = \"127.0.0.1:{https}\"\nhttp = \"127.0.0.1:{http}\"\nthreads = 1\n{server_extra}\n\
         [tls]\nmode = \"files\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
         [upstreams.app]\naddrs = [{addrs}]\nconnect_timeout = \"1s\"\nread_timeout = \"5s\"\n\n\
         [access]\ndefault = \"public\"\n\n{extra}\n",
        https = free_port(),
        http = free_port(),
        cert = pki.cert_path.display(),
        key = pki.key_path.display(),
        addrs = addrs.join(", "),
    )
}
