//! `[server]`: listeners, threads, trusted proxies, body limits.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::reader::{cidr_list, duration, size};
use super::{Report, Section};

/// Default `[server] max_body`.
pub(super) const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// The most a request body can be buffered before the upstream is contacted:
/// pingora's retry buffer, which replays it to the upstream, holds 64 KiB.
pub const MAX_BUFFER_BODY: u64 = 64 << 10;
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// 1 KiB/s: far below any real uplink, far above a deliberate trickle.
const DEFAULT_BODY_MIN_RATE: u64 = 1 << 10;

#[derive(Debug)]
pub struct Server {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// `/metrics`, `/healthz`, `/readyz`; plain HTTP, meant for loopback or a private network.
    pub ops: Option<SocketAddr>,
    /// Forward auth only (`/.portcullis/auth`), plain HTTP, for a proxy on this host.
    pub auth: Option<SocketAddr>,
    pub threads: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body: u64,
    pub case_insensitive_paths: bool,
    /// Headers of `policies::forwarding::spoofable_header` the operator lets
    /// through (a CDN in front that sets `CF-Connecting-IP`), lowercase.
    pub pass_client_headers: Vec<&'static str>,
    /// Bodies with a declared length up to this are read whole before the
    /// upstream is contacted (0: never).
    pub buffer_body: u64,
    /// A buffered body must arrive within this; a streamed HTTP/1 body may
    /// pause at most this long between reads.
    pub body_timeout: Duration,
    /// Bytes per second a streamed body must average once `body_timeout`
    /// has passed since it started (0: no minimum).
    pub body_min_rate: u64,
}

fn listen_addr(sec: &mut Section<'_>, key: &'static str, r: &mut Report) -> Option<SocketAddr> {
    let s = sec.str(key, r)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(
                sec.key(key),
                format!("{s:?} is not an IP:port address (e.g. \"0.0.0.0:443\", \"[::]:443\")"),
            );
            None
        }
    }
}

pub(super) fn read_server(sec: &mut Section<'_>, r: &mut Report) -> Option<Server> {
    let errors_before = r.errors.len();
    let https = listen_addr(sec, "https", r);
    let http = listen_addr(sec, "http", r);
    let ops = private_listener(
        sec,
        "ops",
        &[https, http],
        "keep it off the internet (firewall or a private interface); /metrics shows route names and traffic",
        r,
    );
    let auth = private_listener(
        sec,
        "auth",
        &[https, http, ops],
        "requests and answers cross the network in plain text (session cookies, identity headers)",
        r,
    );
    let threads = threads(sec, r);
    let trusted_proxies = cidr_list(
        sec,
        "trusted_proxies",
        "\"10.0.0.0/8\", \"2001:db8::/32\"",
        r,
    );
    let max_body = size(sec, "max_body", r).unwrap_or(DEFAULT_MAX_BODY);
    let case_insensitive_paths = sec.bool("case_insensitive_paths", r).unwrap_or(false);
    let buffer_body = buffer_size(sec, r).unwrap_or(MAX_BUFFER_BODY);
    // parse_duration refuses zero.
    let body_timeout = duration(sec, "body_timeout", r).unwrap_or(DEFAULT_BODY_TIMEOUT);
    let body_min_rate = size(sec, "body_min_rate", r).unwrap_or(DEFAULT_BODY_MIN_RATE);
    let pass_client_headers = pass_client_headers(sec, r);
    if auth.is_some() && trusted_proxies.is_empty() {
        r.error(
            sec.key("auth"),
            "needs server.trusted_proxies: only a trusted front proxy may ask, e.g. trusted_proxies = [\"127.0.0.1/32\"]",
        );
    }
    (r.errors.len() == errors_before).then_some(Server {
        pass_client_headers,
        buffer_body,
        body_timeout,
        body_min_rate,
        ops,
        auth,
        https,
        http,
        threads,
        trusted_proxies,
        max_body,
        case_insensitive_paths,
    })
}

/// A plain listener meant for this host or a private network (`ops`,
/// `auth`): its own address, a warning (`why`) off loopback.
fn private_listener(
    sec: &mut Section<'_>,
    key: &'static str,
    others: &[Option<SocketAddr>],
    why: &str,
    r: &mut Report,
) -> Option<SocketAddr> {
    let addr = listen_addr(sec, key, r)?;
    if !addr.ip().is_loopback() {
        r.warn(sec.key(key), format!("{addr} is not loopback: {why}"));
    }
    if others.contains(&Some(addr)) {
        r.error(sec.key(key), "must differ from the other listeners");
    }
    Some(addr)
}

fn threads(sec: &mut Section<'_>, r: &mut Report) -> usize {
    match sec.int("threads", r) {
        // In range, so the cast is exact.
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            r.error(
                sec.key("threads"),
                format!("{n} is out of range (1 to 256)"),
            );
            1
        }
        None => 2,
    }
}

/// `pass_client_headers`: only headers the gateway would otherwise remove.
fn pass_client_headers(sec: &mut Section<'_>, r: &mut Report) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (i, name) in sec
        .str_list("pass_client_headers", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match policies::forwarding::spoofable_header(name) {
            Some(h) => out.push(h),
            None => r.error(
                format!("{}[{i}]", sec.key("pass_client_headers")),
                format!(
                    "{name:?} is not a header the gateway removes; it removes {}",
                    policies::forwarding::CLIENT_IP_HEADERS
                        .iter()
                        .chain(policies::forwarding::FOREIGN_IDENTITY_HEADERS.iter())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    out
}

/// `buffer_body`: a size up to [`MAX_BUFFER_BODY`], or `"0"` for none.
pub(super) fn buffer_size(sec: &mut Section<'_>, r: &mut Report) -> Option<u64> {
    let n = size(sec, "buffer_body", r)?;
    if n > MAX_BUFFER_BODY {
        r.error(
            sec.key("buffer_body"),
            format!("{n} bytes is over the 64KB the gateway can buffer (pingora's replay buffer)"),
        );
        return None;
    }
    Some(n)
}
