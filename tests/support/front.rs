//! A real nginx or Caddy (Debian's packages) in front of an app, asking
//! portcullis through forward auth, configured from the shipped examples in
//! `examples/forward-auth/` with their addresses replaced. Free loopback
//! ports, a private directory, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gateway::wait_until;
use super::pki::TestPki;
use super::ports::free_port;

/// Where the front proxy sends what (the examples' placeholders).
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// portcullis's page listener (examples: 127.0.0.1:9901).
    pub pages: u16,
    /// portcullis's `[server] auth` listener (examples: 127.0.0.1:9902).
    pub auth: u16,
    /// The app (examples: 127.0.0.1:8000).
    pub app: u16,
}

pub struct Front {
    /// The proxy's https port (`https://localhost:PORT`).
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// The shipped example, read from the repository.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/forward-auth")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example's addresses replaced by the test's.
pub fn retarget(text: &str, t: Targets) -> String {
    text.replace("127.0.0.1:9901", &format!("127.0.0.1:{}", t.pages))
        .replace("127.0.0.1:9902", &format!("127.0.0.1:{}", t.auth))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{}", t.app))
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replacen(from, to, 1)
}

impl Front {
    /// nginx with `examples/forward-auth/nginx.conf` as its one server, TLS
    /// from `pki`.
    pub fn nginx(pki: &TestPki, t: Targets) -> Front {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let server = retarget(&example("nginx.conf"), t);
        let server = replace_once(
            &server,
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{port} ssl http2;"),
        );
        let server = replace_once(
            &server,
            "server_name app.example.com;",
            "server_name localhost;",
        );
        let server = replace_once(
            &server,
            "/etc/letsencrypt/live/app.example.com/fullchain.pem",
            &pki.cert_path.display().to_string(),
        );
        let server = replace_once(
            &server,
            "/etc/letsencrypt/live/app.example.com/privkey.pem",
            &pki.key_path.display().to_string(),
        );
        let d = dir.path().display();
        let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|k| format!("  {k}_temp_path {d}/{k};\n"))
            .collect();
        let conf = format!(
            "user root root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log {d}/access.log;\n{temps}{server}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(log(dir.path(), "stdout.log"))
            .stderr(log(dir.path(), "stderr.log"))
            .spawn()
            .expect("start nginx (apt-get install nginx-light; scripts/test installs it)");
        Front::ready(dir, child, port, "nginx")
    }

    /// Caddy with `examples/forward-auth/Caddyfile` as its one site, TLS
    /// from `pki`, no admin endpoint, nothing stored outside its directory.
    pub fn caddy(pki: &TestPki, t: Targets) -> Front {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let site = retarget(&example("Caddyfile"), t);
        let site = replace_once(
            &site,
            "app.example.com {",
            &format!(
                "https://localhost:{port} {{\n\ttls {} {}",
                pki.cert_path.display(),
                pki.key_path.display()
            ),
        );
        let conf = format!(
            "{{\n\tadmin off\n\tauto_https disable_redirects\n\
             \tstorage file_system {}\n}}\n\n{site}",
            dir.path().join("data").display()
        );
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("/usr/bin/caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(log(dir.path(), "stdout.log"))
            .stderr(log(dir.path(), "stderr.log"))
            .spawn()
            .expect("start caddy (apt-get install caddy; scripts/test installs it)");
        Front::ready(dir, child, port, "caddy")
    }

    fn ready(dir: tempfile::TempDir, mut child: Child, port: u16, what: &str) -> Front {
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                || matches!(child.try_wait(), Ok(Some(_)))
        });
        let exited = child.try_wait().ok().flatten();
        if !up || exited.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not start ({exited:?}):\n{}",
                logs(dir.path(), &["stderr.log", "stdout.log", "error.log"])
            );
        }
        Front { port, dir, child }
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The proxy's logs, for a failing assertion's message.
    pub fn logs(&self) -> String {
        logs(self.dir.path(), &["stderr.log", "stdout.log", "error.log"])
    }
}

fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).unwrap()
}

fn logs(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let p: PathBuf = dir.join(n);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: String = text
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            format!("--- {n}\n{tail}\n")
        })
        .collect()
}

impl Drop for Front {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers, which a
        // SIGKILLed master would leave behind.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let stopped = wait_until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
