//! The pingora `ProxyHttp` glue: walks the SPEC pipeline in order, asking
//! `policies` for each decision and turning the answer into pingora actions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use pingora::proxy::FailToProxy;
use policies::access::{self, Decision};
use policies::client_ip::{self, ClientAddr};
use policies::host::Host;
use policies::ratelimit::{self, Outcome, Rate};
use policies::target::{self, RequestTarget};
use policies::{cookies, forwarding, head};

use crate::access_log;
use crate::auth::{self, Identity};
use crate::config::{CorsPolicy, RateKey};
use crate::emergency;
use crate::limits::Verdict;
use crate::login;
use crate::pages;
use crate::respond::{self, Extras};
use crate::runtime::Runtime;
use crate::state::{self, Shared};

/// Headers the gateway sets on every upstream request; a client's copy, in
/// any spelling, never passes.
const SET_BY_GATEWAY: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
];

/// Reserved prefix answered by the gateway and never forwarded.
const RESERVED: &str = "/.portcullis/";

pub struct Gateway {
    pub shared: Arc<Shared>,
}

/// Per-request state. The runtime `Arc` pins the rules for the whole request.
pub struct Ctx {
    pub rt: Arc<Runtime>,
    pub started: Instant,
    /// Request id and cookies every response of this request carries.
    pub out: Extras,
    /// Step 5's result: who is asking, if anyone.
    pub identity: Option<Identity>,
    /// A valid emergency session (only while the gate is enabled for this client).
    pub emergency: Option<policies::emergency::Grant>,
    pub client: Option<ClientAddr>,
    pub https: bool,
    /// Host as received (Host header or HTTP/2 :authority), port included.
    pub host: Option<String>,
    /// Normalised path + `?query`, exactly what the upstream receives.
    pub upstream_target: Option<String>,
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub max_body: u64,
    pub body_seen: u64,
    /// When the stage `body` let a streamed body through (for its minimum rate).
    pub body_started: Option<Instant>,
    pub tried: Vec<PSocketAddr>,
    pub status: u16,
    /// The request's framing was refused (step 2), or its body came too
    /// slowly: what is left of it is not read, not even to be dropped.
    pub skip_drain: bool,
    /// The declared body is small enough to read whole before the upstream
    /// is contacted (stage `body`).
    pub buffer_body: bool,
    /// The route opted in to method-override headers and matched the
    /// overriding method too: they are forwarded.
    pub keep_method_override: bool,
}

impl Ctx {
    fn label(&self) -> &str {
        match self.route {
            Some(i) => self.rt.routes.get(i).map_or("", |r| r.label.as_str()),
            // Answered by the gateway itself, never routed.
            None if self
                .upstream_target
                .as_deref()
                .is_some_and(|t| t.starts_with("/.portcullis")) =>
            {
                "(gateway)"
            }
            None if self.upstream_target.is_some() => self.rt.fallback.label.as_str(),
            None => "",
        }
    }
}

/// Announces `Connection: close` on an answer that will not read the request
/// body the headers declare: leftover body bytes would be parsed as the next
/// request on a reused connection. `request_filter` drops the body after the
/// answer and closes.
fn close_if_body_unread(session: &mut Session) {
    if !session.is_body_empty() {
        session.set_keepalive(None);
    }
}

/// The limiter key of a client IP (prefixed: keys of every kind share a store).
fn ip_key(ip: IpAddr) -> String {
    format!("i:{ip}")
}

/// `RateLimit-Policy` and `RateLimit` for one rule's outcome.
fn limit_headers(name: &str, rate: Rate, outcome: Outcome) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-policy", ratelimit::policy_header(name, rate)),
        ("ratelimit", ratelimit::ratelimit_header(name, outcome)),
    ]
}

/// The status as a metric label without allocating for the usual codes.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// A 128-bit random id in hex.
pub fn new_request_id() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The request's host: every `Host` header, the HTTP/2 `:authority` and an
/// absolute-form target's authority, each parsed strictly; there must be
/// exactly one host between them, on every protocol version (an HTTP/1.0
/// request without one is refused too: routes with a `host` and the app
/// must never see different hosts, or none).
fn request_host(req: &RequestHeader, absolute_authority: Option<&str>) -> Option<Host> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = hosts
        .next()
        .map(|h| Host::parse(h.as_bytes()))
        .transpose()
        .ok()?;
    if hosts.next().is_some() {
        return None;
    }
    let authority = absolute_authority
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .map(|a| Host::parse(a.as_bytes()))
        .transpose()
        .ok()?;
    match (host, authority) {
        (Some(h), Some(a)) => (h == a).then_some(h),
        (h, a) => h.or(a),
    }
}

/// The method a method-override header asks for: `None` without one, `Err`
/// when they disagree or name no acceptable method.
fn override_method(req: &RequestHeader) -> Result<Option<String>, ()> {
    let mut found: Option<&[u8]> = None;
    for (name, value) in req.headers.iter() {
        if !policies::method::is_override_header(name.as_str()) {
            continue;
        }
        let v = value.as_bytes();
        if !policies::method::is_accepted(v) || found.is_some_and(|f| f != v) {
            return Err(());
        }
        found = Some(v);
    }
    Ok(found.map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// The limiter key of `rate_key = "header:NAME"`: `None` when the header is
/// absent or empty, `Err` when it comes more than once in any spelling
/// (`X-Api-Key` and `X_Api_Key` are one variable to many app servers).
fn header_key(req: &RequestHeader, name: &str) -> Result<Option<String>, ()> {
    let mut values = req
        .headers
        .iter()
        .filter(|(n, _)| forwarding::header_name_eq(n.as_str(), name))
        .map(|(_, v)| v.as_bytes());
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    // Bounded: a huge header value must not become a huge key.
    Ok(first.filter(|v| !v.is_empty()).map(|v| {
        let v = v.get(..256).unwrap_or(v);
        format!("h:{}", String::from_utf8_lossy(v))
    }))
}

/// `Expect: 100-continue` (RFC 9110 §10.1.1: HTTP/1.1 and later only).
fn expects_continue(req: &RequestHeader) -> bool {
    req.version >= http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The `https://` URL the http listener redirects to.
fn https_location(host: &str, port: Option<u16>, target: &str) -> Option<String> {
    let name = policies::routes::normalize_host(host)?;
    // normalize_host keeps IPv6 literals bracketed; be safe if it ever does not.
    let name = if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name
    };
    Some(match port {
        Some(p) => format!("https://{name}:{p}{target}"),
        None => format!("https://{name}{target}"),
    })
}

impl Gateway {
    /// SPEC steps 1–6. `Ok(true)` when a response was written here.
    async fn pipeline(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let rt = ctx.rt.clone();
        let req = session.req_header();

        // 1. Client IP and scheme.
        let Some(peer) = peer_ip(session) else {
            return self.fail(session, ctx, 400).await;
        };
        let xff = req.headers.get_all("x-forwarded-for");
        let client = client_ip::resolve(peer, xff.iter().map(|v| v.as_bytes()), &rt.trusted);
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.https = tls
            || (rt.tls_off
                && client.peer_trusted
                && req
                    .headers
                    .get("x-forwarded-proto")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
        ctx.out.https = ctx.https;
        ctx.out.vary_origin = rt.cors.is_some();
        if client.peer_trusted {
            if let Some(id) = req.headers.get("x-request-id") {
                if forwarding::is_valid_request_id(id.as_bytes()) {
                    ctx.out.request_id = String::from_utf8_lossy(id.as_bytes()).into_owned();
                }
            }
        }
        ctx.client = Some(client);

        // 2. Unsafe framing and request targets. For HTTP/1 both are judged on
        // the bytes as sent: pingora's parser has already dropped a fragment
        // and, when TE came with CL, the CL. (HTTP/2 framing is checked by the
        // h2 layer, which refuses TE and a CL that disagrees with the data.)
        let raw_head = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        if raw_head.as_deref().is_some_and(head::ambiguous_framing) {
            ctx.skip_drain = true;
            session.set_keepalive(None);
            return self.fail(session, ctx, 400).await;
        }
        // `post` must not fall through a POST rule to a public route while
        // the app upper-cases it and runs the POST view.
        if !policies::method::is_accepted(req.method.as_str().as_bytes()) {
            return self.malformed(session, ctx).await;
        }
        let wire_target = match raw_head.as_deref() {
            Some(h) => head::request_target(h).unwrap_or_default(),
            None => req.raw_path(),
        };
        let parsed = match target::parse_target(wire_target) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(request_id = %ctx.out.request_id, reason = %e, "unsafe request target");
                return self.fail(session, ctx, 400).await;
            }
        };
        let (path, query, authority) = match parsed {
            RequestTarget::Path {
                path,
                query,
                authority,
            } => (path, query, authority),
            RequestTarget::Asterisk if req.method == http::Method::OPTIONS => {
                let h = respond::header(204, &ctx.out, None, 0)?;
                respond::send(session, h, Bytes::new()).await?;
                ctx.status = 204;
                return Ok(true);
            }
            RequestTarget::Asterisk => return self.fail(session, ctx, 400).await,
        };
        let Some(host) = request_host(req, authority) else {
            return self.malformed(session, ctx).await;
        };
        ctx.host = Some(host.to_string());
        // Upstreams that fold Unicode case would read `/CAF%C3%89` as a
        // denied `/café`: in that mode only ASCII paths are routed.
        if rt.table.case_insensitive() && target::has_encoded_non_ascii(&path) {
            return self.fail(session, ctx, 400).await;
        }
        ctx.upstream_target = Some(target::forwarded_target(&path, query));

        // ACME HTTP-01: answered on the plain listener from pending challenges.
        if !tls && matches!(rt.config.tls.mode, crate::config::TlsMode::Acme(_)) {
            if let Some(token) = path.as_str().strip_prefix("/.well-known/acme-challenge/") {
                return match self.shared.challenges.get(token) {
                    Some(answer) => {
                        ctx.status = 200;
                        respond::body(
                            session,
                            &ctx.out,
                            200,
                            "application/octet-stream",
                            Bytes::from(answer),
                        )
                        .await?;
                        Ok(true)
                    }
                    None => self.fail(session, ctx, 404).await,
                };
            }
        }

        // The plain listener only redirects, unless a platform terminates TLS.
        if !tls && !rt.tls_off {
            let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) {
                301
            } else {
                308
            };
            let location = ctx
                .host
                .as_deref()
                .zip(ctx.upstream_target.as_deref())
                .and_then(|(h, t)| https_location(h, rt.https_port, t));
            return match location {
                Some(loc) => {
                    ctx.status = status;
                    respond::redirect(session, &ctx.out, status, &loc).await?;
                    Ok(true)
                }
                None => self.fail(session, ctx, 400).await,
            };
        }

        // 4. The global per-IP limit, over all traffic.
        let client_ip = ctx.client.as_ref().map(|c| c.ip);
        if let (Some(limiter), Some(ip)) = (rt.default_limit.as_ref(), client_ip) {
            match limiter.check(&ip_key(ip)).await {
                Verdict::Counted(outcome @ Outcome::Limited { retry_after }) => {
                    ctx.out.ratelimit = limit_headers(&limiter.name, limiter.rate(), outcome);
                    return self.limited(session, ctx, retry_after).await;
                }
                Verdict::Refused => return self.fail(session, ctx, 503).await,
                Verdict::Counted(_) | Verdict::Unknown => {}
            }
        }

        // 5. Session (before reserved paths: logout needs to know who).
        if let Some(srt) = rt.session.as_ref() {
            let Ok(auth) = auth::authenticate(srt, &self.shared, req, state::now()).await else {
                return self.fail(session, ctx, 503).await;
            };
            ctx.identity = auth.identity;
            ctx.out.set_cookies.extend(auth.set_cookie);
            // The emergency session: only while the gate is on for this client.
            if let Some(em) = rt.emergency.as_ref().filter(|e| e.admits(client_ip)) {
                let Ok((grant, clear)) = auth::emergency(em, &self.shared, req, state::now()).await
                else {
                    return self.fail(session, ctx, 503).await;
                };
                ctx.out.set_cookies.extend(clear);
                ctx.emergency = grant;
                if grant.is_some() && ctx.identity.is_none() {
                    ctx.identity = Some(Identity {
                        user: auth::EMERGENCY_USER.to_string(),
                        roles: em.roles.clone(),
                        session: None,
                    });
                }
            }
        }

        // 3. Reserved paths (in any case when paths are case-insensitive:
        // `/.PORTCULLIS/login` must not reach such an app).
        let p = path.as_str();
        if rt.table.case_insensitive() {
            let head = p.get(..RESERVED.len()).unwrap_or(p);
            if head.eq_ignore_ascii_case(RESERVED) || p.eq_ignore_ascii_case("/.portcullis") {
                return self
                    .reserved(session, ctx, &rt, &p.to_ascii_lowercase())
                    .await;
            }
        } else if p.starts_with(RESERVED) || p == "/.portcullis" {
            return self.reserved(session, ctx, &rt, p).await;
        }

        // Routing (host, path, method).
        let method = req.method.as_str();
        let found = rt.table.find(ctx.host.as_deref(), p, method);
        let rule = match found {
            Some(i) => {
                ctx.route = Some(i);
                &rt.routes[i]
            }
            None => &rt.fallback,
        };
        // Method-override headers reach the app only on a route that opted
        // in and that the overriding method matches as well: the app runs
        // one of two methods, and the gateway checked the route for both.
        if rule.method_override {
            match override_method(req) {
                Ok(None) => {}
                Ok(Some(m)) if rt.table.find(ctx.host.as_deref(), p, &m) == found => {
                    ctx.keep_method_override = true;
                }
                Ok(Some(_)) | Err(()) => return self.fail(session, ctx, 400).await,
            }
        }

        ctx.out.headers = Some(rule.headers.clone());

        // CORS: a preflight is answered here, before access rules (it carries
        // no credentials) and without reaching the app.
        if let Some(cors) = rt.cors.as_ref() {
            let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
            if let Some(origin) = header("origin") {
                let acr_method = header("access-control-request-method");
                if CorsPolicy::is_preflight(method, Some(origin), acr_method) {
                    ctx.out.cors = cors.preflight(
                        origin,
                        acr_method.unwrap_or_default(),
                        header("access-control-request-headers"),
                    );
                    // A preflight's answer also varies with what it asked for.
                    ctx.out.vary_origin = false;
                    ctx.out
                        .cors
                        .push(("vary", policies::cors::PREFLIGHT_VARY.to_string()));
                    ctx.status = 204;
                    let h = respond::header(204, &ctx.out, None, 0)?;
                    respond::send(session, h, Bytes::new()).await?;
                    return Ok(true);
                }
                ctx.out.cors = cors.actual(origin);
            }
        }

        // 4. The route's own limit, keyed by IP, user or a header.
        if let Some(limit) = rule.limit.as_ref() {
            let ip = client_ip.map(ip_key).unwrap_or_default();
            let key = match &limit.key {
                RateKey::Ip => ip,
                RateKey::User => ctx
                    .identity
                    .as_ref()
                    .map_or(ip, |i| format!("u:{}", i.user.to_ascii_lowercase())),
                RateKey::Header(name) => match header_key(req, name) {
                    Ok(Some(key)) => key,
                    Ok(None) => ip,
                    // Two keys: which one the app believes is anyone's guess.
                    Err(()) => return self.fail(session, ctx, 400).await,
                },
            };
            match limit.store.check(&key).await {
                Verdict::Counted(outcome) => {
                    ctx.out.ratelimit = limit_headers(&limit.name, limit.store.rate(), outcome);
                    if let Outcome::Limited { retry_after } = outcome {
                        return self.limited(session, ctx, retry_after).await;
                    }
                }
                Verdict::Unknown => {}
                Verdict::Refused => return self.fail(session, ctx, 503).await,
            }
        }

        // 6. Access.
        let navigation = access::is_navigation(
            method,
            &mut req
                .headers
                .get_all(http::header::ACCEPT)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let roles = ctx.identity.as_ref().map(|i| i.roles.as_slice());
        match access::decide(&rule.access, roles, navigation) {
            Decision::Allow => {}
            Decision::LoginRedirect => {
                let target = ctx.upstream_target.as_deref().unwrap_or("/");
                let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
                ctx.status = 303;
                respond::redirect(
                    session,
                    &ctx.out,
                    303,
                    &format!("/.portcullis/login?next={next}"),
                )
                .await?;
                return Ok(true);
            }
            Decision::Unauthorized => {
                crate::metrics::METRICS
                    .auth_failures
                    .with_label_values(&["unauthorized"])
                    .inc();
                return self.fail(session, ctx, 401).await;
            }
            Decision::Forbidden => {
                crate::metrics::METRICS
                    .auth_failures
                    .with_label_values(&["forbidden"])
                    .inc();
                return self.fail(session, ctx, 403).await;
            }
        }
        let Some(upstream) = rule.upstream else {
            return self.fail(session, ctx, 404).await;
        };
        ctx.upstream = Some(upstream);

        // Body limit: refuse early on a declared length, count the rest.
        ctx.max_body = rule.max_body;
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > ctx.max_body) {
            return self.fail(session, ctx, 413).await;
        }
        ctx.buffer_body = declared.is_some_and(|n| n > 0 && n <= rule.buffer_body);
        Ok(false)
    }

    /// Stage `body`: a slow body must not hold the app. A body declared up to
    /// `buffer_body` is read whole, within `body_timeout`, before the
    /// upstream is contacted (pingora replays it from its retry buffer);
    /// larger and chunked bodies stream, each HTTP/1 read waiting at most
    /// `body_timeout`. Too slow: 408 and the connection closes.
    async fn body(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let timeout = ctx.rt.config.server.body_timeout;
        if !ctx.buffer_body {
            if !session.is_body_empty() {
                session.set_read_timeout(Some(timeout));
                ctx.body_started = Some(Instant::now());
            }
            return Ok(false);
        }
        session.enable_retry_buffering();
        // A client waiting for `100 Continue` (curl does above 1 KiB) would
        // otherwise stall until its own timeout: the app is not asked yet,
        // so the gateway answers for it (and drops `Expect` upstream).
        if expects_continue(session.req_header()) {
            session.write_continue_response().await?;
        }
        let read_all = async {
            while !session.is_body_done() {
                if session.read_request_body().await?.is_none() {
                    break;
                }
            }
            Ok::<(), Box<Error>>(())
        };
        match tokio::time::timeout(timeout, read_all).await {
            Ok(read) => read.map(|()| false),
            Err(_) => {
                ctx.skip_drain = true;
                self.fail(session, ctx, 408).await
            }
        }
    }

    /// Everything under `/.portcullis/`: answered here, never forwarded.
    async fn reserved(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rt: &Runtime,
        path: &str,
    ) -> Result<bool> {
        let path = path.to_string();
        let method = session.req_header().method.clone();
        let get = method == http::Method::GET || method == http::Method::HEAD;
        let post = method == http::Method::POST;
        let identity = ctx.identity.clone();
        match (path.as_str(), rt.session.as_ref()) {
            ("/.portcullis/health", _) if get => {
                ctx.status = 200;
                respond::text(session, &ctx.out, 200, "ok\n").await?;
                Ok(true)
            }
            ("/.portcullis/style.css", _) if get => {
                ctx.status = 200;
                respond::body(
                    session,
                    &ctx.out,
                    200,
                    "text/css; charset=utf-8",
                    Bytes::from_static(pages::STYLE.as_bytes()),
                )
                .await?;
                Ok(true)
            }
            ("/.portcullis/login", Some(srt)) if get => login::login_form(session, ctx, srt).await,
            ("/.portcullis/login", Some(srt)) if post => {
                login::login_submit(session, ctx, srt, &self.shared).await
            }
            ("/.portcullis/logout", Some(srt)) if get => {
                login::logout_form(session, ctx, srt, identity.as_ref()).await
            }
            ("/.portcullis/logout", Some(srt)) if post => {
                login::logout_submit(session, ctx, srt, &self.shared, identity.as_ref()).await
            }
            (p, Some(srt))
                if p == "/.portcullis/emergency" || p.starts_with("/.portcullis/emergency/") =>
            {
                // Disabled, or not for this client: exactly the generic 404.
                let ip = ctx.client.as_ref().map(|c| c.ip);
                let Some(em) = rt.emergency.as_ref().filter(|e| e.admits(ip)) else {
                    return self.fail(session, ctx, 404).await;
                };
                let grant = ctx.emergency;
                match emergency::handle(session, ctx, em, srt, &self.shared, p, grant).await {
                    Some(result) => result,
                    None => self.fail(session, ctx, 404).await,
                }
            }
            _ => self.fail(session, ctx, 404).await,
        }
    }

    /// 429 with `Retry-After` (and the `RateLimit` headers already in `ctx.out`).
    async fn limited(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        retry_after: std::time::Duration,
    ) -> Result<bool> {
        ctx.status = 429;
        close_if_body_unread(session);
        respond::too_many(session, &ctx.out, retry_after).await?;
        Ok(true)
    }

    /// 400 for a request no well-behaved client sends (a lowercase method,
    /// an invalid host): the connection closes, as for malformed framing.
    async fn malformed(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        session.set_keepalive(None);
        self.fail(session, ctx, 400).await
    }

    /// Writes a gateway error and ends the request.
    async fn fail(&self, session: &mut Session, ctx: &mut Ctx, status: u16) -> Result<bool> {
        ctx.status = status;
        close_if_body_unread(session);
        respond::error(session, &ctx.out, status).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        let rt = self.shared.runtime.load_full();
        Ctx {
            rt: rt.clone(),
            started: Instant::now(),
            out: Extras {
                request_id: new_request_id(),
                headers: Some(rt.headers.clone()),
                ..Extras::default()
            },
            identity: None,
            emergency: None,
            client: None,
            https: false,
            host: None,
            upstream_target: None,
            route: None,
            upstream: None,
            max_body: 0,
            body_seen: 0,
            body_started: None,
            tried: Vec::new(),
            status: 0,
            skip_drain: false,
            buffer_body: false,
            keep_method_override: false,
        }
    }

    async fn early_request_filter(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // The head is complete: lift the slow-head deadline.
        crate::head_deadline::head_read();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let mut answered = self.pipeline(session, ctx).await?;
        if !answered {
            answered = self.body(session, ctx).await?;
        }
        if answered && !session.is_body_done() {
            // Answered here without reading (all of) the body: the
            // connection cannot be reused, and the client must get to read
            // the answer before it closes.
            session.set_keepalive(None);
            if !ctx.skip_drain {
                respond::linger(session).await;
            }
        }
        Ok(answered)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_seen += b.len() as u64;
            if ctx.body_seen > ctx.max_body {
                return Error::e_explain(HTTPStatus(413), "request body over max_body");
            }
            // A streamed body sent slowly but steadily holds the app's
            // request: past `body_timeout` it must average `body_min_rate`.
            let server = &ctx.rt.config.server;
            if let Some(started) = ctx.body_started {
                let elapsed = started.elapsed();
                if elapsed > server.body_timeout
                    && ctx.body_seen < server.body_min_rate.saturating_mul(elapsed.as_secs())
                {
                    return Error::e_explain(HTTPStatus(408), "request body below body_min_rate");
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(up) = ctx.upstream.and_then(|i| ctx.rt.upstreams.get(i)) else {
            return Error::e_explain(InternalError, "no upstream selected");
        };
        let tried = &ctx.tried;
        // Healthy and untried first; then anything untried (health may lag).
        let backend = up
            .lb
            .select_with(b"", 256, |b, healthy| healthy && !tried.contains(&b.addr))
            .or_else(|| up.lb.select_with(b"", 256, |b, _| !tried.contains(&b.addr)));
        let Some(backend) = backend else {
            return Error::e_explain(
                ConnectNoRoute,
                format!("no address left for upstream {}", up.name),
            );
        };
        ctx.tried.push(backend.addr.clone());
        let mut peer = HttpPeer::new(backend, up.tls, up.sni.clone());
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.read_timeout = Some(up.read_timeout);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try the next address of the upstream, once each.
        let more = ctx
            .upstream
            .and_then(|i| ctx.rt.upstreams.get(i))
            .is_some_and(|u| ctx.tried.len() < u.addr_count);
        if more {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(client) = ctx.client.as_ref() else {
            return Error::e_explain(InternalError, "pipeline did not run");
        };
        if let Some(t) = ctx.upstream_target.as_deref() {
            up.set_raw_path(t.as_bytes())?;
        }
        // SPEC step 7: strip what a client could spoof, then set our own.
        let trusted = client.peer_trusted;
        // A trusted proxy's X-Forwarded-Host is kept only if it is a host.
        let kept_host = trusted
            .then(|| up.headers.get("x-forwarded-host").cloned())
            .flatten()
            .filter(|h| Host::parse(h.as_bytes()).is_ok());
        // Identity headers are removed from every client request, trusted
        // peer or not: only the gateway speaks for a user.
        let ids = &ctx.rt.identity;
        let identity_names = [
            ids.user.as_str(),
            ids.roles.as_str(),
            ids.assertion.as_str(),
        ];
        let doomed: Vec<String> = up
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|name| {
                let ours = SET_BY_GATEWAY
                    .iter()
                    .chain(identity_names.iter())
                    .any(|t| forwarding::header_name_eq(name, t));
                ours || (forwarding::is_forwarding_header(name) && (!trusted || name.contains('_')))
                    || (!ctx.keep_method_override && policies::method::is_override_header(name))
                    || forwarding::spoofable_header(name)
                        .is_some_and(|h| !ctx.rt.config.server.pass_client_headers.contains(&h))
            })
            .map(str::to_string)
            .collect();
        for name in &doomed {
            up.remove_header(name.as_str());
        }
        up.insert_header("x-forwarded-for", client.forwarded_for())?;
        up.insert_header(
            "x-forwarded-proto",
            HeaderValue::from_static(if ctx.https { "https" } else { "http" }),
        )?;
        match (kept_host, ctx.host.as_deref()) {
            (Some(h), _) => up.insert_header("x-forwarded-host", h)?,
            (None, Some(h)) => up.insert_header("x-forwarded-host", h)?,
            (None, None) => {}
        }
        up.insert_header("x-real-ip", client.ip.to_string())?;
        up.insert_header("x-request-id", ctx.out.request_id.as_str())?;
        if let Some(who) = ctx.identity.as_ref() {
            up.insert_header(ids.user_name.clone(), who.user.as_str())?;
            up.insert_header(ids.roles_name.clone(), who.roles.join(","))?;
            if let Some(key) = ids.assertion_key.as_deref() {
                let aud = ctx
                    .upstream
                    .and_then(|i| ctx.rt.upstreams.get(i))
                    .map_or("", |u| u.name.as_str());
                let jwt =
                    policies::assertion::assertion(key, &who.user, &who.roles, aud, state::now());
                up.insert_header(ids.assertion_name.clone(), jwt)?;
            }
        }
        // The gateway's cookies (the session token) never reach the app.
        match auth::strip_own_cookies(up) {
            cookies::Stripped::Unchanged => {}
            cookies::Stripped::Empty => {
                up.remove_header(&http::header::COOKIE);
            }
            cookies::Stripped::Rest(rest) => {
                let rest = HeaderValue::from_bytes(&rest)
                    .map_err(|_| Error::explain(InternalError, "cookie header"))?;
                up.insert_header(http::header::COOKIE, rest)?;
            }
        }
        // A buffered body was read already, any `100 Continue` sent by us.
        if ctx.buffer_body {
            up.remove_header(&http::header::EXPECT);
        }
        // The host the routes matched, in canonical form (HTTP/2 clients send
        // :authority, not Host; an HTTP/1.1 upstream needs Host).
        if let Some(h) = ctx.host.as_deref() {
            up.insert_header(http::header::HOST, h)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // A 101 turns the connection into a raw tunnel: only as the answer
        // to the client's own upgrade request, for a protocol it asked for.
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !forwarding::is_upgrade_answer(
                session
                    .req_header()
                    .headers
                    .get_all(http::header::UPGRADE)
                    .iter()
                    .map(|v| v.as_bytes()),
                resp.headers
                    .get_all(http::header::UPGRADE)
                    .iter()
                    .map(|v| v.as_bytes()),
                resp.headers
                    .get_all(http::header::CONNECTION)
                    .iter()
                    .map(|v| v.as_bytes()),
            )
        {
            return Error::e_explain(InvalidHTTPHeader, "upstream 101 answers no upgrade request");
        }
        // With `[cors]` the gateway owns the CORS answer: the app's own
        // headers could allow an origin the policy refuses.
        if ctx.rt.cors.is_some() {
            let app_cors: Vec<http::HeaderName> = resp
                .headers
                .keys()
                .filter(|k| k.as_str().starts_with("access-control-"))
                .cloned()
                .collect();
            for name in app_cors {
                resp.remove_header(&name);
            }
        }
        ctx.status = resp.status.as_u16();
        ctx.out.apply(resp)?;
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let status = match e.etype() {
            HTTPStatus(code) => *code,
            ReadTimedout | WriteTimedout if e.esource() == &ErrorSource::Upstream => 504,
            ConnectTimedout => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 502,
            },
        };
        if matches!(status, 502 | 504) {
            let upstream = ctx
                .upstream
                .and_then(|i| ctx.rt.upstreams.get(i))
                .map_or("", |u| u.name.as_str());
            let kind = if status == 504 { "timeout" } else { "error" };
            crate::metrics::METRICS
                .upstream_errors
                .with_label_values(&[upstream, kind])
                .inc();
        }
        if status > 0 && session.response_written().is_none() {
            ctx.status = status;
            // The request body may be unread: say `Connection: close` rather
            // than let the client reuse a connection we are about to drop.
            session.set_keepalive(None);
            match respond::error(session, &ctx.out, status).await {
                // A 400 here is the client's own stream failing, a 408 a
                // client too slow to wait for: nothing to drain.
                Ok(()) if !matches!(status, 400 | 408) => respond::linger(session).await,
                Ok(()) => {}
                Err(we) => tracing::debug!(error = %we, "could not write the error response"),
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(e) = e {
            tracing::warn!(request_id = %ctx.out.request_id, error = %e, "request failed");
        }
        let status = session
            .response_written()
            .map_or(ctx.status, |r| r.status.as_u16());
        let upstream = ctx
            .upstream
            .and_then(|i| ctx.rt.upstreams.get(i))
            .map(|u| u.name.as_str());
        let route = ctx.label();
        let m = &crate::metrics::METRICS;
        m.requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        m.latency
            .with_label_values(&[route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if status == 429 {
            m.rate_limited.with_label_values(&[route]).inc();
        }
        access_log::write(&access_log::Line {
            request_id: &ctx.out.request_id,
            client_ip: ctx.client.as_ref().map(|c| c.ip),
            method: session.req_header().method.as_str(),
            path: ctx.upstream_target.as_deref().unwrap_or(""),
            route: ctx.label(),
            status,
            bytes: session.body_bytes_sent(),
            duration: ctx.started.elapsed(),
            upstream,
            user: ctx.identity.as_ref().map(|i| i.user.as_str()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_location_keeps_path_and_port() {
        assert_eq!(
            https_location("Example.COM:80", None, "/a?b=1").as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(
            https_location("example.com.", Some(8443), "/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            https_location("[::1]:8080", Some(8443), "/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(https_location("", None, "/"), None);
    }
}
