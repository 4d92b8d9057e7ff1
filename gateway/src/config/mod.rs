//! The config file: TOML in, validated [`Config`] out, or every error found.
//!
//! Nothing here runs at request time. Strings are parsed once into typed
//! values; [`crate::runtime`] compiles the result into the serving state.
//!
//! One file per section holds its types and its reader; rules that span
//! sections live in `validate`. Nothing here may use `crate::…`: the `config`
//! fuzz target compiles this directory alone.

mod cors;
mod emergency;
mod headers;
mod identity;
mod rate_limit;
mod reader;
mod route;
mod safety;
mod secret;
mod secrets;
mod server;
mod session;
mod tls;
pub mod units;
mod upstream;

use std::path::{Path, PathBuf};

pub use emergency::{Emergency, EMERGENCY_GLOBAL_ATTEMPTS, EMERGENCY_GLOBAL_WINDOW};
pub use identity::IdentityConf;
pub use rate_limit::{OnStoreError, RateLimitConf, RedisConf};
pub(crate) use reader::Section;
pub use reader::{ConfigError, Report};
pub use route::{RateKey, Route};
pub use safety::startup_safety;
pub use secret::{Secret, SecretSource};
pub use secrets::Secrets;
pub use server::Server;
pub use session::{SameSite, SessionConf};
pub use tls::{AcmeMode, Challenge, Tls, TlsMode};
pub use upstream::Upstream;

pub use policies::access::Access;
pub use policies::cors::CorsPolicy;
pub use policies::headers::{HeaderSet, SecurityHeader};
pub use policies::ratelimit::Rate;

/// A fully validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from; relative paths were resolved against its directory.
    pub file: PathBuf,
    pub server: Server,
    pub tls: Tls,
    pub upstreams: Vec<Upstream>,
    pub secrets: Secrets,
    pub session: SessionConf,
    pub identity: IdentityConf,
    /// `[access] default`: access for routes without `access` and unmatched paths.
    pub access_default: Access,
    pub routes: Vec<Route>,
    /// `[headers]` over the SPEC defaults; routes merge their overrides into it.
    pub headers: HeaderSet,
    /// `[cors]`: `None` unless `allow_origins` is set.
    pub cors: Option<CorsPolicy>,
    pub rate_limit: RateLimitConf,
    pub emergency: Emergency,
}

/// A loaded config and the warnings `check` should print.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
}

/// Where secrets come from: the process environment in production, a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads and validates a config file.
pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<Loaded, Report> {
    let mut report = Report::new(path);
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path, env, report),
        Err(e) => {
            report.error("", format!("cannot read the config file: {e}"));
            Err(report)
        }
    }
}

/// Validates config text as if it had been read from `path`.
pub fn parse(text: &str, path: &Path, env: EnvLookup<'_>, mut r: Report) -> Result<Loaded, Report> {
    let doc: toml::Table = match text.parse() {
        Ok(doc) => doc,
        Err(e) => {
            // toml's message spans several lines with a source excerpt; keep one line.
            let msg = e.message().to_string();
            let line = e
                .span()
                .map(|s| format!("line {}: ", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            r.error("", format!("{line}invalid TOML: {msg}"));
            return Err(r);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut root = Section::new("", &doc);
    let cfg = read_root(&mut root, &base, env, &mut r);
    root.finish(&mut r);
    match cfg {
        Some(config) if r.errors.is_empty() => Ok(Loaded {
            config: Config {
                file: path.to_path_buf(),
                ..config
            },
            warnings: r.warnings,
        }),
        _ => Err(r),
    }
}

fn read_root(
    root: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Config> {
    let server = root.section("server", r, server::read_server);

    let tls = root.section("tls", r, |s, r| tls::read_tls(s, base, r));

    let upstreams = match root.table("upstreams", r) {
        Some(mut sec) => {
            let ups = sec
                .named_tables(r)
                .into_iter()
                .filter_map(|(name, mut s)| {
                    let u = upstream::read_upstream(name, &mut s, r);
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

    let secrets = root.section("secrets", r, |s, r| secrets::read_secrets(s, base, env, r));

    let access_default = root.section("access", r, |sec, r| match sec.str("default", r) {
        Some(s) => route::parse_access(s, &sec.key("default"), r),
        None => Some(Access::Login),
    });

    let session = root.section("session", r, |s, r| session::read_session(s, base, r));

    let identity = root.section("identity", r, identity::read_identity);

    let headers = root.section("headers", r, headers::read_headers);

    let cors = root.section("cors", r, cors::read_cors);
    let rate_limit = root.section("rate_limit", r, |s, r| {
        rate_limit::read_rate_limit(s, base, env, r)
    });

    let mut routes = Vec::new();
    if let Some(list) = root.table_list("route", r) {
        for mut sec in list {
            if let Some(route) = route::read_route(
                &mut sec,
                &upstreams,
                access_default.as_ref(),
                server.as_ref(),
                &headers,
                r,
            ) {
                routes.push(route);
            }
            sec.finish(r);
        }
    }

    let emergency = root.section("emergency", r, |s, r| emergency::read_emergency(s, env, r));
    if let (Some(e), Some(sec)) = (&emergency, &secrets) {
        if e.enabled
            && sec.emergency.is_none()
            && !r.errors.iter().any(|e| e.key == "secrets.emergency")
        {
            r.error(
                "emergency.enabled",
                "the gate needs secrets.emergency (e.g. \"env:PORTCULLIS_EMERGENCY_SECRET\", 32+ characters)",
            );
        }
        if e.enabled
            && sec.session_keys.is_none()
            && !r.errors.iter().any(|e| e.key == "secrets.session_keys")
        {
            r.error(
                "emergency.enabled",
                "the gate needs secrets.session_keys (its forms are CSRF-protected with them)",
            );
        }
    }

    // Login and role rules need the keys that sign sessions.
    let secrets = secrets.unwrap_or_default();
    if secrets.session_keys.is_none() && !r.errors.iter().any(|e| e.key == "secrets.session_keys") {
        let needs = std::iter::once(("access.default".to_string(), access_default.as_ref()))
            .chain(
                routes
                    .iter()
                    .enumerate()
                    .map(|(i, rt)| (format!("route[{i}].access"), Some(&rt.access))),
            )
            .find(|(_, a)| matches!(a, Some(Access::Login | Access::Roles(_))));
        if let Some((key, _)) = needs {
            r.error(
                key,
                "\"login\" and \"role:\" need secrets.session_keys (e.g. \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`)",
            );
        }
    }
    let server = server?;
    let tls = tls?;
    if tls.mode == TlsMode::Off {
        if server.https.is_some() {
            r.error("server.https", "tls.mode = \"off\" serves plain HTTP on server.http; remove server.https or choose a TLS mode");
        }
        if server.http.is_none() {
            r.error(
                "server.http",
                "required when tls.mode = \"off\" (the platform in front sends plain HTTP here)",
            );
        }
    } else if server.https.is_none() {
        r.error(
            "server.https",
            "required (the TLS listener, e.g. \"0.0.0.0:443\")",
        );
    }
    if matches!(&tls.mode, TlsMode::Acme(m) if m.challenge == Challenge::Http01)
        && server.http.is_none()
    {
        r.error(
            "server.http",
            "required with tls.mode = \"acme\" and challenge = \"http-01\": the CA checks HTTP-01 challenges there (reachable as port 80)",
        );
    }
    Some(Config {
        file: PathBuf::new(),
        server,
        tls,
        upstreams,
        secrets,
        session: session?,
        identity: identity?,
        access_default: access_default?,
        routes,
        headers,
        cors: cors?,
        rate_limit: rate_limit?,
        emergency: emergency?,
    })
}

#[cfg(test)]
mod tests;
