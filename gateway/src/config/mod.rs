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
mod fingerprint;
mod headers;
mod identity;
mod login;
mod rate_limit;
mod reader;
mod route;
mod secret;
mod secrets;
mod server;
mod session;
mod store;
mod tls;
pub mod units;
mod upstream;
mod validate;

use std::path::{Path, PathBuf};

pub use emergency::{Emergency, EMERGENCY_GLOBAL_ATTEMPTS, EMERGENCY_GLOBAL_WINDOW};
pub use fingerprint::fingerprint;
pub use identity::{AssertionAlg, IdentityConf, PRESET_HEADERS};
pub use login::{GithubConf, LoginConf, OidcConf, Protocol, ProviderConf, Signup};
pub use rate_limit::{OnStoreError, RateLimitConf, RedisConf};
pub(crate) use reader::Section;
pub use reader::{ConfigError, Report};
pub use route::{RateKey, Route};
pub use secret::{Secret, SecretSource};
pub use secrets::Secrets;
pub use server::Server;
pub use session::{SameSite, SessionConf};
pub use store::{is_shared_store, read_only_store, StoreConf, DEFAULT_FILE as DEFAULT_STORE_FILE};
pub use tls::{AcmeMode, Challenge, Tls, TlsMode};
pub use upstream::Upstream;
pub use validate::startup_safety;

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
    pub store: StoreConf,
    pub identity: IdentityConf,
    /// `[login]`: passwords, providers, sign-up.
    pub login: LoginConf,
    /// `[access] default`: access for routes without `access` and unmatched paths.
    pub access_default: Access,
    pub routes: Vec<Route>,
    /// `[headers]` over the documented defaults; routes merge their overrides into it.
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
                .map(|s| {
                    let before = text.get(..s.start).unwrap_or(text);
                    format!("line {}: ", before.lines().count().max(1))
                })
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

/// Reads every section, then checks the rules that span them.
fn read_root(
    root: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Config> {
    let server = root.section("server", r, server::read_server);
    let tls = root.section("tls", r, |s, r| tls::read_tls(s, base, r));
    let upstreams = upstream::read_upstreams(root, r);
    let secrets = root.section("secrets", r, |s, r| secrets::read_secrets(s, base, env, r));
    let access_default = root.section("access", r, route::read_access);
    let session = root.section("session", r, |s, r| session::read_session(s, base, r));
    let storage = tls.as_ref().map_or_else(
        || PathBuf::from(tls::DEFAULT_STORAGE),
        |t| t.storage.clone(),
    );
    let store = root.section("store", r, |s, r| {
        store::read_store(s, base, &storage, env, r)
    });
    let identity = root.section("identity", r, identity::read_identity);
    let login = root.section("login", r, |s, r| login::read_login(s, base, env, r));
    let headers = root.section("headers", r, headers::read_headers);
    let cors = root.section("cors", r, cors::read_cors);
    let rate_limit = root.section("rate_limit", r, |s, r| {
        rate_limit::read_rate_limit(s, base, env, r)
    });
    let inherited = route::Inherited {
        upstreams: &upstreams,
        access: access_default.as_ref(),
        server: server.as_ref(),
        headers: &headers,
    };
    let routes = route::read_routes(root, &inherited, r);
    let emergency = root.section("emergency", r, |s, r| emergency::read_emergency(s, env, r));
    let sections = validate::Sections {
        server: server.as_ref(),
        tls: tls.as_ref(),
        secrets: secrets.as_ref(),
        access_default: access_default.as_ref(),
        routes: &routes,
        emergency: emergency.as_ref(),
        login: login.as_ref(),
        identity: identity.as_ref(),
    };
    validate::cross_section(&sections, r);
    Some(Config {
        file: PathBuf::new(),
        server: server?,
        tls: tls?,
        upstreams,
        secrets: secrets.unwrap_or_default(),
        session: session?,
        store: store?,
        identity: identity?,
        login: login?,
        access_default: access_default?,
        routes,
        headers,
        cors: cors?,
        rate_limit: rate_limit?,
        emergency: emergency?,
    })
}

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod tests;

/// The assertion's `iss`: `[identity] issuer`, else `https://` and the
/// first `[tls] domains` entry, else the first route host.
pub fn issuer(identity: &IdentityConf, tls: &Tls, routes: &[Route]) -> Option<String> {
    identity.issuer.clone().or_else(|| {
        tls.domains
            .first()
            .or_else(|| routes.iter().find_map(|r| r.host.as_ref()))
            .map(|d| format!("https://{d}"))
    })
}
