//! Config file parsing (gateway/src/config/), the whole TOML reader and
//! validator.
//!
//! The config module lives in the binary crate. It is included here by path
//! rather than through a `[lib]` target of the gateway: depending on the
//! gateway package would build pingora, tokio, rustls and redis with fuzzing
//! instrumentation for a target that only needs `toml`, and a lib target
//! would change the binary's module layout while others edit it. The cost:
//! `gateway/src/config/` must not reach into other gateway modules
//! (`crate::…`), which the fuzz build in `scripts/test` checks.
//!
//! Properties, for any text:
//! * parsing never panics and is deterministic (same result, same errors);
//! * every error is one line naming the file;
//! * a config that validates also builds at run time: every route compiles
//!   into a `RouteMatcher`, every rate limit into both limiter kinds, every
//!   health-check path into an `http::Uri` (so `portcullis check` never
//!   passes a file `portcullis run` rejects).
#![no_main]

#[path = "../../gateway/src/config/mod.rs"]
#[allow(dead_code, unused_imports, clippy::all)]
mod config;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use policies::ratelimit::{MemoryStore, Rate, SharedGcra};
use policies::routes::RouteMatcher;

const FILE: &str = "/nonexistent/portcullis-fuzz/portcullis.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "PORTCULLIS_SESSION_KEYS" => Some("a".repeat(64)),
        "PORTCULLIS_REDIS_URL" => Some("redis://:pw@127.0.0.1:6379/0".into()),
        _ => None,
    }
}

fn run(text: &str) -> Result<String, Vec<String>> {
    let path = Path::new(FILE);
    config::parse(text, path, &env, config::Report::new(path))
        .map(|l| format!("{:?}", l.config))
        .map_err(|r| r.errors.iter().map(|e| e.to_string()).collect())
}

fn builds(rate: Rate, what: &str) {
    assert!(
        MemoryStore::new(rate).is_some(),
        "{what}: {rate:?} accepted but not buildable"
    );
    assert!(
        SharedGcra::new(rate).is_some(),
        "{what}: {rate:?} accepted but not buildable"
    );
}

/// Upstream addresses that are host names would make the parser resolve them
/// (DNS: slow, and not what is being fuzzed); skip such inputs.
fn resolves_names(text: &str) -> bool {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return false;
    };
    let Some(ups) = doc.get("upstreams").and_then(|u| u.as_table()) else {
        return false;
    };
    ups.values().any(|u| {
        u.get("addrs")
            .and_then(|a| a.as_array())
            .is_some_and(|addrs| {
                addrs.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|s| s.parse::<std::net::SocketAddr>().is_err())
                })
            })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if resolves_names(text) {
        return;
    }
    let first = run(text);
    assert_eq!(run(text), first, "not deterministic");
    match first {
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.starts_with(FILE), "{e:?}");
                assert!(
                    !e.contains('\n') && !e.contains('\r'),
                    "multi-line error {e:?}"
                );
            }
        }
        Ok(_) => {
            let path = Path::new(FILE);
            let loaded = config::parse(text, path, &env, config::Report::new(path)).unwrap();
            let cfg = loaded.config;
            for r in &cfg.routes {
                if let Err(e) = RouteMatcher::new(r.host.as_deref(), &r.path, r.methods.clone()) {
                    panic!(
                        "route {:?} accepted by config but not by RouteMatcher: {e}",
                        r.path
                    );
                }
                assert!(r.upstream < cfg.upstreams.len());
                if let Some((rate, _)) = &r.rate_limit {
                    builds(*rate, &r.path);
                }
            }
            for rate in [cfg.rate_limit.default, cfg.rate_limit.login]
                .into_iter()
                .flatten()
            {
                builds(rate, "rate_limit");
            }
            for u in &cfg.upstreams {
                assert!(!u.addrs.is_empty(), "upstream {} without addresses", u.name);
                if let Some(h) = &u.health {
                    assert!(h.parse::<http::Uri>().is_ok(), "health path {h:?} accepted");
                }
            }
        }
    }
});
