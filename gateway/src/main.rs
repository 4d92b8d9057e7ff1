//! `portcullis`: the binary. Exit codes: 0 success, 1 invalid input or
//! config, 2 runtime failure.

mod access_log;
mod acme;
mod answer;
mod assertion_keys;
mod audit;
mod auth;
mod cert_backend;
mod certificates;
mod check;
mod cli;
mod config;
mod conn_loop;
mod ctx;
mod demo;
mod identity_headers;
mod instances;
mod keys_cmd;
mod limits;
mod metrics;
mod oauth;
mod ops;
mod own_errors;
mod passkeys;
mod passwords;
mod proxy;
mod reload;
mod reserved;
mod respond;
mod response_headers;
mod runtime;
mod serve;
mod stages;
mod state;
mod store;
mod user_cmd;
mod users_file;

/// mimalloc: see gateway/Cargo.toml for why. The `system-alloc` feature
/// leaves the system allocator in place, for heap profilers that hook
/// malloc (benches/load/idle_heap.sh); releases never use it.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Invalid input or config.
const EXIT_INVALID: u8 = 1;

/// Runs a `user` or `keys` command on a one-thread runtime: its message on
/// stdout (if any), or its error on stderr and exit 1.
fn run_store_command<E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<String, E>>,
) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))
        .and_then(|rt| rt.block_on(work).map_err(|e| e.to_string()));
    match outcome {
        Ok(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
/// Runtime failure: a port in use, a crash.
const EXIT_RUNTIME: u8 = 2;

fn main() -> ExitCode {
    // One sentence on stderr, never a backtrace, if something panics anyway.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("portcullis: internal error: {msg}{at}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_INVALID),
            };
        }
    };
    init_logging();
    match cli.command {
        Command::Secret => {
            println!("{}", new_secret());
            ExitCode::SUCCESS
        }
        Command::Check { config, online } => check::run(&config.path(), online),
        Command::Run {
            config,
            daemon,
            upgrade,
        } => run(&config.path(), serve::RunFlags { daemon, upgrade }),
        Command::Demo {
            https_port,
            http_port,
        } => demo::run(https_port, http_port),
        Command::User(cmd) => user_cmd::run(cmd),
        Command::Keys(cmd) => keys_cmd::run(cmd),
    }
}

/// Diagnostics go to stderr (stdout carries the JSON access log).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,portcullis=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .try_init();
}

fn new_secret() -> String {
    use base64::Engine;
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads, validates and checks start-up safety; prints every error.
fn load_for_run(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    let loaded = config::load(path, &env_lookup).map_err(|report| {
        for e in &report.errors {
            eprintln!("{e}");
        }
        ExitCode::from(EXIT_INVALID)
    })?;
    let safety = config::startup_safety(&loaded.config);
    for w in loaded.warnings.iter().chain(&safety.warnings) {
        eprintln!("warning: {w}");
    }
    if !safety.errors.is_empty() {
        for e in &safety.errors {
            eprintln!("refusing to start: {e}");
        }
        return Err(ExitCode::from(EXIT_INVALID));
    }
    Ok(loaded.config)
}

fn run(path: &std::path::Path, flags: serve::RunFlags) -> ExitCode {
    let cfg = match load_for_run(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let certs = match certificates::load(&cfg, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", certificates::error_line(&cfg, &e));
            return ExitCode::from(EXIT_INVALID);
        }
    };
    start(cfg, certs, flags, |_| {})
}

/// Builds the runtime and serves until shut down.
fn start(
    cfg: config::Config,
    certs: certs::resolver::CertSet,
    flags: serve::RunFlags,
    extra: impl FnOnce(&mut pingora::server::Server),
) -> ExitCode {
    let store = match &cfg.rate_limit.redis {
        None => limits::Store::Memory,
        Some(conf) => match store::RedisStore::new(conf) {
            Ok(s) => limits::Store::Redis(std::sync::Arc::new(s)),
            Err(e) => {
                eprintln!("{}: rate_limit.redis: {e}", cfg.file.display());
                return ExitCode::from(EXIT_INVALID);
            }
        },
    };
    let runtime = match runtime::Runtime::build(&cfg, store) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if let Some(url) = &runtime.fixed.store {
        match state::probe(&url.value) {
            Ok((store, schema)) => tracing::info!(store, schema, "identity store ready"),
            // Served anyway: public routes work, the rest is 503 until it answers.
            Err(e) if e.is_unreachable() => tracing::error!(
                error = %e,
                "identity store unreachable at start; serving public routes and retrying"
            ),
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    match serve::build(runtime, certs, flags, extra) {
        Ok(server) => {
            tracing::info!("portcullis serving");
            // `run` rather than `run_forever` (which is `run` and then
            // `process::exit`): the caller may have something to clean up.
            server.run(pingora::server::RunArgs::default());
            ExitCode::SUCCESS
        }
        Err(e @ serve::ServeError::Certs(_)) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
