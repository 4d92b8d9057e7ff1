//! The shared-store decision: one GCRA script call (EVALSHA) round trip to a
//! real `redis-server` on loopback, as `store = "redis"` makes per limited
//! request. Starts its own server on a free port; skips with a message when
//! `redis-server` is not installed.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use policies::ratelimit::{Rate, SharedGcra, REDIS_GCRA_SCRIPT};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Server, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, port))
}

fn bench(c: &mut Criterion) {
    let Some((_server, port)) = start_redis() else {
        eprintln!("ratelimit_redis: redis-server not available; skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("url");
    let mut conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("connect");
    let script = redis::Script::new(REDIS_GCRA_SCRIPT);
    let mut g = c.benchmark_group("ratelimit::redis");
    for (name, rate, key) in [
        ("allowed", "1000000/s", "portcullis:rl:bench:i:203.0.113.7"),
        ("limited", "1/day", "portcullis:rl:bench:i:203.0.113.8"),
    ] {
        let gcra = SharedGcra::new(Rate::parse(rate).expect("rate")).expect("gcra");
        let [interval, burst] = gcra.args();
        g.bench_function(name, |b| {
            b.iter(|| {
                let reply: Vec<i64> = rt
                    .block_on(
                        script
                            .key(black_box(key))
                            .arg(interval)
                            .arg(burst)
                            .invoke_async(&mut conn),
                    )
                    .expect("script");
                gcra.outcome(&reply).expect("reply")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
