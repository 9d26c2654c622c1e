//! Store errors, classified by what the caller can do about them. SQL text and
//! driver details stay in the logged source, never in the message.

use tokio_postgres::error::SqlState;

use crate::domain::{DomainError, JobId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("client_request_token was already used with a different request (job {0})")]
    TokenReused(JobId),
    #[error("the job was changed concurrently; retry")]
    Conflict,
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
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
            Some(_) => StoreError::Database(error),
            None if error.is_closed() => StoreError::Unavailable(Box::new(error)),
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
