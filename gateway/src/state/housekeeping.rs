//! Once a second: the Redis connection's keepalive and the shared store's
//! emergency logouts; every five seconds the instance heartbeat; once a minute:
//! limiter and revocation memory. (The identity store has its own
//! service, `StoreKeeper`, on a quarter-second clock.)

use std::sync::Arc;
use std::time::Duration;

use super::{now, Shared};

/// Syncs revocations and prunes limiter and revocation memory.
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
            let rt = self.shared.runtime.load_full();
            if let Some(redis) = rt.store.redis() {
                redis.keep_alive().await;
                if n % crate::instances::HEARTBEAT.as_secs() == 1 {
                    self.shared.peers.beat(redis, &rt.fingerprint).await;
                }
            }
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
