//! A real Flask app under `flask run` on a loopback port, stopped on drop.
//! The Python comes from `PORTCULLIS_EXAMPLE_PYTHON` (`scripts/test` makes a
//! venv with flask and pyjwt), else `python3`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A running `flask run`; killed on drop.
pub struct Flask(Child);

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python the tests run Flask with.
pub fn python() -> String {
    std::env::var("PORTCULLIS_EXAMPLE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Starts `flask --app APP run` in `dir` on 127.0.0.1:`port` with `env`
/// set, after checking that the Python can import `modules` (comma
/// separated); waits until the port accepts.
pub fn start(dir: &Path, app: &str, port: u16, env: &[(&str, &str)], modules: &str) -> Flask {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{py} cannot import {modules}: run scripts/test (it makes a venv) or pip install -r examples/flask/requirements.txt"
    );
    let child = Command::new(&py)
        .args(["-m", "flask", "--app", app, "run", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flask");
    let up = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "flask did not start on {port}");
    Flask(child)
}
