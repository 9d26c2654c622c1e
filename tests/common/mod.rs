//! Shared test harness, a file per part: the tests' PostgreSQL
//! ([`postgres`]), a database per test ([`db`]), the real server in-process
//! ([`server`]) or as a child process ([`process`]), jobs as tests make and
//! follow them ([`jobs`]), a fake Invoke endpoint ([`endpoint`]) and direct
//! looks into the database ([`sql`]). Each test binary uses some of it.

#![allow(dead_code, unused_imports)]

pub mod db;
pub mod endpoint;
pub mod http;
pub mod jobs;
pub mod postgres;
pub mod process;
pub mod server;
pub mod sql;

pub use db::TestDb;
pub use endpoint::{Call, Reply, TestEndpoint};
pub use jobs::*;
pub use postgres::{admin_url, url_for};
pub use process::ServerProcess;
pub use server::{Settings, TestServer, connect, put_object, serve_config, spawn_server};
pub use sql::{ResultRow, TableLock, leased_chunks, task_results};

/// The account the tests act for.
pub const ACCOUNT: &str = "111122223333";
