//! A stand-in for GitHub's OAuth app endpoints and REST API (github.com
//! cannot be reached from the test machine), over HTTPS with the test PKI.
//! It follows GitHub's documented behaviour where the gateway depends on it:
//!
//! * `GET /login/oauth/authorize` (client_id, redirect_uri, scope, state,
//!   code_challenge S256): GitHub shows a consent page on first use; the
//!   stand-in approves at once as the user [`GithubStandIn::approve_as`]
//!   names and answers `302` to `redirect_uri?code=…&state=…`.
//! * `POST /login/oauth/access_token` (form; `Accept: application/json`):
//!   `{"access_token","token_type":"bearer","scope"}`, or — as GitHub does —
//!   `200` with `{"error":"bad_verification_code",…}` for a wrong, used or
//!   expired code, `{"error":"incorrect_client_credentials",…}` for a wrong
//!   secret. A code works once; with a challenge, only with its verifier.
//! * Under `/api/v3` (GitHub Enterprise Server's API prefix, the `api_url`
//!   a config gives): `GET /user`, `/user/emails`, `/user/orgs`,
//!   `/user/teams` with `Authorization: Bearer`/`token`; `401
//!   {"message":"Bad credentials"}` otherwise.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use sha2::Digest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::pki::TestPki;

pub const CLIENT_ID: &str = "Iv1.portcullis-test";
pub const CLIENT_SECRET: &str = "github-test-client-secret-0123456789";

/// One GitHub user as the API shows them.
#[derive(Clone, Debug)]
pub struct GhUser {
    pub id: u64,
    pub login: String,
    /// `(address, primary, verified)`.
    pub emails: Vec<(String, bool, bool)>,
    pub orgs: Vec<String>,
    /// `(org, team slug)`.
    pub teams: Vec<(String, String)>,
}

/// What an authorization code stands for: the user, the redirect URI it
/// was issued for, and the PKCE challenge.
type Grant = (String, String, Option<String>);

#[derive(Default)]
struct State {
    users: Vec<GhUser>,
    approve_as: Mutex<String>,
    /// code → (login, redirect_uri, code_challenge)
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, String>>,
    counter: Mutex<u64>,
}

pub struct GithubStandIn {
    pub port: u16,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GithubStandIn {
    pub fn start(pki: &TestPki, users: Vec<GhUser>) -> GithubStandIn {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            users,
            ..State::default()
        });
        let tls = pki.server_config(&[b"http/1.1"]);
        let (shutdown, stop) = oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, state) = (acceptor.clone(), thread_state.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service = service_fn(move |req| handle(req, state.clone()));
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        GithubStandIn {
            port,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The user the next authorization approves as.
    pub fn approve_as(&self, login: &str) {
        *self.state.approve_as.lock().unwrap() = login.to_string();
    }

    /// The provider table lines for a gateway config.
    pub fn provider_config(&self, ca: &std::path::Path) -> String {
        format!(
            "auth_url = \"{b}/login/oauth/authorize\"\ntoken_url = \"{b}/login/oauth/access_token\"\n\
             api_url = \"{b}/api/v3\"\nclient_id = \"{CLIENT_ID}\"\nca = \"{ca}\"\n",
            b = self.base(),
            ca = ca.display()
        )
    }
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json; charset=utf-8".parse().unwrap(),
    );
    resp
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn fresh(state: &State, prefix: &str) -> String {
    let mut n = state.counter.lock().unwrap();
    *n += 1;
    format!("{prefix}{:016x}{}", rand::random::<u64>(), *n)
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method().as_str(), path.as_str()) {
        ("GET", "/login/oauth/authorize") => authorize(&req, &state),
        ("POST", "/login/oauth/access_token") => access_token(req, &state).await,
        ("GET", p) if p.starts_with("/api/v3/") => api(&req, &state, &p["/api/v3".len()..]),
        _ => reply(StatusCode::NOT_FOUND, json!({ "message": "Not Found" })),
    })
}

fn authorize(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let q = query(req);
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return reply(StatusCode::NOT_FOUND, json!({ "message": "Not Found" }));
    }
    let Some(redirect) = q.get("redirect_uri") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "redirect_uri_mismatch" }),
        );
    };
    let login = state.approve_as.lock().unwrap().clone();
    let code = fresh(state, "");
    let challenge = q.get("code_challenge").cloned();
    if challenge.is_some() && q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "invalid_request" }),
        );
    }
    state
        .codes
        .lock()
        .unwrap()
        .insert(code.clone(), (login, redirect.clone(), challenge));
    let mut to = url::Url::parse(redirect).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut()
        .insert(hyper::header::LOCATION, to.to_string().parse().unwrap());
    resp
}

async fn access_token(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return reply(
            StatusCode::OK,
            json!({ "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect." }),
        );
    }
    let bad_code = reply(
        StatusCode::OK,
        json!({ "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired." }),
    );
    let Some((login, redirect, challenge)) = state.codes.lock().unwrap().remove(field("code"))
    else {
        return bad_code;
    };
    if field("redirect_uri") != redirect {
        return reply(StatusCode::OK, json!({ "error": "redirect_uri_mismatch" }));
    }
    if let Some(challenge) = challenge {
        let derived = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(field("code_verifier").as_bytes()));
        if derived != challenge {
            return bad_code;
        }
    }
    let token = fresh(state, "gho_");
    state.tokens.lock().unwrap().insert(token.clone(), login);
    reply(
        StatusCode::OK,
        json!({ "access_token": token, "token_type": "bearer", "scope": "read:org,read:user,user:email" }),
    )
}

fn api(req: &Request<Incoming>, state: &State, path: &str) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("");
    let login = state.tokens.lock().unwrap().get(token).cloned();
    let Some(user) = login.and_then(|l| state.users.iter().find(|u| u.login == l).cloned()) else {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest" }),
        );
    };
    let org = |name: &str| json!({ "login": name, "id": name.len() as u64 * 1000, "url": format!("https://api.github.com/orgs/{name}") });
    match path {
        "/user" => reply(
            StatusCode::OK,
            json!({ "login": user.login, "id": user.id, "type": "User", "site_admin": false,
                    "name": user.login, "email": null }),
        ),
        "/user/emails" => reply(
            StatusCode::OK,
            Value::Array(
                user.emails
                    .iter()
                    .map(|(e, primary, verified)| {
                        json!({ "email": e, "primary": primary, "verified": verified, "visibility": null })
                    })
                    .collect(),
            ),
        ),
        "/user/orgs" => reply(
            StatusCode::OK,
            Value::Array(user.orgs.iter().map(|o| org(o)).collect()),
        ),
        "/user/teams" => reply(
            StatusCode::OK,
            Value::Array(
                user.teams
                    .iter()
                    .map(|(o, slug)| json!({ "id": 1, "name": slug, "slug": slug, "organization": org(o) }))
                    .collect(),
            ),
        ),
        _ => reply(StatusCode::NOT_FOUND, json!({ "message": "Not Found" })),
    }
}
