//! SPEC "Start-up safety": what `run` refuses once a public listener leaves loopback.

use super::super::{Config, Report, SecretSource, TlsMode};

/// Errors for an unsafe configuration, and warnings for development shortcuts
/// that are only tolerated on loopback.
pub fn startup_safety(cfg: &Config) -> Report {
    let mut r = Report::new(&cfg.file);
    let public: Vec<_> = [cfg.server.https, cfg.server.http]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    let literals = [
        (
            "secrets.session_keys",
            cfg.secrets.session_keys.as_ref().map(|s| &s.source),
        ),
        (
            "secrets.emergency",
            cfg.secrets.emergency.as_ref().map(|s| &s.source),
        ),
        (
            "secrets.assertion_key",
            cfg.secrets.assertion_key.as_ref().map(|s| &s.source),
        ),
    ];
    if public.is_empty() {
        for (key, src) in literals {
            if src == Some(&SecretSource::Literal) {
                r.warn(key, "is a literal secret; accepted only because every listener is on loopback (use \"env:NAME\" or \"file:/path\")");
            }
        }
        return r;
    }
    let on = format!("listening on {}", public[0]);
    if cfg.secrets.session_keys.is_none() {
        r.error(
            "secrets.session_keys",
            format!("required when {on}: set it to \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`"),
        );
    }
    for (key, src) in literals {
        if src == Some(&SecretSource::Literal) {
            r.error(
                key,
                format!(
                    "a literal secret is refused when {on}; use \"env:NAME\" or \"file:/path\""
                ),
            );
        }
    }
    // Anyone who can write the users file can make themselves admin.
    if let Ok(meta) = std::fs::metadata(&cfg.session.users) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o002 != 0 {
            r.error(
                "session.users",
                format!(
                    "{} is world-writable; chmod o-w it (portcullis writes it 0600)",
                    cfg.session.users.display()
                ),
            );
        }
    }
    if cfg.tls.mode == TlsMode::Off && cfg.server.trusted_proxies.is_empty() {
        r.error(
            "server.trusted_proxies",
            format!("tls.mode = \"off\" needs the proxy that terminates TLS listed here when {on}"),
        );
    }
    r
}
