//! The server's configuration: what `serve`, `migrate` and `replay` take,
//! as flags and `BATCHOPS_*` environment variables (and, through
//! [`crate::command_line`], a TOML file), each documented with its default.

use std::{net::SocketAddr, time::Duration};

use clap::Args;

use crate::engine::EngineConfig;
use crate::objects::invoke::{Allowlist, InvokeLimits};
use crate::objects::operations::OperationLimits;

/// What `batchops replay` takes.
#[derive(Debug, Clone, Args)]
pub struct ReplayConfig {
    /// The database to replay.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Rewrite differing projections from the log.
    #[arg(long)]
    pub repair: bool,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1/batchops. The database
    /// is created if missing. Falls back to DATABASE_URL; with neither,
    /// batchops runs a private cluster under --data-dir.
    #[arg(long, env = "BATCHOPS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Connections in the pool.
    #[arg(long, env = "BATCHOPS_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// Where batchops keeps its private PostgreSQL cluster when no database
    /// URL is given (created on first use; needs PostgreSQL's server
    /// programs installed).
    #[arg(long, env = "BATCHOPS_DATA_DIR", default_value = "batchops-data")]
    pub data_dir: std::path::PathBuf,
    /// Directory of PostgreSQL's initdb and pg_ctl for the private cluster
    /// (default: found on PATH, by pg_config, or in the usual install places).
    #[arg(long, env = "BATCHOPS_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<std::path::PathBuf>,
}

impl DatabaseConfig {
    /// The flag, else BATCHOPS_DATABASE_URL, else DATABASE_URL; `None` means
    /// the private cluster under `data_dir`.
    pub fn url(&self) -> Option<String> {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|url| !url.is_empty())
    }
}

/// Everything `batchops serve` takes.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "BATCHOPS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Object store holding manifests, objects and reports: a directory path
    /// or file:///dir (a bucket is a first-level directory), or s3:// for S3
    /// and S3-compatible servers (endpoint, region and credentials from the
    /// usual AWS_* variables: AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP).
    #[arg(
        long,
        env = "BATCHOPS_OBJECT_STORE",
        default_value = "batchops-objects"
    )]
    pub object_store: String,
    /// Active jobs per account; higher-priority jobs get slots first.
    #[arg(long, env = "BATCHOPS_MAX_ACTIVE_JOBS", default_value_t = 4)]
    pub max_active_jobs: usize,
    /// Tasks this process runs at once.
    #[arg(long, env = "BATCHOPS_TASK_CONCURRENCY", default_value_t = 16)]
    pub task_concurrency: usize,
    /// Tasks claimed and recorded together.
    #[arg(long, env = "BATCHOPS_CHUNK_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chunk_size: u32,
    /// Tasks per chunk of file work on a directory store (checksums,
    /// deletions, plain copies), where a task takes microseconds and a
    /// commit per chunk would dominate.
    #[arg(long, env = "BATCHOPS_FILE_CHUNK_SIZE", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub file_chunk_size: u32,
    /// Milliseconds a worker keeps starting one chunk's tasks before it
    /// records what ran and hands the rest back (fast work commits whole
    /// chunks; slow work at least this often).
    #[arg(long, env = "BATCHOPS_CHUNK_SLICE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub chunk_slice_ms: u64,
    /// Seconds a chunk claim lasts without renewal.
    #[arg(long, env = "BATCHOPS_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease_seconds: u64,
    /// Seconds a job may wait in Suspended for confirmation before it fails
    /// (default 30 days).
    #[arg(long, env = "BATCHOPS_SUSPENSION_LIMIT_SECONDS", default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub suspension_limit_seconds: u64,
    /// Attempts per task when failures are transient (timeouts, connection
    /// errors, HTTP 5xx/429, Invoke TemporaryFailure); 1 means no retry.
    #[arg(long, env = "BATCHOPS_TASK_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub task_max_attempts: u32,
    /// Upper bound of the first retry's random delay in milliseconds; it
    /// doubles per attempt up to 10 s.
    #[arg(long, env = "BATCHOPS_RETRY_BASE_DELAY_MS", default_value_t = 100)]
    pub retry_base_delay_ms: u64,
    /// Rows per completion report CSV file; larger reports are split.
    #[arg(long, env = "BATCHOPS_REPORT_ROWS_PER_FILE", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub report_rows_per_file: u64,
    /// Comma-separated URL prefixes that Invoke jobs may call; empty allows
    /// none. Endpoints are compared after normalisation (dot segments
    /// resolved) by scheme, host, port and path; redirects are never followed.
    #[arg(long, env = "BATCHOPS_INVOKE_ALLOWLIST", default_value = "")]
    pub invoke_allowlist: String,
    /// Largest Invoke reply read, in bytes; a larger reply fails its task
    /// with InvokeReplyTooLarge.
    #[arg(long, env = "BATCHOPS_INVOKE_MAX_REPLY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub invoke_max_reply_bytes: u64,
    /// Seconds one attempt of an operation on one object may take before it
    /// fails with RequestTimeout (and is retried like other transient
    /// failures).
    #[arg(long, env = "BATCHOPS_OPERATION_TIMEOUT_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub operation_timeout_seconds: u64,
    /// Tasks one job may have; a manifest listing more fails the job with
    /// TooManyTasks. The default is AWS's limit of 20 billion objects.
    #[arg(long, env = "BATCHOPS_MAX_TASKS_PER_JOB", default_value_t = 20_000_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tasks_per_job: u64,
    /// Jobs this process prepares at once; one at a time per account, so a
    /// huge manifest never holds up another account's job.
    #[arg(long, env = "BATCHOPS_MAX_PREPARING_JOBS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_preparing_jobs: u32,
    /// Milliseconds between heartbeats on an idle WatchJobs stream (at most
    /// an hour: proxies close quieter streams long before).
    #[arg(long, env = "BATCHOPS_WATCH_HEARTBEAT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub watch_heartbeat_ms: u64,
    /// Address of the S3 Control job API (REST-XML, for `aws s3control`,
    /// boto3 and the AWS SDKs), or `off`.
    #[arg(long, env = "BATCHOPS_S3CONTROL_LISTEN", default_value = "127.0.0.1:50052", value_parser = listen_or_off)]
    pub s3control_listen: Listen,
    /// Address of the web console (its page and JobService over gRPC-Web),
    /// or `off`.
    #[arg(long, env = "BATCHOPS_CONSOLE_LISTEN", default_value = "127.0.0.1:50053", value_parser = listen_or_off)]
    pub console_listen: Listen,
    /// S3 Control requests each account may make per second (and in a
    /// burst); more are answered with TooManyRequestsException.
    #[arg(long, env = "BATCHOPS_S3CONTROL_REQUESTS_PER_SECOND", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub s3control_requests_per_second: u32,
    /// The region S3 Control shows in job ARNs.
    #[arg(long, env = "BATCHOPS_S3CONTROL_REGION", default_value = "us-east-1")]
    pub s3control_region: String,
    /// Lambda functions that Invoke jobs may name (S3 Control's
    /// `LambdaInvoke`, or `function_arn` without an endpoint), each
    /// as FUNCTION_ARN=URL (or FUNCTION_NAME=URL), comma-separated; the URL
    /// must also be in --invoke-allowlist.
    #[arg(long, env = "BATCHOPS_INVOKE_FUNCTIONS", default_value = "")]
    pub invoke_functions: String,
    /// Address of the Prometheus endpoint (`GET /metrics`), e.g.
    /// 127.0.0.1:9464; none by default.
    #[arg(long, env = "BATCHOPS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A TOML file of API tokens and the accounts each grants; without it,
    /// every caller may act for every account.
    #[arg(long, env = "BATCHOPS_AUTH_TOKENS")]
    pub auth_tokens: Option<std::path::PathBuf>,
    /// Streams (WatchJobs, GetJobHistory, ListJobTaskResults) one caller may
    /// hold open at once; callers are told apart by token, else by IP.
    #[arg(long, env = "BATCHOPS_MAX_STREAMS_PER_CALLER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_caller: u32,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "BATCHOPS_MAX_REQUEST_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_request_bytes: u32,
    /// PEM certificate chain to serve gRPC over TLS (with --tls-key).
    #[arg(long, env = "BATCHOPS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BATCHOPS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate it signed
    /// (mutual TLS). Needs --tls-cert.
    #[arg(long, env = "BATCHOPS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Serve the API only and run no engine loops (preparer, scheduler,
    /// workers, finisher): for API-only replicas next to engine processes.
    #[arg(long, env = "BATCHOPS_NO_ENGINE")]
    pub no_engine: bool,
    /// An http(s) URL that the status changes of jobs naming no
    /// notification endpoint of their own are POSTed to (the operator's
    /// sink: not held to --invoke-allowlist); none by default.
    #[arg(long, env = "BATCHOPS_NOTIFICATION_ENDPOINT", value_parser = http_url)]
    pub notification_endpoint: Option<String>,
    /// Milliseconds one status webhook POST may take before it counts as
    /// failed (and is retried).
    #[arg(long, env = "BATCHOPS_NOTIFICATION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub notification_timeout_ms: u64,
    /// Milliseconds before the first retry of a failed status webhook; the
    /// wait doubles per failure up to 5 minutes.
    #[arg(long, env = "BATCHOPS_NOTIFICATION_RETRY_BASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub notification_retry_base_ms: u64,
    /// Milliseconds between looks for work when idle.
    #[arg(long, env = "BATCHOPS_POLL_INTERVAL_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_interval_ms: u64,
}

impl ServeConfig {
    /// The engine's tuning from these settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            max_active_jobs: self.max_active_jobs,
            task_concurrency: self.task_concurrency.max(1),
            chunk_size: self.chunk_size as usize,
            file_chunk_size: self.file_chunk_size as usize,
            chunk_slice: Duration::from_millis(self.chunk_slice_ms),
            lease: Duration::from_secs(self.lease_seconds),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            suspension_limit: Duration::from_secs(self.suspension_limit_seconds),
            task_max_attempts: self.task_max_attempts,
            retry_base_delay: Duration::from_millis(self.retry_base_delay_ms),
            retry_max_delay: Duration::from_secs(10),
            report_rows_per_file: self.report_rows_per_file,
            max_tasks_per_job: self.max_tasks_per_job,
            max_preparing_jobs: self.max_preparing_jobs as usize,
        }
    }

    /// How this process delivers status webhooks.
    pub(crate) fn webhooks(&self) -> crate::notify::webhooks::WebhookConfig {
        crate::notify::webhooks::WebhookConfig {
            region: self.s3control_region.clone(),
            timeout: Duration::from_millis(self.notification_timeout_ms),
            retry_base: Duration::from_millis(self.notification_retry_base_ms),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(self.poll_interval_ms)
                .max(Duration::from_millis(20)),
            concurrency: 8,
        }
    }

    /// The S3 Control function table.
    pub fn invoke_functions(&self) -> Result<crate::objects::invoke::Functions, ConfigError> {
        crate::objects::invoke::Functions::parse(&self.invoke_functions)
            .map_err(ConfigError::InvokeFunctions)
    }

    /// The bounds every task runs within.
    pub fn operation_limits(&self) -> OperationLimits {
        OperationLimits {
            timeout: Duration::from_secs(self.operation_timeout_seconds),
            invoke: InvokeLimits {
                max_reply_bytes: self.invoke_max_reply_bytes as usize,
            },
        }
    }

    /// The parsed invoke allowlist.
    pub fn invoke_allowlist(&self) -> Result<Allowlist, ConfigError> {
        Allowlist::parse(&self.invoke_allowlist).map_err(ConfigError::InvokeAllowlist)
    }

    /// The object store as a URL; a plain path becomes `file://` of its
    /// absolute form.
    pub fn object_store_url(&self) -> Result<String, ConfigError> {
        Ok(crate::objects::store_url(&self.object_store)?)
    }
}

/// An address to listen on, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Listen here.
    On(SocketAddr),
    /// Do not listen.
    Off,
}

/// An http(s) URL with a host, normalised.
fn http_url(value: &str) -> Result<String, String> {
    url::Url::parse(value)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .map(|url| url.to_string())
        .ok_or_else(|| format!("{value:?} is not an http(s) URL"))
}

fn listen_or_off(value: &str) -> Result<Listen, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    value
        .parse()
        .map(Listen::On)
        .map_err(|_| format!("{value:?} is neither an address (host:port) nor off"))
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--object-store` cannot be used.
    #[error("--object-store: {0}")]
    ObjectStore(#[from] crate::objects::StoreUrlError),
    /// `--invoke-allowlist` is not a list of http(s) URL prefixes.
    #[error("--invoke-allowlist: {0}")]
    InvokeAllowlist(String),
    /// `--invoke-functions` is not a list of FUNCTION=URL.
    #[error("--invoke-functions: {0}")]
    InvokeFunctions(String),
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ServeConfig;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    /// A heartbeat period is bounded, so that the time of the next one
    /// cannot overflow.
    #[test]
    fn the_watch_heartbeat_is_at_most_an_hour() {
        let parse = |value: &str| Serve::try_parse_from(["serve", "--watch-heartbeat-ms", value]);
        assert_eq!(
            parse("3600000").unwrap().config.watch_heartbeat_ms,
            3_600_000
        );
        for refused in ["3600001", "18446744073709551615", "9"] {
            let error = parse(refused).err().expect("refused");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{refused}"
            );
        }
    }
}
