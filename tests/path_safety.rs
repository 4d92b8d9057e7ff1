//! Request-target safety (stages `client_ip` and `target`, docs/behaviour.md), black-box.
//!
//! Raw HTTP/1.1 requests go over TLS to the real binary in front of the echo
//! upstream. For every case the test checks what the client got *and* what
//! the upstream saw: a rejected target must never reach the app (its hit
//! count does not move), an accepted one must reach it in exactly the
//! normalised form. Failures are collected per case and reported together,
//! so one run shows the whole picture.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Gateway, RawResponse, SeenRequest, TestPki, Upstream};

/// What a case must produce.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 400 from the gateway; the upstream is not hit.
    Reject400,
    /// 200 from the echo app, which saw exactly this target (path?query).
    Forwarded(&'static str),
    /// This status answered by the gateway itself; the upstream is not hit.
    Status(u16),
    /// Not valid HTTP, so either refused (400, upstream not hit) or repaired
    /// into exactly this safe target: both keep gateway and app in agreement.
    /// (pingora percent-encodes raw spaces and controls it finds in a
    /// request line before the gateway sees it.)
    RejectOrForwarded(&'static str),
}

use Expect::{Forwarded, Reject400, RejectOrForwarded, Status};

/// One request: method, raw target bytes (`{PORT}` is replaced by the https
/// port, for absolute-form targets), what must happen.
type Case = (&'static str, &'static [u8], Expect);

/// The target corpus. Sources: stage `target`, policies/src/target.rs and the
/// classic reverse-proxy path-confusion tricks.
const CORPUS: &[Case] = &[
    // --- accepted, plain and collapsed --------------------------------------
    ("GET", b"/", Forwarded("/")),
    ("GET", b"/a/b", Forwarded("/a/b")),
    ("GET", b"/a/b/", Forwarded("/a/b/")),
    ("GET", b"//", Forwarded("/")),
    ("GET", b"///", Forwarded("/")),
    ("GET", b"//a///b", Forwarded("/a/b")),
    ("GET", b"/a//", Forwarded("/a/")),
    ("GET", b"/a-b._~c", Forwarded("/a-b._~c")),
    ("GET", b"/!$&'()*+,=:@", Forwarded("/!$&'()*+,=:@")),
    ("GET", b"/...", Forwarded("/...")),
    ("GET", b"/..a", Forwarded("/..a")),
    ("GET", b"/a..", Forwarded("/a..")),
    ("GET", b"/.a/b.", Forwarded("/.a/b.")),
    // --- unreserved decoded, the rest re-encoded in uppercase ---------------
    ("GET", b"/%41%62c", Forwarded("/Abc")),
    ("GET", b"/%7e", Forwarded("/~")),
    ("GET", b"/%7E%2d%5f%2E", Forwarded("/~-_.")),
    ("GET", b"/%61dmin", Forwarded("/admin")),
    ("GET", b"/a%20b", Forwarded("/a%20b")),
    ("GET", b"/a%3fb", Forwarded("/a%3Fb")),
    ("GET", b"/a%23b", Forwarded("/a%23b")),
    ("GET", b"/a%25b", Forwarded("/a%25b")),
    ("GET", b"/%252F", Forwarded("/%252F")),
    ("GET", b"/%252e%252e/x", Forwarded("/%252e%252e/x")),
    ("GET", b"/a%40b%3a", Forwarded("/a@b:")),
    ("GET", b"/a%21%24%2B%3D", Forwarded("/a!$+=")),
    ("GET", b"/caf%c3%a9", Forwarded("/caf%C3%A9")),
    ("GET", b"/%E2%82%AC", Forwarded("/%E2%82%AC")),
    ("GET", b"/%f0%9f%98%80", Forwarded("/%F0%9F%98%80")),
    ("GET", b"/%2E%2E%2E", Forwarded("/...")),
    // --- the query string is forwarded unchanged -----------------------------
    ("GET", b"/a/b?x=1", Forwarded("/a/b?x=1")),
    ("GET", b"/a?", Forwarded("/a?")),
    (
        "GET",
        b"/a?x=../../etc/passwd",
        Forwarded("/a?x=../../etc/passwd"),
    ),
    (
        "GET",
        b"/a?p=%2F%2e%2E%5c%00",
        Forwarded("/a?p=%2F%2e%2E%5c%00"),
    ),
    ("GET", b"/a?x=1?y=2", Forwarded("/a?x=1?y=2")),
    ("GET", b"//a?x=%2F", Forwarded("/a?x=%2F")),
    ("GET", b"/%61?q=%61", Forwarded("/a?q=%61")),
    ("GET", b"/q?a=%zz;b", Forwarded("/q?a=%zz;b")),
    ("POST", b"/post//it", Forwarded("/post/it")),
    // --- encoded separators, backslash, semicolon ----------------------------
    ("GET", b"/a%2Fb", Reject400),
    ("GET", b"/a%2fb", Reject400),
    ("GET", b"/admin%2F", Reject400),
    ("GET", b"/a%5Cb", Reject400),
    ("GET", b"/a%5cb", Reject400),
    ("GET", b"/a\\b", Reject400),
    ("GET", b"\\a", Reject400),
    ("GET", b"/\\evil.example/", Reject400),
    ("GET", b"/a;b", Reject400),
    ("GET", b"/a;jsessionid=1", Reject400),
    ("GET", b"/a%3Bb", Reject400),
    ("GET", b"/a%3bb", Reject400),
    // --- dot segments, literal and encoded -----------------------------------
    ("GET", b"/.", Reject400),
    ("GET", b"/..", Reject400),
    ("GET", b"/./a", Reject400),
    ("GET", b"/../a", Reject400),
    ("GET", b"/a/..", Reject400),
    ("GET", b"/a/../b", Reject400),
    ("GET", b"/a/.", Reject400),
    ("GET", b"/a/./", Reject400),
    ("GET", b"//..//a", Reject400),
    ("GET", b"/%2e", Reject400),
    ("GET", b"/%2E%2e/x", Reject400),
    ("GET", b"/%2e%2E/", Reject400),
    ("GET", b"/.%2e/", Reject400),
    ("GET", b"/%2e./x", Reject400),
    ("GET", b"/a/%2e%2e", Reject400),
    ("GET", b"/a/%2e/b", Reject400),
    ("GET", b"/%2e%2e%2f", Reject400),
    ("GET", b"/%2e%2e%5c", Reject400),
    ("GET", b"/../a?x=1", Reject400),
    ("GET", b"//a/./?x=%2F", Reject400),
    // --- fragments -----------------------------------------------------------
    ("GET", b"/a#b", Reject400),
    ("GET", b"/a?x#y", Reject400),
    ("GET", b"/x#/../admin", Reject400),
    ("GET", b"/%23", Forwarded("/%23")),
    // --- control characters, raw and encoded ---------------------------------
    ("GET", b"/a%00b", Reject400),
    ("GET", b"/a%0a", Reject400),
    ("GET", b"/a%0D%0A", Reject400),
    ("GET", b"/a%09", Reject400),
    ("GET", b"/a%1F", Reject400),
    ("GET", b"/a%7f", Reject400),
    ("GET", b"/a%7F", Reject400),
    ("GET", b"/a\x00b", Reject400),
    ("GET", b"/a\tb", Reject400),
    ("GET", b"/a\x7fb", Reject400),
    ("GET", b"/a\x01b", Reject400),
    ("GET", b"/a?x\x01", RejectOrForwarded("/a?x%01")),
    ("GET", b"/a?\x7f", RejectOrForwarded("/a?%7F")),
    ("GET", b"/a b", RejectOrForwarded("/a%20b")),
    ("GET", b"/a?x y", RejectOrForwarded("/a?x%20y")),
    ("GET", b"/a /../b", Reject400),
    // --- raw non-ASCII; decoded bytes that are not UTF-8 ---------------------
    ("GET", b"/caf\xc3\xa9", Reject400),
    ("GET", b"/a\xffb", Reject400),
    ("GET", b"/\xc0\xae", Reject400),
    ("GET", b"/%C0%AE", Reject400),
    ("GET", b"/%c0%ae%c0%ae/x", Reject400),
    ("GET", b"/%E0%80%AE", Reject400),
    ("GET", b"/%C0%AF", Reject400),
    ("GET", b"/%C1%9C", Reject400),
    ("GET", b"/%F0%80%80%AF", Reject400),
    ("GET", b"/%ED%A0%80", Reject400),
    ("GET", b"/%F4%90%80%80", Reject400),
    ("GET", b"/%FF", Reject400),
    ("GET", b"/%80", Reject400),
    ("GET", b"/a%80b", Reject400),
    ("GET", b"/%E2%82", Reject400),
    ("GET", b"/%E2%82/", Reject400),
    ("GET", b"/%C3", Reject400),
    // --- invalid percent-encoding --------------------------------------------
    ("GET", b"/%G1", Reject400),
    ("GET", b"/%1G", Reject400),
    ("GET", b"/%2", Reject400),
    ("GET", b"/a%", Reject400),
    ("GET", b"/%", Reject400),
    ("GET", b"/%%41", Reject400),
    ("GET", b"/%2/x", Reject400),
    // --- other bytes outside pchar -------------------------------------------
    ("GET", b"/a\"b", Reject400),
    ("GET", b"/<script>", Reject400),
    ("GET", b"/a^b", Reject400),
    ("GET", b"/a`b", Reject400),
    ("GET", b"/a{b}", Reject400),
    ("GET", b"/a|b", Reject400),
    ("GET", b"/[::1]", Reject400),
    // --- shape: not starting with '/', asterisk form -------------------------
    ("GET", b"a/b", Reject400),
    ("GET", b"admin", Reject400),
    ("GET", b"../a", Reject400),
    ("GET", b"?x", Reject400),
    ("GET", b"*", Reject400),
    ("POST", b"*", Reject400),
    ("OPTIONS", b"*", Status(204)),
    // --- absolute-form: authority must equal Host -----------------------------
    (
        "GET",
        b"https://localhost:{PORT}/abs?q=1",
        Forwarded("/abs?q=1"),
    ),
    ("GET", b"https://localhost:{PORT}", Forwarded("/")),
    (
        "GET",
        b"https://localhost:{PORT}//abs//x",
        Forwarded("/abs/x"),
    ),
    ("GET", b"https://localhost:{PORT}/%61bs", Forwarded("/abs")),
    ("GET", b"https://evil.example/x", Reject400),
    ("GET", b"https://evil.example:{PORT}/x", Reject400),
    ("GET", b"https://localhost/x", Reject400),
    ("GET", b"https://localhost:1/x", Reject400),
    ("GET", b"https://user@localhost:{PORT}/x", Reject400),
    ("GET", b"https://localhost:{PORT}@evil.example/x", Reject400),
    ("GET", b"https:///x", Reject400),
    ("GET", b"ftp://localhost:{PORT}/x", Reject400),
    ("GET", b"https://localhost:{PORT}/%2e%2e/admin", Reject400),
    ("GET", b"https://localhost:{PORT}/a%2Fb", Reject400),
    ("GET", b"https://localhost:{PORT}/a/../b", Reject400),
    // --- reserved paths are answered by the gateway, whatever the spelling ---
    ("GET", b"/.portcullis/health", Status(200)),
    ("GET", b"//.portcullis//health", Status(200)),
    ("GET", b"/%2Eportcullis/health", Status(200)),
    ("GET", b"/.%70ortcullis/%68ealth", Status(200)),
    ("GET", b"/.portcullis/nope", Status(404)),
    ("GET", b"/%2eportcullis/nope", Status(404)),
    ("GET", b"//.portcullis", Status(404)),
    ("POST", b"/.portcullis/x", Status(404)),
];

/// Message-framing cases (stage `target`): (label, the rest of a
/// `POST /framing` request after its `Host` line); each must be a 400 that
/// never reaches the upstream.
const FRAMING: &[(&str, &str)] = &[
    (
        "Content-Length and Transfer-Encoding",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding and Content-Length",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    ),
    (
        "two different Content-Length",
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "Content-Length list with different values",
        "Content-Length: 5, 6\r\n\r\nhello!",
    ),
    (
        "two different Transfer-Encoding",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Content-Length with Transfer-Encoding: identity",
        "Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello",
    ),
];

/// Sends one raw request; `None` when the connection ended without a
/// complete response (the harness panics on that; the panic is caught here
/// so the rest of the corpus still runs).
async fn send(port: u16, ca_pem: &str, request: Vec<u8>) -> Option<RawResponse> {
    let ca = ca_pem.to_string();
    tokio::spawn(async move { support::raw_tls(port, &ca, "localhost", &request).await })
        .await
        .ok()
}

fn request(method: &str, target: &[u8], port: u16, headers: &str, body: &str) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(target);
    out.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: localhost:{port}\r\n{headers}Connection: close\r\n\r\n{body}")
            .as_bytes(),
    );
    out
}

/// `{PORT}` in a target becomes the gateway's https port.
fn with_port(target: &[u8], port: u16) -> Vec<u8> {
    let needle = b"{PORT}";
    let mut out = Vec::with_capacity(target.len() + 8);
    let mut i = 0;
    while i < target.len() {
        if target[i..].starts_with(needle) {
            out.extend_from_slice(port.to_string().as_bytes());
            i += needle.len();
        } else {
            out.push(target[i]);
            i += 1;
        }
    }
    out
}

fn show(target: &[u8]) -> String {
    target.escape_ascii().to_string()
}

fn is_request_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks that a gateway error response has the documented shape for a
/// non-browser client: JSON `{"error", "status"}` and an `X-Request-Id`.
fn error_shape(resp: &RawResponse, status: u16) -> Result<(), String> {
    if !resp
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        return Err(format!("content-type {:?}", resp.header("content-type")));
    }
    let json: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|_| format!("body is not JSON: {:?}", resp.body_text()))?;
    if json["status"] != status || !json["error"].is_string() {
        return Err(format!(
            "JSON body is not {{error, status: {status}}}: {json}"
        ));
    }
    if !is_request_id(resp.header("x-request-id")) {
        return Err(format!(
            "x-request-id missing or not 32 hex: {:?}",
            resp.header("x-request-id")
        ));
    }
    Ok(())
}

/// A gateway in front of an echo upstream, with the PKI its clients trust.
struct Env {
    pki: TestPki,
    up: Upstream,
    gw: Gateway,
}

impl Env {
    fn start(server_extra: &str, extra: &str) -> Env {
        let pki = TestPki::new();
        let up = Upstream::start();
        let config = support::config::basic_with(&pki, &[up.addr()], server_extra, extra);
        let gw = Gateway::start(&config);
        Env { pki, up, gw }
    }

    /// Runs one case; returns what went wrong, if anything.
    async fn check(
        &self,
        method: &str,
        target: &[u8],
        expect: Expect,
        headers: &str,
        body: &str,
    ) -> Option<String> {
        check_case(self, method, target, expect, headers, body).await
    }
}

async fn check_case(
    env: &Env,
    method: &str,
    target: &[u8],
    expect: Expect,
    headers: &str,
    body: &str,
) -> Option<String> {
    let (gw, pki, up) = (&env.gw, &env.pki, &env.up);
    let before = up.hits();
    let raw = request(method, target, gw.https_port, headers, body);
    let label = format!("{method} {}", show(target));
    let Some(resp) = send(gw.https_port, &pki.ca_pem, raw).await else {
        return Some(format!(
            "{label}: expected {expect:?}, got no complete response (connection closed); upstream hits +{}",
            up.hits() - before
        ));
    };
    let hits = up.hits() - before;
    let expect = match expect {
        RejectOrForwarded(_) if resp.status == 400 => Reject400,
        RejectOrForwarded(want) => Forwarded(want),
        other => other,
    };
    match expect {
        Reject400 | Status(_) | RejectOrForwarded(_) => {
            let status = match expect {
                Status(s) => s,
                _ => 400,
            };
            let mut problems = Vec::new();
            if resp.status != status {
                problems.push(format!("status {} (want {status})", resp.status));
            }
            if hits != 0 {
                let seen = up.last_request().map(|r| r.target).unwrap_or_default();
                problems.push(format!("UPSTREAM HIT {hits}x (last target seen {seen:?})"));
            }
            (!problems.is_empty()).then(|| format!("{label}: {}", problems.join("; ")))
        }
        Forwarded(want) => {
            let mut problems = Vec::new();
            if resp.status != 200 {
                problems.push(format!("status {} (want 200)", resp.status));
            }
            if hits != 1 {
                problems.push(format!("upstream hits +{hits} (want +1)"));
            }
            if resp.status == 200 {
                let echoed = serde_json::from_slice::<serde_json::Value>(&resp.body)
                    .map(|j| SeenRequest::from_json(&j).target)
                    .unwrap_or_else(|_| format!("<not JSON: {}>", resp.body_text()));
                if echoed != want {
                    problems.push(format!("upstream target {echoed:?} (want {want:?})"));
                }
                if let Some(last) = up.last_request() {
                    if last.target != want {
                        problems.push(format!("last upstream target {:?}", last.target));
                    }
                }
                if !is_request_id(resp.header("x-request-id")) {
                    problems.push("no 32-hex x-request-id on the response".to_string());
                }
            }
            (!problems.is_empty()).then(|| format!("{label}: {}", problems.join("; ")))
        }
    }
}

fn report(what: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn target_corpus_is_rejected_or_normalised_before_the_upstream() {
    assert!(CORPUS.len() >= 60);
    let env = Env::start("", "");

    let mut failures = Vec::new();
    for &(method, target, expect) in CORPUS {
        let target = with_port(target, env.gw.https_port);
        let headers = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        failures.extend(env.check(method, &target, expect, headers, "").await);
    }
    // Nothing the upstream ever saw may carry an unsafe spelling.
    for seen in env.up.requests() {
        let path = seen.path();
        let bad = path.contains("//")
            || path.split('/').any(|s| s == "." || s == "..")
            || ["%2F", "%2f", "%5C", "%5c", "%2e", "%2E", ";", "\\", "%00"]
                .iter()
                .any(|n| path.contains(n));
        if bad {
            failures.push(format!("upstream saw unsafe path {:?}", seen.target));
        }
    }
    report("target", CORPUS.len(), &failures);
}

#[tokio::test]
async fn ambiguous_message_framing_is_rejected_before_the_upstream() {
    let env = Env::start("", "");
    let (gw, pki, up) = (&env.gw, &env.pki, &env.up);

    let mut failures = Vec::new();
    // A control: a well-framed body does reach the app.
    let ok = env
        .check(
            "POST",
            b"/framing/ok",
            Forwarded("/framing/ok"),
            "Content-Length: 5\r\n",
            "hello",
        )
        .await;
    failures.extend(ok);
    if up.last_request().is_some_and(|r| r.body != b"hello") {
        failures.push("control POST body did not arrive intact".to_string());
    }
    for (label, rest) in FRAMING {
        let before = up.hits();
        let mut raw = format!(
            "POST /framing HTTP/1.1\r\nHost: localhost:{}\r\n",
            gw.https_port
        )
        .into_bytes();
        raw.extend_from_slice(rest.as_bytes());
        let Some(resp) = send(gw.https_port, &pki.ca_pem, raw).await else {
            failures.push(format!("{label}: no complete response"));
            continue;
        };
        if resp.status != 400 || up.hits() != before {
            failures.push(format!(
                "{label}: status {} (want 400), upstream hits +{}",
                resp.status,
                up.hits() - before
            ));
        }
    }
    report("framing", FRAMING.len() + 1, &failures);
}

/// Routes: a deny rule on `/admin` before the public fallback.
const ADMIN_DENY: &str = "\
[[route]]
path = \"/admin\"
access = \"deny\"

[[route]]
path = \"/\"
access = \"public\"
";

/// No spelling of `/admin` reaches the upstream; near misses are proxied.
const ROUTE_CASES: &[Case] = &[
    ("GET", b"/admin", Status(403)),
    ("GET", b"/admin/", Status(403)),
    ("GET", b"/admin/x", Status(403)),
    ("GET", b"/admin?x=1", Status(403)),
    ("GET", b"/admin/x?next=/public", Status(403)),
    ("POST", b"/admin", Status(403)),
    ("DELETE", b"/admin/users/1", Status(403)),
    ("OPTIONS", b"/admin", Status(403)),
    ("HEAD", b"/admin", Status(403)),
    ("GET", b"/%61dmin", Status(403)),
    ("GET", b"/%61%64%6d%69%6e/x", Status(403)),
    ("GET", b"/%61%64%6D%69%6E", Status(403)),
    ("GET", b"/adm%69n?", Status(403)),
    ("GET", b"//admin", Status(403)),
    ("GET", b"///admin//x", Status(403)),
    ("GET", b"//%61dmin//", Status(403)),
    ("GET", b"https://localhost:{PORT}/admin", Status(403)),
    ("GET", b"https://localhost:{PORT}//%61dmin", Status(403)),
    ("GET", b"/admin/../x", Reject400),
    ("GET", b"/x/../admin", Reject400),
    ("GET", b"/x/..%2Fadmin", Reject400),
    ("GET", b"/x/%2e%2e/admin", Reject400),
    ("GET", b"/x/%2E%2E/admin", Reject400),
    ("GET", b"/./admin", Reject400),
    ("GET", b"/.%2e/admin", Reject400),
    ("GET", b"/%2e/admin", Reject400),
    ("GET", b"/x/..%5cadmin", Reject400),
    ("GET", b"/x\\..\\admin", Reject400),
    ("GET", b"\\admin", Reject400),
    ("GET", b"/admin%2Fx", Reject400),
    ("GET", b"/admin;x", Reject400),
    ("GET", b"/admin;/x", Reject400),
    ("GET", b"/admin%3Bx", Reject400),
    ("GET", b"/admin%00", Reject400),
    ("GET", b"/admin%00/x", Reject400),
    ("GET", b"/admin#x", Reject400),
    ("GET", b"/x#/../admin", Reject400),
    ("GET", b"/admin /x", RejectOrForwarded("/admin%20/x")),
    ("GET", b"/x /../admin", Reject400),
    ("GET", b"/ad\x00min", Reject400),
    ("GET", b"/ad\tmin", Reject400),
    ("GET", b"/%C0%AE%C0%AE/admin", Reject400),
    ("GET", b"/x/%c0%afadmin", Reject400),
    ("GET", b"https://localhost:{PORT}/x/../admin", Reject400),
    ("GET", b"https://evil.example/admin", Reject400),
    // Lower- and mixed-case methods never fall through a method rule.
    ("post", b"/admin", Reject400),
    ("Get", b"/admin", Reject400),
    ("get", b"/public", Reject400),
    // Case-sensitive by default: these are other resources.
    ("GET", b"/Admin", Forwarded("/Admin")),
    ("GET", b"/ADMIN/x", Forwarded("/ADMIN/x")),
    ("GET", b"/%41dmin", Forwarded("/Admin")),
    // Segment boundary: not /admin.
    ("GET", b"/administrator", Forwarded("/administrator")),
    ("GET", b"/admin-x", Forwarded("/admin-x")),
    ("GET", b"/admin.", Forwarded("/admin.")),
    ("GET", b"/admin%20", Forwarded("/admin%20")),
    ("GET", b"/x/admin", Forwarded("/x/admin")),
    (
        "GET",
        b"/public?path=/admin",
        Forwarded("/public?path=/admin"),
    ),
];

/// Like [`ROUTE_CASES`] with `case_insensitive_paths = true`.
const CASE_INSENSITIVE_CASES: &[Case] = &[
    ("GET", b"/admin", Status(403)),
    ("GET", b"/ADMIN", Status(403)),
    ("GET", b"/Admin/x", Status(403)),
    ("GET", b"/aDmIn?x=1", Status(403)),
    ("GET", b"/%41DMIN", Status(403)),
    ("GET", b"/%41%44%4d%49%4e", Status(403)),
    ("GET", b"//ADMIN//", Status(403)),
    ("POST", b"/AdMiN/x", Status(403)),
    // Reserved paths in any case: answered by the gateway, never the app.
    ("GET", b"/.PORTCULLIS/health", Status(200)),
    ("GET", b"/.Portcullis/HEALTH", Status(200)),
    ("GET", b"/.PORTCULLIS/nope", Status(404)),
    ("GET", b"/%2EPORTCULLIS/health", Status(200)),
    // Non-ASCII bytes: an upstream folding Unicode case could read them as
    // ASCII (Kelvin sign as k, long s as s): refused in this mode.
    ("GET", b"/%E2%84%AAeys", Reject400),
    ("GET", b"/%C5%BFettings", Reject400),
    ("GET", b"/CAF%C3%89", Reject400),
    ("GET", b"/%C3%A9", Reject400),
    ("GET", b"/ADMIN/../x", Reject400),
    ("GET", b"/X/..%2FADMIN", Reject400),
    ("GET", b"/administrator", Forwarded("/administrator")),
    ("GET", b"/ADMINISTRATOR", Forwarded("/ADMINISTRATOR")),
    ("GET", b"/x/ADMIN", Forwarded("/x/ADMIN")),
    ("GET", b"/Other", Forwarded("/Other")),
];

async fn run_route_cases(server_extra: &str, cases: &[Case], case_insensitive: bool) {
    let env = Env::start(server_extra, ADMIN_DENY);

    let mut failures = Vec::new();
    for &(method, target, expect) in cases {
        let target = with_port(target, env.gw.https_port);
        let headers = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        failures.extend(env.check(method, &target, expect, headers, "").await);
    }
    // The security property itself: the app never saw /admin.
    for seen in env.up.requests() {
        let path = seen.path();
        let folded = if case_insensitive {
            path.to_ascii_lowercase()
        } else {
            path.to_string()
        };
        if folded == "/admin" || folded.starts_with("/admin/") {
            failures.push(format!("UPSTREAM SAW {} {:?}", seen.method, seen.target));
        }
    }
    report("route", cases.len(), &failures);
}

#[tokio::test]
async fn no_spelling_of_a_denied_path_reaches_the_upstream() {
    run_route_cases("", ROUTE_CASES, false).await;
}

#[tokio::test]
async fn case_insensitive_paths_deny_every_case_of_the_route() {
    run_route_cases(
        "case_insensitive_paths = true",
        CASE_INSENSITIVE_CASES,
        true,
    )
    .await;
}

/// Request lines pingora's HTTP/1 parser refuses before portcullis sees the
/// request (bytes outside the URI grammar; an absolute-form authority that
/// disagrees with `Host`). pingora answers them with its own 400 and closes
/// the connection; the gateway rewrites that answer into its own error
/// response (`gateway/src/own_errors.rs`, checked by the error-shape test).
/// They never reach the upstream, which the corpus test asserts. `{PORT}`
/// is the https port.
const PARSER_REJECTS: &[&[u8]] = &[
    b"/a\xffb",
    b"/\xc0\xae",
    b"/<script>",
    b"/a`b",
    b"https://evil.example/x",
    b"https://evil.example:{PORT}/x",
    b"https://localhost/x",
    b"https://localhost:1/x",
    b"https://user@localhost:{PORT}/x",
    b"https://localhost:{PORT}@evil.example/x",
    b"https:///x",
];

/// docs/behaviour.md "Error responses": a gateway 400/404 for a non-browser client is
/// `{"error": "...", "status": N}` JSON with an `X-Request-Id`, whichever
/// rule of the gateway refuses the request.
#[tokio::test]
async fn refusals_are_json_errors_with_a_request_id() {
    let env = Env::start("", "");
    let mut failures = Vec::new();
    let mut total = 0;
    for &(method, target, expect) in CORPUS {
        let status = match expect {
            Reject400 => 400,
            Status(s) if s >= 400 => s,
            _ => continue,
        };
        let parser_reject = PARSER_REJECTS
            .iter()
            .any(|p| with_port(p, 0) == with_port(target, 0));
        total += 1;
        let target = with_port(target, env.gw.https_port);
        let headers = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        let raw = request(method, &target, env.gw.https_port, headers, "");
        let label = format!("{method} {}", show(&target));
        match send(env.gw.https_port, &env.pki.ca_pem, raw).await {
            Some(resp) if resp.status == status => {
                if let Err(e) = error_shape(&resp, status) {
                    let server = resp.header("server").unwrap_or("-");
                    failures.push(format!("{label}: {e} (Server: {server})"));
                }
                // pingora's own 400s are replaced by the gateway's
                // (gateway/src/own_errors.rs): security headers, no Server.
                if parser_reject
                    && (resp.header("server").is_some()
                        || resp.header("x-content-type-options") != Some("nosniff")
                        || resp.header("connection") != Some("close"))
                {
                    failures.push(format!(
                        "{label}: not the gateway's 400: {:?}",
                        resp.headers
                    ));
                }
            }
            // A wrong status is reported by the corpus test.
            Some(_) => {}
            None => failures.push(format!("{label}: no complete response")),
        }
    }
    report("error-shape", total, &failures);
}
