//! argon2id work (login checks, new password hashes) off the async workers,
//! at most one per core at a time.
//!
//! One argon2id run holds ~19 MiB and a core for tens of milliseconds. Run
//! unbounded, a burst of logins (from many addresses, so per-IP limits do not
//! help) multiplies both: the blocking pool grows a thread per request and
//! each keeps its memory. Queued behind a semaphore, the burst costs time for
//! the logins in it and a bounded amount of memory.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

static PERMITS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cores)
});

/// [`policies::users::verify_password`], queued; `false` if it cannot run.
pub async fn verify(phc: Option<String>, password: String) -> bool {
    let Ok(_permit) = PERMITS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || policies::users::verify_password(phc.as_deref(), &password))
        .await
        .unwrap_or(false)
}

/// [`policies::users::hash_password`], queued; `None` if it cannot run.
pub async fn hash(password: String) -> Option<String> {
    let _permit = PERMITS.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || policies::users::hash_password(&password))
        .await
        .ok()?
        .ok()
}
