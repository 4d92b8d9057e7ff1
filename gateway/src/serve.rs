//! Wires a validated config into a pingora server and runs it.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use certs::resolver::{CertSet, Resolver};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::conn_loop::{self, ConnLoop};
use crate::own_errors::OwnErrorsApp;
use crate::proxy::{Gateway, Lean, Listener};
use crate::reload::Reloader;
use crate::runtime::{Fixed, HealthChecks, Runtime};
use crate::state::{
    Accounts, EmergencyLimits, Housekeeping, LoginLimits, Revocations, Shared, StoreKeeper,
};

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
fn probe_listeners(fixed: &Fixed) -> Result<(), ServeError> {
    use socket2::{Domain, Socket, Type};
    for addr in [fixed.https, fixed.http, fixed.ops, fixed.auth]
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
        probe_listeners(&runtime.fixed)?;
    }
    let fixed = runtime.fixed.clone();
    let mut server = server(&fixed, flags);
    let shared = shared(runtime);
    let (proxy, resolver) = proxy_service(&server, &shared, &fixed, certs)?;
    server.add_service(proxy);
    if let Some(addr) = fixed.auth {
        let app = gateway_app(&server, &shared, Listener::Auth);
        let mut auth = pingora::services::listening::Service::new("forward auth".to_string(), app);
        auth.add_listener(listener(addr));
        server.add_service(auth);
    }
    server.add_service(background_service(
        "health checks",
        HealthChecks {
            runtime: shared.runtime.clone(),
        },
    ));
    if let Some(addr) = fixed.ops {
        let mut app = pingora::services::listening::Service::new(
            "ops".to_string(),
            crate::ops::OpsApp {
                shared: shared.clone(),
                resolver: resolver.clone(),
            },
        );
        app.add_tcp(&addr.to_string());
        server.add_service(app);
    }
    if let (Some(resolver), true) = (&resolver, shared.runtime.load().acme.is_some()) {
        let acme = crate::acme::AcmeManager {
            shared: shared.clone(),
            resolver: resolver.clone(),
            holder: format!("{} pid {}", shared.peers.id(), std::process::id()),
        };
        server.add_service(background_service("acme", acme));
        let url = fixed.store.as_ref().map(|s| s.value.as_str());
        if url.is_some_and(crate::config::is_shared_store) {
            let sync = crate::cert_backend::ChallengeSync {
                shared: shared.clone(),
            };
            server.add_service(background_service("acme challenges", sync));
        }
    }
    let reloader = Reloader {
        path: fixed.file.clone(),
        shared: shared.clone(),
        resolver,
    };
    server.add_service(background_service("reload", reloader));
    server.add_service(background_service(
        "identity store",
        StoreKeeper {
            accounts: shared.accounts.clone(),
        },
    ));
    server.add_service(background_service(
        "assertion keys",
        crate::assertion_keys::KeyKeeper {
            shared: shared.clone(),
        },
    ));
    server.add_service(background_service("housekeeping", Housekeeping { shared }));
    extra(&mut server);
    Ok(server)
}

/// The pingora server: threads, daemon, upgrade socket, shutdown timing.
fn server(fixed: &Fixed, flags: RunFlags) -> Server {
    let id = fixed.https.or(fixed.http).map_or(0, |a| a.port());
    let conf = ServerConf {
        threads: fixed.threads,
        // One thread has nothing to steal from: a current-thread runtime per
        // thread skips the work-stealing scheduler's cross-thread wake-ups.
        work_stealing: fixed.threads > 1,
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
    server
}

/// What outlives a reload, around the first runtime.
fn shared(runtime: Runtime) -> Arc<Shared> {
    let url = runtime.fixed.store.as_ref().map(|s| s.value.clone());
    let login_limits = LoginLimits::new(runtime.fixed.login, &runtime.store);
    let revocations = Revocations::new(&runtime.store);
    let emergency_limits = EmergencyLimits::new(runtime.fixed.emergency_attempts, &runtime.store);
    let listen = runtime
        .fixed
        .https
        .or(runtime.fixed.http)
        .map_or_else(String::new, |a| a.to_string());
    Arc::new(Shared {
        peers: crate::instances::Peers::new(listen, crate::state::now()),
        runtime: Arc::new(ArcSwap::from_pointee(runtime)),
        accounts: Arc::new(Accounts::new(url)),
        revocations,
        login_limits,
        emergency_limits,
        challenges: Default::default(),
    })
}

/// The proxy on the https and http listeners; the certificate resolver
/// when there is an https listener.
fn proxy_service(
    server: &Server,
    shared: &Arc<Shared>,
    fixed: &Fixed,
    certs: CertSet,
) -> Result<
    (
        impl pingora::services::Service + 'static,
        Option<Arc<Resolver>>,
    ),
    ServeError,
> {
    let app = gateway_app(server, shared, Listener::Public);
    let mut proxy = pingora::services::listening::Service::new("portcullis".to_string(), app);
    let mut resolver_handle = None;
    if let Some(addr) = fixed.https {
        let resolver = Arc::new(Resolver::new(certs));
        resolver_handle = Some(resolver.clone());
        let mut tls = TlsSettings::with_callbacks(Box::new(NoCallbacks))
            .map_err(|e| ServeError::Other(format!("TLS settings: {e}")))?;
        tls.set_cert_resolver(resolver);
        tls.enable_h2();
        proxy.add_listener(listener(addr).tls(tls));
        // Always there, so that a reload can switch to TLS-ALPN-01; idle
        // unless a challenge is pending.
        let alpn = crate::acme::AlpnChallenges::new(shared.challenges.clone())?;
        proxy.endpoints().set_pre_tls_callback(Arc::new(alpn));
    }
    if let Some(addr) = fixed.http {
        proxy.add_listener(listener(addr));
    }
    Ok((proxy, resolver_handle))
}

/// A client-facing listener. Reads are not buffered below TLS / HTTP:
/// pingora's default puts a 64 KiB read buffer under every connection for
/// its whole life, the largest part of what an idle connection held, while
/// rustls already reads whole records into its own buffer and pingora reads
/// heads and bodies in large chunks above it. Side by side, small requests
/// and 64 KiB uploads ran at the same rate without it
/// (benches/RESULTS.md, "Memory per idle connection").
fn listener(addr: SocketAddr) -> ListenerConfig {
    ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::default().read(0))
}

/// The proxy application for one kind of listener, with the slow-head
/// deadline and the gateway's own error pages around it.
fn gateway_app(
    server: &Server,
    shared: &Arc<Shared>,
    listener: Listener,
) -> OwnErrorsApp<ConnLoop<pingora::proxy::HttpProxy<Gateway>, Lean>> {
    let gateway = Gateway {
        shared: shared.clone(),
        listener,
    };
    let lean = Lean::new(gateway.clone(), &server.configuration);
    let mut http_proxy = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
    http_proxy.handle_init_modules();
    http_proxy.server_options = Some(conn_loop::server_options());
    OwnErrorsApp {
        inner: Arc::new(ConnLoop::new(http_proxy, lean)),
        runtime: shared.runtime.clone(),
    }
}

/// pingora's rustls `TlsSettings` is built either from files or with callbacks;
/// we only need the resolver, so the callbacks do nothing.
struct NoCallbacks;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}
