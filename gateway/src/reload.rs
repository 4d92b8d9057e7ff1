//! `SIGHUP`: re-read the config and the certificate files,
//! validate everything as `run` would, then swap the whole runtime at once.
//! A request in flight keeps the `Arc<Runtime>` it started with, so it
//! finishes under the old rules; an open WebSocket is not touched. Anything
//! invalid refuses the whole reload (logged, audited, counted) and the old
//! state keeps serving.
//!
//! What a running process cannot change is handled in two ways. Listeners,
//! worker threads, TLS on/off and the identity store's URL refuse the reload
//! (a half-applied config would redirect to ports nobody serves); restart,
//! or upgrade with `run -u`. The rate-limit store and the attempt limits
//! built on it are kept as they are, with a warning that the new values take
//! effect at restart.

use std::path::PathBuf;
use std::sync::Arc;

use certs::resolver::Resolver;
use serde_json::json;

use crate::config::{self, TlsMode};
use crate::runtime::{Fixed, Runtime};
use crate::state::Shared;

pub struct Reloader {
    pub path: PathBuf,
    pub shared: Arc<Shared>,
    /// `None` with `tls.mode = "off"`.
    pub resolver: Option<Arc<Resolver>>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            // Reading files and building balancers blocks: keep it off this runtime's workers.
            let reloader = Reloader {
                path: self.path.clone(),
                shared: self.shared.clone(),
                resolver: self.resolver.clone(),
            };
            let _ = tokio::task::spawn_blocking(move || reloader.reload_now()).await;
        }
    }
}

impl Reloader {
    /// One reload: everything or nothing.
    pub fn reload_now(&self) {
        let file = self.path.display().to_string();
        match self.prepare() {
            Ok((runtime, certs, kept)) => {
                for k in &kept {
                    tracing::warn!(
                        key = k,
                        "changed, but takes effect only at restart; the running value is kept"
                    );
                }
                if let (Some(resolver), Some(certs)) = (&self.resolver, certs) {
                    resolver.replace(certs);
                }
                self.shared.runtime.store(Arc::new(runtime));
                tracing::info!(file, "config reloaded");
                crate::audit::event(
                    "config_reload",
                    "",
                    None,
                    json!({ "ok": true, "file": file, "kept_until_restart": kept }),
                );
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "config reload refused; the running config keeps serving");
                }
                crate::audit::event(
                    "config_reload",
                    "",
                    None,
                    json!({ "ok": false, "file": file, "errors": errors }),
                );
            }
        }
    }

    /// Validates and builds the new state without touching the running one.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
    ) -> Result<(Runtime, Option<certs::resolver::CertSet>, Vec<&'static str>), Vec<String>> {
        let loaded = config::load(&self.path, &crate::env_lookup)
            .map_err(|r| r.errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let cfg = loaded.config;
        let safety = config::startup_safety(&cfg);
        if !safety.errors.is_empty() {
            return Err(safety.errors.iter().map(ToString::to_string).collect());
        }
        let current = self.shared.runtime.load_full();
        let new = crate::runtime::fixed(&cfg);
        let refused: Vec<String> = listener_changes(&current.fixed, &new)
            .into_iter()
            .map(|k| format!("{}: {k}: cannot change while running; restart (or `portcullis run -u`) to apply it", cfg.file.display()))
            .collect();
        if !refused.is_empty() {
            return Err(refused);
        }
        let kept = restart_only(&current.fixed, &new);
        let certs = match (&self.resolver, &cfg.tls.mode) {
            (Some(_), TlsMode::Files { .. } | TlsMode::SelfSigned) => Some(
                crate::certificates::load(&cfg, false)
                    .map_err(|e| vec![crate::certificates::error_line(&cfg, &e)])?,
            ),
            _ => None,
        };
        let runtime =
            Runtime::build(&cfg, current.store.clone()).map_err(|e| vec![e.to_string()])?;
        Ok((runtime, certs, kept))
    }
}

/// Keys that refuse a reload when changed.
fn listener_changes(old: &Fixed, new: &Fixed) -> Vec<&'static str> {
    [
        ("server.https", old.https != new.https),
        ("server.http", old.http != new.http),
        ("server.ops", old.ops != new.ops),
        ("server.threads", old.threads != new.threads),
        ("tls.mode", old.tls_off != new.tls_off),
        ("store.url", old.store != new.store),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}

/// Keys whose new value waits for a restart; the running value is kept.
fn restart_only(old: &Fixed, new: &Fixed) -> Vec<&'static str> {
    [
        ("rate_limit.store", old.redis != new.redis),
        ("rate_limit.login", old.login != new.login),
        (
            "emergency.attempts",
            old.emergency_attempts != new.emergency_attempts,
        ),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}
