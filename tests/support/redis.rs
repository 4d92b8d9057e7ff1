//! A real `redis-server` on a free loopback port, started and stopped by the
//! test (no persistence, its own temp dir). Stop and restart keep the port,
//! so a gateway configured with it sees an outage and a recovery.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gateway::wait_until;
use super::ports::free_port;

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// More `redis-server` arguments (`--timeout 2`), kept across restarts.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts and waits until it answers `PING`. When another process took
    /// the port after `free_port()` checked it, redis-server exits: then it
    /// starts again on a fresh port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// As [`RedisServer::start`], with more server arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        for _ in 0..4 {
            if server.spawn_and_wait() {
                return server;
            }
            server.port = free_port();
        }
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether it answers `PING` now.
    pub fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (as a crash would) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                self.port
            ))
            .is_err()),
            "redis still listening on {}",
            self.port
        );
    }

    /// (Re)starts an empty server on the same port.
    pub fn restart(&mut self) {
        assert!(
            self.spawn_and_wait(),
            "redis-server could not start on {} (port taken?)",
            self.port
        );
    }

    /// Spawns redis-server on `self.port`; true once it answers `PING`,
    /// false if it exited first.
    fn spawn_and_wait(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server not found: run scripts/test, which installs it (apt redis-server)",
            );
        self.child = Some(child);
        let mut exited = false;
        let answered = wait_until(Duration::from_secs(20), || {
            exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            exited || self.answers()
        });
        if exited {
            self.child = None;
            return false;
        }
        assert!(
            answered,
            "redis-server on {} did not answer PING",
            self.port
        );
        true
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
