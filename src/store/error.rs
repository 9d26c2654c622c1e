//! Store errors, classified by what the caller can do about them. SQL text and
//! driver details stay in the logged source, never in the message.

use tokio_postgres::error::SqlState;

use crate::domain::{DomainError, JobId};

/// Why a store call failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such job (or not the account's).
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The idempotency token was used for another request (the job it made).
    #[error("client_request_token was already used with a different request (job {0})")]
    TokenReused(JobId),
    /// Another writer changed the job at the same time; retry.
    #[error("the job was changed concurrently; retry")]
    Conflict,
    /// The database cannot be reached.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data cannot be read back.
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    /// A statement failed for a reason the caller cannot act on; the
    /// message (logged, never sent to clients) names the statement.
    #[error("database error in {statement}: {}", describe(source))]
    Database {
        /// The name of the statement that failed.
        statement: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A database error's SQLSTATE and message, or the driver's description.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// Names the statement a database call ran, for the error it may return.
pub(crate) trait During<T> {
    fn during(self, statement: &'static str) -> Result<T, StoreError>;
}

impl<T> During<T> for Result<T, tokio_postgres::Error> {
    fn during(self, statement: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::classify(error, statement))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::classify(error, "an unnamed statement")
    }
}

impl StoreError {
    /// Sorts a driver error by what the caller can do about it.
    fn classify(error: tokio_postgres::Error, statement: &'static str) -> StoreError {
        match error.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::UNIQUE_VIOLATION =>
            {
                StoreError::Conflict
            }
            Some(code)
                if *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS =>
            {
                StoreError::Unavailable(Box::new(error))
            }
            Some(_) => StoreError::Database {
                statement,
                source: error,
            },
            // No SQLSTATE: the connection or the protocol failed.
            None => StoreError::Unavailable(Box::new(error)),
        }
    }
}

/// Failing to get a connection, whatever the reason, means the database
/// cannot be used right now.
impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(Box::new(error))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}
