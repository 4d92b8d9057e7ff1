//! Tests of the headless-browser harness (tests/support/browser.rs), without
//! the gateway: a small TLS server of our own with the test PKI serves a
//! form, and Chromium fills it in, submits it, follows a redirect and keeps
//! the cookies it was given. One browser for the whole file (it takes a
//! second or two to start).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::browser::{spki_hashes, subject_public_key_info};
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

const FORM_PAGE: &str = "<!doctype html><html><head><title>Sign in</title></head><body>\
    <h1>Sign in</h1>\
    <form method=post action=/submit><input name=user><button id=go>Go</button></form>\
    </body></html>";

/// An HTTPS server (h1 and h2) on 127.0.0.1 presenting `config`'s leaf:
/// - `GET /`: [`FORM_PAGE`];
/// - `POST /submit`: the raw request body, HTML-escaped, in `#posted`, and
///   two cookies: `sid` (Secure; HttpOnly) and `theme` (Secure);
/// - `GET /redirect`: 302 to `/cookies`;
/// - `GET /cookies`: the request's `Cookie` header in `#cookies`.
///
/// Stops when the returned task is aborted.
async fn form_server(config: Arc<rustls::ServerConfig>) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, free_port()))
        .await
        .expect("bind form server");
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service_fn(handle))
                    .await;
            });
        }
    });
    (port, task)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let html = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match (method, path.as_str()) {
        (Method::GET, "/") => html(StatusCode::OK, FORM_PAGE.to_string()),
        (Method::POST, "/submit") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let posted = escape(&String::from_utf8_lossy(&body));
            let page = format!(
                "<!doctype html><title>Submitted</title><p id=posted>{posted}</p>\
                 <a id=next href=/redirect>next</a>"
            );
            let mut resp = html(StatusCode::OK, page);
            let headers = resp.headers_mut();
            let sid = "sid=s3cr3t; Path=/; Secure; HttpOnly; SameSite=Lax";
            headers.append("set-cookie", sid.parse().unwrap());
            headers.append("set-cookie", "theme=dark; Path=/; Secure".parse().unwrap());
            resp
        }
        (Method::GET, "/redirect") => {
            let mut resp = html(StatusCode::FOUND, String::new());
            let location = "/cookies".parse().unwrap();
            resp.headers_mut().insert("location", location);
            resp
        }
        (Method::GET, "/cookies") => {
            // Over h2 each cookie may come in a header field of its own.
            let cookies: Vec<String> = req
                .headers()
                .get_all("cookie")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            let cookies = cookies.join("; ");
            let page = format!(
                "<!doctype html><title>Cookies</title><pre id=cookies>{}</pre>",
                escape(&cookies)
            );
            html(StatusCode::OK, page)
        }
        _ => html(
            StatusCode::NOT_FOUND,
            "<title>Not found</title>".to_string(),
        ),
    };
    Ok(resp)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn spki_hash_is_of_the_leaf_public_key() {
    let pki = TestPki::new();
    let cert = CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap();
    let spki = subject_public_key_info(&cert).expect("SPKI");
    // The same bytes rcgen derives from the leaf's private key.
    let key = rcgen::KeyPair::from_pem(&pki.key_pem).unwrap();
    assert_eq!(
        spki,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
    let hashes = spki_hashes(&pki.cert_pem);
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0].len(), 44, "base64 of 32 bytes: {}", hashes[0]);
    assert_ne!(hashes, spki_hashes(&TestPki::new().cert_pem));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_fills_a_form_follows_redirects_and_keeps_cookies() {
    let started = Instant::now();
    let pki = TestPki::new();
    let (port, server) = form_server(pki.server_config(&[b"h2", b"http/1.1"])).await;
    // A server whose certificate the browser was not told about.
    let stranger = TestPki::new();
    let (stranger_port, stranger_server) =
        form_server(stranger.server_config(&[b"h2", b"http/1.1"])).await;

    let browser = Browser::start_trusting(&pki).await;
    let startup = started.elapsed();
    let profile = browser.profile_dir();
    let driver_pid = browser.driver_pid();
    assert!(
        !Browser::leftovers(&profile).is_empty(),
        "Chromium's processes name the profile dir"
    );

    // The form page over HTTPS, trusted through the leaf's SPKI hash.
    let base = format!("https://localhost:{port}");
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.title().await, "Sign in");
    assert_eq!(browser.current_url().await, format!("{base}/"));
    assert!(browser.page_source().await.contains("action=\"/submit\""));
    assert!(browser.body_text().await.contains("Sign in"));
    let protocol = browser
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol;",
            vec![],
        )
        .await;
    assert_eq!(protocol, "h2", "Chromium negotiates h2 via ALPN");
    assert!(browser.wait_for("#go", Duration::from_secs(1)).await);
    assert!(
        !browser
            .wait_for("#missing", Duration::from_millis(200))
            .await
    );

    // `fill` replaces what was typed before.
    browser.fill("input[name=user]", "mallory").await;
    browser.fill("input[name=user]", "alice & <bob>").await;
    let typed = browser
        .execute(
            "return document.querySelector(arguments[0]).value;",
            vec![json!("input[name=user]")],
        )
        .await;
    assert_eq!(typed, "alice & <bob>");

    // Submit: a POST, then the result page with the body as sent.
    browser.submit_and_wait("#go").await;
    assert_eq!(browser.current_url().await, format!("{base}/submit"));
    assert_eq!(browser.title().await, "Submitted");
    assert_eq!(browser.text("#posted").await, "user=alice+%26+%3Cbob%3E");

    // Cookies: WebDriver sees HttpOnly ones, page scripts do not.
    let sid = browser.cookie("sid").await.expect("sid cookie set");
    assert_eq!(sid["value"], "s3cr3t");
    assert_eq!(sid["secure"], true);
    assert_eq!(sid["httpOnly"], true);
    assert_eq!(sid["sameSite"], "Lax");
    assert_eq!(sid["path"], "/");
    assert_eq!(sid["domain"], "localhost");
    let theme = browser.cookie("theme").await.expect("theme cookie set");
    assert_eq!(theme["httpOnly"], false);
    assert_eq!(browser.cookies().await.len(), 2);
    let script_cookies = browser.execute("return document.cookie;", vec![]).await;
    assert_eq!(script_cookies, "theme=dark");

    // A redirect is followed, and the cookies go back to the server.
    browser.click("#next").await;
    assert!(browser.wait_for("#cookies", Duration::from_secs(10)).await);
    assert_eq!(browser.current_url().await, format!("{base}/cookies"));
    let sent = browser.text("#cookies").await;
    assert!(
        sent.contains("sid=s3cr3t") && sent.contains("theme=dark"),
        "{sent}"
    );

    // A screenshot is a PNG.
    let png = browser.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 1000,
        "suspiciously small PNG: {} bytes",
        png.len()
    );

    browser.delete_cookies().await;
    assert!(browser.cookie("sid").await.is_none());
    assert!(browser.cookies().await.is_empty());

    // Trust is for that one key only: another CA's leaf gets an interstitial
    // (Chromium shows it as a page; no form, no server page title).
    browser
        .goto(&format!("https://localhost:{stranger_port}/"))
        .await;
    assert_ne!(browser.title().await, "Sign in");
    assert!(!browser.wait_for("#go", Duration::from_millis(300)).await);
    let text = browser.body_text().await;
    assert!(
        text.contains("ERR_CERT_AUTHORITY_INVALID") || text.contains("not private"),
        "expected a certificate error page, got: {text}"
    );

    let session_time = started.elapsed();
    drop(browser);
    let dropped = started.elapsed();
    assert!(
        Browser::leftovers(&profile).is_empty(),
        "Chromium processes survived the Browser: {:?}",
        Browser::leftovers(&profile)
    );
    assert!(
        !Path::new(&format!("/proc/{driver_pid}")).exists(),
        "chromedriver {driver_pid} survived the Browser"
    );
    assert!(
        !profile.exists(),
        "profile dir {} left behind",
        profile.display()
    );
    server.abort();
    stranger_server.abort();
    eprintln!("browser start {startup:?}, flow done at {session_time:?}, dropped at {dropped:?}");
}
