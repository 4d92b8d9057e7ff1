//! `[rate_limit]`: the default and login limits and where counters live (memory or Redis).

use std::path::Path;

use super::{secret, EnvLookup, Rate, Report, SecretSource, Section};

/// `[rate_limit]`.
#[derive(Debug)]
pub struct RateLimitConf {
    /// `None`: the in-process store; `Some`: shared through Redis.
    pub redis: Option<RedisConf>,
    /// Per client IP over all traffic; `None` for "off".
    pub default: Option<Rate>,
    /// Login attempts per IP and per user name; `None` for "off".
    pub login: Option<Rate>,
}

/// `store = "redis"`: where, and what to do while it is unreachable.
#[derive(Clone)]
pub struct RedisConf {
    /// Parsed at load; holds the password, if any (never logged).
    pub info: redis::ConnectionInfo,
    pub on_error: OnStoreError,
}

impl std::fmt::Debug for RedisConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConf")
            .field("addr", &self.info.addr().to_string())
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// `on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve as if the limit allowed it (availability over limiting).
    Allow,
    /// Refuse with 503 (limiting over availability).
    Deny,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        }
    }
}

pub(super) fn read_rate_limit(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<RateLimitConf> {
    let errors_before = r.errors.len();
    let redis = read_store(sec, base, env, r);
    let default = rate(sec, "default", "600/minute", r);
    let login = rate(sec, "login", "5/minute", r);
    if login.is_none() && sec.has("login") && r.errors.len() == errors_before {
        r.warn(
            sec.key("login"),
            "is \"off\": login attempts are not limited (brute force)",
        );
    }
    (r.errors.len() == errors_before).then_some(RateLimitConf {
        redis,
        default,
        login,
    })
}

/// A limit key: a rate, or `"off"` for `None`.
fn rate(sec: &mut Section<'_>, key: &'static str, default: &str, r: &mut Report) -> Option<Rate> {
    match sec.str(key, r).unwrap_or(default) {
        "off" => None,
        s => Rate::parse(s)
            .map_err(|e| r.error(sec.key(key), e.to_string()))
            .ok(),
    }
}

/// `store`, `redis`, `on_store_error`: `None` for the in-process store.
fn read_store(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<RedisConf> {
    let on_error = match sec.str("on_store_error", r) {
        None | Some("allow") => Some(OnStoreError::Allow),
        Some("deny") => Some(OnStoreError::Deny),
        Some(other) => {
            r.error(
                sec.key("on_store_error"),
                format!("{other:?} is not one of \"allow\", \"deny\""),
            );
            None
        }
    };
    let url = sec.str("redis", r);
    match sec.str("store", r) {
        None | Some("memory") => {
            for key in ["redis", "on_store_error"] {
                if sec.has(key) {
                    r.warn(sec.key(key), "has no effect with store = \"memory\"");
                }
            }
            None
        }
        Some("redis") => match url {
            None => {
                r.error(
                    sec.key("redis"),
                    "required with store = \"redis\", e.g. \"env:PORTCULLIS_REDIS_URL\" holding redis://host:6379/0",
                );
                None
            }
            Some(url) => read_redis_url(url, &sec.key("redis"), base, env, r)
                .zip(on_error)
                .map(|(info, on_error)| RedisConf { info, on_error }),
        },
        Some(other) => {
            r.error(
                sec.key("store"),
                format!("{other:?} is not one of \"memory\", \"redis\""),
            );
            None
        }
    }
}

/// A Redis URL, itself possibly a secret reference. A literal URL may not
/// carry a password: the config file is not a secret store.
fn read_redis_url(
    reference: &str,
    key: &str,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<redis::ConnectionInfo> {
    let resolved = secret::resolve(reference, base, env)
        .map_err(|e| r.error(key, e.to_string()))
        .ok()?;
    let url = String::from_utf8_lossy(resolved.value.trim_ascii()).into_owned();
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| url.starts_with(p));
    if !scheme_ok {
        let shown = if resolved.source == SecretSource::Literal {
            format!("{url:?}")
        } else {
            "the value".to_string()
        };
        r.error(
            key,
            format!("{shown} is not a redis://host:port/db or unix:///path URL (rediss:// TLS is not supported by this build)"),
        );
        return None;
    }
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| r.error(key, format!("not a usable Redis URL: {e}")))
        .ok()?;
    if resolved.source == SecretSource::Literal && info.redis_settings().password().is_some() {
        r.error(
            key,
            "a literal URL with a password is refused; use \"env:PORTCULLIS_REDIS_URL\" or \"file:/path\"",
        );
        return None;
    }
    Some(info)
}
