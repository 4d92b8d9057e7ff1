//! `portcullis demo`: the embedded default. A small app that shows what it
//! received, behind the gateway, on loopback, with a self-signed certificate.

use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;

use crate::config;

/// The demo config; `{APP}`, `{HTTPS}`, `{HTTP}` are filled in at start.
const DEMO_CONFIG: &str = r#"
[server]
https = "127.0.0.1:{HTTPS}"
http = "127.0.0.1:{HTTP}"
threads = 1

[tls]
mode = "self-signed"
domains = ["localhost", "127.0.0.1", "::1"]

[upstreams.demo]
addrs = ["127.0.0.1:{APP}"]

[secrets]
session_keys = "{KEY}"
emergency = "{EMERGENCY}"

[emergency]
enabled = true
ttl = "15m"
roles = ["admin"]

[store]
url = "sqlite:{STORE}"

[access]
default = "public"

[[route]]
path = "/private"
access = "login"

[[route]]
path = "/admin"
access = "role:admin"

[[route]]
path = "/blocked"
access = "deny"
"#;

/// A random password that is easy to type: 4 groups of 4 lowercase letters.
fn demo_password() -> String {
    const LETTERS: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    let bytes: [u8; 16] = rand::random();
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(LETTERS[*b as usize % LETTERS.len()] as char);
    }
    out
}

/// Why the demo could not create its store.
#[derive(Debug, thiserror::Error)]
enum DemoStoreError {
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Hash(#[from] policies::users::PasswordError),
    #[error(transparent)]
    Store(#[from] identity::StoreError),
}

/// A fresh private directory with the embedded SQLite store (created 0600)
/// holding the demo account.
fn demo_store(password: &str) -> Result<std::path::PathBuf, DemoStoreError> {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-demo-")
        .tempdir()
        .map_err(DemoStoreError::TempDir)?
        .keep();
    let path = dir.join(config::DEFAULT_STORE_FILE);
    let hash = policies::users::hash_password(password)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoStoreError::Runtime)?;
    let roles = ["demo".to_string()];
    rt.block_on(async {
        let store = identity::Store::open(&format!("sqlite:{}", path.display())).await?;
        let created = store.create_account(identity::NewAccount {
            name: "demo",
            password: Some(&hash),
            roles: &roles,
            created: i64::try_from(crate::state::now_ms()).unwrap_or(i64::MAX),
            ..identity::NewAccount::default()
        });
        created.await?;
        store.close().await;
        Ok::<_, DemoStoreError>(())
    })?;
    Ok(path)
}

pub fn run(https_port: u16, http_port: u16) -> ExitCode {
    let app_port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => {
            eprintln!("portcullis: cannot find a free port for the demo app: {e}");
            return ExitCode::from(crate::EXIT_RUNTIME);
        }
    };
    let password = demo_password();
    let store = match demo_store(&password) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("portcullis: demo identity store: {e}");
            return ExitCode::from(crate::EXIT_RUNTIME);
        }
    };
    let emergency_secret = crate::new_secret();
    let text = DEMO_CONFIG
        .replace("{KEY}", &crate::new_secret())
        .replace("{EMERGENCY}", &emergency_secret)
        .replace("{STORE}", &store.display().to_string())
        .replace("{APP}", &app_port.to_string())
        .replace("{HTTPS}", &https_port.to_string())
        .replace("{HTTP}", &http_port.to_string());
    let path = Path::new("<demo>");
    let cfg = match config::parse(&text, path, &crate::env_lookup, config::Report::new(path)) {
        Ok(l) => l.config,
        Err(r) => {
            for e in r.errors {
                eprintln!("{e}");
            }
            return ExitCode::from(crate::EXIT_INVALID);
        }
    };
    let certs = match crate::certificates::load(&cfg, true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(crate::EXIT_RUNTIME);
        }
    };
    println!(
        "portcullis demo\n\
         \n  open   https://localhost:{https_port}/          (self-signed certificate: your browser will warn)\
         \n  try    https://localhost:{https_port}/private   needs a login: user \"demo\", password \"{password}\"\
         \n         https://localhost:{https_port}/admin     needs the admin role: 403 for demo\
         \n         https://localhost:{https_port}/.portcullis/logout\
         \n         http://localhost:{http_port}/            redirects to https\
         \n         https://localhost:{https_port}/blocked   denied by a route rule (403)\
         \n         https://localhost:{https_port}/.portcullis/health\
         \n         curl -k https://localhost:{https_port}/a/../b   unsafe path (400)\
         \n  break  https://localhost:{https_port}/.portcullis/emergency   the emergency gate, enabled for the demo:\
         \n         secret \"{emergency_secret}\" -> dashboard -> create an admin user,\
         \n         then sign in as it at /.portcullis/login and open /admin\
         \n\n  stop with Ctrl-C\n"
    );
    let code = crate::start(
        cfg,
        certs,
        crate::serve::RunFlags::default(),
        move |server| {
            let mut app = Service::new("demo app".to_string(), DemoApp);
            app.add_tcp(&format!("127.0.0.1:{app_port}"));
            server.add_service(app);
        },
    );
    // The demo leaves nothing behind: its store (the account's hash, the
    // sessions) goes with it. (Killed with SIGKILL, nothing can run.)
    if let Some(dir) = store.parent() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("portcullis: demo store {} not removed: {e}", dir.display());
        }
    }
    code
}

/// Shows the request it received, as the app behind the gateway sees it.
pub struct DemoApp;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[async_trait]
impl ServeHttp for DemoApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let req = session.req_header();
        let mut rows = String::new();
        for (name, value) in req.headers.iter() {
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name.as_str()),
                escape(&String::from_utf8_lossy(value.as_bytes()))
            ));
        }
        let target = String::from_utf8_lossy(req.raw_path()).into_owned();
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>portcullis demo app</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}\
             th{{text-align:left;padding-right:1rem;vertical-align:top}}td{{word-break:break-all}}</style></head>\
             <body><h1>portcullis demo app</h1>\
             <p>This page is the app <em>behind</em> the gateway. It shows the request exactly as it arrived here.</p>\
             <p><strong>{} {}</strong></p><table>{rows}</table>\
             <p>Try <a href=\"/private\">/private</a> (sign in as <code>demo</code> with the password \
             printed in the terminal), <a href=\"/admin\">/admin</a> (needs the admin role), \
             <a href=\"/blocked\">/blocked</a> (denied by a route rule) and \
             <a href=\"/.portcullis/logout\">sign out</a>.</p></body></html>\n",
            escape(req.method.as_str()),
            escape(&target)
        );
        http::Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}
