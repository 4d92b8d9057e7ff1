//! The pipeline's stage order (docs/behaviour.md, "Pipeline"), black-box:
//! each case sends requests that two stages would answer differently and
//! checks that the earlier stage answers. Every case also shows the later
//! stage at work, so a case cannot pass because that stage never applies.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::config::basic_with;
use support::*;

const KEY: &str = "stage-order-key-0123456789abcdefghijklmnop";

/// `[secrets]` for cases that need sessions.
const SESSIONS: &str = "[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n";

/// One request of a case and what must come back.
struct Step {
    /// Over the plain listener instead of TLS.
    plain: bool,
    request: String,
    status: u16,
    /// A header that must be present (`Some`) or absent (`None`).
    header: Option<(&'static str, bool)>,
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n")
}

fn step(request: String, status: u16) -> Step {
    Step {
        plain: false,
        request,
        status,
        header: None,
    }
}

fn with_header(mut s: Step, name: &'static str, present: bool) -> Step {
    s.header = Some((name, present));
    s
}

/// With `default = "1/minute"`: the first GET of `path` passes, the
/// second is limited (the limit is real, and only now spent).
fn spend_the_limit(path: &str) -> [Step; 2] {
    [step(get(path, ""), 200), step(get(path, ""), 429)]
}

fn plain(mut s: Step) -> Step {
    s.plain = true;
    s
}

struct Case {
    name: &'static str,
    config: String,
    steps: Vec<Step>,
}

fn cases() -> Vec<Case> {
    let limit_one = "[rate_limit]\ndefault = \"1/minute\"\n";
    let bad_cookie = "Cookie: __Host-portcullis=forged.value\r\n";
    let big_post = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n")
    };
    let preflight =
        "OPTIONS /api HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example.com\r\n\
                     Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
            .to_string();
    vec![
        Case {
            name: "target before limits: an unsafe target spends no budget",
            config: limit_one.into(),
            steps: [
                step(get("/a/%2e%2e/b", ""), 400),
                step(get("/a/%2e%2e/b", ""), 400),
            ]
            .into_iter()
            .chain(spend_the_limit("/ok"))
            .collect(),
        },
        Case {
            name: "target before listener, listener before limits",
            config: limit_one.into(),
            steps: [
                plain(step(get("/a/%2e%2e/b", ""), 400)),
                plain(step(get("/x", ""), 301)),
                plain(step(get("/x", ""), 301)),
            ]
            .into_iter()
            .chain(spend_the_limit("/ok"))
            .collect(),
        },
        Case {
            name: "limits before session: a limited client costs no cookie check",
            config: format!("{SESSIONS}{limit_one}"),
            steps: vec![
                // The session stage clears a forged cookie...
                with_header(step(get("/ok", bad_cookie), 200), "set-cookie", true),
                // ...but not once the client is limited.
                with_header(step(get("/ok", bad_cookie), 429), "set-cookie", false),
            ],
        },
        Case {
            name: "limits before reserved: the gateway's own pages are limited too",
            config: limit_one.into(),
            steps: spend_the_limit("/.portcullis/health").into(),
        },
        Case {
            name: "reserved before route and access",
            config: "[[route]]\npath = \"/\"\naccess = \"deny\"\n".into(),
            steps: vec![
                step(get("/.portcullis/health", ""), 200),
                step(get("/.portcullis/nothing", ""), 404),
                step(get("/x", ""), 403),
            ],
        },
        Case {
            name: "cors before access: a preflight needs no session",
            config: format!(
                "{SESSIONS}[[route]]\npath = \"/api\"\naccess = \"login\"\n\
                 [cors]\nallow_origins = [\"https://app.example.com\"]\n"
            ),
            steps: vec![
                with_header(step(preflight, 204), "access-control-allow-origin", true),
                step(get("/api", ""), 401),
            ],
        },
        Case {
            name: "route_limit before access",
            config:
                "[[route]]\npath = \"/private\"\naccess = \"deny\"\nrate_limit = \"1/minute\"\n"
                    .into(),
            steps: vec![
                step(get("/private", ""), 403),
                step(get("/private", ""), 429),
            ],
        },
        Case {
            name: "access before body_limit; body_limit before the body is read",
            config: format!(
                "{SESSIONS}[[route]]\npath = \"/private\"\naccess = \"login\"\nmax_body = \"1KB\"\n\
                 [[route]]\npath = \"/open\"\nmax_body = \"1KB\"\n"
            ),
            steps: vec![
                // No body follows either head: a stage that waited for it
                // would answer 408 after body_timeout, not at once.
                step(big_post("/private"), 401),
                step(big_post("/open"), 413),
            ],
        },
    ]
}

#[tokio::test]
async fn each_stage_answers_before_the_next() {
    let hash = policies::users::hash_password("correct horse battery").expect("hash");
    let users = format!("[users.alice]\npassword = \"{hash}\"\nroles = [\"staff\"]\n");
    for case in cases() {
        let (pki, up) = (TestPki::new(), Upstream::start());
        let gw = GatewayBuilder::new(&basic_with(&pki, &[up.addr()], "", &case.config))
            .env("PORTCULLIS_SESSION_KEYS", KEY)
            .users(&users)
            .start();
        for (i, s) in case.steps.iter().enumerate() {
            let resp = if s.plain {
                raw_tcp(gw.http_port, s.request.as_bytes()).await
            } else {
                raw_tls(
                    gw.https_port,
                    &pki.ca_pem,
                    "localhost",
                    s.request.as_bytes(),
                )
                .await
            };
            let at = format!("{}: step {}", case.name, i + 1);
            assert_eq!(
                resp.status,
                s.status,
                "{at}: {}",
                String::from_utf8_lossy(&resp.raw)
            );
            if let Some((name, present)) = s.header {
                assert_eq!(resp.header(name).is_some(), present, "{at}: header {name}");
            }
        }
    }
}
