//! The schema, as versioned forward-only migrations. A migration is never
//! edited once released: a change is a new version. The two dialects share
//! every statement except how an auto-numbered key is spelt (`{ID}`).

/// One schema version: its statements run in one transaction, together
/// with the row that records it.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) statements: &'static [&'static str],
}

/// The newest schema this build knows.
pub const LATEST: i64 = 6;

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[V1, V2, V3, V4, V5, V6];

const V1: Migration = Migration {
    version: 1,
    statements: &[
        "CREATE TABLE portcullis_changes (id BIGINT PRIMARY KEY, counter BIGINT NOT NULL)",
        "INSERT INTO portcullis_changes (id, counter) VALUES (1, 0)",
        // `name_key`: the name lowercased, so names are unique
        // case-insensitively while apps see the name as written.
        "CREATE TABLE accounts (
            id {ID},
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            email TEXT,
            password TEXT,
            roles TEXT NOT NULL,
            disabled BIGINT NOT NULL,
            epoch TEXT NOT NULL,
            created BIGINT NOT NULL,
            last_sign_in BIGINT
        )",
        "CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            epoch TEXT NOT NULL,
            created BIGINT NOT NULL,
            last_seen BIGINT NOT NULL,
            method TEXT NOT NULL,
            client_ip TEXT,
            user_agent TEXT
        )",
        "CREATE INDEX sessions_account ON sessions (account_id)",
        // For provider sign-in, second factors and invitations (empty until
        // those land).
        "CREATE TABLE external_identities (
            id {ID},
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            provider TEXT NOT NULL,
            subject TEXT NOT NULL,
            email TEXT,
            created BIGINT NOT NULL,
            UNIQUE (provider, subject)
        )",
        "CREATE TABLE second_factors (
            id {ID},
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            data TEXT NOT NULL,
            created BIGINT NOT NULL,
            last_used BIGINT
        )",
        "CREATE TABLE recovery_codes (
            id {ID},
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            used BIGINT
        )",
        "CREATE TABLE invitations (
            id TEXT PRIMARY KEY,
            email TEXT,
            roles TEXT NOT NULL,
            created BIGINT NOT NULL,
            expires BIGINT NOT NULL,
            used BIGINT,
            created_by BIGINT REFERENCES accounts (id) ON DELETE SET NULL
        )",
    ],
};

/// Provider sign-in (issue 18).
const V2: Migration = Migration {
    version: 2,
    statements: &[
        // Roles granted by the provider groups of the account's last
        // provider sign-in, kept apart from the roles an admin gives so a
        // group that goes away takes its roles with it at the next sign-in.
        "ALTER TABLE accounts ADD COLUMN mapped_roles TEXT NOT NULL DEFAULT ''",
        // The `state` of every provider callback taken, until it could no
        // longer verify: a state is good for one callback, on any instance.
        "CREATE TABLE used_states (id TEXT PRIMARY KEY, expires BIGINT NOT NULL)",
    ],
};

/// Admin console (issue 19).
const V3: Migration = Migration {
    version: 3,
    statements: &[
        // One-time password-reset links an admin makes: only the SHA-256
        // of the token is kept, like invitations.
        "CREATE TABLE reset_links (
            id TEXT PRIMARY KEY,
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            created BIGINT NOT NULL,
            expires BIGINT NOT NULL,
            used BIGINT
        )",
    ],
};

/// Passkeys (issue 19).
const V4: Migration = Migration {
    version: 4,
    statements: &[
        // A WebAuthn ceremony under way: the library's state stays on the
        // server (the browser holds only the random id) and is taken once.
        "CREATE TABLE ceremonies (
            id TEXT PRIMARY KEY,
            account_id BIGINT REFERENCES accounts (id) ON DELETE CASCADE,
            data TEXT NOT NULL,
            expires BIGINT NOT NULL
        )",
    ],
};

/// Several instances (issue 20): TLS material and ACME state shared through
/// the store, so instances need no shared volume.
const V5: Migration = Migration {
    version: 5,
    statements: &[
        // Certificates, keys and the ACME account, by name (PEM or JSON
        // text); several items written together are one transaction.
        "CREATE TABLE tls_items (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated BIGINT NOT NULL
        )",
        // Pending ACME challenge answers any instance may be asked for.
        "CREATE TABLE tls_challenges (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            expires BIGINT NOT NULL
        )",
        // Leases: one holder at a time until `expires`, renewable.
        "CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires BIGINT NOT NULL
        )",
    ],
};

/// Assertion keys with a public half (issue 21), shared by every instance:
/// PKCS#8 private keys (base64), published in the JWKS until
/// `published_until` (none: while current), signing from `sign_from`.
const V6: Migration = Migration {
    version: 6,
    statements: &["CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            alg TEXT NOT NULL,
            private_key TEXT NOT NULL,
            created BIGINT NOT NULL,
            sign_from BIGINT NOT NULL,
            published_until BIGINT
        )"],
};

/// The table that records the schema version.
pub(crate) const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS portcullis_schema (version BIGINT NOT NULL)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_end_at_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST));
    }
}
