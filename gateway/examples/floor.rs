//! The floor under portcullis: two minimal TLS reverse proxies on the same
//! stack, for `benches/load/floor.sh` (issue 22). Not a product; nothing
//! here is checked beyond what the bench needs.
//!
//!   floor proxy LISTEN UPSTREAM CERT KEY   # pingora-proxy, every hook default
//!   floor lean  LISTEN UPSTREAM CERT KEY   # pingora-core's HTTP/1 sessions
//!                                          # and connector, one loop
//!
//! Both listen with TLS (rustls, the gateway's listener settings: no L4
//! read buffer), run one thread, forward the request unchanged to one
//! HTTP/1.1 upstream and keep its connections pooled. `proxy` is what
//! pingora-proxy costs with nothing of the gateway in it; `lean` is what the
//! same work costs without pingora-proxy's machinery (its per-request
//! channel and tasks, module and cache plumbing, retry buffering). The
//! difference between them bounds what a lean HTTP/1.1 path of our own
//! could win; `lean` against nginx is the gap the stack itself leaves.
//! `lean` handles only what the bench sends: requests with or without a
//! body, answered with a body; an upstream failure closes the connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::Stream;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

/// How long an upstream connection may sit idle in the pool.
const POOL_IDLE: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, upstream, cert, key] = args.as_slice() else {
        eprintln!("usage: floor proxy|lean LISTEN UPSTREAM CERT KEY");
        return std::process::ExitCode::from(2);
    };
    match run(mode, listen, upstream, cert, key) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(mode: &str, listen: &str, upstream: &str, cert: &str, key: &str) -> Result<()> {
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let peer = HttpPeer::new(upstream, false, String::new());
    // HTTP/1.1 only (no ALPN h2): the bench's clients speak nothing else.
    let tls = TlsSettings::intermediate(cert, key)?;
    let endpoint = ListenerConfig::tcp(listen.to_string())
        .l4_buffer(L4BufferSettings::default().read(0))
        .tls(tls);
    match mode {
        "proxy" => {
            let app = pingora::proxy::HttpProxy::new(Plain { peer }, server.configuration.clone());
            let mut service = Service::new("floor proxy".to_string(), app);
            service.add_listener(endpoint);
            server.add_service(service);
        }
        "lean" => {
            let app = Lean {
                connector: Connector::new(None),
                peer,
            };
            let mut service = Service::new("floor lean".to_string(), app);
            service.add_listener(endpoint);
            server.add_service(service);
        }
        other => return Error::e_explain(InternalError, format!("no mode {other}")),
    }
    server.run_forever()
}

/// pingora-proxy with nothing but the upstream.
struct Plain {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();

    fn new_ctx(&self) {}

    /// As the gateway: no downstream modules.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

/// One loop per connection over pingora-core's sessions.
struct Lean {
    connector: Connector,
    peer: HttpPeer,
}

impl Lean {
    /// Forwards the request `down` has read and its answer back.
    async fn forward(&self, down: &mut HttpSession) -> Result<()> {
        let req = Box::new(down.req_header().clone());
        let (mut up, _reused) = self.connector.get_http_session(&self.peer).await?;
        up.write_request_header(req).await?;
        while let Some(chunk) = down.read_body_bytes().await? {
            up.write_body(&chunk).await?;
        }
        up.finish_body().await?;
        let resp = up.read_resp_header_parts().await?;
        down.write_response_header(resp).await?;
        while let Some(chunk) = up.read_body_bytes().await? {
            down.write_body(&chunk).await?;
        }
        down.finish_body().await?;
        self.connector
            .release_http_session(up, &self.peer, Some(POOL_IDLE))
            .await;
        Ok(())
    }
}

#[async_trait]
impl ServerApp for Lean {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut prefix = None;
        loop {
            let mut down = HttpSession::new(stream);
            if let Some(p) = prefix.take() {
                down.set_pipelined_prefix(p);
            }
            down.read_request().await.ok()??;
            if let Err(e) = self.forward(&mut down).await {
                eprintln!("floor lean: {e}");
                return None;
            }
            (stream, prefix) = down.reuse().await.ok()??.into_parts();
        }
    }
}
