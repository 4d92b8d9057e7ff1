//! `[store]`: where the identity store is (docs/configuration.md `[store]`).
//!
//! `url` is `sqlite:PATH` (relative to the config file), or a secret
//! reference (`env:NAME`, `file:PATH`) holding `sqlite:…` or `postgres://…`.
//! A literal `postgres://` URL is taken only without a password: a config
//! file is not where database passwords live. The default is a SQLite file
//! in `[tls] storage`.

use std::path::Path;

use super::secret::{self, Secret, SecretSource};
use super::{EnvLookup, Report, Section};

/// The file name of the default SQLite store inside `[tls] storage`.
pub const DEFAULT_FILE: &str = "portcullis.db";

/// `[store]`, resolved.
#[derive(Debug, Clone)]
pub struct StoreConf {
    /// `sqlite:/absolute/path` or `postgres://…`, ready for `Store::open`.
    pub url: Secret<String>,
}

pub(super) fn read_store(
    sec: &mut Section<'_>,
    base: &Path,
    storage: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<StoreConf> {
    let key = sec.key("url");
    let Some(reference) = sec.str("url", r) else {
        let file = storage.join(DEFAULT_FILE);
        return Some(StoreConf {
            url: Secret {
                source: SecretSource::Literal,
                value: format!("sqlite:{}", file.display()),
            },
        });
    };
    let (source, url) = if reference.starts_with("env:") || reference.starts_with("file:") {
        match secret::resolve(reference, base, env) {
            Ok(s) => (
                s.source,
                String::from_utf8_lossy(s.value.trim_ascii()).into_owned(),
            ),
            Err(e) => {
                r.error(key, e.to_string());
                return None;
            }
        }
    } else {
        (SecretSource::Literal, reference.to_string())
    };
    match absolute(&url, base) {
        Ok(value) if source == SecretSource::Literal && has_password(&value) => {
            r.error(
                key,
                "a literal postgres:// URL must not carry a password; put the URL in \
                 \"env:PORTCULLIS_DATABASE_URL\" or \"file:/run/secrets/database-url\"",
            );
            None
        }
        Ok(value) => Some(StoreConf {
            url: Secret { source, value },
        }),
        Err(reason) => {
            r.error(key, reason);
            None
        }
    }
}

/// `sqlite:` paths made absolute against the config's directory; anything
/// but `sqlite:` and `postgres://` refused.
fn absolute(url: &str, base: &Path) -> Result<String, String> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() || path.contains('?') {
            return Err(
                "sqlite: needs a file path and no options, e.g. \"sqlite:portcullis.db\"".into(),
            );
        }
        return Ok(format!("sqlite:{}", base.join(path).display()));
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url.to_string()),
        Some(_) => Err(
            "postgres:// needs a host, e.g. postgres://portcullis@db.internal/portcullis".into(),
        ),
        None => Err(format!(
            "{:?} is neither sqlite:PATH nor postgres://… (MySQL and others are not supported)",
            redact(url)
        )),
    }
}

/// Whether a `postgres://user:password@…` URL carries a password.
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    rest.rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A URL fit for an error message: the part before any `@` dropped.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => url.chars().take(40).collect(),
    }
}

/// Only `[tls] storage` and `[store]` of a config file, for the `user`
/// commands: they need the store, not the session keys or certificates.
pub fn read_only_store(path: &Path, env: EnvLookup<'_>) -> Result<StoreConf, Report> {
    let mut r = Report::new(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.error("", format!("cannot read the config file: {e}"));
            return Err(r);
        }
    };
    let doc: toml::Table = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            r.error("", format!("invalid TOML: {}", e.message()));
            return Err(r);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut root = Section::new("", &doc);
    let storage = root
        .table("tls", &mut r)
        .and_then(|mut tls| tls.str("storage", &mut r).map(|s| base.join(s)))
        .unwrap_or_else(|| super::tls::DEFAULT_STORAGE.into());
    let conf = root.section("store", &mut r, |s, r| {
        read_store(s, &base, &storage, env, r)
    });
    match conf {
        Some(c) if r.errors.is_empty() => Ok(c),
        _ => Err(r),
    }
}

/// Whether a `[store] url` names the shared PostgreSQL (several instances;
/// ACME state goes there too) rather than one instance's SQLite file.
pub fn is_shared_store(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(toml_text: &str, env: &[(&str, &str)]) -> Result<String, String> {
        let doc: toml::Table = toml_text.parse().map_err(|e| format!("{e}"))?;
        let mut r = Report::new(Path::new("/etc/p/portcullis.toml"));
        let mut sec = Section::new("store", &doc);
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let conf = read_store(
            &mut sec,
            Path::new("/etc/p"),
            Path::new("/var/lib/p"),
            &lookup,
            &mut r,
        );
        match conf {
            Some(c) if r.errors.is_empty() => Ok(c.url.value),
            _ => Err(r.errors.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn the_default_is_a_file_in_storage() {
        assert_eq!(
            read("", &[]).as_deref(),
            Ok("sqlite:/var/lib/p/portcullis.db")
        );
        assert_eq!(
            read("url = \"sqlite:id.db\"", &[]).as_deref(),
            Ok("sqlite:/etc/p/id.db")
        );
        assert_eq!(
            read("url = \"sqlite:/srv/id.db\"", &[]).as_deref(),
            Ok("sqlite:/srv/id.db")
        );
    }

    #[test]
    fn postgres_passwords_live_outside_the_file() {
        let e = read("url = \"postgres://app:hunter2@db/p\"", &[]).unwrap_err();
        assert!(
            e.contains("store.url") && e.contains("must not carry a password"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            read("url = \"postgres://app@db/p\"", &[]).as_deref(),
            Ok("postgres://app@db/p")
        );
        let env = [("DB", "postgres://app:hunter2@db:5432/p\n")];
        assert_eq!(
            read("url = \"env:DB\"", &env).as_deref(),
            Ok("postgres://app:hunter2@db:5432/p")
        );
        let e = read("url = \"env:NOPE\"", &env).unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
    }

    #[test]
    fn other_urls_are_refused_without_their_secrets() {
        for (url, says) in [
            (
                "mysql://root:pw@db/p",
                "neither sqlite:PATH nor postgres://",
            ),
            ("sqlite:", "needs a file path"),
            ("sqlite:a.db?mode=ro", "no options"),
            ("postgres:///p", "needs a host"),
            ("SQLITE:a.db", "neither"),
        ] {
            let e = read(&format!("url = \"{url}\""), &[]).unwrap_err();
            assert!(e.contains(says) && !e.contains(":pw@"), "{url}: {e}");
        }
        let e = read("url = 5", &[]).unwrap_err();
        assert!(e.contains("store.url"), "{e}");
    }
}
