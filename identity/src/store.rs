//! Opening the store: the SQLite file created 0600, the pool, and the
//! migrations (under an advisory lock on PostgreSQL, so two instances
//! starting together migrate once).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row};

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

/// Whether a committed write moves the change counter caches poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moves {
    /// Something a cache holds changed.
    Counter,
    /// Nothing a cache could hold (a new session, activity), or nothing at all.
    Nothing,
}

/// A write transaction on one pooled connection (`Store::begin`, ended by
/// `Store::finish`). The transaction is plain SQL rather than sqlx's
/// `Transaction`, whose rollback on drop is only queued: after a statement
/// that SQLite had already rolled back (a full disk) it left the connection
/// marked as inside a transaction, and the next writer on it failed. Dropped
/// unfinished — an error on the way, or a request future cancelled when its
/// client went away — the connection is closed instead of returned to the
/// pool, which ends the transaction on the server and releases SQLite's
/// write lock.
pub(crate) struct Tx {
    conn: sqlx::pool::PoolConnection<Any>,
    finished: bool,
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
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
        let store = Store::connect(location).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// What `check --online` reports, writing nothing: where the store is
    /// and its schema version, `None` when `run` would create it (no file
    /// yet, or an empty database). A foreign or newer store is refused as
    /// [`Store::open`] would.
    pub async fn inspect(url: &str) -> Result<(String, Option<i64>), StoreError> {
        let location = Location::parse(url)?;
        let shown = location.shown.clone();
        if location.file.as_ref().is_some_and(|f| !f.exists()) {
            return Ok((shown, None));
        }
        let store = Store::connect(location).await?;
        let found = store.found_version().await;
        store.close().await;
        Ok((shown, found?))
    }

    async fn found_version(&self) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        if !self.has_version_table(&mut tx).await? {
            if self.table_count(&mut tx).await? > 0 {
                return Err(self.foreign());
            }
            return Ok(None);
        }
        let row: AnyRow = sqlx::query("SELECT MAX(version) FROM portcullis_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        let found = row.try_get::<Option<i64>, _>(0).ok().flatten().unwrap_or(0);
        if found > LATEST {
            return Err(self.newer(found));
        }
        Ok(Some(found))
    }

    fn foreign(&self) -> StoreError {
        StoreError::Foreign {
            location: self.location.clone(),
            reason: "it has tables, none of them portcullis's".into(),
        }
    }

    fn newer(&self, found: i64) -> StoreError {
        StoreError::NewerSchema {
            location: self.location.clone(),
            found,
            supported: LATEST,
        }
    }

    async fn connect(location: Location) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(match location.backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Each connection is pinged as it is taken from the pool: one
            // the server closed (a restart, an idle timeout) is replaced
            // there, so a query never runs on a dead connection.
            .test_before_acquire(true)
            .connect(&location.url)
            .await
            .map_err(|e| match StoreError::from_sqlx(&location.shown, e) {
                StoreError::Query { location, source } => {
                    StoreError::Unreachable { location, source }
                }
                other => other,
            })?;
        Ok(Store {
            pool,
            backend: location.backend,
            location: location.shown,
        })
    }

    /// Closes every connection (waiting for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
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

    /// A write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred one that read first could not
    /// upgrade after another connection's commit (`SQLITE_BUSY_SNAPSHOT`),
    /// while waiting for the lock up front is what the busy timeout covers.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        sqlx::query(begin)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Tx {
            conn,
            finished: false,
        })
    }

    /// Ends a write transaction with its outcome: on `Ok` it commits,
    /// moving the change counter first when `moves` says so (the counter
    /// moves with every committed change and only with one); on `Err` it
    /// rolls back. A transaction that cannot be ended cleanly closes its
    /// connection (see [`Tx`]).
    pub(crate) async fn finish<T>(
        &self,
        mut tx: Tx,
        outcome: Result<T, StoreError>,
        moves: Moves,
    ) -> Result<T, StoreError> {
        let value = match outcome {
            Ok(value) => value,
            Err(e) => {
                // SQLite may have rolled back by itself (a full disk): then
                // this fails and the connection is closed rather than reused.
                if sqlx::query("ROLLBACK").execute(&mut *tx).await.is_ok() {
                    tx.finished = true;
                }
                return Err(e);
            }
        };
        if moves == Moves::Counter {
            sqlx::query("UPDATE portcullis_changes SET counter = counter + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        sqlx::query("COMMIT")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        tx.finished = true;
        Ok(value)
    }

    /// Ends a write transaction that must leave nothing behind (a refused
    /// sign-in): rolls back and hands `value` on.
    pub(crate) async fn abandon<T>(&self, mut tx: Tx, value: T) -> Result<T, StoreError> {
        if sqlx::query("ROLLBACK").execute(&mut *tx).await.is_ok() {
            tx.finished = true;
        }
        Ok(value)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn error(&self, e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.location, e)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let err = |e| self.error(e);
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let fresh = !self.has_version_table(&mut tx).await?;
        if fresh && self.table_count(&mut tx).await? > 0 {
            return Err(self.foreign());
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
            return Err(self.newer(found));
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
        self.finish(tx, Ok(()), Moves::Nothing).await?;
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

    async fn has_version_table(&self, tx: &mut sqlx::AnyConnection) -> Result<bool, StoreError> {
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

    async fn table_count(&self, tx: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
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

    async fn count(&self, tx: &mut sqlx::AnyConnection, sql: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(sql)
            .fetch_one(&mut *tx)
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
