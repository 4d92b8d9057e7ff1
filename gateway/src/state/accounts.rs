//! The identity store as the running gateway sees it: opened, refreshed and
//! (while unreachable) retried by one background service, read on the
//! request path only through its cache (`identity::Cache`).
//!
//! * Start: `run` probes the store once before serving ([`probe`]): a
//!   refused store (newer schema, foreign or corrupt file) stops it with
//!   the sentence; an unreachable one is logged and retried here.
//! * Every [`identity::cache::REFRESH`]: one read of the change counter.
//!   Data older than a second is never used: requests that need an account
//!   get 503 until a refresh succeeds again, with no restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use identity::{Cache, Store, StoreError};

use super::now_ms;

/// How long opening the store may take before the attempt is given up
/// (and made again at the next tick).
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a sign-in or an emergency action waits for the store when its
/// data is not fresh (just started, or a refresh late under load) before
/// it answers 503.
const WAIT_FOR_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// How the store went at the last attempt, for logging changes only.
#[derive(Debug, Default)]
struct Health {
    /// Whether the last attempt (open or refresh) worked.
    up: AtomicBool,
    /// Whether anything was logged yet.
    said: AtomicBool,
}

/// The identity store, once open; `None` in a gateway without sessions.
pub struct Accounts {
    url: Option<String>,
    cache: ArcSwapOption<Cache>,
    health: Health,
    /// Bumped after every successful tick, for [`Accounts::fresh_soon`].
    ticks: tokio::sync::watch::Sender<u64>,
}

impl Accounts {
    /// `url`: `None` when nothing needs accounts (no session keys, no
    /// emergency gate); nothing is opened then.
    pub fn new(url: Option<String>) -> Accounts {
        Accounts {
            url,
            cache: ArcSwapOption::empty(),
            health: Health::default(),
            ticks: tokio::sync::watch::channel(0).0,
        }
    }

    /// The cache, once the store has been opened.
    pub fn cache(&self) -> Option<Arc<Cache>> {
        self.cache.load_full()
    }

    /// The cache, only while its data may be used (at most a second old).
    pub fn fresh(&self) -> Option<Arc<Cache>> {
        self.cache().filter(|c| c.is_fresh(now_ms()))
    }

    /// The fresh cache, waiting up to [`WAIT_FOR_FRESH`] for the next
    /// successful tick when there is none yet: a sign-in right after start
    /// (the store is opened by the background service, which the listener
    /// does not wait for) or while a refresh is late. Not for the request
    /// path, which answers at once.
    pub async fn fresh_soon(&self) -> Option<Arc<Cache>> {
        if let Some(c) = self.fresh() {
            return Some(c);
        }
        self.url.as_ref()?;
        let mut ticks = self.ticks.subscribe();
        let wait = async {
            while self.fresh().is_none() {
                if ticks.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(WAIT_FOR_FRESH, wait).await;
        self.fresh()
    }

    /// Whether `/readyz` may say ready: no store needed, or a fresh one.
    pub fn ready(&self) -> bool {
        self.url.is_none() || self.fresh().is_some()
    }

    /// One step of the background service: open the store if it is not
    /// yet, else refresh the cache. Logs only when the state changes.
    pub async fn tick(&self) {
        let Some(url) = self.url.as_deref() else {
            return;
        };
        // A store that hangs is as unavailable as one that refuses: a
        // refresh says so once its data is too old to use, not when the
        // driver gives up. Opening (connect, migrate, load the accounts)
        // may take longer, and is not cut short as often as it is tried.
        let cache = self.cache();
        let limit = match cache {
            Some(_) => identity::cache::STALE_AFTER,
            None => OPEN_TIMEOUT,
        };
        let attempt = async {
            match cache {
                Some(cache) => cache.refresh(now_ms()).await.map(|_| ()),
                None => {
                    let cache = open(url).await?;
                    tracing::info!(store = cache.store().location(), "identity store open");
                    self.cache.store(Some(Arc::new(cache)));
                    Ok(())
                }
            }
        };
        let outcome = match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        let up = outcome.is_ok();
        if up {
            self.ticks.send_modify(|n| *n = n.wrapping_add(1));
        }
        let was = self.health.up.swap(up, Ordering::AcqRel);
        let first = !self.health.said.swap(true, Ordering::AcqRel);
        match outcome {
            Err(e) if was || first => tracing::error!(
                error = %e,
                "identity store unavailable: sign-ins and requests that need an account get 503 \
                 (public routes keep working); retrying every 250 ms"
            ),
            Ok(()) if !was && !first => tracing::info!("identity store reachable again"),
            _ => {}
        }
    }
}

async fn open(url: &str) -> Result<Cache, StoreError> {
    let store = Store::open(url).await?;
    Cache::open(store, now_ms()).await
}

/// Opens the store once, migrates it, and says which schema it is at, for
/// `run` before it serves. Runs on a runtime of its own, which the pool
/// does not outlive.
pub fn probe(url: &str) -> Result<(String, i64), StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StoreError::File {
            location: "tokio runtime".into(),
            source,
        })?;
    rt.block_on(async {
        let store = Store::open(url).await?;
        let version = store.schema_version().await;
        let location = store.location().to_string();
        store.close().await;
        Ok((location, version?))
    })
}

/// Keeps [`Accounts`] open and fresh.
pub struct StoreKeeper {
    pub accounts: Arc<Accounts>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for StoreKeeper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(identity::cache::REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            self.accounts.tick().await;
        }
    }
}
