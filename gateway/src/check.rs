//! `portcullis check`: validate everything `run` would, serve nothing.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config, HeaderSet, SecurityHeader, TlsMode};

pub fn run(path: &Path, online: bool) -> ExitCode {
    let (cfg, warnings) = match config::load(path, &crate::env_lookup) {
        Ok(l) => (l.config, l.warnings),
        Err(report) => {
            for e in &report.errors {
                eprintln!("{e}");
            }
            return ExitCode::from(crate::EXIT_INVALID);
        }
    };
    let safety = config::startup_safety(&cfg);
    let mut errors: Vec<String> = safety.errors.iter().map(|e| e.to_string()).collect();
    // Certificate sources are read, but nothing is written: a self-signed
    // certificate is only created by `run`.
    if let TlsMode::Files { cert, key } = &cfg.tls.mode {
        if let Err(e) = certs::files::load(cert, key) {
            errors.push(crate::certificates::error_line(&cfg, &e));
        }
    }
    let store_line = store_line(&cfg, online, &mut errors);
    let login_lines = login_lines(&cfg, online, &mut errors);
    let acme_line = if online {
        online_checks(&cfg, &mut errors)
    } else {
        acme_line(&cfg, "; --online to reach it")
    };
    for w in warnings.iter().chain(&safety.warnings) {
        eprintln!("warning: {w}");
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        return ExitCode::from(crate::EXIT_INVALID);
    }
    print!("{}", routes_table(&cfg));
    print!("{}", headers_report(&cfg));
    match &cfg.rate_limit.redis {
        None => println!("rate limits: in process (store = \"memory\")"),
        Some(r) => println!(
            "rate limits: shared in Redis at {} (on_store_error = \"{}\"{})",
            r.info.addr(),
            r.on_error.as_str(),
            if online {
                ", reachable"
            } else {
                "; --online to ping it"
            }
        ),
    }
    if online {
        for line in instance_lines(&cfg) {
            println!("{line}");
        }
    }
    let ids = &cfg.identity;
    println!(
        "identity headers (preset \"{}\"): {}, {}, {}{}{}",
        ids.preset.as_str(),
        ids.user_header,
        ids.roles_header,
        ids.email_header,
        ids.name_header
            .as_deref()
            .map_or(String::new(), |n| format!(", {n}")),
        match (ids.assertion, cfg.secrets.assertion_key.is_some()) {
            (Some(config::AssertionAlg::Keys(alg)), _) => format!(
                ", {} ({}, keys in the identity store, issuer {})",
                ids.assertion_header,
                alg.as_str(),
                config::issuer(ids, &cfg.tls, &cfg.routes).unwrap_or_default()
            ),
            (_, true) => format!(", {} (HS256)", ids.assertion_header),
            (_, false) => String::new(),
        }
    );
    println!("{store_line}");
    for line in &login_lines {
        println!("{line}");
    }
    if let Some(line) = acme_line {
        println!("{line}");
    }
    println!("{}: ok", cfg.file.display());
    ExitCode::SUCCESS
}

/// The identity store line; `--online` opens it read-only and reports the
/// schema version (or a refusal, as an error).
fn store_line(cfg: &Config, online: bool, errors: &mut Vec<String>) -> String {
    if cfg.secrets.session_keys.is_none() && cfg.secrets.emergency.is_none() {
        return "identity store: not used (no session keys, no emergency secret)".to_string();
    }
    let url = &cfg.store.url.value;
    let shown = url
        .strip_prefix("sqlite:")
        .map(|f| format!("SQLite file {f} (embedded, one instance)"))
        .unwrap_or_else(|| "PostgreSQL (shared)".to_string());
    if !online {
        return format!("identity store: {shown}; --online to open it");
    }
    let inspected = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(identity::Store::inspect(url))
                .map_err(|e| e.to_string())
        });
    match inspected {
        Ok((at, Some(v))) => format!(
            "identity store: {at}, schema version {v} (this build: {})",
            identity::schema::LATEST
        ),
        Ok((at, None)) => format!("identity store: {at}, not created yet (`run` creates it)"),
        Err(e) => {
            errors.push(format!("{}: store.url: {e}", cfg.file.display()));
            String::new()
        }
    }
}

/// `[login]`: one line for the password form, one per provider; with
/// `--online` each provider's discovery document and keys are fetched
/// (a provider that cannot be reached is an error).
fn login_lines(cfg: &Config, online: bool, errors: &mut Vec<String>) -> Vec<String> {
    let login = &cfg.login;
    let signup = match login.signup {
        config::Signup::Open => "open",
        config::Signup::Invite => "invite",
        config::Signup::Existing => "existing",
    };
    let mut out = vec![format!(
        "sign-in: password {}, {} provider(s), signup \"{signup}\"",
        if login.password { "on" } else { "off" },
        login.providers.len()
    )];
    if login.providers.is_empty() {
        return out;
    }
    let providers = match crate::oauth::Providers::build(login) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("{}: {e}", cfg.file.display()));
            return out;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors.push(format!("cannot start an async runtime: {e}"));
            return out;
        }
    };
    for p in &providers.list {
        if !online {
            out.push(format!(
                "  provider {} ({}); --online to reach it",
                p.id, p.name
            ));
            continue;
        }
        match rt.block_on(p.probe()) {
            Ok(found) => out.push(format!("  provider {} ({}): {found}", p.id, p.name)),
            Err(e) => errors.push(format!(
                "{}: login.provider {:?}: {e}",
                cfg.file.display(),
                p.id
            )),
        }
    }
    out
}

/// The certificates line of an ACME config, ending in `tail`.
fn acme_line(cfg: &Config, tail: &str) -> Option<String> {
    let TlsMode::Acme(acme) = &cfg.tls.mode else {
        return None;
    };
    let challenge = match acme.challenge {
        config::Challenge::Http01 => "http-01 on the http listener",
        config::Challenge::TlsAlpn01 => "tls-alpn-01 on the https listener",
    };
    let kept = if crate::config::is_shared_store(&cfg.store.url.value) {
        "state in the shared store, for several instances"
    } else {
        "state in files under tls.storage"
    };
    Some(format!(
        "certificates: ACME from {} ({challenge}; {kept}){tail}",
        acme.directory
    ))
}

/// `--online`: the shared store answers, the ACME directory is usable.
/// Returns the certificates line.
fn online_checks(cfg: &Config, errors: &mut Vec<String>) -> Option<String> {
    let file = cfg.file.display();
    if let Some(conf) = &cfg.rate_limit.redis {
        if let Err(e) = ping_redis(conf) {
            errors.push(format!(
                "{file}: rate_limit.redis: cannot reach the store: {e}"
            ));
        }
    }
    let TlsMode::Acme(acme) = &cfg.tls.mode else {
        return None;
    };
    match probe_directory(acme) {
        Ok(info) if info.renewal_info => {
            acme_line(cfg, ", reachable, offers renewal information (ARI)")
        }
        Ok(_) => acme_line(cfg, ", reachable"),
        Err(e) => {
            errors.push(format!(
                "{file}: tls.directory: cannot use the ACME directory: {e}"
            ));
            acme_line(cfg, "")
        }
    }
}

/// Why an `--online` probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot start an async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Ping(#[from] crate::store::PingError),
    #[error(transparent)]
    Acme(#[from] certs::acme::AcmeError),
}

fn block_on<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, ProbeError>
where
    ProbeError: From<E>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    Ok(rt.block_on(f)?)
}

/// `--online` with Redis: the live instances, one line each, compared with
/// this file's policy.
fn instance_lines(cfg: &Config) -> Vec<String> {
    let Some(conf) = &cfg.rate_limit.redis else {
        return vec![
            "instances: not tracked (they publish heartbeats only with [rate_limit] store = \"redis\")"
                .to_string(),
        ];
    };
    let mine = config::fingerprint(cfg);
    let beats = crate::store::RedisStore::new(conf)
        .map_err(ProbeError::from)
        .and_then(|store| {
            block_on(async move {
                crate::instances::live(&store)
                    .await
                    .ok_or(crate::store::PingError::Timeout {
                        target: conf.info.addr().to_string(),
                        within: crate::store::RESPONSE_TIMEOUT,
                    })
            })
        });
    let beats = match beats {
        Ok(b) => b,
        Err(e) => return vec![format!("instances: cannot list them: {e}")],
    };
    let now = crate::state::now();
    let mut lines = Vec::with_capacity(beats.len() + 1);
    let mut other = 0;
    for b in &beats {
        let verdict = match b.differs_from(&mine) {
            None => "same policy as this file".to_string(),
            Some(sections) => {
                other += 1;
                format!("DIFFERS in {}", sections.join(", "))
            }
        };
        lines.push(format!(
            "  {}  {}  {}  pid {}  v{}  up {}s  {verdict}",
            b.id,
            b.host,
            b.listen,
            b.pid,
            b.version,
            now.saturating_sub(b.started)
        ));
    }
    lines.insert(
        0,
        format!(
            "instances: {} live on this Redis, {other} with another policy than this file",
            beats.len()
        ),
    );
    lines
}

fn ping_redis(conf: &config::RedisConf) -> Result<(), ProbeError> {
    let store = crate::store::RedisStore::new(conf)?;
    block_on(store.ping())
}

fn probe_directory(acme: &config::AcmeMode) -> Result<certs::acme::DirectoryInfo, ProbeError> {
    block_on(certs::acme::probe_directory(
        &acme.directory,
        acme.ca_pem.as_deref(),
    ))
}

/// The effective routes, in match order, unmatched paths last.
pub fn routes_table(cfg: &Config) -> String {
    let mut rows = vec![[
        "#".to_string(),
        "HOST".to_string(),
        "PATH".to_string(),
        "METHODS".to_string(),
        "ACCESS".to_string(),
        "UPSTREAM".to_string(),
        "MAX_BODY".to_string(),
    ]];
    for (i, r) in cfg.routes.iter().enumerate() {
        rows.push([
            (i + 1).to_string(),
            r.host.clone().unwrap_or_else(|| "*".into()),
            r.path.clone(),
            r.methods.as_ref().map_or("*".into(), |m| m.join(",")),
            r.access.as_string(),
            cfg.upstreams[r.upstream].name.clone(),
            human_size(r.max_body),
        ]);
    }
    rows.push([
        "-".into(),
        "*".into(),
        "(unmatched)".into(),
        "*".into(),
        cfg.access_default.as_string(),
        if cfg.upstreams.len() == 1 {
            cfg.upstreams[0].name.clone()
        } else {
            "(404)".into()
        },
        human_size(cfg.server.max_body),
    ]);
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The effective security headers: the global set, then every route whose
/// set differs (route overrides merge key by key into the global set).
pub fn headers_report(cfg: &Config) -> String {
    let mut out = String::from("\nHEADERS (* = the app's own value wins; HSTS only over https)\n");
    let mut section = |label: &str, set: &HeaderSet| {
        out.push_str(&format!("{label}\n"));
        for h in SecurityHeader::ALL {
            let star = if set.app_may_override(h) { "*" } else { " " };
            match set.value(h) {
                Some(v) => out.push_str(&format!("  {star} {}: {v}\n", h.header_name())),
                None => out.push_str(&format!("  {star} {}: (not set)\n", h.header_name())),
            }
        }
        if !set.remove().is_empty() {
            out.push_str(&format!("    removed: {}\n", set.remove().join(", ")));
        }
    };
    section("all routes:", &cfg.headers);
    for (i, r) in cfg.routes.iter().enumerate() {
        if r.headers != cfg.headers {
            section(&format!("route #{} {}:", i + 1, r.path), &r.headers);
        }
    }
    out
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KB", n >> 10),
        n => format!("{n}B"),
    }
}
