//! The arguments of the client's commands, with the flags `aws s3control`
//! has where it has them.

use clap::{Args, Subcommand, ValueEnum};

/// Settings every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The batchops server to call.
    #[arg(
        long,
        env = "BATCHOPS_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// The account that owns the jobs (12 digits, as in AWS).
    #[arg(long, env = "BATCHOPS_ACCOUNT_ID", value_parser = account_id_arg)]
    pub account_id: String,
    /// API token, sent as `authorization: Bearer <token>` (servers started
    /// with --auth-tokens require one).
    #[arg(long, env = "BATCHOPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// endpoint (default: the
    /// system's roots are not used; give the server's CA).
    #[arg(long, env = "BATCHOPS_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate for servers that require mutual TLS (with
    /// --client-key).
    #[arg(long, env = "BATCHOPS_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "BATCHOPS_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// Output format: an aligned table for people, or proto3 JSON for scripts.
    #[arg(long, env = "BATCHOPS_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How a command prints what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables for people.
    Table,
    /// Proto3 JSON for scripts (one document per line for streams).
    Json,
}

/// The client subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a job (prints its id).
    CreateJob(CreateJob),
    /// Show a job's configuration, status, progress and failure reasons.
    DescribeJob(JobCommand),
    /// List the account's jobs, newest first.
    ListJobs(ListJobs),
    /// Confirm (Ready) or cancel (Cancelled) a job.
    UpdateJobStatus(UpdateJobStatus),
    /// Change a job's priority (higher runs first and may preempt).
    UpdateJobPriority(UpdateJobPriority),
    /// Replace a job's tags.
    PutJobTagging(PutJobTagging),
    /// Show a job's tags.
    GetJobTagging(JobCommand),
    /// Remove all of a job's tags.
    DeleteJobTagging(JobCommand),
    /// Follow a job to its end with a live progress bar (exit code 0 when it
    /// completes, 1 when it fails or is cancelled).
    Watch(JobCommand),
    /// Print a job's event history from the log, for audit.
    History(History),
    /// Print or download a job's completion report.
    Report(Report),
    /// Show an object's size, ETag and last-modified time, read from the
    /// object store as the server reads it (the ETag is what a manifest's
    /// `etag` pins, and what S3 Control's `Manifest.Location.ETag` needs).
    HeadObject(HeadObject),
}

/// `head-object`.
#[derive(Debug, Args)]
pub struct HeadObject {
    /// The object, as BUCKET/KEY.
    pub object: String,
    /// Where objects live (the server's --object-store).
    #[arg(
        long,
        env = "BATCHOPS_OBJECT_STORE",
        default_value = "batchops-objects"
    )]
    pub object_store: String,
    /// `table` for people, `json` for scripts (`etag`, `size`, `last_modified`).
    #[arg(long, env = "BATCHOPS_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// A command about one job.
#[derive(Debug, Args)]
pub struct JobCommand {
    /// The server and account.
    #[command(flatten)]
    pub client: ClientOptions,
    /// The job's id.
    #[arg(long)]
    pub job_id: String,
}

/// `create-job`.
#[derive(Debug, Clone, Args)]
pub struct CreateJob {
    /// The server and account.
    #[command(flatten)]
    pub client: ClientOptions,
    /// The operation as JSON (or file://path), one of:
    ///   {"compute_object_checksum": {"algorithm": "CHECKSUM_ALGORITHM_SHA256"}}
    ///       algorithms: CHECKSUM_ALGORITHM_CRC32, _CRC32C, _CRC64NVME, _SHA1,
    ///       _SHA256, _MD5 (the checksum goes into each task's result)
    ///   {"delete_object": {}}
    ///   {"put_object_copy": {"target_bucket": "backup", "target_key_prefix": "copies/"}}
    ///       optional "metadata_directive": METADATA_DIRECTIVE_COPY (default) or
    ///       METADATA_DIRECTIVE_REPLACE with "new_object_metadata"
    ///   {"invoke": {"endpoint_url": "https://hooks.example.com/batch",
    ///               "invocation_schema_version": "INVOCATION_SCHEMA_VERSION_2_0",
    ///               "user_arguments": {"k": "v"}, "timeout_seconds": 30}}
    ///       the endpoint must be in the server's --invoke-allowlist
    /// On an S3 object store only (the directory store keeps none of these):
    ///   {"put_object_tagging": {"tags": [{"key": "team", "value": "photos"}]}}
    ///       replaces each object's tag set (at most 10 tags)
    ///   {"delete_object_tagging": {}}
    ///   {"put_object_legal_hold": {"status": "LEGAL_HOLD_STATUS_ON"}}
    ///       or LEGAL_HOLD_STATUS_OFF; the bucket needs Object Lock
    ///   {"put_object_retention": {"mode": "RETENTION_MODE_GOVERNANCE",
    ///                             "retain_until": "2030-01-01T00:00:00Z",
    ///                             "bypass_governance_retention": false}}
    ///       or RETENTION_MODE_COMPLIANCE; the bucket needs Object Lock
    ///   {"put_object_acl": {"canned_acl": "CANNED_ACL_BUCKET_OWNER_FULL_CONTROL"}}
    ///       or {"access_control_policy": {"owner_id": "...", "grants": [
    ///           {"grantee": {"canonical_user_id": "..."}, "permission": "ACL_PERMISSION_READ"}]}}
    ///   {"initiate_restore_object": {"expiration_in_days": 7,
    ///                                "glacier_job_tier": "GLACIER_JOB_TIER_BULK"}}
    #[arg(long, verbatim_doc_comment, required_unless_present = "cli_input_json")]
    pub operation: Option<String>,
    /// The whole job as the JSON `aws s3control create-job --cli-input-json`
    /// takes (AccountId, Operation, Manifest or ManifestGenerator, Report,
    /// Priority, RoleArn, Tags, ...), or file://path: a job definition
    /// moves over from AWS unchanged. The job flags are then not given.
    #[arg(
        long,
        conflicts_with_all = ["operation", "manifest", "manifest_generator", "report", "tags", "role_arn"]
    )]
    pub cli_input_json: Option<String>,
    /// The manifest: `bucket/key` of a CSV manifest of Bucket,Key lines, or
    /// the Manifest message as JSON (or file://path), e.g.
    ///   {"format": "MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820",
    ///    "bucket": "photos", "key": "manifest.csv", "etag": "..."}
    /// formats: MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820,
    /// MANIFEST_FORMAT_S3_INVENTORY_REPORT_CSV_20161130.
    #[arg(
        long,
        required_unless_present_any = ["manifest_generator", "cli_input_json"],
        verbatim_doc_comment
    )]
    pub manifest: Option<String>,
    /// A manifest generator instead of a manifest, as JSON (or file://path),
    /// e.g. '{"source_bucket": "photos", "prefix": "2024/"}'.
    #[arg(long, conflicts_with = "manifest")]
    pub manifest_generator: Option<String>,
    /// The completion report as JSON (or file://path), e.g.
    ///   {"enabled": true, "bucket": "reports", "prefix": "batch",
    ///    "report_scope": "REPORT_SCOPE_ALL_TASKS"}
    /// report_scope: REPORT_SCOPE_ALL_TASKS or REPORT_SCOPE_FAILED_TASKS_ONLY.
    /// Default: no report.
    #[arg(long, verbatim_doc_comment)]
    pub report: Option<String>,
    /// Priority; higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Idempotency token: the same token returns the same job. Default: a
    /// new random token.
    #[arg(long)]
    pub client_request_token: Option<String>,
    /// A description of the job for people, at most 256 characters.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Run without waiting in Suspended for confirmation.
    #[arg(long = "no-confirmation-required", action = clap::ArgAction::SetTrue)]
    pub no_confirmation_required: bool,
    /// Wait in Suspended for `update-job-status --requested-job-status
    /// Ready` (the default).
    #[arg(long, conflicts_with = "no_confirmation_required")]
    pub confirmation_required: bool,
    /// Tags: `key=value,key=value` or a JSON list of {"key","value"}.
    #[arg(long)]
    pub tags: Option<String>,
    /// The IAM role ARN AWS would assume (`arn:aws:iam::<account>:role/<name>`):
    /// recorded with the job, for definitions moved over from AWS.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// Failure threshold as JSON, e.g. '{"minimum_tasks_run": 100,
    /// "max_failure_percent": 20}'.
    #[arg(long)]
    pub failure_threshold: Option<String>,
    /// Count instead of run: the manifest (or generator) is read and its
    /// objects counted, with their bytes where the listing or inventory has
    /// sizes; no object is touched. Waits for the count, prints the job
    /// (status DryRunComplete) and exits 0, or 1 if the dry run failed.
    #[arg(long)]
    pub dry_run: bool,
    /// An http(s) URL, in the server's --invoke-allowlist, that every status
    /// change of the job is POSTed to (EventBridge-shaped JSON, at least
    /// once, in order).
    #[arg(long)]
    pub notification_endpoint: Option<String>,
}

/// `list-jobs`.
#[derive(Debug, Args)]
pub struct ListJobs {
    /// The server and account.
    #[command(flatten)]
    pub client: ClientOptions,
    /// Only jobs in these statuses (`Active`, `Complete`, …).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub job_statuses: Vec<String>,
    /// Jobs per page asked of the server.
    #[arg(long)]
    pub max_results: Option<i32>,
    /// Continue from a page token printed by an earlier `--no-paginate` call.
    #[arg(long)]
    pub next_token: Option<String>,
    /// Fetch one page only and print its next token.
    #[arg(long)]
    pub no_paginate: bool,
}

/// `update-job-status`.
#[derive(Debug, Args)]
pub struct UpdateJobStatus {
    /// The job.
    #[command(flatten)]
    pub job: JobCommand,
    /// `Ready` to confirm a Suspended job, `Cancelled` to cancel.
    #[arg(long)]
    pub requested_job_status: String,
    /// Why, kept as the job's status update reason (at most 256 characters).
    #[arg(long, default_value = "")]
    pub status_update_reason: String,
}

/// `update-job-priority`.
#[derive(Debug, Args)]
pub struct UpdateJobPriority {
    /// The job.
    #[command(flatten)]
    pub job: JobCommand,
    /// The new priority; higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: i32,
}

/// `put-job-tagging`.
#[derive(Debug, Args)]
pub struct PutJobTagging {
    /// The job.
    #[command(flatten)]
    pub job: JobCommand,
    /// `key=value,key=value` or a JSON list of {"key","value"}; empty
    /// removes all tags.
    #[arg(long)]
    pub tags: String,
}

/// `history`.
#[derive(Debug, Args)]
pub struct History {
    /// The job.
    #[command(flatten)]
    pub job: JobCommand,
    /// Interleave each task's result with the events.
    #[arg(long)]
    pub include_task_results: bool,
}

/// `report`.
#[derive(Debug, Args)]
pub struct Report {
    /// The job.
    #[command(flatten)]
    pub job: JobCommand,
    /// Where the server writes reports (the server's --object-store), to read
    /// the report files from.
    #[arg(
        long,
        env = "BATCHOPS_OBJECT_STORE",
        default_value = "batchops-objects"
    )]
    pub object_store: String,
    /// Save manifest.json and the CSV files here instead of printing rows.
    #[arg(long)]
    pub output_dir: Option<std::path::PathBuf>,
    /// Print rows in the report's format built from the task results the
    /// server holds (no object store access needed; works for any job).
    #[arg(long, conflicts_with = "output_dir")]
    pub from_results: bool,
    /// With --from-results: failed tasks only.
    #[arg(long, requires = "from_results")]
    pub only_failed: bool,
}

/// `--account-id`: 12 digits, as AWS account ids are.
fn account_id_arg(value: &str) -> Result<String, String> {
    if crate::domain::AccountId::is_valid(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "must be 12 digits (an AWS account id), got {}",
            crate::domain::text::quoted(value)
        ))
    }
}
