//! Runs the real `portcullis` binary.
//!
//! Ports come from the config text: `Gateway::start` reads the `https`,
//! `http` and `ops` keys of the `[server]` table (`https = "127.0.0.1:PORT"`),
//! so a test picks ports with `free_port()` and writes them into its config.
//! Readiness = the gateway logged "portcullis serving" (its listeners passed
//! the bind probe) and every listener port in the config accepts TCP. A
//! port checked free can be taken by another process before
//! the gateway binds it: then the gateway exits with "cannot listen on", and
//! `start` moves that config to fresh ports and tries again.
//!
//! Every gateway gets a private identity store: a config without a
//! `[store]` table gets `url = "sqlite:portcullis.db"` in its own directory
//! (the default, a file in `[tls] storage`, would be shared by every test).
//! `GatewayBuilder::users` imports a users file into it before the start,
//! as an operator would with `portcullis user import`.
//!
//! With `-u` (binary upgrade) the new process serves only once the old one
//! hands over its sockets: it is ready when it listens on the upgrade socket
//! (`/tmp/portcullis-PORT-upgrade.sock`), and the test then sends the old
//! one SIGQUIT within pingora's 5 s.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;

/// Name of the config file inside the gateway's directory.
pub const CONFIG_FILE: &str = "portcullis.toml";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts when a listener port was taken by another process.
const BIND_ATTEMPTS: usize = 5;

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A running `portcullis run`; SIGINT (then SIGKILL after 5 s) on drop.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub https_port: u16,
    /// 0 when the config has no `http` listener.
    pub http_port: u16,
    /// 0 when the config has no `ops` listener.
    pub ops_port: u16,
    pub auth_port: u16,
}

/// Sets up the gateway's directory, environment and files before starting it.
#[derive(Debug)]
pub struct GatewayBuilder {
    config: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    args: Vec<String>,
    users: Option<String>,
}

/// `config` with a private `[store]` in its directory unless it names one.
pub fn with_private_store(config: &str) -> String {
    if config.lines().any(|l| l.trim() == "[store]") {
        return config.to_string();
    }
    format!("{config}\n[store]\nurl = \"sqlite:portcullis.db\"\n")
}

impl GatewayBuilder {
    /// Creates the directory now, so `dir()` can go into absolute paths in
    /// the config before the gateway starts. Relative paths in the config
    /// resolve against this directory too (the config file lives in it).
    pub fn new(config: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config.to_string(),
            dir: tempfile::tempdir().expect("temp dir for gateway"),
            env: Vec::new(),
            args: Vec::new(),
            users: None,
        }
    }

    /// Accounts to import (users-file text) with `portcullis user import`
    /// before the gateway starts.
    pub fn users(mut self, users_toml: &str) -> Self {
        self.users = Some(users_toml.to_string());
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the config text (e.g. after building it with `dir()`).
    pub fn config(mut self, config: &str) -> Self {
        self.config = config.to_string();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes `contents` to `name` (relative to `dir()`, parents created).
    pub fn file(self, name: &str, contents: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        self
    }

    /// Extra arguments after `run -c FILE`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts the gateway and waits until it accepts connections; panics with
    /// its output if it exits or is not ready within 60 s. When a listener
    /// port was taken in the meantime, the ports are replaced by fresh ones
    /// everywhere in the config (tests must read them back from `Gateway`).
    pub fn start(mut self) -> Gateway {
        for attempt in 1..=BIND_ATTEMPTS {
            let ports = ListenerPorts::parse(&self.config);
            let wait_port = [ports.https, ports.http]
                .into_iter()
                .find(|&p| p != 0)
                .expect("config has no [server] https or http = \"127.0.0.1:PORT\" line");
            let config_path = self.dir.path().join(CONFIG_FILE);
            std::fs::write(&config_path, with_private_store(&self.config)).unwrap();
            if let Some(users) = self.users.take() {
                self.import(&config_path, &users);
            }
            let upgrade = self.args.iter().any(|a| a == "-u" || a == "--upgrade");
            let ready = if upgrade {
                let sock = PathBuf::from(format!("/tmp/portcullis-{wait_port}-upgrade.sock"));
                // A file left by an earlier run must not pass for readiness.
                let _ = std::fs::remove_file(&sock);
                Ready::UpgradeSocket(sock)
            } else {
                let all = [ports.https, ports.http, ports.ops, ports.auth];
                Ready::Ports(all.into_iter().filter(|&p| p != 0).collect())
            };
            let mut child = self.spawn(&config_path);
            match wait_ready(&mut child, self.dir.path(), &ready) {
                Ok(()) => {
                    return Gateway {
                        child,
                        dir: self.dir,
                        env: self.env,
                        https_port: ports.https,
                        http_port: ports.http,
                        ops_port: ports.ops,
                        auth_port: ports.auth,
                    }
                }
                Err(NotReady::PortTaken) if attempt < BIND_ATTEMPTS => {
                    for old in [ports.https, ports.http, ports.ops, ports.auth] {
                        if old != 0 {
                            self.config = replace_port(&self.config, old, free_port());
                        }
                    }
                }
                Err(e) => {
                    let logs = logs_in(self.dir.path());
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{e}\n{logs}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn import(&self, config_path: &Path, users: &str) {
        let file = self.dir.path().join("import-users.toml");
        std::fs::write(&file, users).unwrap();
        let out = cli_with(
            self.dir.path(),
            &self.env,
            &[
                "user",
                "import",
                file.to_str().unwrap(),
                "-c",
                config_path.to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "user import: {}", stderr_of(&out));
    }

    fn spawn(&self, config_path: &Path) -> Child {
        let open = |name: &str| std::fs::File::create(self.dir.path().join(name)).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("run")
            .arg("-c")
            .arg(config_path)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open("stdout.log"))
            .stderr(open("stderr.log"));
        hermetic_env(&mut command);
        command.env("RUST_LOG", "info");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.spawn().expect("spawn portcullis")
    }
}

impl Gateway {
    /// Starts with `config` and no extra env or files.
    pub fn start(config: &str) -> Gateway {
        GatewayBuilder::new(config).start()
    }

    pub fn builder(config: &str) -> GatewayBuilder {
        GatewayBuilder::new(config)
    }

    /// Directory holding the config, extra files and the captured logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    /// `https://localhost:PORT`, for helpers that take a base URL.
    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    /// `https://localhost:PORT{path}`; `https_client` resolves localhost.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }

    /// `http://localhost:PORT{path}` on the plain listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.http_port)
    }

    /// `http://127.0.0.1:PORT{path}` on the forward-auth listener.
    pub fn auth_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.auth_port)
    }

    /// `http://127.0.0.1:PORT{path}` on the ops listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ops_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name ("HUP", "TERM", ...).
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Writes a new config and sends SIGHUP. Whether it was applied shows in
    /// the logs (see `wait_for_log`) or in behaviour.
    pub fn reload(&self, config: &str) {
        std::fs::write(self.config_path(), with_private_store(config)).unwrap();
        self.signal("HUP");
    }

    /// `portcullis user ARGS -c CONFIG` against this gateway's store, with
    /// the gateway's environment; `stdin` is the password line, if any.
    pub fn user(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let config = self.config_path();
        let mut all: Vec<&str> = vec!["user"];
        all.extend_from_slice(args);
        all.extend(["-c", config.to_str().unwrap()]);
        cli_with(self.dir.path(), &self.env, &all, stdin)
    }

    /// As [`Gateway::user`], asserting success; returns stdout.
    pub fn user_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.user(args, stdin);
        assert!(
            out.status.success(),
            "user {args:?}: {}{}",
            stdout_of(&out),
            stderr_of(&out)
        );
        stdout_of(&out)
    }

    /// Writes a file in `dir()`.
    pub fn write_file(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
    }

    pub fn stdout(&self) -> String {
        self.read_log("stdout.log")
    }

    pub fn stderr(&self) -> String {
        self.read_log("stderr.log")
    }

    /// Stdout lines that parse as JSON objects (request and audit logs).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Polls stdout+stderr until `needle` appears; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.stdout().contains(needle) || self.stderr().contains(needle)
        })
    }

    /// Exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    fn read_log(&self, name: &str) -> String {
        let bytes = std::fs::read(self.dir.path().join(name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn logs(&self) -> String {
        logs_in(self.dir.path())
    }
}

/// Why a started gateway is not serving.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("portcullis could not bind a listener port another process took")]
    PortTaken,
    #[error("portcullis exited during start-up ({0})")]
    Exited(ExitStatus),
    #[error("portcullis did not {0} within {STARTUP_TIMEOUT:?}")]
    Timeout(String),
}

/// What a started gateway shows when it is ready.
enum Ready {
    /// It logged "portcullis serving" (its listeners passed the bind probe)
    /// and every listener port accepts (pingora binds them one after the
    /// other, the ops listener in its own service). Checking the log keeps a
    /// stranger listening on a port from passing for the gateway.
    Ports(Vec<u16>),
    /// `-u`: it waits on the upgrade socket for the old process's listeners.
    UpgradeSocket(PathBuf),
}

fn wait_ready(child: &mut Child, dir: &Path, ready: &Ready) -> Result<(), NotReady> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            return Err(
                if stderr.contains("cannot listen on") || stderr.contains("Address already in use")
                {
                    NotReady::PortTaken
                } else {
                    NotReady::Exited(status)
                },
            );
        }
        let is_ready = match ready {
            Ready::Ports(ports) => {
                std::fs::read_to_string(dir.join("stderr.log"))
                    .is_ok_and(|s| s.contains("portcullis serving"))
                    && ports
                        .iter()
                        .all(|&p| TcpStream::connect((Ipv4Addr::LOCALHOST, p)).is_ok())
            }
            Ready::UpgradeSocket(sock) => sock.exists(),
        };
        if is_ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout(match ready {
                Ready::Ports(ports) => format!("listen on 127.0.0.1 ports {ports:?}"),
                Ready::UpgradeSocket(sock) => format!("wait on {}", sock.display()),
            }));
        }
        std::thread::sleep(POLL);
    }
}

fn logs_in(dir: &Path) -> String {
    let read = |name: &str| {
        String::from_utf8_lossy(&std::fs::read(dir.join(name)).unwrap_or_default()).into_owned()
    };
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        read("stdout.log"),
        read("stderr.log")
    )
}

/// `config` with every `:old` port (not followed by another digit) as `:new`.
fn replace_port(config: &str, old: u16, new: u16) -> String {
    let needle = format!(":{old}");
    let mut out = String::with_capacity(config.len());
    let mut rest = config;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(&needle);
        } else {
            out.push_str(&format!(":{new}"));
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            // SIGINT is pingora's fast shutdown: SIGTERM would wait out the
            // grace period, which tests do not need.
            self.signal("INT");
            if self.wait_exit(SHUTDOWN_GRACE).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // A failing test shows what the gateway said.
        if std::thread::panicking() {
            eprintln!(
                "portcullis logs ({}):\n{}",
                self.dir().display(),
                self.logs()
            );
        }
    }
}

/// Listener ports named in a config's `[server]` table (0 when absent).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenerPorts {
    pub https: u16,
    pub http: u16,
    pub ops: u16,
    pub auth: u16,
}

impl ListenerPorts {
    /// A line-based scan (not a TOML parser): `key = "host:port"` lines
    /// inside `[server]`.
    pub fn parse(config: &str) -> ListenerPorts {
        let mut ports = ListenerPorts::default();
        let mut in_server = false;
        for line in config.lines().map(str::trim) {
            if line.starts_with('[') {
                in_server = line == "[server]";
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|_| in_server) else {
                continue;
            };
            let value = value.split('#').next().unwrap().trim().trim_matches('"');
            let port = value
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(0);
            match key.trim() {
                "https" => ports.https = port,
                "http" => ports.http = port,
                "ops" => ports.ops = port,
                "auth" => ports.auth = port,
                _ => {}
            }
        }
        ports
    }
}

/// Runs `portcullis ARGS` (not `run`, which would not exit) with `env` added,
/// `stdin` written then closed; panics after 30 s.
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    run_cli_in(&std::env::temp_dir(), args, env, stdin)
}

/// `run_cli` with the working directory `dir` (where `./portcullis.toml` is
/// looked for).
pub fn run_cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    hermetic_env(&mut command);
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("spawn portcullis");
    if let Some(input) = stdin {
        // Dropping the handle closes stdin, so the CLI sees EOF.
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(input.as_bytes());
    }
    let pid = child.id();
    // wait_with_output drains both pipes; run it on a thread to time it out.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_TIMEOUT) {
        Ok(output) => output.expect("wait for portcullis"),
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("portcullis {args:?} did not exit within {CLI_TIMEOUT:?}");
        }
    }
}

fn cli_with(dir: &Path, env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_cli_in(dir, args, &env, stdin)
}

/// Stdout of `output` as text (for assertions).
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of `output` as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The developer's own `PORTCULLIS_*` variables must not leak into tests.
fn hermetic_env(command: &mut Command) {
    let inherited: HashMap<String, String> = std::env::vars().collect();
    for key in inherited.keys().filter(|k| k.starts_with("PORTCULLIS_")) {
        command.env_remove(key);
    }
    command.env_remove("RUST_LOG");
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `condition` every 50 ms until true (→ true) or `timeout` (→ false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}
