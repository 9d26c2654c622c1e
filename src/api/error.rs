//! The one mapping from errors to gRPC status codes (DESIGN.md section 3).
//! Causes are logged; clients get a clean message that never contains SQL.

use tonic::Status;
use tracing::error;

use crate::domain::DomainError;
use crate::objects::report::ReportReadError;
use crate::store::StoreError;

/// An RPC failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is missing or out of range.
    /// A request field is missing, malformed or out of range.
    #[error("{field}: {problem}")]
    InvalidArgument {
        /// The field, as the contract names it (`manifest.key`, `tags[2].value`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The caller's token does not cover what the request names.
    #[error("{0}")]
    PermissionDenied(String),
    /// The store refused or failed (not found, a refused transition, a conflict, the database).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A job's completion report could not be read back.
    #[error(transparent)]
    Report(#[from] ReportReadError),
    /// The job has no completion report to read.
    #[error("{0}")]
    NoReport(String),
}

impl ApiError {
    /// An INVALID_ARGUMENT naming `field` and what is wrong with it.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError::Store(StoreError::Domain(error))
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let store_error = match error {
            ApiError::InvalidArgument { .. } => return Status::invalid_argument(error.to_string()),
            ApiError::PermissionDenied(message) => return Status::permission_denied(message),
            ApiError::NoReport(message) => return Status::failed_precondition(message),
            ApiError::Report(report) => return report_status(report),
            ApiError::Store(store_error) => store_error,
        };
        match &store_error {
            StoreError::NotFound(_) => Status::not_found(store_error.to_string()),
            StoreError::Domain(domain) => match domain {
                DomainError::IllegalTransition { .. }
                | DomainError::NotAllowed { .. }
                | DomainError::TooManyResults { .. } => {
                    Status::failed_precondition(store_error.to_string())
                }
                DomainError::InvalidPriority(_) => {
                    Status::invalid_argument(format!("priority: {store_error}"))
                }
            },
            StoreError::TokenReused(_) => Status::already_exists(store_error.to_string()),
            StoreError::Conflict => Status::aborted(store_error.to_string()),
            StoreError::Unavailable(cause) => {
                error!(error = %cause, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            StoreError::Corrupt(detail) => {
                error!(detail, "stored data could not be read");
                Status::internal("internal error")
            }
            StoreError::Database { .. } => {
                error!(error = %store_error, "database error");
                Status::internal("internal error")
            }
        }
    }
}

fn report_status(error: ReportReadError) -> Status {
    match error {
        ReportReadError::NotListed(_) | ReportReadError::Missing(_) => {
            Status::not_found(error.to_string())
        }
        ReportReadError::Manifest(_) => Status::failed_precondition(error.to_string()),
        ReportReadError::Store(cause) => {
            error!(error = %cause, "object store failed reading a report");
            Status::unavailable("the object store failed; retry later")
        }
    }
}
