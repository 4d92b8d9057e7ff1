//! Adversarial black-box suite: the real binary over raw TCP/TLS sockets.
//!
//! Every case asserts what the gateway answers (docs/hardening.md lists the
//! documented status of each), that the gateway stays up and keeps serving a
//! well-behaved client running in parallel ([`Watchdog`]), and that the
//! upstream — a raw recorder that keeps every request head it parses — never
//! receives a smuggled second request.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/h2raw.rs"]
mod h2raw;
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use h2raw::{frame, get_block, H2Conn, CONTINUATION, END_HEADERS, END_STREAM, HEADERS, RST_STREAM};
use support::client::{parse_response, tls_client_config, tls_connect};
use support::config::basic;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// The request a smuggling attempt hides in a body.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

// ---------------------------------------------------------------- upstream --

/// A raw HTTP/1.1 upstream: parses each request strictly (CRLF, one
/// Content-Length or `Transfer-Encoding: chunked`), records its head as
/// received, answers `200 ok`. Anything it cannot frame closes the connection
/// and is recorded too.
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = heads.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        if let Ok((s, _)) = listener.accept().await {
                            tokio::spawn(record_connection(s, shared.clone()));
                        }
                    }
                };
                tokio::select! { _ = accept => {}, _ = stopped => {} }
            });
        });
        Recorder {
            addr,
            heads,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }

    /// Heads whose request line names `path`.
    fn count(&self, path: &str) -> usize {
        self.heads()
            .iter()
            .filter(|h| {
                let target = h.lines().next().and_then(|l| l.split(' ').nth(1));
                target.is_some_and(|t| t.split('?').next() == Some(path))
            })
            .count()
    }

    fn assert_no_smuggling(&self) {
        for head in self.heads() {
            assert!(
                !head.contains("/smuggled"),
                "the upstream received a smuggled request:\n{head}"
            );
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, need: usize) -> Option<()> {
    while buf.len() < need {
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

async fn line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let l = buf[..i].to_vec();
            buf.drain(..i + 2);
            return Some(l);
        }
        let want = buf.len() + 1;
        fill(s, buf, want).await?;
    }
}

async fn record_connection(mut s: TcpStream, heads: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 4 << 20 {
                return;
            }
            let want = buf.len() + 1;
            if fill(&mut s, &mut buf, want).await.is_none() {
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        heads.lock().unwrap().push(head.clone());
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let values = |name: &str| -> Vec<String> {
            text.split("\r\n")
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.trim().to_string())
                .collect()
        };
        let te = values("transfer-encoding");
        let cl = values("content-length");
        if !te.is_empty() {
            if te != ["chunked"] || !cl.is_empty() {
                return; // not framed the one unambiguous way
            }
            loop {
                let Some(size) = line(&mut s, &mut buf).await else {
                    return;
                };
                let size = String::from_utf8_lossy(&size);
                let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                else {
                    return;
                };
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        match line(&mut s, &mut buf).await {
                            Some(l) if l.is_empty() => break,
                            Some(_) => continue,
                            None => return,
                        }
                    }
                    break;
                }
                if fill(&mut s, &mut buf, size + 2).await.is_none() {
                    return;
                }
                buf.drain(..size + 2);
            }
        } else if !cl.is_empty() {
            if cl.iter().any(|v| v != &cl[0]) {
                return;
            }
            let Ok(n) = cl[0].parse::<usize>() else {
                return;
            };
            if fill(&mut s, &mut buf, n).await.is_none() {
                return;
            }
            buf.drain(..n);
        }
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
        if s.write_all(resp).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------- watchdog --

/// A well-behaved client requesting `/healthy` every 100 ms while an attack
/// runs; `finish` asserts every one of its requests got a 200.
struct Watchdog {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Watchdog {
    fn start(gw: &Gateway, ca: &str) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let (client, url) = (https_client(ca, gw.https_port, true), gw.url("/healthy"));
        let (s, o) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failures
        });
        Watchdog { stop, ok, task }
    }

    async fn finish(self, gw: &mut Gateway) {
        // At least one more request after the attack.
        let before = self.ok.load(Ordering::SeqCst);
        let grown = tokio::time::timeout(Duration::from_secs(30), async {
            while self.ok.load(Ordering::SeqCst) <= before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.unwrap();
        assert!(gw.try_wait().is_none(), "the gateway exited");
        assert!(
            grown.is_ok(),
            "the well-behaved client was not served after the attack"
        );
        assert!(
            failures.is_empty(),
            "the well-behaved client failed during the attack: {failures:?}"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The soft `RLIMIT_NOFILE` of this process.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn setup() -> (TestPki, Recorder, Gateway) {
    let pki = TestPki::new();
    let up = Recorder::start();
    // No per-IP limit: attack and watchdog traffic share 127.0.0.1, and a
    // limit would make the watchdog's 200s depend on how fast the attack ran.
    let gw = Gateway::start(&basic(
        &pki,
        &[up.addr],
        "[rate_limit]\ndefault = \"off\"\n",
    ));
    (pki, up, gw)
}

// ------------------------------------------------------------ raw HTTP/1.1 --

/// What came back for one raw request.
#[derive(Debug)]
struct Exchange {
    status: Option<u16>,
    /// Every byte the gateway sent.
    raw: Vec<u8>,
    /// The gateway closed the connection (EOF or reset) within the wait.
    closed: bool,
}

impl Exchange {
    fn responses(&self) -> usize {
        let text = String::from_utf8_lossy(&self.raw);
        text.matches("HTTP/1.1 ").count()
    }
}

/// Writes `request` (write errors ignored: the gateway may close first),
/// reads one response, then anything more for `linger`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
    linger: Duration,
) -> Exchange {
    let _ = s.write_all(request).await;
    let _ = s.flush().await;
    let mut raw = Vec::new();
    let mut closed = false;
    let mut status = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut linger_until = None;
    loop {
        if status.is_none() {
            if let Some(r) = parse_response(&raw, false, false) {
                status = Some(r.status);
                // An answer that says it closes gets time to do it even on a
                // loaded machine; anything sent meanwhile is still recorded.
                let closing = r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                let wait = if closing {
                    linger.max(Duration::from_secs(5))
                } else {
                    linger
                };
                linger_until = Some(tokio::time::Instant::now() + wait);
            }
        }
        let until = linger_until.unwrap_or(deadline).min(deadline);
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    if status.is_none() {
        status = parse_response(&raw, false, true).map(|r| r.status);
    }
    Exchange {
        status,
        raw,
        closed,
    }
}

async fn tls_exchange(port: u16, ca: &str, request: &[u8], linger: Duration) -> Exchange {
    let s = tls_connect(port, ca, "localhost", &[b"http/1.1"])
        .await
        .expect("TLS connect");
    exchange(s, request, linger).await
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 400, one response only, connection closed.
    Reject,
    /// Forwarded once (200), re-framed: the upstream head has only CRLF line
    /// endings and at most one framing header.
    Forward,
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /case HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}")
}

fn chunk_with_smuggled() -> String {
    format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len())
}

/// (name, request bytes, expected).
fn framing_cases() -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let cl_te_body = format!("0\r\n\r\n{SMUGGLED}");
    let chunked = chunk_with_smuggled();
    let cl = |n: usize| format!("Content-Length: {n}\r\n");
    vec![
        // CL.TE: a CL-framing hop would read "0\r\n\r\n" and leave the rest.
        (
            "CL.TE",
            post(
                &format!("{}Transfer-Encoding: chunked\r\n", cl(5)),
                &cl_te_body,
            ),
            Reject,
        ),
        // TE.CL: a CL-framing hop would read 4 bytes and see a new request.
        (
            "TE.CL",
            post(
                &format!("Transfer-Encoding: chunked\r\n{}", cl(4)),
                &chunked,
            ),
            Reject,
        ),
        // TE.TE: one hop ignores an obfuscated TE and falls back to CL.
        (
            "TE.TE chunked + identity",
            post(
                &format!("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n{}", cl(4)),
                &chunked,
            ),
            Reject,
        ),
        (
            "TE 'chunked ,identity' + CL",
            post(&format!("Transfer-Encoding: chunked ,identity\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE 'chunked ,identity' alone",
            post("Transfer-Encoding: chunked ,identity\r\n", &chunked),
            Reject,
        ),
        (
            "'Transfer-Encoding : chunked' (space before colon)",
            post(&format!("Transfer-Encoding : chunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "'Transfer-Encoding : chunked' alone",
            post("Transfer-Encoding : chunked\r\n", &chunked),
            Reject,
        ),
        (
            "TE tab-chunked + CL",
            post(&format!("Transfer-Encoding:\tchunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE xchunked + CL",
            post(&format!("Transfer-Encoding: xchunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE xchunked alone",
            post("Transfer-Encoding: xchunked\r\n", &chunked),
            Reject,
        ),
        (
            "TE chunked twice + CL",
            post(
                &format!("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n{}", cl(4)),
                &chunked,
            ),
            Reject,
        ),
        (
            "TE chunked twice alone",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &chunked,
            ),
            Reject,
        ),
        (
            "TE mixed-case value + CL",
            post(&format!("Transfer-Encoding: ChUnKeD\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE mixed-case name + CL",
            post(&format!("tRaNsFeR-eNcOdInG: chunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE folded onto a previous header (obs-fold)",
            post(&format!("X-A: b\r\n Transfer-Encoding: chunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "TE 'identity, chunked' alone",
            post("Transfer-Encoding: identity, chunked\r\n", &chunked),
            Reject,
        ),
        (
            "TE on HTTP/1.0",
            format!("POST /case HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"),
            Reject,
        ),
        // Legitimate spellings of chunked: forwarded, re-framed.
        (
            "TE mixed-case value alone",
            post("Transfer-Encoding: ChUnKeD\r\n", &chunked),
            Forward,
        ),
        (
            "TE tab-chunked alone",
            post("Transfer-Encoding:\tchunked\r\n", &chunked),
            Forward,
        ),
        // Content-Length games.
        (
            "CL twice, different",
            post(&format!("{}{}", cl(5), cl(40)), "hello"),
            Reject,
        ),
        ("CL list '5, 40'", post("Content-Length: 5, 40\r\n", "hello"), Reject),
        ("CL '+5'", post("Content-Length: +5\r\n", "hello"), Reject),
        ("CL '-1'", post("Content-Length: -1\r\n", "hello"), Reject),
        ("CL '0x5'", post("Content-Length: 0x5\r\n", "hello"), Reject),
        ("CL '1 5'", post("Content-Length: 1 5\r\n", "hello"), Reject),
        (
            "CL overflowing u64",
            post("Content-Length: 99999999999999999999999\r\n", "hello"),
            Reject,
        ),
        (
            "CL twice, equal",
            post(&format!("{}{}", cl(5), cl(5)), "hello"),
            Forward,
        ),
        // Line endings.
        (
            "bare LF line endings",
            "POST /case HTTP/1.1\nHost: localhost\nContent-Length: 5\n\nhello".to_string(),
            Forward,
        ),
        (
            "bare LF hiding a TE next to CL",
            post(&format!("X-A: b\nTransfer-Encoding: chunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "bare CR inside a header line",
            post(&format!("X-A: b\rTransfer-Encoding: chunked\r\n{}", cl(4)), &chunked),
            Reject,
        ),
        (
            "obs-fold continuation line",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX-Fold: a\r\n b\r\n\r\n".to_string(),
            Reject,
        ),
        // Control bytes in header values and names.
        (
            "NUL in a header value",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "CR in a header value",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "NUL in a header name",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX\0A: b\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "CR in a header name",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX\rA: b\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "space in a header name",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nX A: b\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "empty header name",
            "GET /case HTTP/1.1\r\nHost: localhost\r\n: b\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "request line with an extra token",
            "GET /case HTTP/1.1 x\r\nHost: localhost\r\n\r\n".to_string(),
            Reject,
        ),
        // The security review's parser disagreements (docs/hardening.md):
        // refused, and the connection closed, like any malformed head.
        (
            "lowercase method",
            "post /case HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "mixed-case method",
            "Delete /case HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host with a non-numeric port",
            "GET /case HTTP/1.1\r\nHost: localhost:abc\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host with a port past 65535",
            "GET /case HTTP/1.1\r\nHost: localhost:99999\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host with two ports",
            "GET /case HTTP/1.1\r\nHost: localhost:1:2\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host with an empty label",
            "GET /case HTTP/1.1\r\nHost: localhost..\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host list",
            "GET /case HTTP/1.1\r\nHost: localhost,evil.example\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "percent-encoded Host",
            "GET /case HTTP/1.1\r\nHost: local%68ost\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "Host with a path",
            "GET /case HTTP/1.1\r\nHost: localhost/x\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "empty Host",
            "GET /case HTTP/1.1\r\nHost: \r\n\r\n".to_string(),
            Reject,
        ),
        (
            "HTTP/1.0 without Host",
            "GET /case HTTP/1.0\r\n\r\n".to_string(),
            Reject,
        ),
        (
            "raw UTF-8 next to the gateway's cookies",
            "GET /case HTTP/1.1\r\nHost: localhost\r\nCookie: __Host-portcullis=x; name=Jos\u{e9}\r\nCookie: __Host-portcullis-csrf=y\r\n\r\n".to_string(),
            Forward,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_malformed_heads_are_refused() {
    let (pki, up, mut gw) = setup();
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    let mut wrong = Vec::new();
    for (name, request, expect) in framing_cases() {
        let before = up.count("/case");
        let ex = tls_exchange(
            gw.https_port,
            &pki.ca_pem,
            request.as_bytes(),
            Duration::from_millis(500),
        )
        .await;
        let forwarded = up.count("/case") - before;
        let ok = match expect {
            Expect::Reject => {
                ex.status == Some(400) && ex.closed && ex.responses() == 1 && forwarded == 0
            }
            Expect::Forward => ex.status == Some(200) && ex.responses() == 1 && forwarded == 1,
        };
        if !ok {
            wrong.push(format!(
                "{name}: expected {expect:?}, got status {:?}, closed {}, {} responses, forwarded {forwarded}:\n{}",
                ex.status,
                ex.closed,
                ex.responses(),
                String::from_utf8_lossy(&ex.raw)
            ));
        }
    }
    // Forwarded heads are re-serialised: CRLF only, one framing header.
    for head in up.heads() {
        let bytes = head.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF upstream:\n{head}");
            }
        }
        let lower = head.to_ascii_lowercase();
        let framing = lower.matches("\r\ntransfer-encoding:").count()
            + lower.matches("\r\ncontent-length:").count().min(1);
        assert!(framing <= 1, "ambiguous framing upstream:\n{head}");
    }
    // The gateway's cookies never reach the app, whatever bytes surround them.
    for head in up.heads() {
        assert!(
            !head.to_ascii_lowercase().contains("portcullis"),
            "gateway cookie upstream:\n{head}"
        );
    }
    if std::env::var_os("ADV_DUMP").is_some() {
        eprintln!("{:#?}", up.heads());
    }
    up.assert_no_smuggling();
    dog.finish(&mut gw).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let (pki, up, mut gw) = setup();
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    let port = gw.https_port;
    let ca = pki.ca_pem.clone();
    let linger = Duration::from_millis(200);

    // A request line past pingora's 1 MiB head limit.
    let long = format!(
        "GET /case?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(1100 * 1024)
    );
    let ex = tls_exchange(port, &ca, long.as_bytes(), linger).await;
    assert_eq!(ex.status, Some(400), "request line over 1 MiB");
    assert!(ex.closed);

    // A header section past it (many 8 KiB headers).
    let mut many = String::from("GET /case HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..140 {
        many.push_str(&format!("X-Big-{i}: {}\r\n", "b".repeat(8 * 1024)));
    }
    many.push_str("\r\n");
    let ex = tls_exchange(port, &ca, many.as_bytes(), linger).await;
    assert_eq!(ex.status, Some(400), "header section over 1 MiB");
    assert!(ex.closed);

    // More header lines than pingora's 256.
    let mut count = String::from("GET /case HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..300 {
        count.push_str(&format!("X-H-{i}: v\r\n"));
    }
    count.push_str("\r\n");
    let ex = tls_exchange(port, &ca, count.as_bytes(), linger).await;
    assert_eq!(ex.status, Some(400), "300 header lines");
    assert!(ex.closed);

    // A request-target the http crate cannot hold (its URIs end at 65534 bytes).
    let uri = format!(
        "GET /case?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "u".repeat(65 * 1024)
    );
    let ex = tls_exchange(port, &ca, uri.as_bytes(), linger).await;
    assert_eq!(ex.status, Some(400), "65 KiB request-target");
    assert!(ex.closed);

    assert_eq!(
        up.count("/case"),
        0,
        "nothing oversized reached the upstream"
    );
    // Just under the limits passes: a 60 KiB target and 200 header lines.
    let mut fine = format!(
        "GET /case?{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
        "q".repeat(60 * 1024)
    );
    for i in 0..200 {
        fine.push_str(&format!("X-H-{i}: v\r\n"));
    }
    fine.push_str("\r\n");
    let ex = tls_exchange(port, &ca, fine.as_bytes(), linger).await;
    assert_eq!(ex.status, Some(200), "60 KiB target, 200 headers");
    assert_eq!(up.count("/case"), 1);
    up.assert_no_smuggling();
    dog.finish(&mut gw).await;
}

// ------------------------------------------------------------ slow clients --

/// Sends `first`, then one byte of `trickle` every 300 ms; true when the
/// gateway closes the connection before `limit`.
async fn trickle_closed<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    first: &[u8],
    limit: Duration,
) -> bool {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = w.write_all(first).await;
    let writer = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(b"a").await.is_err() || w.flush().await.is_err() {
                // Writing fails once the gateway has gone: keep the read side going.
                std::future::pending::<()>().await;
            }
        }
    };
    let reader = async move {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, async {
        tokio::select! { _ = writer => {}, _ = reader => {} }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_request_heads_are_cut_off() {
    let (pki, up, mut gw) = setup();
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    let (port, http_port, ca) = (gw.https_port, gw.http_port, pki.ca_pem.clone());
    // The head deadline is 10 s; 30 s is a generous bound for "closed at all"
    // (without a deadline these connections stay open as long as bytes trickle).
    let limit = Duration::from_secs(30);
    let head = b"GET /case HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

    let tls_trickle = async {
        let s = tls_connect(port, &ca, "localhost", &[b"http/1.1"])
            .await
            .unwrap();
        trickle_closed(s, head, limit).await
    };
    let plain_trickle = async {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, http_port))
            .await
            .unwrap();
        trickle_closed(s, head, limit).await
    };
    let tls_silent = async {
        let mut s = tls_connect(port, &ca, "localhost", &[b"http/1.1"])
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        tokio::time::timeout(limit, s.read(&mut buf)).await.is_ok()
    };
    // A kept-alive connection: one full request, then a trickled second head.
    let keepalive_trickle = async {
        let mut s = tls_connect(port, &ca, "localhost", &[b"http/1.1"])
            .await
            .unwrap();
        s.write_all(b"GET /case HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        while parse_response(&raw, false, false).is_none() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first response");
            raw.extend_from_slice(&buf[..n]);
        }
        trickle_closed(s, head, limit).await
    };
    // The deadline is for the head only: a body trickled over 12 s passes.
    let slow_body = async {
        let mut s = tls_connect(port, &ca, "localhost", &[b"http/1.1"])
            .await
            .unwrap();
        s.write_all(b"POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.write_all(b"b").await.unwrap();
        }
        exchange(s, b"", Duration::ZERO).await.status
    };
    let (a, b, c, d, e) = tokio::join!(
        tls_trickle,
        plain_trickle,
        tls_silent,
        keepalive_trickle,
        slow_body
    );
    assert_eq!(e, Some(200), "a slowly sent body was cut off");
    assert!(a, "a trickled head over TLS was not cut off");
    assert!(b, "a trickled head on the http listener was not cut off");
    assert!(c, "a TLS connection that sends nothing was not closed");
    assert!(
        d,
        "a trickled second head on a kept-alive connection was not cut off"
    );
    assert_eq!(
        up.count("/case"),
        1,
        "only the complete request was forwarded"
    );
    dog.finish(&mut gw).await;
}

/// Reads one whole response from a kept-alive connection: its status.
async fn next_status<S: AsyncRead + Unpin>(s: &mut S) -> Option<u16> {
    let mut raw = Vec::new();
    loop {
        if let Some(r) = parse_response(&raw, false, false) {
            return Some(r.status);
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Between requests the gateway waits for the next head itself and hands
/// what it read to the next request (gateway/src/conn_loop.rs): no byte may
/// be lost or read twice, whatever the split, over TLS and plain TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_lose_no_bytes() {
    let (pki, up, gw) = setup();
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    let pad = "p".repeat(6000); // longer than the first read after idling
    let mut s = tls_connect(gw.https_port, &pki.ca_pem, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    s.write_all(b"GET /ka-1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(next_status(&mut s).await, Some(200), "first request");
    // One byte after an idle pause, the rest later.
    pause().await;
    s.write_all(b"G").await.unwrap();
    pause().await;
    s.write_all(b"ET /ka-2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        next_status(&mut s).await,
        Some(200),
        "a head split after idling"
    );
    // A head longer than one read.
    pause().await;
    let long = format!("GET /ka-3 HTTP/1.1\r\nHost: localhost\r\nX-Pad: {pad}\r\n\r\n");
    s.write_all(long.as_bytes()).await.unwrap();
    assert_eq!(next_status(&mut s).await, Some(200), "a 6 KB head");
    // Heads around the size of the buffer an idle connection waits with
    // (1 KiB) and of a head read (4 KiB).
    let sizes = [1023, 1024, 1025, 4095, 4096, 4097];
    for size in sizes {
        pause().await;
        let head = format!("GET /ka-b{size} HTTP/1.1\r\nHost: localhost\r\nX-Pad: \r\n\r\n");
        let pad = "q".repeat(size - head.len());
        let head = head.replace("X-Pad: ", &format!("X-Pad: {pad}"));
        assert_eq!(head.len(), size);
        s.write_all(head.as_bytes()).await.unwrap();
        assert_eq!(next_status(&mut s).await, Some(200), "a {size}-byte head");
        assert_eq!(
            up.count(&format!("/ka-b{size}")),
            1,
            "{size} forwarded once"
        );
    }
    // A head and its body in one write, then one more request: a lost or
    // repeated body byte would hang the first or garble the second.
    pause().await;
    s.write_all(b"POST /ka-4 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    assert_eq!(
        next_status(&mut s).await,
        Some(200),
        "head and body together"
    );
    s.write_all(b"GET /ka-5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(next_status(&mut s).await, Some(200), "right after a body");
    // The plain listener redirects: the same on its kept-alive connection.
    let mut p = TcpStream::connect((Ipv4Addr::LOCALHOST, gw.http_port))
        .await
        .unwrap();
    for target in ["/ka-6", "/ka-7"] {
        pause().await;
        p.write_all(b"G").await.unwrap();
        pause().await;
        let rest = format!("ET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        p.write_all(rest.as_bytes()).await.unwrap();
        assert_eq!(next_status(&mut p).await, Some(301), "plain {target}");
    }
    for path in ["/ka-1", "/ka-2", "/ka-3", "/ka-4", "/ka-5"] {
        assert_eq!(up.count(path), 1, "{path} forwarded once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_do_not_starve_others() {
    let (pki, _up, mut gw) = setup();
    let rss_before = rss_kib(gw.pid());
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    // 2000 plain + 200 TLS, fewer if this process may not open that many
    // files (the gateway inherits the same limit).
    let plain = (open_files_limit().saturating_sub(400) * 10 / 11).min(2000);
    let mut idle = Vec::new();
    for _ in 0..plain {
        idle.push(
            TcpStream::connect((Ipv4Addr::LOCALHOST, gw.https_port))
                .await
                .expect("idle TCP connect"),
        );
    }
    let mut idle_tls = Vec::new();
    for _ in 0..plain / 10 {
        idle_tls.push(
            tls_connect(gw.https_port, &pki.ca_pem, "localhost", &[b"http/1.1"])
                .await
                .expect("idle TLS connect"),
        );
    }
    // With all of them open, a normal client is still served.
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/fresh"))
        .send()
        .await
        .expect("fresh request");
    assert_eq!(resp.status(), 200);
    let rss_during = rss_kib(gw.pid());
    eprintln!(
        "{} idle connections: VmRSS {rss_before} KiB -> {rss_during} KiB",
        plain + plain / 10
    );
    assert!(
        rss_during < rss_before + 200 * 1024,
        "idle connections cost more than 200 MiB ({rss_before} -> {rss_during} KiB)"
    );
    dog.finish(&mut gw).await;
    drop(idle);
    drop(idle_tls);
}

// ------------------------------------------------------------------ HTTP/2 --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_and_header_floods() {
    let (pki, up, mut gw) = setup();
    let pid = gw.pid();
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    let rss_before = rss_kib(pid);

    // CVE-2023-44487: HEADERS then RST_STREAM(CANCEL), over and over.
    const STREAMS: u32 = 5000;
    let mut reset_outcomes = Vec::new();
    for _ in 0..3 {
        let mut c = H2Conn::open(gw.https_port, &pki.ca_pem).await;
        let block = get_block("/case");
        let mut batch = Vec::new();
        let mut sent = 0;
        for i in 0..STREAMS {
            let id = 2 * i + 1;
            batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
            batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            if batch.len() > 64 * 1024 {
                if c.send(&batch).await.is_err() {
                    break;
                }
                sent = i + 1;
                batch.clear();
            }
        }
        let _ = c.send(&batch).await;
        let goaway = c.goaway(Duration::from_secs(10)).await;
        reset_outcomes.push((sent, goaway));
    }
    eprintln!("rapid reset: (streams written before the gateway stopped reading, GOAWAY code) = {reset_outcomes:?}");
    // h2 allows 20 reset streams waiting to be accepted, then GOAWAY.
    assert!(
        reset_outcomes
            .iter()
            .any(|(_, goaway)| *goaway == Some(h2raw::ENHANCE_YOUR_CALM)),
        "rapid reset must end in GOAWAY(ENHANCE_YOUR_CALM): {reset_outcomes:?}"
    );
    // Streams the gateway accepted before the GOAWAY may still be on their
    // way upstream: the count is taken once it has held still for a second.
    let mut forwarded = up.count("/case");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = up.count("/case");
        if now == forwarded {
            break;
        }
        forwarded = now;
    }
    eprintln!(
        "rapid reset: {forwarded} of {} streams reached the upstream",
        3 * STREAMS
    );
    assert!(
        forwarded < (3 * STREAMS) as usize / 10,
        "{forwarded} reset streams were forwarded"
    );

    // CVE-2024-27316: a header block that never ends (CONTINUATION flood).
    let mut c = H2Conn::open(gw.https_port, &pki.ca_pem).await;
    let _ = c.send(&frame(HEADERS, 0, 1, &get_block("/case"))).await;
    let junk = h2raw::hpack_literal(b"x-flood", &[b'f'; 16000]);
    let mut flood_sent = 0usize;
    for _ in 0..640 {
        // up to 10 MiB
        if c.send(&frame(CONTINUATION, 0, 1, &junk)).await.is_err() {
            break;
        }
        flood_sent += junk.len();
    }
    let ended = c.wait_for(Duration::from_secs(10), |f| {
        (f.ty == h2raw::GOAWAY || (f.ty == RST_STREAM && f.stream == 1)).then(|| f.clone())
    });
    let ended = ended.await;
    eprintln!("CONTINUATION flood: {flood_sent} bytes written; answer {ended:?}");
    assert!(
        ended.is_some() || c.closed_within(Duration::from_secs(5)).await,
        "an endless header block must end the stream or the connection"
    );

    // HPACK bomb: one large dynamic-table entry referenced thousands of times.
    let mut c = H2Conn::open(gw.https_port, &pki.ca_pem).await;
    let mut block = get_block("/case");
    block.extend(h2raw::hpack_literal_indexed(b"x-bomb", &[b'b'; 4000]));
    block.extend(std::iter::repeat_n(0xbe, 12000)); // index 62: the entry above
    let _ = c
        .send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await;
    let answer = c
        .wait_for(Duration::from_secs(10), |f| {
            ((f.ty == HEADERS || f.ty == RST_STREAM) && f.stream == 1 || f.ty == h2raw::GOAWAY)
                .then(|| f.clone())
        })
        .await;
    eprintln!("HPACK bomb answer: {answer:?}");
    let refused = match &answer {
        // 431 is `:status` literal "431" or a RST/GOAWAY.
        Some(f) if f.ty == HEADERS => f.payload.windows(3).any(|w| w == b"431"),
        Some(_) => true,
        None => c.closed_within(Duration::from_secs(5)).await,
    };
    assert!(
        refused,
        "a 48 MB decoded header list was not refused: {answer:?}"
    );

    let rss_after = rss_kib(pid);
    eprintln!("h2 floods: VmRSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "memory grew by more than 256 MiB ({rss_before} -> {rss_after} KiB)"
    );
    assert_eq!(
        up.count("/case"),
        forwarded,
        "no flood request was forwarded"
    );
    dog.finish(&mut gw).await;
}

// --------------------------------------------------------------------- TLS --

/// Sends `bytes` on a fresh TCP connection to the TLS port (then shuts the
/// write side when `eof`); true when the gateway closes within 10 s.
async fn tls_port_closes(port: u16, bytes: &[u8], eof: bool) -> bool {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let _ = s.write_all(bytes).await;
    if eof {
        let _ = s.shutdown().await;
    }
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// A real ClientHello, as the first flight of a rustls client.
fn client_hello(ca: &str) -> Vec<u8> {
    let config = tls_client_config(ca, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tls_records_close_the_connection() {
    let (pki, _up, mut gw) = setup();
    let dog = Watchdog::start(&gw, &pki.ca_pem);
    let port = gw.https_port;
    let hello = client_hello(&pki.ca_pem);
    let mut garbage_after_hello = hello.clone();
    garbage_after_hello.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
    garbage_after_hello.extend_from_slice(&[0xAB; 32]);
    let mut junk_after_hello = hello.clone();
    junk_after_hello.extend_from_slice(b"\x00\xff garbage \xfe\x01 that is no record at all");
    let mut truncated = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    truncated.extend_from_slice(&hello[5..hello.len().min(60)]);
    let mut oversized = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    oversized.extend_from_slice(&[0u8; 64]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "plaintext HTTP on the TLS port",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            false,
        ),
        (
            "application data after the ClientHello",
            garbage_after_hello,
            false,
        ),
        (
            "non-record bytes after the ClientHello",
            junk_after_hello,
            false,
        ),
        ("a truncated handshake record, then EOF", truncated, true),
        ("a record longer than TLS allows", oversized, false),
        (
            "random bytes",
            (0..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
            false,
        ),
    ];
    for (name, bytes, eof) in cases {
        assert!(
            tls_port_closes(port, &bytes, eof).await,
            "{name}: connection not closed"
        );
    }

    // A corrupted record after a completed handshake.
    let s = tls_connect(port, &pki.ca_pem, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    let (mut tcp, _) = s.into_inner();
    let mut bad = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    bad.extend_from_slice(&[0x5A; 64]);
    let _ = tcp.write_all(&bad).await;
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a corrupted record after the handshake: connection not closed"
    );
    dog.finish(&mut gw).await;
}
