//! The gRPC front: the `JobService` implementation, the conversion between
//! proto messages and domain types, the mapping of errors to status codes,
//! and access control (tokens, per-caller stream limits).

pub mod auth;
pub mod convert;
mod error;
pub mod health;
pub mod page_token;
mod service;

pub use error::{ApiError, code_name};
pub use service::JobApi;
