//! Store URLs: which backend, the driver URL, and a location to name in
//! messages that never carries a password.

use std::path::{Path, PathBuf};

use crate::{Backend, StoreError};

/// A parsed `[store] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) backend: Backend,
    /// What sqlx connects to.
    pub(crate) url: String,
    /// What messages name: the SQLite file, or `postgres://host:port/db`.
    pub(crate) shown: String,
    /// The SQLite file, to create 0600 before the driver opens it.
    pub(crate) file: Option<PathBuf>,
}

impl Location {
    /// `sqlite:PATH` (relative to the current directory; the gateway passes
    /// absolute paths) or `postgres://…` / `postgresql://…`.
    pub(crate) fn parse(url: &str) -> Result<Location, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() || path.contains('?') {
                return Err(StoreError::InvalidUrl(
                    "sqlite: needs a file path and no options (sqlite:/var/lib/portcullis/identity.db)".into(),
                ));
            }
            let file = Path::new(path).to_path_buf();
            return Ok(Location {
                backend: Backend::Sqlite,
                url: format!("sqlite://{path}"),
                shown: file.display().to_string(),
                file: Some(file),
            });
        }
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| StoreError::InvalidUrl("expected sqlite:PATH or postgres://…".into()))?;
        // userinfo@host:port/db?params: show host:port/db only.
        let after_user = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let shown = after_user.split('?').next().unwrap_or(after_user);
        if shown.is_empty() || shown.starts_with('/') {
            return Err(StoreError::InvalidUrl("postgres:// needs a host".into()));
        }
        Ok(Location {
            backend: Backend::Postgres,
            url: url.to_string(),
            shown: format!("postgres://{shown}"),
            file: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let l =
            Location::parse("postgres://app:s3cret@db.internal:5432/portcullis?sslmode=require");
        let l = l.map(|l| (l.backend, l.shown));
        assert_eq!(
            l.ok(),
            Some((
                Backend::Postgres,
                "postgres://db.internal:5432/portcullis".into()
            ))
        );
        let l = Location::parse("postgresql://a:b:c@h/d").map(|l| l.shown);
        assert_eq!(l.ok().as_deref(), Some("postgres://h/d"));
    }

    #[test]
    fn sqlite_is_a_file() {
        let l = Location::parse("sqlite:/var/lib/p/identity.db").ok();
        assert_eq!(
            l.map(|l| (l.backend, l.url, l.file)),
            Some((
                Backend::Sqlite,
                "sqlite:///var/lib/p/identity.db".into(),
                Some(PathBuf::from("/var/lib/p/identity.db"))
            ))
        );
        for bad in [
            "sqlite:",
            "sqlite:a.db?mode=ro",
            "mysql://x/y",
            "postgres://",
            "postgres:///db",
            "",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad:?}");
        }
    }
}
