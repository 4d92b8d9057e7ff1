//! Soak: about ten minutes of mixed traffic against the release binary at
//! about half of its measured capacity, sampling the gateway's RSS and open
//! file descriptors every 5 s. Run it with `benches/soak/soak.sh`; plain
//! `cargo bench` skips it (it needs `PORTCULLIS_SOAK=1`).
//!
//! The mix, all over TLS to a real `portcullis run` in front of the test
//! echo upstream (`tests/support`):
//! - `GET /public/N`: public pages, expect 200;
//! - `GET /app/N` with a session cookie: protected pages, expect 200;
//! - `GET /limited`: a `rate_limit = "20/s"` route, expect 200 or 429;
//! - logins (`GET` + `POST /.portcullis/login`), expect 200 then 303, every
//!   fifth one followed by a protected page (200), a logout (303) and the same
//!   cookie again (401: the revocation holds);
//! - WebSockets: open `/ws`, echo three messages, close.
//!
//! Anything else (another status, a transport error, a wrong echo) is an
//! unexpected error. Output in `$SOAK_OUT` (default `target/soak`):
//! `samples.csv`, `summary.txt`, `plot.txt` (ASCII curves).
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use support::config::basic_with;
use support::login::{csrf_field, set_cookie};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const KEYS: &str = "soak-session-key-0123456789abcdefghijklmnopqrstuvwxyz";
const PW: &str = "soak password 0123";
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// HTTP worker tasks sharing the target rate.
const WORKERS: u32 = 32;

#[derive(Default)]
struct Counts {
    by: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    unexpected: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Counts {
    fn record(&self, class: &str, outcome: &str, expected: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{class} {outcome}{}",
            if expected { "" } else { " UNEXPECTED" }
        );
        *self.by.lock().unwrap().entry(key).or_default() += 1;
        if !expected {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            let mut ex = self.examples.lock().unwrap();
            if ex.len() < 20 {
                ex.push(format!("{class}: {outcome}"));
            }
        }
    }

    fn status(&self, class: &str, result: Result<u16, reqwest::Error>, ok: &[u16]) {
        match result {
            Ok(s) => self.record(class, &s.to_string(), ok.contains(&s)),
            Err(e) => self.record(class, &format!("error: {e}"), false),
        }
    }
}

struct Sample {
    t: f64,
    rss_kb: u64,
    fds: u64,
    requests: u64,
    unexpected: u64,
    load1: f64,
}

fn proc_sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (rss, fds)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// `wrk` for `secs` on a public page: requests per second.
fn measure_capacity(port: u16, secs: u64) -> f64 {
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s")])
        .arg(format!("https://127.0.0.1:{port}/public/capacity"))
        .output()
        .expect("wrk (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wrk printed Requests/sec")
}

async fn login(c: &reqwest::Client, base: &str, counts: &Counts) -> Option<String> {
    let form = match c
        .get(format!("{base}/.portcullis/login?next=/app"))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => {
            counts.record("login-form", "200", true);
            let binding = set_cookie(&r, "__Host-portcullis-csrf")?;
            let token = csrf_field(&r.text().await.ok()?);
            (binding, token)
        }
        other => {
            counts.status("login-form", other.map(|r| r.status().as_u16()), &[200]);
            return None;
        }
    };
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &form.1)
        .append_pair("username", "soak")
        .append_pair("password", PW)
        .append_pair("next", "/app")
        .finish();
    let resp = c
        .post(format!("{base}/.portcullis/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, format!("__Host-portcullis-csrf={}", form.0))
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 303 => {
            counts.record("login", "303", true);
            set_cookie(&r, "__Host-portcullis").map(|v| format!("__Host-portcullis={v}"))
        }
        other => {
            counts.status("login", other.map(|r| r.status().as_u16()), &[303]);
            None
        }
    }
}

async fn logout(c: &reqwest::Client, base: &str, cookie: &str, counts: &Counts) -> bool {
    let page = match c
        .get(format!("{base}/.portcullis/logout"))
        .header(COOKIE, cookie)
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => r,
        other => {
            counts.status("logout-form", other.map(|r| r.status().as_u16()), &[200]);
            return false;
        }
    };
    let Some(binding) = set_cookie(&page, "__Host-portcullis-csrf") else {
        counts.record("logout-form", "no binding cookie", false);
        return false;
    };
    let token = csrf_field(&page.text().await.unwrap_or_default());
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &token)
        .finish();
    let resp = c
        .post(format!("{base}/.portcullis/logout"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            COOKIE,
            format!("{cookie}; __Host-portcullis-csrf={binding}"),
        )
        .body(body)
        .send()
        .await;
    counts.status("logout", resp.map(|r| r.status().as_u16()), &[303]);
    true
}

async fn protected(c: &reqwest::Client, url: String, cookie: &str) -> Result<u16, reqwest::Error> {
    c.get(url)
        .header(ACCEPT, "application/json")
        .header(COOKIE, cookie)
        .send()
        .await
        .map(|r| r.status().as_u16())
}

async fn websocket(port: u16, ca: &str, n: u64, counts: &Counts) {
    let mut ws = match websocket_tls_with(port, ca, "/ws", &[]).await {
        Ok(ws) => ws,
        Err(e) => return counts.record("ws", &format!("handshake: {e}"), false),
    };
    for i in 0..3 {
        let text = format!("soak {n} {i}");
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            return counts.record("ws", &format!("send: {e}"), false);
        }
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m))) if m.to_text().ok() == Some(text.as_str()) => {}
            other => return counts.record("ws", &format!("echo: {other:?}"), false),
        }
    }
    match ws.close(None).await {
        Ok(()) => counts.record("ws", "echoed+closed", true),
        Err(e) => counts.record("ws", &format!("close: {e}"), false),
    }
}

fn ascii_plot(title: &str, samples: &[Sample], value: impl Fn(&Sample) -> f64) -> String {
    const W: usize = 60;
    const H: usize = 12;
    let mut out = format!("{title}\n");
    if samples.is_empty() {
        return out;
    }
    let vals: Vec<f64> = samples.iter().map(&value).collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    // Show at least a ±5 % band so flat lines look flat.
    let pad = ((hi - lo).max(hi.abs() * 0.10) - (hi - lo)) / 2.0;
    let (lo, hi) = (lo - pad, hi + pad);
    let mut grid = vec![vec![' '; W]; H];
    for (i, v) in vals.iter().enumerate() {
        let x = i * (W - 1) / (vals.len().max(2) - 1);
        let y = ((v - lo) / (hi - lo).max(f64::EPSILON) * (H - 1) as f64).round() as usize;
        grid[H - 1 - y.min(H - 1)][x] = '*';
    }
    for (row, line) in grid.iter().enumerate() {
        let level = hi - (hi - lo) * row as f64 / (H - 1) as f64;
        let _ = writeln!(out, "{level:>10.0} |{}", line.iter().collect::<String>());
    }
    let t_end = samples.last().map_or(0.0, |s| s.t);
    let _ = writeln!(out, "{:>10} +{}", "", "-".repeat(W));
    let _ = writeln!(
        out,
        "{:>10}  0 s{:>w$}",
        "",
        format!("{t_end:.0} s"),
        w = W - 3
    );
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("PORTCULLIS_SOAK").is_err() {
        eprintln!("soak: skipped (run benches/soak/soak.sh, which sets PORTCULLIS_SOAK=1)");
        return;
    }
    let secs: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let out = PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| "target/soak".into()));
    std::fs::create_dir_all(&out).expect("output dir");
    install_crypto_provider();

    let pki = TestPki::new();
    let up = Upstream::start();
    let hash = policies::users::hash_password(PW).expect("hash");
    let extra = "[rate_limit]\ndefault = \"off\"\nlogin = \"off\"\n\
                 [secrets]\nsession_keys = \"env:PORTCULLIS_SESSION_KEYS\"\n\
                 [[route]]\npath = \"/limited\"\nrate_limit = \"20/s\"\n\
                 [[route]]\npath = \"/app\"\naccess = \"login\"\n";
    let mut gw = Gateway::builder(&basic_with(&pki, &[up.addr()], "", extra))
        .env("PORTCULLIS_SESSION_KEYS", KEYS)
        .users(&format!(
            "[users.soak]\npassword = \"{hash}\"\nroles = [\"staff\"]\n"
        ))
        .start();
    let pid = gw.pid();
    let (port, base, ca) = (gw.https_port, gw.base(), pki.ca_pem.clone());
    println!(
        "gateway pid {pid} on https://127.0.0.1:{port}, logs in {}",
        gw.dir().display()
    );

    let capacity = measure_capacity(port, 10);
    let target = capacity / 2.0;
    println!("capacity (wrk -c32, GET /public over TLS): {capacity:.0} req/s; target for the mix: {target:.0} req/s");

    let counts = Arc::new(Counts::default());
    let client = https_client(&ca, port, false);
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(login(&client, &base, &counts).await.expect("initial login"));
    }
    let cookies = Arc::new(cookies);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();

    // HTTP workers: WORKERS tasks, each at target/WORKERS per second.
    let missed = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(f64::from(WORKERS) / target.max(1.0));
    for w in 0..WORKERS {
        let (c, counts, stop, cookies, base, missed) = (
            client.clone(),
            counts.clone(),
            stop.clone(),
            cookies.clone(),
            base.clone(),
            missed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(period * w / WORKERS).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut i = u64::from(w);
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if last.elapsed() > period * 2 {
                    missed.fetch_add(1, Ordering::Relaxed);
                }
                last = Instant::now();
                i += 1;
                match i % 10 {
                    0..=3 => {
                        let r = c.get(format!("{base}/public/{i}")).send().await;
                        counts.status("public", r.map(|r| r.status().as_u16()), &[200]);
                    }
                    4..=7 => {
                        let cookie = &cookies[(i as usize) % cookies.len()];
                        let r = protected(&c, format!("{base}/app/{i}"), cookie).await;
                        counts.status("protected", r, &[200]);
                    }
                    _ => {
                        let r = c
                            .get(format!("{base}/limited"))
                            .header(ACCEPT, "application/json")
                            .send()
                            .await;
                        counts.status("limited", r.map(|r| r.status().as_u16()), &[200, 429]);
                    }
                }
            }
        }));
    }

    // Logins: one a second; every fifth logs out and checks the revocation.
    {
        let (c, counts, stop, base) = (client.clone(), counts.clone(), stop.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let Some(cookie) = login(&c, &base, &counts).await else {
                    continue;
                };
                if n.is_multiple_of(5) {
                    let r = protected(&c, format!("{base}/app/fresh"), &cookie).await;
                    counts.status("protected-fresh", r, &[200]);
                    if logout(&c, &base, &cookie, &counts).await {
                        let r = protected(&c, format!("{base}/app/after-logout"), &cookie).await;
                        counts.status("after-logout", r, &[401]);
                    }
                }
            }
        }));
    }

    // WebSockets: two a second, each its own connection.
    {
        let (counts, stop, ca) = (counts.clone(), stop.clone(), ca.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut n = 0u64;
            let mut inflight = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (counts, ca) = (counts.clone(), ca.clone());
                inflight.push(tokio::spawn(async move {
                    websocket(port, &ca, n, &counts).await
                }));
                inflight.retain(|t| !t.is_finished());
            }
            for t in inflight {
                let _ = t.await;
            }
        }));
    }

    // Samples every 5 s.
    let mut samples = Vec::new();
    let mut csv = std::fs::File::create(out.join("samples.csv")).expect("csv");
    writeln!(csv, "t_s,rss_kb,fds,requests,unexpected,load1").unwrap();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        let (rss_kb, fds) = proc_sample(pid);
        let s = Sample {
            t,
            rss_kb,
            fds,
            requests: counts.total.load(Ordering::Relaxed),
            unexpected: counts.unexpected.load(Ordering::Relaxed),
            load1: load1(),
        };
        writeln!(
            csv,
            "{:.0},{},{},{},{},{:.2}",
            s.t, s.rss_kb, s.fds, s.requests, s.unexpected, s.load1
        )
        .unwrap();
        println!(
            "t={:>4.0}s rss={} kB fds={} requests={} unexpected={} load1={:.2}",
            s.t, s.rss_kb, s.fds, s.requests, s.unexpected, s.load1
        );
        samples.push(s);
        if t >= secs as f64 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let alive = gw.try_wait().is_none();
    let elapsed = started.elapsed().as_secs_f64();

    // Warm-up: the first sample at or after 60 s (or a tenth of the run).
    let warm_t = (secs as f64 / 10.0).min(60.0);
    let warm = samples
        .iter()
        .find(|s| s.t >= warm_t)
        .unwrap_or(&samples[0]);
    let end = samples.last().unwrap();
    let max_rss = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let drift = (end.rss_kb as f64 - warm.rss_kb as f64) / warm.rss_kb.max(1) as f64 * 100.0;
    let total = counts.total.load(Ordering::Relaxed);
    let unexpected = counts.unexpected.load(Ordering::Relaxed);
    let loads: Vec<f64> = samples.iter().map(|s| s.load1).collect();
    let mean_load = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    let mut summary = String::new();
    let _ = writeln!(summary, "portcullis soak: {elapsed:.0} s, release build, threads = 1, TLS (HTTP/1.1), machine: {} cores shared", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let _ = writeln!(summary, "capacity (wrk -t1 -c32 10 s, GET /public): {capacity:.0} req/s; target rate of the HTTP mix: {target:.0} req/s (+1 login/s, +2 WebSockets/s)");
    let _ = writeln!(
        summary,
        "achieved: {total} operations, {:.0}/s; worker ticks late by more than one period: {}",
        total as f64 / elapsed,
        missed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        summary,
        "load average (1 min) during the run: mean {mean_load:.2}, max {:.2}",
        loads.iter().cloned().fold(0.0, f64::max)
    );
    let _ = writeln!(summary, "\ncounts by class and outcome:");
    for (k, v) in counts.by.lock().unwrap().iter() {
        let _ = writeln!(summary, "  {k:<40} {v}");
    }
    let _ = writeln!(summary, "\nunexpected errors: {unexpected}");
    for e in counts.examples.lock().unwrap().iter() {
        let _ = writeln!(summary, "  {e}");
    }
    let _ = writeln!(summary, "gateway still running at the end: {alive}");
    let _ = writeln!(
        summary,
        "RSS: warm-up (t={:.0} s) {} kB, end (t={:.0} s) {} kB, max {} kB: {drift:+.1} %",
        warm.t, warm.rss_kb, end.t, end.rss_kb, max_rss
    );
    let _ = writeln!(
        summary,
        "fds: warm-up {}, end {}, max {}",
        warm.fds,
        end.fds,
        samples.iter().map(|s| s.fds).max().unwrap_or(0)
    );
    print!("{summary}");
    std::fs::write(out.join("summary.txt"), &summary).expect("summary");
    let plot = format!(
        "{}\n{}",
        ascii_plot("gateway VmRSS (kB) over time", &samples, |s| s.rss_kb
            as f64),
        ascii_plot("gateway open fds over time", &samples, |s| s.fds as f64)
    );
    print!("{plot}");
    std::fs::write(out.join("plot.txt"), plot).expect("plot");
    drop(gw);
    drop(up);
    if unexpected > 0 || !alive {
        std::process::exit(1);
    }
}
