//! Opening the store: the SQLite file created 0600, the pool, and the
//! migrations (under an advisory lock on PostgreSQL, so two instances
//! starting together migrate once).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::location::Location;

/// A statement with its arguments, for either backend.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;
use crate::schema::{LATEST, MIGRATIONS, VERSION_TABLE};
use crate::StoreError;

/// Which database the store is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file: embedded, one instance.
    Sqlite,
    /// PostgreSQL: shared by several instances.
    Postgres,
}

/// An open identity store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    location: String,
}

/// How long a statement may wait for a connection (or, on SQLite, for the
/// write lock another process holds) before the store counts as unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Arbitrary, constant: the key of the migration lock on PostgreSQL.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375;

impl Store {
    /// Opens (creating a SQLite file 0600 if missing) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let location = Location::parse(url)?;
        if let Some(file) = &location.file {
            create_private(file).map_err(|source| StoreError::File {
                location: location.shown.clone(),
                source,
            })?;
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(match location.backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&location.url)
            .await
            .map_err(|e| match StoreError::from_sqlx(&location.shown, e) {
                StoreError::Query { location, source } => {
                    StoreError::Unreachable { location, source }
                }
                other => other,
            })?;
        let store = Store {
            pool,
            backend: location.backend,
            location: location.shown,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is, for messages (never with a password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The schema version the store is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) FROM portcullis_schema")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.try_get::<Option<i64>, _>(0).ok().flatten().unwrap_or(0))
    }

    /// The change counter: every write through any instance bumps it, so
    /// a cache polls this one row to learn that it must reload.
    pub async fn changes(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT counter FROM portcullis_changes WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.try_get(0).map_err(|e| self.error(e))
    }

    /// Every row of `q`, each turned into a value by `f`.
    pub(crate) async fn all<'q, T>(
        &self,
        q: AnyQuery<'q>,
        f: fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = q.fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
        rows.iter()
            .map(f)
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(e))
    }

    /// The row of `q`, if any, turned into a value by `f`.
    pub(crate) async fn optional<'q, T>(
        &self,
        q: AnyQuery<'q>,
        f: fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, StoreError> {
        let row = q
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.as_ref().map(f).transpose().map_err(|e| self.error(e))
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn error(&self, e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.location, e)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let err = |e| self.error(e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let fresh = !self.has_version_table(&mut tx).await?;
        if fresh && self.table_count(&mut tx).await? > 0 {
            return Err(StoreError::Foreign {
                location: self.location.clone(),
                reason: "it has tables, none of them portcullis's".into(),
            });
        }
        sqlx::query(VERSION_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let row: AnyRow = sqlx::query("SELECT MAX(version) FROM portcullis_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let found = row.try_get::<Option<i64>, _>(0).ok().flatten().unwrap_or(0);
        if found > LATEST {
            return Err(StoreError::NewerSchema {
                location: self.location.clone(),
                found,
                supported: LATEST,
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            for statement in m.statements {
                let sql = statement.replace("{ID}", self.id_column());
                sqlx::query(&sql).execute(&mut *tx).await.map_err(err)?;
            }
            sqlx::query("INSERT INTO portcullis_schema (version) VALUES ($1)")
                .bind(m.version)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        if self.backend == Backend::Sqlite {
            // Readers do not wait for a writer (the CLI writing while the
            // gateway serves).
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    fn id_column(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        }
    }

    async fn has_version_table(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<bool, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'portcullis_schema'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'portcullis_schema'"
            }
        };
        Ok(self.count(tx, sql).await? > 0)
    }

    async fn table_count(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<i64, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            }
        };
        self.count(tx, sql).await
    }

    async fn count(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        sql: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(sql)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        row.try_get(0).map_err(|e| self.error(e))
    }
}

/// Creates the file with mode 0600 if it does not exist (SQLite would
/// create it with the umask's mode), and its directory 0700.
fn create_private(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
