//! Why the store refused: one sentence naming the file (or the database)
//! and what is wrong.

/// An identity store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:…` nor `postgres://…`, or is malformed.
    #[error("store url: {0}")]
    InvalidUrl(String),
    /// The SQLite file could not be created or opened.
    #[error("{location}: {source}")]
    File {
        /// The file.
        location: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database cannot be reached (PostgreSQL down, wrong password…).
    #[error("{location}: cannot reach the identity store: {source}")]
    Unreachable {
        /// Where the store is (never with a password).
        location: String,
        /// What the driver said.
        source: sqlx::Error,
    },
    /// The SQLite file exists but is not a SQLite database.
    #[error("{location}: not a SQLite database (a foreign or corrupt file); move it away or point [store] url elsewhere")]
    NotADatabase {
        /// The file.
        location: String,
    },
    /// The database has tables but not portcullis's, or a damaged schema.
    #[error("{location}: not a portcullis identity store ({reason})")]
    Foreign {
        /// Where the store is.
        location: String,
        /// What was found.
        reason: String,
    },
    /// A newer portcullis wrote this store: migrations only go forward.
    #[error("{location}: written by a newer portcullis (schema {found}, this one knows up to {supported}); upgrade portcullis or restore a backup")]
    NewerSchema {
        /// Where the store is.
        location: String,
        /// The store's schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The SQLite file (or its directory) is read-only.
    #[error("{location}: the identity store is read-only; nothing was written")]
    ReadOnly {
        /// The file.
        location: String,
    },
    /// The disk is full; the transaction was rolled back.
    #[error("{location}: the disk is full; nothing was written")]
    Full {
        /// The file.
        location: String,
    },
    /// An account with this name (case-insensitively) exists.
    #[error("an account named {0:?} exists already")]
    Exists(String),
    /// No account has this name.
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    /// The account's last second factor, which it must keep.
    #[error("this is the last second factor of an account that must have one")]
    LastFactor,
    /// The change would leave no enabled account holding the admin role.
    #[error("{account:?} is the last enabled account with role {role:?}: give the role to another account first")]
    LastAdmin {
        /// The account changed.
        account: String,
        /// The role that must stay held.
        role: String,
    },
    /// Any other database error, with where it happened.
    #[error("{location}: {source}")]
    Query {
        /// Where the store is.
        location: String,
        /// What the driver said.
        source: sqlx::Error,
    },
}

/// SQLite result codes worth their own sentence (the primary code, low byte).
const SQLITE_READONLY: i64 = 8;
const SQLITE_FULL: i64 = 13;
const SQLITE_NOTADB: i64 = 26;

impl StoreError {
    /// A driver error at `location`, classified where a sentence helps more
    /// than the driver's text.
    pub(crate) fn from_sqlx(location: &str, source: sqlx::Error) -> StoreError {
        let location = location.to_string();
        let code = match &source {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()),
            _ => None,
        };
        match code.map(|c| c & 0xff) {
            Some(SQLITE_READONLY) => StoreError::ReadOnly { location },
            Some(SQLITE_FULL) => StoreError::Full { location },
            Some(SQLITE_NOTADB) => StoreError::NotADatabase { location },
            _ if matches!(
                source,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
            ) =>
            {
                StoreError::Unreachable { location, source }
            }
            _ => StoreError::Query { location, source },
        }
    }

    /// Whether the store could not be reached at all (as opposed to a
    /// refusal): the caller retries, serves public routes, answers 503.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}
