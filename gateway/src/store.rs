//! The shared store behind `[rate_limit] store = "redis"`: rate-limit and
//! attempt-limit decisions (one atomic GCRA script call each) and session
//! revocations, so several instances act as one.
//!
//! One multiplexed connection carries every request's commands (redis-rs
//! pipelines them; a pool of connections would only add sockets). It is
//! pinged when idle, and one found broken is replaced and the operation
//! retried once. Any other failure drops the connection and opens a short
//! circuit: for [`RETRY_AFTER`] no
//! request waits on Redis, each gets [`StoreDown`] at once and follows
//! `on_store_error`. After that one request probes with a fresh connection;
//! success closes the circuit. The outage is logged once when it starts and
//! once when it ends, and counted.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use policies::ratelimit::{Grant, SharedGcra, REDIS_GCRA_SCRIPT};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

use crate::config::{OnStoreError, RedisConf};

/// Longest a request waits for a connection to Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest a request waits for Redis to answer one command.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest one operation takes before it counts as failed (`within_time`).
pub const ASK_WAIT: Duration = RESPONSE_TIMEOUT.saturating_add(CONNECT_TIMEOUT);
/// How long after a failure requests skip Redis before one probes again.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

const KEY_PREFIX: &str = "portcullis:";

/// A connection that carried no command for this long is pinged: well under
/// the shortest idle `timeout` a Redis server is usually given.
pub const KEEPALIVE_AFTER: Duration = Duration::from_millis(900);

/// Heartbeats read at most: more instances than this on one Redis is not a
/// deployment this reports on.
pub const MAX_INSTANCES: usize = 1000;

/// Why one attempt of an operation failed.
enum Failure {
    Redis(RedisError),
    Late,
}

/// Errors that mean this connection is gone (and a fresh one may work), as
/// opposed to a slow server or a wrong command.
fn is_broken_connection(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_unrecoverable_error())
}

/// Redis could not decide: the caller applies `on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreDown;

/// Counters for the operations endpoint (and the recovery log line).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Outages that began (a working store became unreachable).
    pub outages: AtomicU64,
    /// Operations answered with [`StoreDown`].
    pub failed_ops: AtomicU64,
    /// Operations retried on a fresh connection after the old one broke.
    pub retries: AtomicU64,
}

struct Outage {
    since: Instant,
    failed_ops_before: u64,
}

pub struct RedisStore {
    client: Client,
    /// For logs: host and port, never the password.
    target: String,
    pub on_error: OnStoreError,
    gcra: redis::Script,
    conn: ArcSwapOption<MultiplexedConnection>,
    /// Counts the connections opened: a new one may reach a Redis that
    /// restarted without its data, which local leases must not outlive.
    generation: AtomicU64,
    /// Held while connecting, so one request connects and the rest wait for it.
    connecting: tokio::sync::Mutex<()>,
    down: AtomicBool,
    /// Milliseconds after `epoch` before which no request probes.
    retry_at_ms: AtomicU64,
    /// Milliseconds after `epoch` of the last successful operation.
    last_ok_ms: AtomicU64,
    epoch: Instant,
    outage: Mutex<Option<Outage>>,
    pub stats: StoreStats,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why `check --online` could not reach the store.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("{target}: no answer within {within:?}")]
    Timeout { target: String, within: Duration },
    #[error("{target}: {source}")]
    Redis {
        target: String,
        source: redis::RedisError,
    },
}

impl RedisStore {
    /// Connects lazily: a gateway starts (and follows `on_store_error`) while
    /// Redis is still coming up.
    pub fn new(conf: &RedisConf) -> Result<RedisStore, redis::RedisError> {
        let client = Client::open(conf.info.clone())?;
        Ok(RedisStore {
            client,
            target: conf.info.addr().to_string(),
            on_error: conf.on_error,
            gcra: redis::Script::new(REDIS_GCRA_SCRIPT),
            conn: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            down: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            last_ok_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            outage: Mutex::new(None),
            stats: StoreStats::default(),
        })
    }

    /// Counts up to `want` requests for `key` under the rule `rule` in one
    /// script call (a lease when more than one: policies::lease).
    pub async fn count(
        &self,
        rule: &str,
        key: &str,
        g: &SharedGcra,
        want: u32,
    ) -> Result<Grant, StoreDown> {
        let key = &format!("{KEY_PREFIX}rl:{rule}:{key}");
        let [interval, burst] = g.args();
        let reply: Vec<i64> = self
            .with_conn(|mut c| async move {
                self.gcra
                    .key(key)
                    .arg(interval)
                    .arg(burst)
                    .arg(want)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        g.grant(&reply, want).ok_or_else(|| {
            self.failed("the rate-limit script returned an unexpected reply");
            StoreDown
        })
    }

    /// Records a logout everywhere until the session would have expired.
    pub async fn revoke(&self, id: &[u8; 16], until_unix: u64) -> Result<(), StoreDown> {
        let key = &revoked_key(id);
        self.with_conn(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("EXAT")
                .arg(until_unix.max(1))
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Whether any instance recorded a logout of this session.
    pub async fn is_revoked(&self, id: &[u8; 16]) -> Result<bool, StoreDown> {
        let key = &revoked_key(id);
        self.with_conn(|mut c| async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut c)
                .await
        })
        .await
    }

    /// Starts a lockout named `name` until `until_unix` unless one is on
    /// already; returns when the lockout in force ends (the earlier one's
    /// end when another instance started it first).
    pub async fn lock(&self, name: &str, until_unix: u64) -> Result<u64, StoreDown> {
        let key = &format!("{KEY_PREFIX}lock:{name}");
        let before: Option<u64> = self
            .with_conn(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(until_unix)
                    .arg("NX")
                    .arg("GET")
                    .arg("EXAT")
                    .arg(until_unix.max(1))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(before.unwrap_or(until_unix))
    }

    /// When the lockout named `name` ends, if one is on.
    pub async fn locked_until(&self, name: &str) -> Result<Option<u64>, StoreDown> {
        let key = &format!("{KEY_PREFIX}lock:{name}");
        self.with_conn(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// Publishes this instance's heartbeat under `id` for `ttl_secs`.
    pub async fn publish_instance(
        &self,
        id: &str,
        beat: &str,
        ttl_secs: u64,
    ) -> Result<(), StoreDown> {
        let key = &format!("{KEY_PREFIX}instance:{id}");
        self.with_conn(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(beat)
                .arg("EX")
                .arg(ttl_secs.max(1))
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Every live heartbeat (at most [`MAX_INSTANCES`]).
    pub async fn instances(&self) -> Result<Vec<String>, StoreDown> {
        self.with_conn(|mut c| async move {
            let pattern = format!("{KEY_PREFIX}instance:*");
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 || keys.len() >= MAX_INSTANCES {
                    break;
                }
            }
            keys.truncate(MAX_INSTANCES);
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let beats: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
            Ok(beats.into_iter().flatten().collect())
        })
        .await
    }

    /// `check --online`: connects and pings, reporting the reason on failure.
    pub async fn ping(&self) -> Result<(), PingError> {
        let within = CONNECT_TIMEOUT * 4;
        let redis = |source| PingError::Redis {
            target: self.target.clone(),
            source,
        };
        let connected = tokio::time::timeout(within, self.connect()).await;
        let Ok(connected) = connected else {
            let target = self.target.clone();
            return Err(PingError::Timeout { target, within });
        };
        let mut c = connected.map_err(redis)?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(drop)
            .map_err(redis)
    }

    /// Whether the circuit is open (Redis currently considered unreachable).
    /// Which connection the store is on (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Runs one operation on the shared connection, opening it when needed,
    /// within the timeouts. A connection found broken (Redis restarted, or
    /// closed it after its idle `timeout`) is replaced and the operation
    /// tried once more before anything counts as an outage; any other
    /// failure opens the circuit.
    async fn with_conn<T, F, Fut>(&self, op: F) -> Result<T, StoreDown>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let shared = self.conn.load_full();
        let conn = match &shared {
            Some(c) => (**c).clone(),
            None => self.open().await?,
        };
        let first = self.within_time(op(conn)).await;
        let result = match first {
            Err(Failure::Redis(e)) if is_broken_connection(&e) => {
                // Clear only the connection that broke: another request may
                // already have put a fresh one in its place.
                if let Some(dead) = &shared {
                    self.conn.compare_and_swap(dead, None);
                }
                tracing::debug!(store = "redis", error = %e, "connection broken; retrying once on a fresh one");
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let fresh = self.open().await?;
                self.within_time(op(fresh)).await
            }
            other => other,
        };
        match result {
            Ok(v) => {
                self.last_ok_ms.store(self.ms_now(), Ordering::Relaxed);
                self.recovered();
                Ok(v)
            }
            Err(failure) => {
                self.conn.store(None);
                match failure {
                    Failure::Redis(e) => self.failed(&e.to_string()),
                    Failure::Late => self.failed("no answer in time"),
                }
                Err(StoreDown)
            }
        }
    }

    async fn within_time<T>(
        &self,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(ASK_WAIT, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Late),
        }
    }

    /// Called every second (housekeeping): a connection idle for
    /// [`KEEPALIVE_AFTER`] sends a PING, so a server-side idle `timeout`
    /// never closes it under a request, a restart is noticed (and the
    /// connection replaced) before a request needs it, and the end of an
    /// outage is found without waiting for traffic.
    pub async fn keep_alive(&self) {
        let idle_ms = self
            .ms_now()
            .saturating_sub(self.last_ok_ms.load(Ordering::Relaxed));
        if u128::from(idle_ms) < KEEPALIVE_AFTER.as_millis() && !self.is_down() {
            return;
        }
        let _ = self
            .with_conn(
                |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await },
            )
            .await;
    }

    async fn open(&self) -> Result<MultiplexedConnection, StoreDown> {
        let guard = if self.down.load(Ordering::Relaxed) {
            if self.ms_now() < self.retry_at_ms.load(Ordering::Relaxed) {
                self.stats.failed_ops.fetch_add(1, Ordering::Relaxed);
                crate::metrics::METRICS.store_failed_ops.inc();
                return Err(StoreDown);
            }
            // One probe at a time during an outage; the rest do not queue.
            match self.connecting.try_lock() {
                Ok(g) => g,
                Err(_) => {
                    self.stats.failed_ops.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::METRICS.store_failed_ops.inc();
                    return Err(StoreDown);
                }
            }
        } else {
            self.connecting.lock().await
        };
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let result = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await;
        drop(guard);
        match result {
            Ok(Ok(c)) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.conn.store(Some(Arc::new(c.clone())));
                Ok(c)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                Err(StoreDown)
            }
            Err(_) => {
                self.failed("connect timed out");
                Err(StoreDown)
            }
        }
    }

    fn ms_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn failed(&self, why: &str) {
        let failed_before = self.stats.failed_ops.fetch_add(1, Ordering::Relaxed);
        crate::metrics::METRICS.store_failed_ops.inc();
        let retry_ms = u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(500);
        self.retry_at_ms
            .store(self.ms_now() + retry_ms, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            crate::metrics::METRICS.store_outages.inc();
            if let Ok(mut o) = self.outage.lock() {
                *o = Some(Outage {
                    since: Instant::now(),
                    failed_ops_before: failed_before,
                });
            }
            tracing::error!(
                store = "redis",
                target = %self.target,
                error = why,
                on_store_error = self.on_error.as_str(),
                "shared store unreachable; requests follow on_store_error until it is back"
            );
        }
    }

    fn recovered(&self) {
        if !self.down.load(Ordering::Relaxed) || !self.down.swap(false, Ordering::AcqRel) {
            return;
        }
        let outage = self.outage.lock().ok().and_then(|mut o| o.take());
        let (secs, failed) = outage.map_or((0.0, 0), |o| {
            (
                o.since.elapsed().as_secs_f64(),
                self.stats
                    .failed_ops
                    .load(Ordering::Relaxed)
                    .saturating_sub(o.failed_ops_before),
            )
        });
        tracing::warn!(
            store = "redis",
            target = %self.target,
            outage_seconds = secs,
            failed_ops = failed,
            "shared store reachable again"
        );
    }
}

fn revoked_key(id: &[u8; 16]) -> String {
    use std::fmt::Write;
    let mut key = format!("{KEY_PREFIX}revoked:");
    for b in id {
        let _ = write!(key, "{b:02x}");
    }
    key
}
