//! batchops runs and tracks batch jobs over object-storage objects in the
//! manner of Amazon S3 Batch Operations, on an append-only event log in
//! PostgreSQL.
//!
//! - [`domain`]: the job lifecycle as pure `decide`/`apply` functions.
//! - [`store`]: the event log, the `jobs` projection and task tables (all SQL).
//! - [`engine`]: preparer, scheduler, workers and finisher loops.
//! - [`objects`]: object stores, manifest readers and task operations.
//! - [`metrics`]: Prometheus metrics and their HTTP endpoint.
//! - [`notify`]: LISTEN fan-out and WatchJobs streams.
//! - [`contract`]: domain values as the contract's messages (jobs, history).
//! - [`api`]: the tonic `JobService`, request validation, watch streams, error codes.
//! - [`aws`]: AWS's S3 Control job shapes (REST-XML, the CLI's JSON) and SigV4.
//! - [`cli`]: the client subcommands (`create-job`, `watch`, `report`, …).
//! - [`audit`]: rebuilds projections from the log and reports differences.
//! - [`server`], [`config`] and [`command_line`]: process start-up, the
//!   server's settings, the command line, and shutdown;
//!   [`cluster`]: the private PostgreSQL used when no database URL is given.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod cluster;
mod coalesce;
pub mod command_line;
pub mod config;
pub(crate) mod contract;
pub mod domain;
pub(crate) mod engine;
mod http1;
pub(crate) mod metrics;
pub(crate) mod notify;
pub mod objects;
pub mod server;
pub mod store;

/// Generated code of `proto/batchops/v1`.
#[allow(clippy::large_enum_variant)]
pub mod proto {
    tonic::include_proto!("batchops.v1");
    // The server, generated method by method (see `build.rs`); WatchJobs
    // sends pre-encoded frames.
    include!(concat!(env!("OUT_DIR"), "/batchops.v1.JobService.rs"));
    pub use crate::contract::{Frame, FrameCodec, FrameEncoder, RequestDecoder};

    /// The encoded file descriptor set, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("batchops_descriptor");
}
