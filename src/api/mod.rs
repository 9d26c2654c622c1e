//! The gRPC front: the `JobService` implementation, the validation of
//! requests into domain values, `WatchJobs` streams, the mapping of errors
//! to status codes, page tokens and access control (tokens, per-caller
//! stream limits).

pub mod auth;
pub mod console;
mod error;
pub mod health;
pub mod page_token;
pub mod s3control;
mod service;
pub mod validate;
pub mod watch;

pub use error::ApiError;
pub use service::JobApi;
