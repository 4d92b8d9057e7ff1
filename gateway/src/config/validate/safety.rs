//! docs/configuration.md "Start-up safety": what `run` refuses once a public listener leaves loopback.

use super::super::{Config, Report, SecretSource, TlsMode};

/// Errors for an unsafe configuration, and warnings for development shortcuts
/// that are only tolerated on loopback.
pub fn startup_safety(cfg: &Config) -> Report {
    let mut r = Report::new(&cfg.file);
    let public = [cfg.server.https, cfg.server.http]
        .into_iter()
        .flatten()
        .find(|a| !a.ip().is_loopback());
    let Some(public) = public else {
        for (key, src) in literal_secrets(cfg) {
            if src == Some(&SecretSource::Literal) {
                r.warn(key, "is a literal secret; accepted only because every listener is on loopback (use \"env:NAME\" or \"file:/path\")");
            }
        }
        return r;
    };
    let on = format!("listening on {public}");
    if cfg.secrets.session_keys.is_none() {
        r.error(
            "secrets.session_keys",
            format!("required when {on}: set it to \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`"),
        );
    }
    for (key, src) in literal_secrets(cfg) {
        if src == Some(&SecretSource::Literal) {
            r.error(
                key,
                format!(
                    "a literal secret is refused when {on}; use \"env:NAME\" or \"file:/path\""
                ),
            );
        }
    }
    store_file_writable(cfg, &mut r);
    if cfg.tls.mode == TlsMode::Off && cfg.server.trusted_proxies.is_empty() {
        r.error(
            "server.trusted_proxies",
            format!("tls.mode = \"off\" needs the proxy that terminates TLS listed here when {on}"),
        );
    }
    r
}

/// Each secret key with where its value came from (`None`: not set).
fn literal_secrets(cfg: &Config) -> [(&'static str, Option<&SecretSource>); 3] {
    let s = &cfg.secrets;
    [
        (
            "secrets.session_keys",
            s.session_keys.as_ref().map(|s| &s.source),
        ),
        ("secrets.emergency", s.emergency.as_ref().map(|s| &s.source)),
        (
            "secrets.assertion_key",
            s.assertion_key.as_ref().map(|s| &s.source),
        ),
    ]
}

/// Anyone who can write the SQLite store can make themselves admin.
fn store_file_writable(cfg: &Config, r: &mut Report) {
    use std::os::unix::fs::PermissionsExt;
    let Some(file) = cfg.store.url.value.strip_prefix("sqlite:") else {
        return;
    };
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    if meta.permissions().mode() & 0o002 != 0 {
        r.error(
            "store.url",
            format!("{file} is world-writable; chmod o-w it (portcullis creates it 0600)"),
        );
    }
}
