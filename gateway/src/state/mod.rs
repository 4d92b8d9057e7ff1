//! State that outlives a config reload: the users file, revoked sessions and
//! the login attempt limiters. The `Runtime` holds the rules; this holds the
//! facts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use policies::ratelimit::{Outcome, Rate};

use crate::config::{OnStoreError, EMERGENCY_GLOBAL_ATTEMPTS, EMERGENCY_GLOBAL_WINDOW};
use crate::limits::{Limiter, Store, Verdict};
use crate::runtime::SharedRuntime;
use crate::store::{RedisStore, StoreDown};
use crate::users_file::{self, Users};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sessions ended by logout before their expiry: id → expiry (unix secs).
/// With Redis, every instance sees every logout; the local map still
/// answers for this instance's own logouts while Redis is away, and after
/// an outage it is written to Redis again (see [`Revocations::resync`]), so
/// a logout made while Redis was unreachable, or lost by a Redis restart
/// without persistence, still reaches the other instances.
#[derive(Default)]
pub struct Revocations {
    ids: Mutex<HashMap<[u8; 16], u64>>,
    redis: Option<Arc<RedisStore>>,
    /// Revocations that did not reach Redis, counted.
    failures: AtomicU64,
    /// (`stats.outages`, `failures`) when every local revocation was last
    /// known to be in Redis.
    synced: Mutex<(u64, u64)>,
}

impl Revocations {
    pub fn new(store: &Store) -> Revocations {
        let redis = store.redis().cloned();
        let outages = redis
            .as_ref()
            .map_or(0, |r| r.stats.outages.load(Ordering::Relaxed));
        Revocations {
            ids: Mutex::default(),
            redis,
            failures: AtomicU64::new(0),
            synced: Mutex::new((outages, 0)),
        }
    }

    /// Records the logout locally and, with Redis, for every instance. A
    /// Redis failure leaves it local (logged by the store) until
    /// [`Revocations::resync`] succeeds; the browser's cookie is cleared
    /// either way.
    pub async fn revoke(&self, id: [u8; 16], until: u64) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(id, until);
        }
        if let Some(r) = &self.redis {
            if r.revoke(&id, until).await.is_err() {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After an outage of the shared store (or a revocation that did not
    /// reach it), writes every local revocation to it again. Called every
    /// second by housekeeping; does nothing while all is in sync, and stops
    /// at the first failure (the next call retries).
    pub async fn resync(&self) {
        let Some(r) = &self.redis else { return };
        // Counts before the copy of `ids`: a revoke counted as failed here is
        // already in the copy; one that fails later leaves the counts unequal.
        let now = (
            r.stats.outages.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        );
        if self.synced.lock().map_or(true, |s| *s == now) {
            return;
        }
        let all: Vec<([u8; 16], u64)> = self
            .ids
            .lock()
            .map(|ids| ids.iter().map(|(id, until)| (*id, *until)).collect())
            .unwrap_or_default();
        for (id, until) in &all {
            if r.revoke(id, *until).await.is_err() {
                return;
            }
        }
        if let Ok(mut s) = self.synced.lock() {
            *s = now;
        }
        if !all.is_empty() {
            tracing::info!(
                sessions = all.len(),
                "logouts written to the shared store again after its outage"
            );
        }
    }

    /// `Err` only when Redis is unreachable and `on_store_error = "deny"`.
    pub async fn is_revoked(&self, id: &[u8; 16]) -> Result<bool, StoreDown> {
        if self.ids.lock().map_or(true, |ids| ids.contains_key(id)) {
            return Ok(true);
        }
        match &self.redis {
            None => Ok(false),
            Some(r) => match r.is_revoked(id).await {
                Ok(revoked) => Ok(revoked),
                Err(_) if r.on_error == OnStoreError::Allow => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Forgets revocations of sessions that have expired anyway.
    pub fn prune(&self, now: u64) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.retain(|_, until| *until > now);
        }
    }
}

/// Login attempts per client IP and, separately, per user name (SPEC: the
/// sixth attempt inside a minute, from one IP or on one name, is refused
/// with the default `[rate_limit] login = "5/minute"`).
pub struct LoginLimits {
    limiters: Option<(Limiter, Limiter)>,
}

impl LoginLimits {
    /// `None`: login attempts are not limited (`login = "off"`).
    pub fn new(rate: Option<Rate>, store: &Store) -> LoginLimits {
        LoginLimits {
            limiters: rate.and_then(|r| {
                Some((
                    Limiter::new("login-ip", r, store)?,
                    Limiter::new("login-user", r, store)?,
                ))
            }),
        }
    }

    /// Counts one attempt on both budgets, so a spray across names still
    /// exhausts the IP; limited when either is spent.
    pub async fn check(&self, ip: IpAddr, name: &str) -> Verdict {
        let Some((by_ip, by_name)) = &self.limiters else {
            return Verdict::Unknown;
        };
        let a = by_ip.check(&ip.to_string()).await;
        let b = by_name.check(&name.to_ascii_lowercase()).await;
        match (a, b) {
            (v @ Verdict::Counted(Outcome::Limited { .. }), _)
            | (_, v @ Verdict::Counted(Outcome::Limited { .. })) => v,
            (Verdict::Refused, _) | (_, Verdict::Refused) => Verdict::Refused,
            (v, _) => v,
        }
    }

    /// Drops keys whose budget is full again, so memory follows live attackers.
    pub fn prune(&self) {
        if let Some((a, b)) = &self.limiters {
            a.prune();
            b.prune();
        }
    }
}

/// What the emergency gate's limits say about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go on and check the secret.
    Open,
    /// This client's budget (`[emergency] attempts`) is spent.
    Limited(Duration),
    /// The global cap is reached: every attempt waits out the window.
    /// `true` for the attempt that caused the lockout.
    LockedOut(Duration, bool),
    /// The shared store is down and `on_store_error = "deny"`.
    Refused,
}

/// The emergency gate's attempt limits: per client IP and a global cap of
/// [`EMERGENCY_GLOBAL_ATTEMPTS`] per [`EMERGENCY_GLOBAL_WINDOW`], counted in
/// the shared store when there is one. Every attempt counts, before the
/// secret is checked, so no guess goes uncounted. Reaching the cap locks the
/// gate for a whole window; each instance locks at its first attempt after
/// the shared budget is spent.
pub struct EmergencyLimits {
    limiters: Option<(Limiter, Limiter)>,
    locked_until: std::sync::atomic::AtomicU64,
}

impl EmergencyLimits {
    pub fn new(per_ip: Rate, store: &Store) -> EmergencyLimits {
        let global = std::num::NonZeroU32::new(EMERGENCY_GLOBAL_ATTEMPTS).map(|count| Rate {
            count,
            per: EMERGENCY_GLOBAL_WINDOW,
        });
        EmergencyLimits {
            limiters: global.and_then(|g| {
                Some((
                    Limiter::new("emergency-ip", per_ip, store)?,
                    Limiter::new("emergency-global", g, store)?,
                ))
            }),
            locked_until: Default::default(),
        }
    }

    pub async fn attempt(&self, ip: IpAddr, now: u64) -> Attempt {
        use std::sync::atomic::Ordering;
        let until = self.locked_until.load(Ordering::Relaxed);
        if now < until {
            return Attempt::LockedOut(Duration::from_secs(until - now), false);
        }
        // Limits that cannot be built (an absurd rate) fail closed.
        let Some((per_ip, global)) = &self.limiters else {
            return Attempt::Refused;
        };
        match per_ip.check(&ip.to_string()).await {
            Verdict::Counted(Outcome::Limited { retry_after }) => {
                return Attempt::Limited(retry_after)
            }
            Verdict::Refused => return Attempt::Refused,
            Verdict::Counted(_) | Verdict::Unknown => {}
        }
        match global.check("all").await {
            Verdict::Counted(Outcome::Limited { .. }) => {
                self.locked_until
                    .store(now + EMERGENCY_GLOBAL_WINDOW.as_secs(), Ordering::Relaxed);
                Attempt::LockedOut(EMERGENCY_GLOBAL_WINDOW, true)
            }
            Verdict::Refused => Attempt::Refused,
            Verdict::Counted(_) | Verdict::Unknown => Attempt::Open,
        }
    }

    pub fn prune(&self) {
        if let Some((a, b)) = &self.limiters {
            a.prune();
            b.prune();
        }
    }
}

/// The users file, reloaded when it changes on disk.
pub struct UsersStore {
    pub path: PathBuf,
    current: ArcSwap<Users>,
    mtime: Mutex<Option<SystemTime>>,
}

impl UsersStore {
    pub fn load(path: PathBuf) -> Result<UsersStore, String> {
        let (users, mtime) = users_file::load(&path).map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok(UsersStore {
            path,
            current: ArcSwap::from_pointee(users),
            mtime: Mutex::new(mtime),
        })
    }

    pub fn get(&self) -> Arc<Users> {
        self.current.load_full()
    }

    /// Reloads when the file's modification time moved. A broken file is
    /// logged and the last good users keep serving.
    pub fn refresh(&self) {
        let mtime = users_file::modified(&self.path);
        let changed = self.mtime.lock().is_ok_and(|m| *m != mtime);
        if !changed {
            return;
        }
        match users_file::load(&self.path) {
            Ok((users, mtime)) => {
                tracing::info!(path = %self.path.display(), users = users.len(), "users file reloaded");
                self.current.store(Arc::new(users));
                if let Ok(mut m) = self.mtime.lock() {
                    *m = mtime;
                }
            }
            Err(errs) => {
                for e in errs {
                    tracing::error!(error = %e, "users file not reloaded; the previous version keeps serving");
                }
                if let Ok(mut m) = self.mtime.lock() {
                    *m = mtime;
                }
            }
        }
    }
}

/// Everything a request may need beyond its own `Runtime`.
pub struct Shared {
    pub runtime: SharedRuntime,
    pub users: UsersStore,
    pub revocations: Revocations,
    pub login_limits: LoginLimits,
    pub emergency_limits: EmergencyLimits,
    pub reloads: crate::reload::ReloadStats,
    /// Pending HTTP-01 answers, written by the ACME manager, read by the http listener.
    pub challenges: certs::acme::ChallengeStore,
}

/// Reloads the users file and prunes limiter and revocation memory.
pub struct Housekeeping {
    pub shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            n += 1;
            self.shared.users.refresh();
            self.shared.revocations.resync().await;
            if n.is_multiple_of(60) {
                self.shared.login_limits.prune();
                self.shared.emergency_limits.prune();
                let rt = self.shared.runtime.load();
                if let Some(store) = &rt.default_limit {
                    store.prune();
                }
                for limit in rt.routes.iter().filter_map(|r| r.limit.as_ref()) {
                    limit.store.prune();
                }
                self.shared.revocations.prune(now());
            }
        }
    }
}
