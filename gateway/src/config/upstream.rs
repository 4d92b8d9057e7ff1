//! `[upstreams.NAME]`: where requests go.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::reader::duration;
use super::{Report, Section};

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// Path of the active health check, when configured.
    pub health: Option<String>,
    pub tls: bool,
    pub sni: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// `[upstreams]`: every named table; at least one is required.
pub(super) fn read_upstreams(root: &mut Section<'_>, r: &mut Report) -> Vec<Upstream> {
    let upstreams = match root.table("upstreams", r) {
        Some(mut sec) => {
            let ups = sec
                .named_tables(r)
                .into_iter()
                .filter_map(|(name, mut s)| {
                    let u = read_upstream(name, &mut s, r);
                    s.finish(r);
                    u
                })
                .collect();
            sec.finish(r);
            ups
        }
        None => Vec::new(),
    };
    if upstreams.is_empty() && !r.errors.iter().any(|e| e.key.starts_with("upstreams")) {
        r.error(
            "upstreams",
            "at least one upstream is required, e.g. [upstreams.app] addrs = [\"127.0.0.1:8000\"]",
        );
    }
    upstreams
}

fn read_upstream(name: &str, sec: &mut Section<'_>, r: &mut Report) -> Option<Upstream> {
    let errors_before = r.errors.len();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        r.error(
            sec.key(""),
            "upstream names use only letters, digits, '_' and '-'",
        );
    }
    let (addrs, first_host) = read_addrs(sec, r);
    let health = read_health(sec, r);
    let tls = sec.bool("tls", r).unwrap_or(false);
    let sni = sec
        .str("sni", r)
        .map(str::to_string)
        .or(first_host)
        .unwrap_or_default();
    let connect_timeout = duration(sec, "connect_timeout", r).unwrap_or(Duration::from_secs(2));
    let read_timeout = duration(sec, "read_timeout", r).unwrap_or(Duration::from_secs(60));
    (r.errors.len() == errors_before).then(|| Upstream {
        name: name.to_string(),
        addrs,
        health,
        tls,
        sni,
        connect_timeout,
        read_timeout,
    })
}

/// `addrs`, resolved once at load, and the host of the first (the default SNI).
fn read_addrs(sec: &mut Section<'_>, r: &mut Report) -> (Vec<SocketAddr>, Option<String>) {
    let mut addrs = Vec::new();
    let mut first_host = None;
    match sec.str_list("addrs", r) {
        Some(list) if !list.is_empty() => {
            for (i, a) in list.into_iter().enumerate() {
                let key = format!("{}[{i}]", sec.key("addrs"));
                if first_host.is_none() {
                    first_host = a
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_matches(['[', ']']).to_string());
                }
                match a.to_socket_addrs() {
                    Ok(mut it) => match it.next() {
                        Some(sa) => addrs.push(sa),
                        None => r.error(key, format!("{a:?} resolves to no address")),
                    },
                    Err(e) => r.error(key, format!("{a:?} is not a host:port address ({e})")),
                }
            }
        }
        Some(_) => r.error(sec.key("addrs"), "must list at least one address"),
        None if !sec.has("addrs") => r.error(
            sec.key("addrs"),
            "required, e.g. addrs = [\"127.0.0.1:8000\"]",
        ),
        None => {}
    }
    (addrs, first_host)
}

/// `health`: a path the active check requests.
fn read_health(sec: &mut Section<'_>, r: &mut Report) -> Option<String> {
    let h = sec.str("health", r)?;
    if h.starts_with('/') && !h.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        Some(h.to_string())
    } else {
        r.error(
            sec.key("health"),
            format!("{h:?} must be a path starting with '/'"),
        );
        None
    }
}
