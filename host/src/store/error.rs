//! The store's error type and the translation of database constraint errors.

use sqlx::error::ErrorKind;

use crate::secrets::SecretError;

/// Errors returned by [`Store`](super::Store) methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique value is already taken. Carries what collided: `"login"`,
    /// `"phone"`, `"username"`, `"gateway name"` or `"dialplan prefix"`.
    #[error("{0} already exists")]
    Conflict(String),
    /// The record an operation needs does not exist (e.g. the account whose
    /// voicemail settings are being set). Carries a description.
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller's input was rejected before reaching the database.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A value read from the database cannot be interpreted (e.g. a
    /// malformed password hash): the data was written by something else or
    /// damaged.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A lock could not be obtained in time (e.g. another node has been
    /// migrating the shared database for too long).
    #[error("busy: {0}")]
    Busy(String),
    /// The database failed or refused the statement.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Encrypting or decrypting a stored secret failed (e.g. the key file
    /// changed since the value was written).
    #[error("secret: {0}")]
    Secret(#[from] SecretError),
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// For a unique violation, the constraint description the database gave:
/// SQLite names the columns (`UNIQUE constraint failed: profiles.phone`),
/// MySQL/MariaDB the index (`Duplicate entry '…' for key 'profiles_phone'`).
/// Only the part after the duplicate value is returned, so a value that
/// happens to contain `phone` cannot mislead the caller.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    let msg = db.message();
    let key = msg
        .rsplit_once("for key ")
        .map(|(_, k)| k)
        .or_else(|| msg.rsplit_once("failed: ").map(|(_, k)| k))
        .unwrap_or(msg);
    Some(key.to_owned())
}

pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.kind() == ErrorKind::ForeignKeyViolation)
}
