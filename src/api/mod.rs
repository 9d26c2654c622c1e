//! The gRPC front: the `JobService` implementation, the conversion between
//! proto messages and domain types, and the mapping of errors to status codes.

pub mod convert;
mod error;
pub mod health;
mod service;

pub use error::{ApiError, code_name};
pub use service::JobApi;
