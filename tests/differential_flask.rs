//! Differential test against a real Flask/Werkzeug app (issue 15): for
//! generated methods, hosts, paths and cookie headers, whatever the gateway
//! refuses never runs a view, and whatever it forwards reaches the app as a
//! request that the gateway's own route table sends to the very route the
//! gateway applied (method, host and path as Werkzeug read them), with none
//! of the gateway's cookies and the app's own cookie intact.
//!
//! Needs a Python with flask (`PORTCULLIS_EXAMPLE_PYTHON`, as
//! tests/example_flask.rs; `scripts/test` makes the venv).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use policies::host::Host;
use policies::routes::{RouteMatcher, RouteTable};
use support::config::basic;
use support::*;

/// One `[[route]]`: host, path, methods, access.
type Route = (
    Option<&'static str>,
    &'static str,
    Option<&'static [&'static str]>,
    &'static str,
);

/// The route table under test, in order.
const ROUTES: [Route; 5] = [
    (
        None,
        "/api",
        Some(&["POST", "PUT", "DELETE", "PATCH"]),
        "deny",
    ),
    (None, "/reports", Some(&["GET"]), "deny"),
    (Some("admin.test"), "/", None, "deny"),
    (None, "/admin", None, "deny"),
    (None, "/", None, "public"),
];

fn config_routes() -> String {
    let mut out = String::new();
    for (host, path, methods, access) in ROUTES {
        out.push_str("[[route]]\n");
        if let Some(h) = host {
            out.push_str(&format!("host = \"{h}\"\n"));
        }
        out.push_str(&format!("path = \"{path}\"\naccess = \"{access}\"\n"));
        if let Some(m) = methods {
            let list: Vec<String> = m.iter().map(|m| format!("\"{m}\"")).collect();
            out.push_str(&format!("methods = [{}]\n", list.join(", ")));
        }
    }
    out
}

fn table() -> RouteTable {
    let matchers = ROUTES
        .iter()
        .map(|(host, path, methods, _)| {
            let methods = methods.map(|m| m.iter().map(|s| s.to_string()).collect());
            RouteMatcher::new(*host, path, methods).expect("route")
        })
        .collect();
    RouteTable::new(matchers, false)
}

fn start_flask(port: u16, log: &std::path::Path) -> support::flask::Flask {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support");
    let log = log.to_str().expect("utf-8 temp path");
    support::flask::start(&dir, "flask_views", port, &[("DIFF_LOG", log)], "flask")
}

/// Werkzeug's decoded path back to bytes a gateway would accept, so the
/// gateway's normaliser can put it in canonical form.
fn encode_path(decoded: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for b in decoded.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b) {
            out.push(b);
        } else {
            out.extend(format!("%{b:02X}").bytes());
        }
    }
    out
}

const METHODS: [&str; 12] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "post", "Post", "get",
    "dElete",
];
const HOSTS: [&[u8]; 14] = [
    b"localhost",
    b"LOCALHOST:8443",
    b"admin.test",
    b"Admin.Test.",
    b"admin.test:443",
    b"admin.test:abc",
    b"admin.test..",
    b"admin.test:99999",
    b"a.test,evil.example",
    b"admin%2etest",
    b"admin.test/x",
    b"[::1]",
    b"",
    b"adm\xc3\xafn.test",
];
const PATHS: [&str; 18] = [
    "/",
    "/api/users",
    "/API/users",
    "/%61pi/users",
    "/api%2fusers",
    "/api/../admin",
    "/admin",
    "/Admin",
    "/admin/x",
    "/administrator",
    "/reports",
    "/reports/q3",
    "/a:b",
    "/a%3Ab",
    "/CAF%C3%89",
    "//admin",
    "/admin;x",
    "/.portcullis/health",
];
const COOKIES: [&[u8]; 5] = [
    b"",
    b"Cookie: __Host-portcullis=x; app=1\r\n",
    b"Cookie: app=1; name=Jos\xc3\xa9; __Host-portcullis-csrf=c\r\n",
    b"Cookie: __HOST-PORTCULLIS=z\r\nCookie: app=1\r\n",
    b"Cookie: name=Jos\xc3\xa9\r\nCookie: __Host-portcullis-emergency=e; app=1\r\n",
];

struct Sent {
    what: String,
    status: u16,
    app_cookie: bool,
}

#[tokio::test]
async fn what_the_gateway_refuses_never_runs_a_view_and_what_it_forwards_reaches_the_route_it_matched(
) {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("views.jsonl");
    let port = free_port();
    let _flask = start_flask(port, &log);
    let app: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let gw = Gateway::start(&basic(&pki, &[app], &config_routes()));

    // Every method and path on a plain host, every host on a few paths,
    // cookies rotating through both.
    let mut cases: Vec<(&str, &[u8], &str)> = Vec::new();
    for m in METHODS {
        for p in PATHS {
            cases.push((m, b"localhost", p));
        }
    }
    for h in HOSTS {
        for p in ["/", "/api/users", "/admin", "/reports"] {
            for m in ["GET", "POST", "HEAD"] {
                cases.push((m, h, p));
            }
        }
    }
    let mut sent: HashMap<String, Sent> = HashMap::new();
    for (i, (method, host, path)) in cases.iter().enumerate() {
        let cookie = COOKIES[i % COOKIES.len()];
        let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
        if !host.is_empty() || i % 2 == 0 {
            req.extend_from_slice(b"Host: ");
            req.extend_from_slice(host);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(cookie);
        req.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
        let resp = raw_tls(gw.https_port, &pki.ca_pem, "localhost", &req).await;
        let id = resp
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no request id: {}", String::from_utf8_lossy(&req)))
            .to_string();
        let what = format!(
            "{method} {path} Host {:?} {:?}",
            String::from_utf8_lossy(host),
            String::from_utf8_lossy(cookie)
        );
        let app_cookie = cookie.windows(5).any(|w| w == b"app=1");
        sent.insert(
            id,
            Sent {
                what,
                status: resp.status,
                app_cookie,
            },
        );
    }

    // What the gateway decided, from its access log.
    let mut routes: HashMap<String, String> = HashMap::new();
    let ok = wait_until(Duration::from_secs(10), || {
        routes = gw
            .log_lines()
            .iter()
            .filter_map(|l| {
                Some((
                    l["request_id"].as_str()?.to_string(),
                    l["route"].as_str()?.to_string(),
                ))
            })
            .collect();
        sent.keys().all(|id| routes.contains_key(id))
    });
    assert!(ok, "every request has an access-log line");

    // What the app ran.
    let views: HashMap<String, serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|v| (v["id"].as_str().unwrap_or_default().to_string(), v))
        .collect();

    let table = table();
    let (mut forwarded, mut refused) = (0, 0);
    for (id, s) in &sent {
        let gateway_route = &routes[id];
        let Some(view) = views.get(id) else {
            refused += 1;
            // Answered by the gateway: an error, or a reserved path.
            assert!(
                s.status >= 400 || gateway_route == "(gateway)",
                "{}: {} without reaching the app (route {gateway_route})",
                s.what,
                s.status
            );
            continue;
        };
        forwarded += 1;
        assert_eq!(s.status, 200, "{}: the app answered", s.what);
        // Re-route what Werkzeug saw with the gateway's own table.
        let method = view["method"].as_str().expect("method");
        let host = Host::parse(view["host"].as_str().expect("host").as_bytes())
            .unwrap_or_else(|e| panic!("{}: the app saw an invalid host: {e}", s.what));
        let path =
            policies::target::normalize_path(&encode_path(view["path"].as_str().expect("path")))
                .unwrap_or_else(|e| panic!("{}: the app saw an unsafe path: {e}", s.what));
        let app_route = table.find(Some(&host.to_string()), path.as_str(), method);
        let label = app_route.map_or("(default)", |i| ROUTES[i].1);
        assert_eq!(
            label, gateway_route,
            "{}: the gateway applied {gateway_route}, the app's request is {label}'s ({method} {host} {path})",
            s.what
        );
        if let Some(i) = app_route {
            assert_eq!(
                ROUTES[i].3, "public",
                "{}: a denied route ran a view",
                s.what
            );
        }
        let cookies = view["cookies"].as_object().expect("cookies");
        for name in cookies.keys() {
            assert!(
                !name.to_ascii_lowercase().starts_with("__host-portcullis"),
                "{}: the app got {name}",
                s.what
            );
        }
        if s.app_cookie {
            assert_eq!(
                cookies.get("app").and_then(|v| v.as_str()),
                Some("1"),
                "{}",
                s.what
            );
        }
    }
    eprintln!("differential: {forwarded} forwarded, {refused} answered by the gateway");
    assert!(
        forwarded > 50 && refused > 50,
        "{forwarded} forwarded, {refused} refused"
    );
    assert_eq!(
        views.len(),
        forwarded,
        "the app ran views for requests not sent"
    );
}
