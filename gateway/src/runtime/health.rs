//! Active health checks of whatever runtime is current.

use std::time::Duration;

use super::SharedRuntime;

/// How often active health checks run.
pub(super) const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the active health checks of whatever runtime is current, so a reload
/// that changes upstreams needs no new background service.
pub struct HealthChecks {
    pub runtime: SharedRuntime,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let rt = self.runtime.load_full();
            for u in rt.upstreams.iter().filter(|u| u.has_health_check) {
                u.lb.backends().run_health_check(true).await;
            }
        }
    }
}
