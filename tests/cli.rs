//! The command line: `check`, `run`'s refusals, `secret`, `demo`.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::config::basic;
use support::gateway::{stderr_of, stdout_of};
use support::*;

/// Writes `config` into a fresh directory and runs `portcullis ARGS -c it`.
fn with_config(
    config: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("write config");
    let path = path.to_string_lossy().into_owned();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-c", &path]);
    (run_cli(&full, env, None), dir)
}

fn exit_code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited normally")
}

#[test]
fn check_prints_the_routes_table_for_a_valid_config() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let extra =
        "[[route]]\npath = \"/admin\"\naccess = \"deny\"\nmethods = [\"GET\", \"POST\"]\n\n\
                 [[route]]\npath = \"/\"\nhost = \"app.example.com\"\nmax_body = \"1MB\"\n\
                 headers = { csp = \"default-src 'self' 'unsafe-inline'\" }\n";
    let (out, _dir) = with_config(&basic(&pki, &[up.addr()], extra), &["check"], &[]);
    let stdout = stdout_of(&out);
    assert_eq!(exit_code(&out), 0, "{}", stderr_of(&out));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("#") && lines[0].contains("ACCESS"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("/admin") && lines[1].contains("GET,POST") && lines[1].contains("deny"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("app.example.com") && lines[2].contains("1MB"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("(unmatched)") && lines[3].contains("public"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with(": ok"), "{stdout}");
    // The effective headers: the global set, then the route that differs.
    let headers = &stdout[stdout.find("HEADERS").expect("headers section")..];
    assert!(headers.contains("all routes:\n"), "{headers}");
    assert!(
        headers.contains("* content-security-policy: default-src 'self'; frame-ancestors 'none'"),
        "{headers}"
    );
    let route = &headers[headers.find("route #2 /:").expect("route 2 differs")..];
    assert!(
        route.contains("content-security-policy: default-src 'self' 'unsafe-inline'"),
        "{route}"
    );
    assert!(
        route.contains("x-frame-options: DENY"),
        "inherited: {route}"
    );
    assert!(
        !headers.contains("route #1"),
        "route 1 has no overrides: {headers}"
    );
}

#[test]
fn bad_configs_fail_check_and_run_with_one_line_naming_the_key() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let good = basic(&pki, &[up.addr()], "");
    let cases = [
        (
            good.replace("threads = 1", "threads = 1\nthredas = 2"),
            "server.thredas: unknown key",
        ),
        (
            good.replace("connect_timeout = \"1s\"", "connect_timeout = \"1 sec\""),
            "upstreams.app.connect_timeout:",
        ),
        (
            format!("{good}\n[secrets]\nsession_keys = \"env:PORTCULLIS_TEST_MISSING\"\n"),
            "secrets.session_keys: environment variable PORTCULLIS_TEST_MISSING is not set",
        ),
        (
            good.replace(
                "threads = 1",
                "threads = 1\ntrusted_proxies = [\"10.0.0.0/40\"]",
            ),
            "server.trusted_proxies[0]:",
        ),
        (
            format!("{good}\n[[route]]\npath = \"/x\"\naccess = \"sometimes\"\n"),
            "route[0].access:",
        ),
    ];
    for (config, needle) in cases {
        for cmd in ["check", "run"] {
            let (out, _dir) = with_config(&config, &[cmd], &[]);
            let stderr = stderr_of(&out);
            assert_eq!(exit_code(&out), 1, "{cmd} {needle}: {stderr}");
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("warning:"))
                .collect();
            assert_eq!(lines.len(), 1, "{cmd}: one line: {stderr}");
            assert!(
                lines[0].contains("portcullis.toml: ") && lines[0].contains(needle),
                "{cmd}: {stderr}"
            );
            assert!(
                !stderr.contains("panicked") && !stderr.contains("backtrace"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn check_reports_every_error_at_once() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let config = basic(&pki, &[up.addr()], "")
        .replace("threads = 1", "threads = 0\nmax_body = \"lots\"")
        .replace(
            "read_timeout = \"5s\"",
            "read_timeout = \"5s\"\ncolour = \"red\"",
        );
    let (out, _dir) = with_config(&config, &["check"], &[]);
    let stderr = stderr_of(&out);
    assert_eq!(exit_code(&out), 1);
    for key in ["server.threads", "server.max_body", "upstreams.app.colour"] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
}

#[test]
fn run_refuses_unsafe_public_start_ups() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let key = "k".repeat(43);
    // Public = a listener not on loopback. Refusal happens before binding.
    let public =
        basic(&pki, &[up.addr()], "").replacen("https = \"127.0.0.1:", "https = \"0.0.0.0:", 1);
    let cases = [
        (public.clone(), vec![], "secrets.session_keys: required"),
        (
            format!("{public}\n[secrets]\nsession_keys = \"{key}\"\n"),
            vec![],
            "secrets.session_keys: a literal secret is refused",
        ),
        (
            format!(
                "[server]\nhttp = \"0.0.0.0:{}\"\n[tls]\nmode = \"off\"\n[upstreams.app]\naddrs = [\"{}\"]\n\
                 [access]\ndefault = \"public\"\n[secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n",
                free_port(),
                up.addr()
            ),
            vec![("PORTCULLIS_SESSION_KEYS", key.as_str())],
            "server.trusted_proxies: tls.mode = \"off\" needs",
        ),
    ];
    for (config, env, needle) in cases {
        for cmd in ["run", "check"] {
            let (out, _dir) = with_config(&config, &[cmd], &env);
            let stderr = stderr_of(&out);
            assert_eq!(exit_code(&out), 1, "{cmd} {needle}: {stderr}");
            assert!(stderr.contains(needle), "{cmd}: {stderr}");
        }
    }
    // The same literal secret on loopback is a development setup: a warning.
    let loopback = format!(
        "{}\n[secrets]\nsession_keys = \"{key}\"\n",
        basic(&pki, &[up.addr()], "")
    );
    let (out, _dir) = with_config(&loopback, &["check"], &[]);
    assert_eq!(exit_code(&out), 0, "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("warning:") && stderr_of(&out).contains("literal secret"));
}

/// HTTPS in front of an app, nothing more: no `[access]` (so the default is
/// `"login"`) and no session keys. A catch-all route means no request ever
/// reaches that default, so nothing needs the keys; without it, the refusal
/// says which requests would.
#[tokio::test]
async fn https_only_with_a_catch_all_route_needs_no_session_keys() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let https_only = |routes: &str| {
        basic(&pki, &[up.addr()], routes).replace("[access]\ndefault = \"public\"\n", "")
    };
    let catch_all = https_only("[[route]]\npath = \"/\"\naccess = \"public\"\n");
    let (out, _dir) = with_config(&catch_all, &["check"], &[]);
    assert_eq!(exit_code(&out), 0, "{}", stderr_of(&out));
    assert!(stdout_of(&out).trim_end().ends_with(": ok"));

    let partial = https_only("[[route]]\npath = \"/static\"\naccess = \"public\"\n");
    let (out, _dir) = with_config(&partial, &["check"], &[]);
    let stderr = stderr_of(&out);
    assert_eq!(exit_code(&out), 1, "{stderr}");
    assert!(
        stderr.contains("access.default: \"login\" and \"role:\" need secrets.session_keys")
            && stderr.contains(
                "requests no route matches reach access.default: every path outside /static"
            ),
        "{stderr}"
    );

    // `run` serves it: every request goes through the catch-all.
    let gw = Gateway::start(&catch_all);
    let client = https_client(&pki.ca_pem, gw.https_port, false);
    let resp = client
        .get(gw.url("/any/path"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_port_in_use_is_a_runtime_failure_with_one_sentence() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = basic(&pki, &[up.addr()], "");
    let config = config.replacen(
        &config[config.find("https = ").expect("https")..]
            .lines()
            .next()
            .expect("line")
            .to_string(),
        &format!("https = \"127.0.0.1:{port}\""),
        1,
    );
    let (out, _dir) = with_config(&config, &["run"], &[]);
    let stderr = stderr_of(&out);
    assert_eq!(exit_code(&out), 2, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_certificate_files_are_named() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let config = basic(&pki, &[up.addr()], "")
        .replace(&pki.key_path.display().to_string(), "/nonexistent/key.pem");
    for cmd in ["check", "run"] {
        let (out, _dir) = with_config(&config, &[cmd], &[]);
        let stderr = stderr_of(&out);
        assert_eq!(exit_code(&out), 1, "{cmd}: {stderr}");
        assert!(stderr.contains("/nonexistent/key.pem"), "{cmd}: {stderr}");
    }
}

#[test]
fn config_path_falls_back_to_env_then_cwd() {
    let (pki, up) = (TestPki::new(), Upstream::start());
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        basic(&pki, &[up.addr()], ""),
    )
    .expect("write");
    let out = run_cli_in(dir.path(), &["check"], &[], None);
    assert_eq!(exit_code(&out), 0, "./portcullis.toml: {}", stderr_of(&out));
    let elsewhere = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("portcullis.toml");
    let out = run_cli_in(
        elsewhere.path(),
        &["check"],
        &[("PORTCULLIS_CONFIG", cfg.to_str().expect("utf8"))],
        None,
    );
    assert_eq!(
        exit_code(&out),
        0,
        "$PORTCULLIS_CONFIG: {}",
        stderr_of(&out)
    );
    let out = run_cli_in(elsewhere.path(), &["check"], &[], None);
    assert_eq!(exit_code(&out), 1);
    assert!(
        stderr_of(&out).contains("portcullis.toml: cannot read"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn secret_prints_a_fresh_256_bit_base64url_key() {
    let a = stdout_of(&run_cli(&["secret"], &[], None))
        .trim()
        .to_string();
    let b = stdout_of(&run_cli(&["secret"], &[], None))
        .trim()
        .to_string();
    assert_eq!(a.len(), 43, "{a}");
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{a}"
    );
    assert_ne!(a, b);
}

#[test]
fn usage_errors_exit_1_without_a_panic() {
    let out = run_cli(&["frobnicate"], &[], None);
    assert_eq!(exit_code(&out), 1);
    let out = run_cli(&["--help"], &[], None);
    assert_eq!(exit_code(&out), 0);
    for cmd in ["run", "check", "demo", "secret"] {
        assert!(stdout_of(&out).contains(cmd), "{cmd} in help");
    }
}

#[tokio::test]
async fn demo_serves_the_demo_page_on_loopback() {
    let (https, http) = (free_port(), free_port());
    // The demo's temporary store goes here, to see that it is removed.
    let tmp = tempfile::tempdir().expect("tmp");
    /// Kills the demo even when an assertion fails first.
    struct Demo(std::process::Child);
    impl Drop for Demo {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = std::process::Command::new(support::gateway::binary())
        .args([
            "demo",
            "--https-port",
            &https.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout_pipe = child.stdout.take().expect("stdout");
    let mut demo = Demo(child);
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
    });
    assert!(up, "demo did not start");
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("localhost", ([127, 0, 0, 1], https).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The demo app is a separate service that may start a moment after the
    // gateway's listener: poll until it answers rather than take one 502.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = client
            .get(format!("https://localhost:{https}/"))
            .send()
            .await
            .expect("demo page");
        if page.status() != 502 || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page.status(), 200);
    let body = page.text().await.expect("body");
    assert!(
        body.contains("portcullis demo app") && body.contains("x-forwarded-for"),
        "{body}"
    );
    let denied = client
        .get(format!("https://localhost:{https}/blocked"))
        .send()
        .await
        .expect("blocked");
    assert_eq!(denied.status(), 403);
    let login = client
        .get(format!("https://localhost:{https}/private"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("private");
    assert_eq!(
        login.status(),
        303,
        "the demo's protected page asks for a login"
    );
    let redirect = http_client(http)
        .get(format!("http://localhost:{http}/x"))
        .send()
        .await
        .expect("http");
    assert_eq!(redirect.status(), 301);
    let in_tmp = || std::fs::read_dir(tmp.path()).expect("tmp").count();
    assert_eq!(in_tmp(), 1, "the demo's store is in TMPDIR while it runs");
    // Ctrl-C: the demo stops and takes its store with it.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let status = demo.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(in_tmp(), 0, "the demo left its store behind");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut { stdout_pipe }, &mut stdout).expect("demo stdout");
    assert!(
        stdout.contains(&format!("https://localhost:{https}/")),
        "prints what to open: {stdout}"
    );
    assert!(
        stdout.contains("user \"demo\", password \""),
        "prints the demo credentials: {stdout}"
    );
}
