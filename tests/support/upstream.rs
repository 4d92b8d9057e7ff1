//! An echo app for the gateway to proxy to.
//!
//! It runs on its own tokio runtime in a background thread, so sync and async
//! tests can use it alike, and stops when the `Upstream` is dropped.
//!
//! Paths:
//! - default: 200 JSON `{"method", "target", "version", "headers": [[n, v]..], "body_len"}`
//!   after reading the whole body (see [`SeenRequest`]);
//! - `/range`: 1000 bytes, byte i = i % 251; honours one `Range: bytes=` spec (206/416);
//! - `/ws`: WebSocket echo of text and binary messages;
//! - `/status/{N}`: status N with a small body;
//! - `/slow?ms=N`: answers 200 after N ms;
//! - `/leaky`: 200 with `Server: leaky-app/1.0` and `X-Powered-By: PHP/5.0`;
//! - `/stream?chunks=N&ms=M`: chunked, N chunks `chunk i\n`, M ms apart;
//! - `/with-headers?Name=Value&..`: 200 with each (percent-decoded) query pair
//!   as a response header, e.g. an app's own CSP or `Set-Cookie`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::pki::TestPki;

/// Length of the `/range` body.
pub const RANGE_LEN: usize = 1000;

/// The `/range` body: byte i is `i % 251` (a prime, so slices are distinctive).
pub fn range_body() -> Vec<u8> {
    (0..RANGE_LEN).map(|i| (i % 251) as u8).collect()
}

/// One request as the upstream received it.
///
/// Header names are lowercase (hyper normalises them); headers are grouped by
/// name in order of first appearance, values of a repeated name in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// Request target as received: path+query for origin-form (HTTP/1.1),
    /// the full URI for absolute-form; path+query over HTTP/2.
    pub target: String,
    /// "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0".
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Path part of `target` (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The JSON the default handler answers with.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": self.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body_len": self.body.len(),
        })
    }

    /// Parses the default handler's JSON (e.g. a response body read through
    /// the gateway). The body itself is not in the JSON: `body` is left empty.
    pub fn from_json(value: &serde_json::Value) -> SeenRequest {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        let headers = value["headers"]
            .as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|pair| {
                        let part = |i: usize| pair[i].as_str().unwrap_or_default().to_string();
                        (part(0), part(1))
                    })
                    .collect()
            })
            .unwrap_or_default();
        SeenRequest {
            method: text("method"),
            target: text("target"),
            version: text("version"),
            headers,
            body: Vec::new(),
        }
    }
}

/// What request handlers share with the test.
#[derive(Default)]
struct State {
    hits: AtomicUsize,
    requests: Mutex<Vec<SeenRequest>>,
}

/// A running echo app; stops on drop.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Plain HTTP/1.1 on 127.0.0.1 and a free port.
    pub fn start() -> Upstream {
        Upstream::serve(bind_free(), None)
    }

    /// Plain HTTP/1.1 on 127.0.0.1:`port` (e.g. to bring a dead upstream back).
    pub fn start_on(port: u16) -> Upstream {
        // Bind here, not in the thread, so a bind error fails the caller and
        // the port accepts connections as soon as `start_on` returns.
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("upstream cannot bind 127.0.0.1:{port}: {e}"));
        Upstream::serve(listener, None)
    }

    /// HTTPS with the `pki` leaf, offering h2 and http/1.1 via ALPN (for
    /// `tls = true` upstreams and for testing clients).
    pub fn start_tls(pki: &TestPki) -> Upstream {
        let config = pki.server_config(&[b"h2", b"http/1.1"]);
        Upstream::serve(bind_free(), Some(config))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far (every path, counted on arrival).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// The most recent completely read request.
    pub fn last_request(&self) -> Option<SeenRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// Every completely read request, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    fn serve(listener: StdTcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let port = addr.port();
        let state = Arc::new(State::default());
        let (shutdown, stop) = oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn(move || run(listener, thread_state, tls, stop))
            .unwrap();
        Upstream {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

/// A listener on a free port. `free_port` checked that the port could be
/// bound, but another process may take it before we bind it again (a CI run
/// once failed so): then take another port.
fn bind_free() -> StdTcpListener {
    let mut last = None;
    for _ in 0..20 {
        let port = super::free_port();
        match StdTcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => panic!("upstream cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
    panic!("upstream found no free port in 20 tries: {last:?}")
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The upstream thread: accept until told to stop, then drop every
/// connection (the runtime's shutdown cancels their tasks).
fn run(
    listener: StdTcpListener,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let accept_loop = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_connection(stream, state.clone(), acceptor.clone()));
            }
        };
        tokio::select! {
            _ = accept_loop => {}
            _ = stop => {}
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<State>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let service = service_fn(move |req| handle(req, state.clone()));
    match acceptor {
        // Plain: HTTP/1.1 only, keep-alive on, upgrades for /ws.
        None => {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
        // TLS: h1 or h2, whichever the client speaks after ALPN.
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    resp
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = match path.as_str() {
        "/range" => range(&req),
        "/ws" => websocket(req),
        "/slow" => {
            let ms = query_param(&query, "ms").and_then(|v| v.parse().ok());
            tokio::time::sleep(Duration::from_millis(ms.unwrap_or(1000))).await;
            response(StatusCode::OK, "text/plain", "slow\n")
        }
        "/leaky" => {
            let mut resp = response(StatusCode::OK, "text/plain", "leaky\n");
            let headers = resp.headers_mut();
            headers.insert("server", HeaderValue::from_static("leaky-app/1.0"));
            headers.insert("x-powered-by", HeaderValue::from_static("PHP/5.0"));
            resp
        }
        "/stream" => stream(&query),
        "/bytes" => bytes(&query),
        "/with-headers" => with_headers(&query),
        _ if path.starts_with("/status/") => status(&path["/status/".len()..]),
        _ => echo(req, &state).await,
    };
    Ok(resp)
}

/// Default handler: read the whole body, remember the request, describe it.
async fn echo(req: Request<Incoming>, state: &State) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return response(StatusCode::BAD_REQUEST, "text/plain", "bad body\n"),
    };
    // Origin-form keeps the target as sent; over h2 the URI always carries
    // scheme and authority, which the client did not put in a target.
    let target = if parts.version == hyper::Version::HTTP_2 {
        parts.uri.path_and_query().map(|p| p.to_string())
    } else {
        None
    }
    .unwrap_or_else(|| parts.uri.to_string());
    let seen = SeenRequest {
        method: parts.method.to_string(),
        target,
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.to_string(), value)
            })
            .collect(),
        body,
    };
    let json = seen.to_json().to_string();
    state.requests.lock().unwrap().push(seen);
    response(StatusCode::OK, "application/json", json)
}

fn status(code: &str) -> Response<Body> {
    let Some(status) = code.parse().ok().and_then(|n| StatusCode::from_u16(n).ok()) else {
        return response(StatusCode::BAD_REQUEST, "text/plain", "bad status\n");
    };
    // These statuses must not carry a body.
    let body = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        String::new()
    } else {
        format!("status {}\n", status.as_u16())
    };
    response(status, "text/plain", body)
}

/// `/range`: one byte range per RFC 9110 §14; anything we do not understand
/// (several ranges, bad syntax) gets the full body, which the RFC allows.
fn range(req: &Request<Incoming>) -> Response<Body> {
    let body = range_body();
    let spec = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let mut resp = match spec.map(parse_range) {
        Some(RangeSpec::Satisfiable(start, end)) => {
            let mut resp = response(
                StatusCode::PARTIAL_CONTENT,
                "application/octet-stream",
                body[start..=end].to_vec(),
            );
            let content_range = format!("bytes {start}-{end}/{RANGE_LEN}");
            resp.headers_mut()
                .insert("content-range", content_range.parse().unwrap());
            resp
        }
        Some(RangeSpec::Unsatisfiable) => {
            let mut resp = response(StatusCode::RANGE_NOT_SATISFIABLE, "text/plain", "");
            let content_range = format!("bytes */{RANGE_LEN}");
            resp.headers_mut()
                .insert("content-range", content_range.parse().unwrap());
            resp
        }
        Some(RangeSpec::Ignored) | None => {
            response(StatusCode::OK, "application/octet-stream", body)
        }
    };
    resp.headers_mut()
        .insert("accept-ranges", HeaderValue::from_static("bytes"));
    resp
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Inclusive byte positions.
    Satisfiable(usize, usize),
    Unsatisfiable,
    Ignored,
}

fn parse_range(header: &str) -> RangeSpec {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let number = |s: &str| s.trim().parse::<usize>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // "-n": the last n bytes.
        (true, _, Some(0)) => RangeSpec::Unsatisfiable,
        (true, _, Some(n)) => RangeSpec::Satisfiable(RANGE_LEN.saturating_sub(n), RANGE_LEN - 1),
        (false, Some(a), _) if a >= RANGE_LEN => RangeSpec::Unsatisfiable,
        // "a-": from a to the end.
        (false, Some(a), None) if last.trim().is_empty() => {
            RangeSpec::Satisfiable(a, RANGE_LEN - 1)
        }
        // "a-b": b is clamped to the end.
        (false, Some(a), Some(b)) if a <= b => RangeSpec::Satisfiable(a, b.min(RANGE_LEN - 1)),
        _ => RangeSpec::Ignored,
    }
}

/// `/ws`: answer the upgrade ourselves, then echo on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get("sec-websocket-key").filter(|_| is_upgrade) else {
        return response(StatusCode::BAD_REQUEST, "text/plain", "not a websocket\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-accept", accept.parse().unwrap());
    resp
}

/// `/stream`: a body produced over time, to prove the gateway streams it.
fn stream(query: &str) -> Response<Body> {
    let chunks: usize = query_param(query, "chunks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let delay = Duration::from_millis(
        query_param(query, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(200),
    );
    let frames = futures_util::stream::unfold(0, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(delay).await;
        }
        let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
        Some((Ok::<_, Infallible>(frame), i + 1))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// `/bytes?n=N`: N bytes of `(i * 7) % 251` with a `Content-Length`; with
/// `&chunked`, the same bytes streamed in 10 000-byte frames, no length (so
/// chunked on HTTP/1.1). A body several reads and TLS records long.
fn bytes(query: &str) -> Response<Body> {
    let n: usize = query_param(query, "n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let data = Bytes::from((0..n).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>());
    if !query_pairs(query).iter().any(|(k, _)| k == "chunked") {
        return response(StatusCode::OK, "application/octet-stream", data);
    }
    let frames = futures_util::stream::iter(
        (0..n)
            .step_by(10_000)
            .map(move |i| Ok::<_, Infallible>(Frame::data(data.slice(i..n.min(i + 10_000))))),
    );
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `/with-headers?Name=Value`: lets a test make the app send any header.
fn with_headers(query: &str) -> Response<Body> {
    let mut resp = response(StatusCode::OK, "text/plain", "with headers\n");
    for (name, value) in query_pairs(query) {
        let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return response(StatusCode::BAD_REQUEST, "text/plain", "bad header\n");
        };
        resp.headers_mut().append(name, value);
    }
    resp
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Minimal `application/x-www-form-urlencoded` decoding (`+` is a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
