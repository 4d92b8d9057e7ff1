//! The config file: TOML in, validated [`Config`] out, or every error found.
//!
//! Nothing here runs at request time. Strings are parsed once into typed
//! values; [`crate::runtime`] compiles the result into the serving state.

mod reader;
mod safety;
mod secret;
pub mod units;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub(crate) use reader::Section;
pub use reader::{ConfigError, Report};
pub use safety::startup_safety;
pub use secret::{Secret, SecretSource};

/// Default `[server] max_body`.
const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// The most a request body can be buffered before the upstream is contacted:
/// pingora's retry buffer, which replays it to the upstream, holds 64 KiB.
pub const MAX_BUFFER_BODY: u64 = 64 << 10;
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// 1 KiB/s: far below any real uplink, far above a deliberate trickle.
const DEFAULT_BODY_MIN_RATE: u64 = 1 << 10;
/// Default `[tls] storage`.
const DEFAULT_STORAGE: &str = "/var/lib/portcullis";

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

/// `[rate_limit]`.
#[derive(Debug)]
pub struct RateLimitConf {
    /// `None`: the in-process store; `Some`: shared through Redis.
    pub redis: Option<RedisConf>,
    /// Per client IP over all traffic; `None` for "off".
    pub default: Option<Rate>,
    /// Login attempts per IP and per user name; `None` for "off".
    pub login: Option<Rate>,
}

/// `[emergency]`: the break-glass gate.
#[derive(Debug, Clone)]
pub struct Emergency {
    /// After `PORTCULLIS_EMERGENCY_ENABLED`, which wins over the file.
    pub enabled: bool,
    pub ttl: Duration,
    pub roles: Vec<String>,
    /// Empty: any client IP.
    pub allow_from: Vec<IpNet>,
    /// Attempts per client IP.
    pub attempts: Rate,
}

/// The emergency gate's global cap: this many attempts per window from all
/// clients together, then every attempt is 429 until the window passes.
pub const EMERGENCY_GLOBAL_ATTEMPTS: u32 = 20;
/// The window of [`EMERGENCY_GLOBAL_ATTEMPTS`].
pub const EMERGENCY_GLOBAL_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest emergency session.
pub const EMERGENCY_MAX_TTL: Duration = Duration::from_secs(3600);
/// The environment variable that overrides `[emergency] enabled`.
pub const EMERGENCY_ENV: &str = "PORTCULLIS_EMERGENCY_ENABLED";

/// `store = "redis"`: where, and what to do while it is unreachable.
#[derive(Clone)]
pub struct RedisConf {
    /// Parsed at load; holds the password, if any (never logged).
    pub info: redis::ConnectionInfo,
    pub on_error: OnStoreError,
}

impl std::fmt::Debug for RedisConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConf")
            .field("addr", &self.info.addr().to_string())
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// `on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve as if the limit allowed it (availability over limiting).
    Allow,
    /// Refuse with 503 (limiting over availability).
    Deny,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        }
    }
}

/// What a route's `rate_limit` counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    Ip,
    /// The session's user; the client IP without a session.
    User,
    /// A request header (lowercase); the client IP when it is missing.
    Header(String),
}

#[derive(Debug)]
pub struct Server {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// `/metrics`, `/healthz`, `/readyz`; plain HTTP, meant for loopback or a private network.
    pub ops: Option<SocketAddr>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    SelfSigned,
    /// Certificates from an ACME CA (HTTP-01 on the http listener, or
    /// TLS-ALPN-01 on the https listener).
    Acme(AcmeMode),
    /// A platform in front terminates TLS; `trusted_proxies` say the scheme.
    Off,
}

/// `tls.mode = "acme"`: the CA and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeMode {
    /// Directory URL (https).
    pub directory: String,
    pub email: Option<String>,
    /// `ca`: PEM roots also trusted for the CA's HTTPS, read at load.
    pub ca_pem: Option<Vec<u8>>,
    /// `challenge`: HTTP-01 (default) or TLS-ALPN-01.
    pub challenge: Challenge,
}

/// `tls.challenge`. Kept here rather than taken from `certs` so that the
/// config module stays free of other crates' types (the `config` fuzz target
/// compiles it alone); `gateway::acme` maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 on the http listener.
    Http01,
    /// TLS-ALPN-01 on the https listener.
    TlsAlpn01,
}

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug)]
pub struct Tls {
    pub mode: TlsMode,
    pub domains: Vec<String>,
    pub storage: PathBuf,
}

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

#[derive(Debug, Default)]
pub struct Secrets {
    /// First signs, all verify.
    pub session_keys: Option<Secret<Vec<Vec<u8>>>>,
    /// Only the derived verifier is kept; the secret itself is zeroed at load.
    pub emergency: Option<Secret<std::sync::Arc<policies::emergency::Verifier>>>,
    pub assertion_key: Option<Secret<Vec<u8>>>,
}

pub use policies::access::Access;
pub use policies::cors::CorsPolicy;
pub use policies::headers::{HeaderSet, SecurityHeader};
pub use policies::ratelimit::Rate;

#[derive(Debug)]
pub struct Route {
    pub path: String,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub access: Access,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub max_body: u64,
    /// The global headers with this route's overrides merged key by key.
    pub headers: HeaderSet,
    pub rate_limit: Option<(Rate, RateKey)>,
    /// Keep `X-HTTP-Method-Override` and its siblings (`policies::method`).
    pub method_override: bool,
    /// `[server] buffer_body` unless the route sets its own.
    pub buffer_body: u64,
}

/// `SameSite` of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `[session]`: local accounts and cookie lifetimes.
#[derive(Debug)]
pub struct SessionConf {
    pub users: PathBuf,
    /// Absolute lifetime.
    pub ttl: Duration,
    /// Sliding lifetime: a session unused this long is over.
    pub idle: Duration,
    pub same_site: SameSite,
}

/// `[identity]`: headers the upstream receives for a session.
#[derive(Debug)]
pub struct IdentityConf {
    pub user_header: String,
    pub roles_header: String,
    pub assertion_header: String,
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
    let server = root.section("server", r, read_server);

    let tls = root.section("tls", r, |s, r| read_tls(s, base, r));

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

    let secrets = root.section("secrets", r, |s, r| read_secrets(s, base, env, r));

    let access_default = root.section("access", r, |sec, r| match sec.str("default", r) {
        Some(s) => parse_access(s, &sec.key("default"), r),
        None => Some(Access::Login),
    });

    let session = root.section("session", r, |s, r| read_session(s, base, r));

    let identity = root.section("identity", r, read_identity);

    let headers = root.section("headers", r, read_headers);

    let cors = root.section("cors", r, read_cors);
    let rate_limit = root.section("rate_limit", r, |s, r| read_rate_limit(s, base, env, r));

    let mut routes = Vec::new();
    if let Some(list) = root.table_list("route", r) {
        for mut sec in list {
            if let Some(route) = read_route(
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

    let emergency = root.section("emergency", r, |s, r| read_emergency(s, env, r));
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

fn read_emergency(sec: &mut Section<'_>, env: EnvLookup<'_>, r: &mut Report) -> Option<Emergency> {
    let errors_before = r.errors.len();
    let mut enabled = sec.bool("enabled", r).unwrap_or(false);
    match env(EMERGENCY_ENV).as_deref() {
        None => {}
        Some("true") => enabled = true,
        Some("false") => enabled = false,
        Some(other) => r.error(
            "emergency.enabled",
            format!("environment variable {EMERGENCY_ENV} is {other:?}; use \"true\" or \"false\""),
        ),
    }
    let ttl = duration(sec, "ttl", r).unwrap_or(Duration::from_secs(15 * 60));
    if ttl.is_zero() || ttl > EMERGENCY_MAX_TTL {
        r.error(sec.key("ttl"), "must be more than 0 and at most 1h");
    }
    let roles: Vec<String> = match sec.str_list("roles", r) {
        None => vec!["admin".to_string()],
        Some(list) => list.iter().map(|s| s.trim().to_string()).collect(),
    };
    if roles.is_empty() {
        r.error(
            sec.key("roles"),
            "needs at least one role (e.g. [\"admin\"])",
        );
    }
    if let Some(bad) = roles.iter().find(|x| !policies::access::valid_role_name(x)) {
        r.error(
            sec.key("roles"),
            format!("invalid role name {bad:?}: use A-Z a-z 0-9 . _ -"),
        );
    }
    let mut allow_from = Vec::new();
    for (i, s) in sec
        .str_list("allow_from", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match parse_cidr(s) {
            Some(net) => allow_from.push(net),
            None => r.error(
                format!("{}[{i}]", sec.key("allow_from")),
                format!("{s:?} is not an IP address or CIDR (e.g. \"203.0.113.0/24\")"),
            ),
        }
    }
    let attempts = match Rate::parse(sec.str("attempts", r).unwrap_or("5/15m")) {
        Ok(rate) => Some(rate),
        Err(e) => {
            r.error(sec.key("attempts"), e.to_string());
            None
        }
    };
    (r.errors.len() == errors_before).then_some(Emergency {
        enabled,
        ttl,
        roles,
        allow_from,
        attempts: attempts?,
    })
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

fn read_server(sec: &mut Section<'_>, r: &mut Report) -> Option<Server> {
    let errors_before = r.errors.len();
    let https = listen_addr(sec, "https", r);
    let http = listen_addr(sec, "http", r);
    let ops = listen_addr(sec, "ops", r);
    if let Some(a) = ops {
        if !a.ip().is_loopback() {
            r.warn(
                sec.key("ops"),
                format!("{a} is not loopback: keep it off the internet (firewall or a private interface); /metrics shows route names and traffic"),
            );
        }
        if Some(a) == https || Some(a) == http {
            r.error(
                sec.key("ops"),
                "must differ from server.https and server.http",
            );
        }
    }
    let threads = match sec.int("threads", r) {
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            r.error(
                sec.key("threads"),
                format!("{n} is out of range (1 to 256)"),
            );
            1
        }
        None => 2,
    };
    let mut trusted_proxies = Vec::new();
    for (i, c) in sec
        .str_list("trusted_proxies", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match parse_cidr(c) {
            Some(net) => trusted_proxies.push(net),
            None => r.error(
                format!("{}[{i}]", sec.key("trusted_proxies")),
                format!(
                    "{c:?} is not an IP address or CIDR (e.g. \"10.0.0.0/8\", \"2001:db8::/32\")"
                ),
            ),
        }
    }
    let max_body = size(sec, "max_body", r).unwrap_or(DEFAULT_MAX_BODY);
    let case_insensitive_paths = sec.bool("case_insensitive_paths", r).unwrap_or(false);
    let buffer_body = buffer_size(sec, r).unwrap_or(MAX_BUFFER_BODY);
    // parse_duration refuses zero.
    let body_timeout = duration(sec, "body_timeout", r).unwrap_or(DEFAULT_BODY_TIMEOUT);
    let body_min_rate = size(sec, "body_min_rate", r).unwrap_or(DEFAULT_BODY_MIN_RATE);
    let mut pass_client_headers = Vec::new();
    for (i, name) in sec
        .str_list("pass_client_headers", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match policies::forwarding::spoofable_header(name) {
            Some(h) => pass_client_headers.push(h),
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
    (r.errors.len() == errors_before).then_some(Server {
        pass_client_headers,
        buffer_body,
        body_timeout,
        body_min_rate,
        ops,
        https,
        http,
        threads,
        trusted_proxies,
        max_body,
        case_insensitive_paths,
    })
}

/// A CIDR, or a bare address meaning just that host.
fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn size(sec: &mut Section<'_>, key: &'static str, r: &mut Report) -> Option<u64> {
    let s = sec.str(key, r)?;
    units::parse_size(s)
        .map_err(|e| r.error(sec.key(key), e))
        .ok()
}

/// `buffer_body`: a size up to [`MAX_BUFFER_BODY`], or `"0"` for none.
fn buffer_size(sec: &mut Section<'_>, r: &mut Report) -> Option<u64> {
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

fn duration(sec: &mut Section<'_>, key: &'static str, r: &mut Report) -> Option<Duration> {
    let s = sec.str(key, r)?;
    units::parse_duration(s)
        .map_err(|e| r.error(sec.key(key), e))
        .ok()
}

fn read_tls(sec: &mut Section<'_>, base: &Path, r: &mut Report) -> Option<Tls> {
    let errors_before = r.errors.len();
    let mode_s = sec.str("mode", r).unwrap_or("acme");
    let mut domains = Vec::new();
    for (i, d) in sec
        .str_list("domains", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        // IP addresses are valid names for self-signed and file certificates.
        if valid_domain(&d) || d.parse::<IpAddr>().is_ok() {
            domains.push(d);
        } else {
            r.error(
                format!("{}[{i}]", sec.key("domains")),
                format!("{d:?} is not a valid domain name"),
            );
        }
    }
    let storage = sec
        .str("storage", r)
        .map(|s| base.join(s))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORAGE));
    let cert = sec.str("cert", r).map(|s| base.join(s));
    let key = sec.str("key", r).map(|s| base.join(s));
    let mode = match mode_s {
        "files" => match (cert.clone(), key.clone()) {
            (Some(cert), Some(key)) => Some(TlsMode::Files { cert, key }),
            (c, k) => {
                if c.is_none() {
                    r.error(sec.key("cert"), "required when tls.mode = \"files\"");
                }
                if k.is_none() {
                    r.error(sec.key("key"), "required when tls.mode = \"files\"");
                }
                None
            }
        },
        "self-signed" => Some(TlsMode::SelfSigned),
        "off" => Some(TlsMode::Off),
        "acme" => read_acme(sec, base, &domains, r).map(TlsMode::Acme),
        other => {
            r.error(
                sec.key("mode"),
                format!("{other:?} is not one of \"acme\", \"files\", \"self-signed\", \"off\""),
            );
            None
        }
    };
    if !matches!(mode, Some(TlsMode::Files { .. })) {
        for k in ["cert", "key"] {
            if sec.has(k) && mode.is_some() {
                r.error(sec.key(k), "only used with tls.mode = \"files\"");
            }
        }
    }
    if !matches!(mode, Some(TlsMode::Acme(_))) {
        for k in ["email", "directory", "ca", "challenge"] {
            if sec.has(k) && mode.is_some() {
                r.error(sec.key(k), "only used with tls.mode = \"acme\"");
            }
        }
    }
    (r.errors.len() == errors_before).then(|| Tls {
        mode: mode.unwrap_or(TlsMode::Off),
        domains,
        storage,
    })
}

fn read_acme(
    sec: &mut Section<'_>,
    base: &Path,
    domains: &[String],
    r: &mut Report,
) -> Option<AcmeMode> {
    let errors_before = r.errors.len();
    if domains.is_empty() && !r.errors.iter().any(|e| e.key.starts_with("tls.domains")) {
        r.error(
            sec.key("domains"),
            "required with tls.mode = \"acme\": the names to get a certificate for",
        );
    }
    if let Some(d) = domains.iter().find(|d| d.starts_with("*.")) {
        r.error(
            sec.key("domains"),
            format!("{d:?}: wildcard certificates need the DNS-01 challenge, which portcullis does not do"),
        );
    }
    let directory = sec
        .str("directory", r)
        .unwrap_or(LETS_ENCRYPT)
        .trim()
        .to_string();
    if !directory.starts_with("https://") || directory.len() <= "https://".len() {
        r.error(
            sec.key("directory"),
            format!("{directory:?} is not an https:// URL"),
        );
    }
    let email = sec.str("email", r).map(|e| e.trim().to_string());
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty()
                && d.contains('.')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !ok {
            r.error(sec.key("email"), format!("{e:?} is not an e-mail address"));
        }
    }
    let ca_pem = sec.str("ca", r).and_then(|p| {
        let path = base.join(p);
        match std::fs::read(&path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                r.error(
                    sec.key("ca"),
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
            Err(e) => {
                r.error(
                    sec.key("ca"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let challenge = match sec.str("challenge", r) {
        None | Some("http-01") => Challenge::Http01,
        Some("tls-alpn-01") => {
            if let Some(ip) = domains.iter().find(|d| d.parse::<IpAddr>().is_ok()) {
                r.error(
                    sec.key("challenge"),
                    format!("\"tls-alpn-01\" validates DNS names only here; {ip:?} in tls.domains needs \"http-01\""),
                );
            }
            Challenge::TlsAlpn01
        }
        Some(other) => {
            r.error(
                sec.key("challenge"),
                format!("{other:?} is not one of \"http-01\", \"tls-alpn-01\""),
            );
            Challenge::Http01
        }
    };
    (r.errors.len() == errors_before).then_some(AcmeMode {
        directory,
        email,
        ca_pem,
        challenge,
    })
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
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
    let health = sec.str("health", r).and_then(|h| {
        if h.starts_with('/') && !h.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            Some(h.to_string())
        } else {
            r.error(
                sec.key("health"),
                format!("{h:?} must be a path starting with '/'"),
            );
            None
        }
    });
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

fn read_secrets(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Secrets> {
    let mut out = Secrets::default();
    if let Some(s) = sec.str("session_keys", r) {
        let key = sec.key("session_keys");
        out.session_keys = secret::resolve(s, base, env).map_err(|e| r.error(&key, e)).ok().and_then(|sec| {
            let keys: Vec<Vec<u8>> = String::from_utf8_lossy(&sec.value)
                .split(',')
                .map(|k| k.trim().as_bytes().to_vec())
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                r.error(&key, "no keys found (a comma-separated list; generate one with `portcullis secret`)");
                return None;
            }
            if let Some((i, k)) = keys.iter().enumerate().find(|(_, k)| k.len() < 32) {
                r.error(&key, format!("key #{} is {} bytes; each needs at least 32 (generate one with `portcullis secret`)", i + 1, k.len()));
                return None;
            }
            Some(sec.map(|_| keys))
        });
    }
    if let Some(s) = sec.str("assertion_key", r) {
        let key = sec.key("assertion_key");
        out.assertion_key = secret::resolve(s, base, env)
            .map_err(|e| r.error(&key, e))
            .ok()
            .map(|s| s.map(|v| v.trim_ascii_end().to_vec()));
    }
    if let Some(s) = sec.str("emergency", r) {
        let key = sec.key("emergency");
        let resolved = secret::resolve(s, base, env);
        if let Err(e) = &resolved {
            r.error(&key, e.clone());
        }
        if let Ok(mut raw) = resolved {
            let secret = raw.value.trim_ascii_end();
            if secret.len() < 32 {
                r.error(
                    &key,
                    format!("is {} characters; it needs at least 32", secret.len()),
                );
            } else {
                out.emergency = Some(Secret {
                    source: raw.source.clone(),
                    value: std::sync::Arc::new(policies::emergency::Verifier::derive(secret)),
                });
            }
            zeroize::Zeroize::zeroize(&mut raw.value);
        }
    }
    if let Some(k) = &out.assertion_key {
        if k.value.len() < 32 {
            r.error(
                sec.key("assertion_key"),
                format!("is {} bytes; it needs at least 32", k.value.len()),
            );
        }
    }
    Some(out)
}

/// A Redis URL, itself possibly a secret reference. A literal URL may not
/// carry a password: the config file is not a secret store.
fn read_redis_url(
    reference: &str,
    key: &str,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<redis::ConnectionInfo> {
    let resolved = secret::resolve(reference, base, env)
        .map_err(|e| r.error(key, e))
        .ok()?;
    let url = String::from_utf8_lossy(resolved.value.trim_ascii()).into_owned();
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| url.starts_with(p));
    if !scheme_ok {
        let shown = if resolved.source == SecretSource::Literal {
            format!("{url:?}")
        } else {
            "the value".to_string()
        };
        r.error(
            key,
            format!("{shown} is not a redis://host:port/db or unix:///path URL (rediss:// TLS is not supported by this build)"),
        );
        return None;
    }
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| r.error(key, format!("not a usable Redis URL: {e}")))
        .ok()?;
    if resolved.source == SecretSource::Literal && info.redis_settings().password().is_some() {
        r.error(
            key,
            "a literal URL with a password is refused; use \"env:PORTCULLIS_REDIS_URL\" or \"file:/path\"",
        );
        return None;
    }
    Some(info)
}

fn parse_access(s: &str, key: &str, r: &mut Report) -> Option<Access> {
    Access::parse(s)
        .map_err(|e| r.error(key, e.to_string()))
        .ok()
}

fn read_session(sec: &mut Section<'_>, base: &Path, r: &mut Report) -> Option<SessionConf> {
    let errors_before = r.errors.len();
    let users = base.join(sec.str("users", r).unwrap_or("users.toml"));
    let ttl = duration(sec, "ttl", r).unwrap_or(Duration::from_secs(12 * 3600));
    let idle = duration(sec, "idle", r).unwrap_or(Duration::from_secs(2 * 3600));
    if idle > ttl {
        r.error(sec.key("idle"), "must not be longer than session.ttl");
    }
    let same_site = match sec.str("same_site", r).unwrap_or("lax") {
        "lax" => SameSite::Lax,
        "strict" => SameSite::Strict,
        "none" => SameSite::None,
        other => {
            r.error(
                sec.key("same_site"),
                format!("{other:?} is not one of \"lax\", \"strict\", \"none\""),
            );
            SameSite::Lax
        }
    };
    (r.errors.len() == errors_before).then_some(SessionConf {
        users,
        ttl,
        idle,
        same_site,
    })
}

/// Headers the gateway sets itself; an identity header may not reuse them.
const RESERVED_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "host",
    "cookie",
];

fn read_identity(sec: &mut Section<'_>, r: &mut Report) -> Option<IdentityConf> {
    let errors_before = r.errors.len();
    let mut name = |key: &'static str, default: &str, r: &mut Report| {
        let v = sec.str(key, r).unwrap_or(default).to_string();
        if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
            r.error(sec.key(key), format!("{v:?} is not a valid header name"));
        } else if RESERVED_HEADERS
            .iter()
            .any(|h| policies::forwarding::header_name_eq(&v, h))
        {
            r.error(
                sec.key(key),
                format!("{v:?} is a header the gateway sets itself"),
            );
        }
        v
    };
    let user_header = name("user_header", "X-Forwarded-User", r);
    let roles_header = name("roles_header", "X-Forwarded-Roles", r);
    let assertion_header = name("assertion_header", "X-Forwarded-Assertion", r);
    (r.errors.len() == errors_before).then_some(IdentityConf {
        user_header,
        roles_header,
        assertion_header,
    })
}

fn read_route(
    sec: &mut Section<'_>,
    upstreams: &[Upstream],
    access_default: Option<&Access>,
    server: Option<&Server>,
    global_headers: &HeaderSet,
    r: &mut Report,
) -> Option<Route> {
    let errors_before = r.errors.len();
    let path = sec.str("path", r);
    if path.is_none() && !sec.has("path") {
        r.error(sec.key("path"), "required, e.g. path = \"/\"");
    }
    let host = sec.str("host", r).map(str::to_string);
    let methods = sec
        .str_list("methods", r)
        .map(|m| m.into_iter().map(str::to_string).collect::<Vec<_>>());
    let access = match sec.str("access", r) {
        Some(s) => parse_access(s, &sec.key("access"), r),
        None => access_default.cloned(),
    };
    let upstream = match sec.str("upstream", r) {
        Some(name) => match upstreams.iter().position(|u| u.name == name) {
            Some(i) => Some(i),
            None => {
                let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                r.error(
                    sec.key("upstream"),
                    format!(
                        "{name:?} is not a configured upstream (have: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        },
        None if upstreams.len() == 1 => Some(0),
        None if upstreams.is_empty() => None,
        None => {
            r.error(
                sec.key("upstream"),
                "required when more than one upstream is configured",
            );
            None
        }
    };
    let max_body = size(sec, "max_body", r);
    let method_override = sec.bool("method_override", r).unwrap_or(false);
    let buffer_body = buffer_size(sec, r);
    let route_rate = sec.str("rate_limit", r).and_then(|s| {
        Rate::parse(s)
            .map_err(|e| r.error(sec.key("rate_limit"), e.to_string()))
            .ok()
    });
    let rate_key = match sec.str("rate_key", r) {
        None | Some("ip") => Some(RateKey::Ip),
        Some("user") => Some(RateKey::User),
        Some(h) if h.starts_with("header:") => {
            let name = &h["header:".len()..];
            if http::HeaderName::from_bytes(name.as_bytes()).is_ok() {
                Some(RateKey::Header(name.to_ascii_lowercase()))
            } else {
                r.error(
                    sec.key("rate_key"),
                    format!("{name:?} is not a header name"),
                );
                None
            }
        }
        Some(other) => {
            r.error(
                sec.key("rate_key"),
                format!("{other:?} is not one of \"ip\", \"user\", \"header:NAME\""),
            );
            None
        }
    };
    if sec.has("rate_key") && !sec.has("rate_limit") {
        r.error(sec.key("rate_key"), "needs rate_limit on the same route");
    }
    let route_headers = match sec.table("headers", r) {
        Some(mut hs) => {
            let values = header_values(&mut hs, r);
            hs.finish(r);
            global_headers
                .with_route_overrides(&values)
                .map_err(|e| r.error(sec.key("headers"), e.to_string()))
                .ok()
        }
        None => Some(global_headers.clone()),
    };
    // Validate the matcher now so a bad prefix is a config error, not a 404 later.
    if let Some(p) = path {
        if let Err(e) = policies::routes::RouteMatcher::new(host.as_deref(), p, methods.clone()) {
            r.error(sec.key("path"), e.to_string());
        }
    }
    if r.errors.len() != errors_before {
        return None;
    }
    Some(Route {
        path: path?.to_string(),
        host,
        methods,
        access: access?,
        upstream: upstream?,
        max_body: max_body
            .or(server.map(|s| s.max_body))
            .unwrap_or(DEFAULT_MAX_BODY),
        headers: route_headers?,
        rate_limit: route_rate.zip(rate_key),
        method_override,
        buffer_body: buffer_body
            .or(server.map(|s| s.buffer_body))
            .unwrap_or(MAX_BUFFER_BODY),
    })
}

fn read_rate_limit(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<RateLimitConf> {
    let errors_before = r.errors.len();
    let on_error = match sec.str("on_store_error", r) {
        None | Some("allow") => Some(OnStoreError::Allow),
        Some("deny") => Some(OnStoreError::Deny),
        Some(other) => {
            r.error(
                sec.key("on_store_error"),
                format!("{other:?} is not one of \"allow\", \"deny\""),
            );
            None
        }
    };
    let url = sec.str("redis", r);
    let redis = match sec.str("store", r) {
        None | Some("memory") => {
            for key in ["redis", "on_store_error"] {
                if sec.has(key) {
                    r.warn(sec.key(key), "has no effect with store = \"memory\"");
                }
            }
            None
        }
        Some("redis") => match url {
            None => {
                r.error(
                    sec.key("redis"),
                    "required with store = \"redis\", e.g. \"env:PORTCULLIS_REDIS_URL\" holding redis://host:6379/0",
                );
                None
            }
            Some(url) => read_redis_url(url, &sec.key("redis"), base, env, r)
                .zip(on_error)
                .map(|(info, on_error)| RedisConf { info, on_error }),
        },
        Some(other) => {
            r.error(
                sec.key("store"),
                format!("{other:?} is not one of \"memory\", \"redis\""),
            );
            None
        }
    };
    let mut rate =
        |key: &'static str, default: &str, r: &mut Report| match sec.str(key, r).unwrap_or(default)
        {
            "off" => None,
            s => Rate::parse(s)
                .map_err(|e| r.error(sec.key(key), e.to_string()))
                .ok(),
        };
    let default = rate("default", "600/minute", r);
    let login = rate("login", "5/minute", r);
    if login.is_none() && sec.has("login") && r.errors.len() == errors_before {
        r.warn(
            sec.key("login"),
            "is \"off\": login attempts are not limited (brute force)",
        );
    }
    (r.errors.len() == errors_before).then_some(RateLimitConf {
        redis,
        default,
        login,
    })
}

/// The seven header keys of a `[headers]` table or a route's `headers`.
fn header_values(sec: &mut Section<'_>, r: &mut Report) -> Vec<(SecurityHeader, String)> {
    SecurityHeader::ALL
        .iter()
        .filter_map(|h| sec.str(h.key(), r).map(|v| (*h, v.to_string())))
        .collect()
}

fn read_headers(sec: &mut Section<'_>, r: &mut Report) -> HeaderSet {
    let values = header_values(sec, r);
    let app_may_override = sec.str_list("app_may_override", r).map(|keys| {
        keys.iter()
            .filter_map(|k| {
                let h = SecurityHeader::from_key(k);
                if h.is_none() {
                    let known: Vec<&str> = SecurityHeader::ALL.iter().map(|h| h.key()).collect();
                    r.error(
                        sec.key("app_may_override"),
                        format!("{k:?} is not one of {}", known.join(", ")),
                    );
                }
                h
            })
            .collect::<Vec<_>>()
    });
    let remove = sec
        .str_list("remove", r)
        .map(|l| l.into_iter().map(str::to_string).collect());
    HeaderSet::configure(&values, app_may_override.as_deref(), remove).unwrap_or_else(|e| {
        r.error("headers", e.to_string());
        HeaderSet::defaults()
    })
}

fn read_cors(sec: &mut Section<'_>, r: &mut Report) -> Option<Option<CorsPolicy>> {
    let owned = |l: Option<Vec<&str>>| {
        l.unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let origins = owned(sec.str_list("allow_origins", r));
    let methods = sec
        .str_list("allow_methods", r)
        .map(|l| l.into_iter().map(str::to_string).collect::<Vec<_>>());
    let methods = methods.unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    let headers = owned(sec.str_list("allow_headers", r));
    let credentials = sec.bool("allow_credentials", r).unwrap_or(false);
    let max_age = duration(sec, "max_age", r).unwrap_or(Duration::from_secs(600));
    if origins.is_empty() {
        return Some(None);
    }
    match CorsPolicy::new(&origins, &methods, &headers, credentials, max_age.as_secs()) {
        Ok(p) => Some(Some(p)),
        Err(e) => {
            r.error("cors", e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests;
