//! Wires a validated config into a pingora server and runs it.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use certs::resolver::{CertSet, Resolver};
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::config::{Config, TlsMode};
use crate::head_deadline::{self, HeadDeadline};
use crate::own_errors::OwnErrorsApp;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::runtime::{HealthChecks, Runtime};
use crate::state::{EmergencyLimits, Housekeeping, LoginLimits, Revocations, Shared, UsersStore};

/// Flags `run` passes through to pingora.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFlags {
    pub daemon: bool,
    pub upgrade: bool,
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad certificate material: the operator's input (exit 1).
    #[error("{0}")]
    Certs(#[from] certs::CertError),
    /// The users file is invalid: the operator's input (exit 1).
    #[error("{0}")]
    Users(String),
    /// A listener cannot be bound: a runtime failure (exit 2).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Anything else at start-up (exit 2).
    #[error("{0}")]
    Other(String),
}

/// Fails fast, with the address, when a port is taken: pingora would panic.
///
/// The probe binds without listening: a socket that listened for even a
/// moment would accept a client's connection that nobody then answers.
fn probe_listeners(cfg: &Config) -> Result<(), ServeError> {
    use socket2::{Domain, Socket, Type};
    for addr in [cfg.server.https, cfg.server.http, cfg.server.ops]
        .into_iter()
        .flatten()
    {
        let bind = || -> std::io::Result<()> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            // As pingora's listener does, so a TIME_WAIT socket is no obstacle.
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())
        };
        bind().map_err(|source| ServeError::Bind { addr, source })?;
    }
    Ok(())
}

/// Builds the server; `extra` lets `demo` add its own app service.
pub fn build(
    runtime: Runtime,
    certs: CertSet,
    flags: RunFlags,
    extra: impl FnOnce(&mut Server),
) -> Result<Server, ServeError> {
    pingora::tls::install_default_crypto_provider();
    if !flags.upgrade {
        probe_listeners(&runtime.config)?;
    }
    let https = runtime.config.server.https;
    let http = runtime.config.server.http;
    let ops = runtime.config.server.ops;
    let id = https.or(http).map_or(0, |a| a.port());
    let conf = ServerConf {
        threads: runtime.config.server.threads,
        // One thread has nothing to steal from: a current-thread runtime per
        // thread skips the work-stealing scheduler's cross-thread wake-ups.
        work_stealing: runtime.config.server.threads > 1,
        daemon: flags.daemon,
        pid_file: format!("/tmp/portcullis-{id}.pid"),
        upgrade_sock: format!("/tmp/portcullis-{id}-upgrade.sock"),
        // pingora sleeps this long after SIGTERM before stopping runtimes.
        grace_period_seconds: Some(3),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let users =
        UsersStore::load(runtime.config.session.users.clone()).map_err(ServeError::Users)?;
    let login_limits = LoginLimits::new(runtime.config.rate_limit.login, &runtime.store);
    let revocations = Revocations::new(&runtime.store);
    let emergency_limits = EmergencyLimits::new(runtime.config.emergency.attempts, &runtime.store);
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        users,
        revocations,
        login_limits,
        emergency_limits,
        challenges: Default::default(),
    });
    let mut http_proxy = pingora::proxy::HttpProxy::new(
        Gateway {
            shared: shared.clone(),
        },
        server.configuration.clone(),
    );
    http_proxy.handle_init_modules();
    http_proxy.server_options = Some(head_deadline::server_options());
    let mut proxy = pingora::services::listening::Service::new(
        "portcullis".to_string(),
        OwnErrorsApp {
            inner: Arc::new(HeadDeadline {
                inner: Arc::new(http_proxy),
            }),
            runtime: runtime.clone(),
        },
    );
    let config_path = shared.runtime.load().config.file.clone();
    let mut resolver_handle = None;
    if let Some(addr) = https {
        let resolver = Arc::new(Resolver::new(certs));
        resolver_handle = Some(resolver.clone());
        let mut tls = TlsSettings::with_callbacks(Box::new(NoCallbacks))
            .map_err(|e| ServeError::Other(format!("TLS settings: {e}")))?;
        tls.set_cert_resolver(resolver);
        tls.enable_h2();
        proxy.add_tls_with_settings(&addr.to_string(), None, tls);
        // Always there, so that a reload can switch to TLS-ALPN-01; idle
        // unless a challenge is pending.
        let alpn = crate::acme::AlpnChallenges::new(shared.challenges.clone())?;
        proxy.endpoints().set_pre_tls_callback(Arc::new(alpn));
    }
    if let Some(addr) = http {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "health checks",
        HealthChecks { runtime },
    ));
    if let Some(addr) = ops {
        let mut app = pingora::services::listening::Service::new(
            "ops".to_string(),
            crate::ops::OpsApp {
                shared: shared.clone(),
                resolver: resolver_handle.clone(),
            },
        );
        app.add_tcp(&addr.to_string());
        server.add_service(app);
    }
    if let (Some(resolver), TlsMode::Acme(_)) =
        (&resolver_handle, &shared.runtime.load().config.tls.mode)
    {
        server.add_service(background_service(
            "acme",
            crate::acme::AcmeManager {
                shared: shared.clone(),
                resolver: resolver.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "reload",
        Reloader {
            path: config_path,
            shared: shared.clone(),
            resolver: resolver_handle,
        },
    ));
    server.add_service(background_service("housekeeping", Housekeeping { shared }));
    extra(&mut server);
    Ok(server)
}

/// pingora's rustls `TlsSettings` is built either from files or with callbacks;
/// we only need the resolver, so the callbacks do nothing.
struct NoCallbacks;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}
