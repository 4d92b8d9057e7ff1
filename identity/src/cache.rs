//! The store's in-process cache: what keeps it off the request path.
//!
//! * Accounts: a snapshot of all of them, replaced whenever the store's
//!   change counter moves (accounts are few; roles come from here, so a
//!   promotion or demotion reaches live sessions at the next refresh).
//! * Sessions: looked up by id on first use, then answered from memory,
//!   absent ones too (a logged-out cookie costs one read, not one per
//!   request); the whole map is dropped when the counter moves.
//! * Freshness: [`Cache::refresh`] (called every [`REFRESH`] by the owner)
//!   reads the counter, one row. An answer is only given while the last
//!   successful refresh is at most [`STALE_AFTER`] old: with the store
//!   unreachable longer, sessions are `Unavailable` (503), never valid on
//!   stale data, and the first successful refresh recovers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Account, SessionRecord, Store, StoreError};

/// How often the owner should call [`Cache::refresh`].
pub const REFRESH: Duration = Duration::from_millis(250);
/// The contract: a change through any instance is seen by all within 1 s.
pub const STALE_AFTER: Duration = Duration::from_secs(1);
/// Sessions remembered at most (present or absent); past it the map is
/// dropped and refilled on demand.
const MAX_SESSIONS: usize = 100_000;

/// What the cache says about a session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The session exists, its account exists, is enabled and has the
    /// epoch the session was issued under.
    Valid {
        /// The session.
        session: Arc<SessionRecord>,
        /// Its account, as of the last refresh.
        account: Arc<Account>,
    },
    /// No such session, or it no longer matches its account: no session.
    Invalid,
    /// The store has not answered for longer than [`STALE_AFTER`].
    Unavailable,
}

#[derive(Default)]
struct Accounts {
    by_id: HashMap<i64, Arc<Account>>,
    by_key: HashMap<String, i64>,
}

/// The cache in front of one [`Store`].
pub struct Cache {
    store: Store,
    accounts: arc_swap::ArcSwap<Accounts>,
    sessions: Mutex<HashMap<String, Option<Arc<SessionRecord>>>>,
    counter: AtomicI64,
    /// Unix ms of the last successful refresh.
    fresh_at: AtomicU64,
    /// Reads that went to the store for a session (for tests and metrics).
    reads: AtomicU64,
}

impl Cache {
    /// Loads the accounts and the counter.
    pub async fn open(store: Store, now_ms: u64) -> Result<Cache, StoreError> {
        let cache = Cache {
            store,
            accounts: arc_swap::ArcSwap::from_pointee(Accounts::default()),
            sessions: Mutex::default(),
            counter: AtomicI64::new(-1),
            fresh_at: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        };
        cache.refresh(now_ms).await?;
        Ok(cache)
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the change counter; when it moved, reloads the accounts and
    /// forgets the sessions. `Ok(true)` when something had changed.
    pub async fn refresh(&self, now_ms: u64) -> Result<bool, StoreError> {
        let counter = self.store.changes().await?;
        let changed = counter != self.counter.load(Ordering::Acquire);
        if changed {
            // Read after the counter: a change committed in between moves
            // the counter again, and the next refresh reloads once more.
            let list = self.store.accounts().await?;
            let mut accounts = Accounts::default();
            for a in list {
                accounts.by_key.insert(a.name.to_lowercase(), a.id);
                accounts.by_id.insert(a.id, Arc::new(a));
            }
            self.accounts.store(Arc::new(accounts));
            if let Ok(mut s) = self.sessions.lock() {
                s.clear();
            }
            self.counter.store(counter, Ordering::Release);
        }
        self.fresh_at.store(now_ms, Ordering::Release);
        Ok(changed)
    }

    /// Whether the last successful refresh is recent enough to answer.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        let stale = u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(self.fresh_at.load(Ordering::Acquire)) <= stale
    }

    /// The account named `name` (case-insensitively), as of the last refresh.
    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        let accounts = self.accounts.load();
        let id = accounts.by_key.get(&name.to_lowercase())?;
        accounts.by_id.get(id).cloned()
    }

    /// Every account, as of the last refresh.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut all: Vec<_> = self.accounts.load().by_id.values().cloned().collect();
        all.sort_by_key(|a| a.name.to_lowercase());
        all
    }

    /// The session `id` from memory; `None` when it must be read first.
    pub fn cached(&self, id: &str, now_ms: u64) -> Option<Lookup> {
        if !self.is_fresh(now_ms) {
            return Some(Lookup::Unavailable);
        }
        let entry = self.sessions.lock().ok()?.get(id).cloned()?;
        Some(self.judge(entry))
    }

    /// The session `id`: from memory, else read once from the store.
    pub async fn session(&self, id: &str, now_ms: u64) -> Lookup {
        if let Some(answer) = self.cached(id, now_ms) {
            return answer;
        }
        let counter = self.counter.load(Ordering::Acquire);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let record = match self.store.session(id).await {
            Ok(record) => record.map(Arc::new),
            Err(_) => return Lookup::Unavailable,
        };
        // A refresh that ran meanwhile may have dropped the map for a
        // change this read predates: remember it only if none did.
        if let Ok(mut sessions) = self.sessions.lock() {
            if self.counter.load(Ordering::Acquire) == counter {
                if sessions.len() >= MAX_SESSIONS {
                    sessions.clear();
                }
                sessions.insert(id.to_string(), record.clone());
            }
        }
        self.judge(record)
    }

    /// Forgets session `id` at once (this instance's logout deleted it;
    /// other instances drop it at their next refresh).
    pub fn forget(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id.to_string(), None);
        }
    }

    /// Reads of sessions that went to the store.
    pub fn store_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn judge(&self, record: Option<Arc<SessionRecord>>) -> Lookup {
        let Some(session) = record else {
            return Lookup::Invalid;
        };
        let accounts = self.accounts.load();
        match accounts.by_id.get(&session.account_id) {
            Some(account) if !account.disabled && account.epoch == session.epoch => Lookup::Valid {
                account: account.clone(),
                session,
            },
            _ => Lookup::Invalid,
        }
    }
}
