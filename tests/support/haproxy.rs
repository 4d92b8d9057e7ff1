//! A real HAProxy (Debian's `haproxy`) in front of several gateways, on free
//! loopback ports, killed on drop: round robin, health checks on each
//! gateway's ops listener `GET /readyz` every 250 ms, and a stats socket to
//! read its retry counters.
//!
//! Two frontends, each optional: `http` in HTTP mode (retries and
//! redispatch on connection failures, so a killed backend costs no
//! idempotent request), and `tls` in TCP mode (TLS passes through to the
//! gateways' https listeners, as TLS-ALPN-01 validation needs).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gateway::wait_until;
use super::ports::free_port;

/// One backend server: where it listens and its ops port for checks.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    pub port: u16,
    pub ops: u16,
}

pub struct HaProxy {
    /// The HTTP frontend's port (0 when there is none).
    pub http_port: u16,
    /// The TCP (TLS pass-through) frontend's port (0 when there is none).
    pub tls_port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl HaProxy {
    /// Starts HAProxy with an HTTP frontend over `http` and a TCP frontend
    /// over `tls` (either may be empty), and waits until its frontends
    /// accept connections.
    pub fn start(http: &[Server], tls: &[Server]) -> HaProxy {
        let http_port = if http.is_empty() { 0 } else { free_port() };
        let tls_port = if tls.is_empty() { 0 } else { free_port() };
        HaProxy::start_on(http_port, tls_port, http, tls)
    }

    /// As [`HaProxy::start`] on ports chosen beforehand (0: no such
    /// frontend), for a CA told where to validate before the balancer runs.
    pub fn start_on(http_port: u16, tls_port: u16, http: &[Server], tls: &[Server]) -> HaProxy {
        let dir = tempfile::tempdir().expect("dir");
        let stats = dir.path().join("stats.sock");
        let servers = |list: &[Server]| {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    format!(
                        "  server g{i} 127.0.0.1:{} check port {} inter 250ms fall 2 rise 1\n",
                        s.port, s.ops
                    )
                })
                .collect::<String>()
        };
        let mut cfg = format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 4096\n\
             defaults\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
             timeout check 1s\n  retries 3\n  option redispatch\n",
            stats.display()
        );
        if !http.is_empty() {
            cfg.push_str(&format!(
                "frontend http_in\n  mode http\n  bind 127.0.0.1:{http_port}\n  default_backend gateways_http\n\
                 backend gateways_http\n  mode http\n  balance roundrobin\n  \
                 option httpchk GET /readyz\n  retry-on all-retryable-errors\n  \
                 option forwardfor\n{}",
                servers(http)
            ));
        }
        if !tls.is_empty() {
            cfg.push_str(&format!(
                "frontend tls_in\n  mode tcp\n  bind 127.0.0.1:{tls_port}\n  default_backend gateways_tls\n\
                 backend gateways_tls\n  mode tcp\n  balance roundrobin\n  \
                 option httpchk GET /readyz\n{}",
                servers(tls)
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &cfg).expect("config");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("haproxy not found: run scripts/test, which installs it (apt haproxy)");
        let mut proxy = HaProxy {
            http_port,
            tls_port,
            dir,
            child,
        };
        let up = wait_until(Duration::from_secs(10), || {
            [http_port, tls_port]
                .iter()
                .filter(|p| **p != 0)
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(
            up && proxy.child.try_wait().ok().flatten().is_none(),
            "haproxy did not start:\n{cfg}\n{}",
            proxy.log()
        );
        proxy
    }

    /// HAProxy's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    fn stats_socket(&self) -> PathBuf {
        self.dir.path().join("stats.sock")
    }

    /// `show stat` as rows of (proxy, server) → column → value.
    pub fn stats(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut s = UnixStream::connect(self.stats_socket()).expect("stats socket");
        s.write_all(b"show stat\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let mut lines = out.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .map(str::to_string)
            .collect();
        lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                header
                    .iter()
                    .cloned()
                    .zip(l.split(',').map(str::to_string))
                    .collect()
            })
            .collect()
    }

    /// A counter summed over the servers of `backend` (e.g. `wretr`
    /// retries, `wredis` redispatches, `eresp` response errors).
    pub fn counter(&self, backend: &str, column: &str) -> u64 {
        self.stats()
            .iter()
            .filter(|r| r.get("pxname").map(String::as_str) == Some(backend))
            .filter(|r| {
                r.get("svname")
                    .is_some_and(|s| s != "FRONTEND" && s != "BACKEND")
            })
            .filter_map(|r| r.get(column)?.parse::<u64>().ok())
            .sum()
    }

    /// How many servers of `backend` the health checks say are up.
    pub fn up(&self, backend: &str) -> usize {
        self.stats()
            .iter()
            .filter(|r| r.get("pxname").map(String::as_str) == Some(backend))
            .filter(|r| r.get("status").is_some_and(|s| s.starts_with("UP")))
            .filter(|r| {
                r.get("svname")
                    .is_some_and(|s| s != "FRONTEND" && s != "BACKEND")
            })
            .count()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
