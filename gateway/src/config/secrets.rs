//! `[secrets]`: session keys, the emergency secret, the assertion key.

use std::path::Path;
use std::sync::Arc;

use policies::emergency::Verifier;

use super::{secret, EnvLookup, Report, Secret, Section};

#[derive(Debug, Default)]
pub struct Secrets {
    /// First signs, all verify.
    pub session_keys: Option<Secret<Vec<Vec<u8>>>>,
    /// Only the derived verifier is kept; the secret itself is zeroed at load.
    pub emergency: Option<Secret<Arc<Verifier>>>,
    pub assertion_key: Option<Secret<Vec<u8>>>,
}

pub(super) fn read_secrets(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Secrets> {
    let mut out = Secrets::default();
    if let Some(s) = sec.str("session_keys", r) {
        let key = sec.key("session_keys");
        out.session_keys = secret::resolve(s, base, env)
            .map_err(|e| r.error(&key, e.to_string()))
            .ok()
            .and_then(|sec| session_keys(sec, &key, r));
    }
    if let Some(s) = sec.str("assertion_key", r) {
        let key = sec.key("assertion_key");
        out.assertion_key = secret::resolve(s, base, env)
            .map_err(|e| r.error(&key, e.to_string()))
            .ok()
            .map(|s| s.map(|v| v.trim_ascii_end().to_vec()));
    }
    if let Some(s) = sec.str("emergency", r) {
        let key = sec.key("emergency");
        match secret::resolve(s, base, env) {
            Ok(raw) => out.emergency = emergency_verifier(raw, &key, r),
            Err(e) => r.error(&key, e.to_string()),
        }
    }
    if let Some(k) = &out.assertion_key {
        if k.value.len() < 32 {
            r.error(
                sec.key("assertion_key"),
                format!("is {} bytes; it needs at least 32", k.value.len()),
            );
        }
    }
    Some(out)
}

/// A comma-separated list of keys, each at least 32 bytes.
fn session_keys(sec: Secret<Vec<u8>>, key: &str, r: &mut Report) -> Option<Secret<Vec<Vec<u8>>>> {
    let keys: Vec<Vec<u8>> = String::from_utf8_lossy(&sec.value)
        .split(',')
        .map(|k| k.trim().as_bytes().to_vec())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        r.error(
            key,
            "no keys found (a comma-separated list; generate one with `portcullis secret`)",
        );
        return None;
    }
    if let Some((i, k)) = keys.iter().enumerate().find(|(_, k)| k.len() < 32) {
        r.error(key, format!("key #{} is {} bytes; each needs at least 32 (generate one with `portcullis secret`)", i + 1, k.len()));
        return None;
    }
    Some(sec.map(|_| keys))
}

/// The emergency secret's verifier; the raw secret is zeroed either way.
fn emergency_verifier(
    mut raw: Secret<Vec<u8>>,
    key: &str,
    r: &mut Report,
) -> Option<Secret<Arc<Verifier>>> {
    let secret = raw.value.trim_ascii_end();
    let out = if secret.len() < 32 {
        r.error(
            key,
            format!("is {} characters; it needs at least 32", secret.len()),
        );
        None
    } else {
        Some(Secret {
            source: raw.source.clone(),
            value: Arc::new(Verifier::derive(secret)),
        })
    };
    zeroize::Zeroize::zeroize(&mut raw.value);
    out
}
