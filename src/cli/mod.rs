//! The client subcommands of the `batchops` binary, named after
//! `aws s3control` (`create-job`, `describe-job`, `list-jobs`,
//! `update-job-status`, …) with the same flags where they exist, plus
//! `watch`, `history` and `report`.
//!
//! Output is a human-readable table by default and proto3 JSON with
//! `--output json` (one object per response; one per line for streams).
//! Exit codes are stable, for scripts:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`watch`: the job is Complete) |
//! | 1 | `watch`: the job ended Failed or Cancelled |
//! | 2 | bad command line or INVALID_ARGUMENT |
//! | 3 | NOT_FOUND |
//! | 4 | FAILED_PRECONDITION, ALREADY_EXISTS or ABORTED (the job's state refused it) |
//! | 5 | the server cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED, connection refused) |
//! | 6 | UNAUTHENTICATED or PERMISSION_DENIED |
//! | 7 | any other error (INTERNAL, a report that cannot be read, …) |

mod json;
mod report;
mod table;
mod watch;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::contract::code_name;
use crate::proto as pb;
use crate::proto::job_service_client::JobServiceClient;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
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
}

#[derive(Debug, Args)]
pub struct JobCommand {
    #[command(flatten)]
    pub client: ClientOptions,
    /// The job's id.
    #[arg(long)]
    pub job_id: String,
}

#[derive(Debug, Args)]
pub struct CreateJob {
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
    #[arg(long, verbatim_doc_comment)]
    pub operation: String,
    /// The manifest: `bucket/key` of a CSV manifest of Bucket,Key lines, or
    /// the Manifest message as JSON (or file://path), e.g.
    ///   {"format": "MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820",
    ///    "bucket": "photos", "key": "manifest.csv", "etag": "..."}
    /// formats: MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820,
    /// MANIFEST_FORMAT_S3_INVENTORY_REPORT_CSV_20161130.
    #[arg(
        long,
        required_unless_present = "manifest_generator",
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
    /// Failure threshold as JSON, e.g. '{"minimum_tasks_run": 100,
    /// "max_failure_percent": 20}'.
    #[arg(long)]
    pub failure_threshold: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListJobs {
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

#[derive(Debug, Args)]
pub struct UpdateJobStatus {
    #[command(flatten)]
    pub job: JobCommand,
    /// `Ready` to confirm a Suspended job, `Cancelled` to cancel.
    #[arg(long)]
    pub requested_job_status: String,
    #[arg(long, default_value = "")]
    pub status_update_reason: String,
}

#[derive(Debug, Args)]
pub struct UpdateJobPriority {
    #[command(flatten)]
    pub job: JobCommand,
    #[arg(long, allow_negative_numbers = true)]
    pub priority: i32,
}

#[derive(Debug, Args)]
pub struct PutJobTagging {
    #[command(flatten)]
    pub job: JobCommand,
    /// `key=value,key=value` or a JSON list of {"key","value"}; empty
    /// removes all tags.
    #[arg(long)]
    pub tags: String,
}

#[derive(Debug, Args)]
pub struct History {
    #[command(flatten)]
    pub job: JobCommand,
    /// Interleave each task's result with the events.
    #[arg(long)]
    pub include_task_results: bool,
}

#[derive(Debug, Args)]
pub struct Report {
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

/// Why a client command failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach batchops at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Stream(String),
    #[error("{0}")]
    Report(String),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        use tonic::Code;
        match self {
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 5,
            CliError::Rpc(status) => match status.code() {
                Code::InvalidArgument | Code::OutOfRange => 2,
                Code::NotFound => 3,
                Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => 4,
                Code::Unavailable | Code::DeadlineExceeded => 5,
                Code::Unauthenticated | Code::PermissionDenied => 6,
                _ => 7,
            },
            CliError::Stream(_) | CliError::Report(_) | CliError::Output(_) => 7,
        }
    }
}

/// Runs a client subcommand and prints its outcome; returns the exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    match execute(command).await {
        Ok(code) => code,
        // A closed pipe (`batchops history | head`) is not a failure.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("batchops: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn execute(command: ClientCommand) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::CreateJob(args) => create_job(args).await,
        ClientCommand::DescribeJob(args) => describe_job(args).await,
        ClientCommand::ListJobs(args) => list_jobs(args).await,
        ClientCommand::UpdateJobStatus(args) => update_job_status(args).await,
        ClientCommand::UpdateJobPriority(args) => update_job_priority(args).await,
        ClientCommand::PutJobTagging(args) => put_job_tagging(args).await,
        ClientCommand::GetJobTagging(args) => get_job_tagging(args).await,
        ClientCommand::DeleteJobTagging(args) => delete_job_tagging(args).await,
        ClientCommand::Watch(args) => {
            let mut client = Client::connect(&args.client).await?;
            match watch::run(&mut client, args.client.output, &args.job_id).await? {
                watch::Ending::Complete => Ok(ExitCode::SUCCESS),
                watch::Ending::Unsuccessful => Ok(ExitCode::FAILURE),
            }
        }
        ClientCommand::History(args) => history(args).await,
        ClientCommand::Report(args) => report::run(args).await.map(|()| ExitCode::SUCCESS),
    }
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

/// A connected client and the account it acts for.
pub struct Client {
    pub jobs: JobServiceClient<InterceptedService<Channel, Bearer>>,
    pub account_id: String,
}

/// Adds the API token, if any, to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Client {
    async fn connect(options: &ClientOptions) -> Result<Client, CliError> {
        let endpoint = if options.endpoint.contains("://") {
            options.endpoint.clone()
        } else {
            format!("http://{}", options.endpoint)
        };
        let failed = |reason: String| CliError::Connect {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut channel = Channel::from_shared(endpoint.clone())
            .map_err(|e| failed(e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        if endpoint.starts_with("https://") {
            channel = channel
                .tls_config(client_tls(options)?)
                .map_err(|e| failed(source_chain(&e)))?;
        }
        let channel = channel
            .connect()
            .await
            .map_err(|e| failed(source_chain(&e)))?;
        let bearer = match &options.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| CliError::Usage("--token: not a valid header value".into()))?,
            ),
            None => None,
        };
        Ok(Client {
            jobs: JobServiceClient::with_interceptor(channel, Bearer(bearer)),
            account_id: options.account_id.clone(),
        })
    }

    async fn describe(&mut self, job_id: &str) -> Result<pb::JobDescriptor, CliError> {
        let response = self
            .jobs
            .describe_job(pb::DescribeJobRequest {
                account_id: self.account_id.clone(),
                job_id: job_id.to_owned(),
            })
            .await?
            .into_inner();
        response
            .job
            .ok_or_else(|| CliError::Stream("DescribeJob returned no job".into()))
    }
}

/// TLS settings for an https:// endpoint.
fn client_tls(options: &ClientOptions) -> Result<tonic::transport::ClientTlsConfig, CliError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|error| {
            CliError::Usage(format!("--{flag}: cannot read {}: {error}", path.display()))
        })
    };
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &options.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(read("ca-cert", ca)?));
    }
    if let (Some(cert), Some(key)) = (&options.client_cert, &options.client_key) {
        tls = tls.identity(Identity::from_pem(
            read("client-cert", cert)?,
            read("client-key", key)?,
        ));
    }
    Ok(tls)
}

/// The error and its causes, `: `-joined ("transport error: connection refused").
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn print_text(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// One JSON document per line.
fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    print_text(&format!("{value}\n"))
}

/// Prints `message` as JSON, or the table `render` makes of it.
fn print<M: prost::Message + prost::Name>(
    output: Output,
    message: &M,
    render: impl FnOnce(&M) -> String,
) -> Result<ExitCode, CliError> {
    match output {
        Output::Json => print_json(&json::to_value(message))?,
        Output::Table => print_text(&render(message))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag's value, or the file a `file://path` value names (as the AWS CLI
/// reads parameters).
fn flag_text(flag: &str, value: &str) -> Result<String, CliError> {
    match value.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| CliError::Usage(format!("--{flag}: cannot read {path}: {error}"))),
        None => Ok(value.to_owned()),
    }
}

/// A message flag given as proto3 JSON.
fn json_flag<M: prost::Message + prost::Name + Default>(
    flag: &str,
    value: &str,
) -> Result<M, CliError> {
    json::parse(&flag_text(flag, value)?)
        .map_err(|problem| CliError::Usage(format!("--{flag}: {problem}")))
}

/// `--manifest`: JSON, file://, or the `bucket/key` of a Bucket,Key CSV.
fn manifest_flag(value: &str) -> Result<pb::Manifest, CliError> {
    let text = flag_text("manifest", value)?;
    if text.trim_start().starts_with('{') {
        return json_flag("manifest", &text);
    }
    let Some((bucket, key)) = text.trim().split_once('/') else {
        return Err(CliError::Usage(format!(
            "--manifest: {text:?} is neither JSON nor bucket/key"
        )));
    };
    Ok(pb::Manifest {
        format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
        fields: vec![
            pb::ManifestField::Bucket as i32,
            pb::ManifestField::Key as i32,
        ],
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        etag: String::new(),
    })
}

/// `--tags`: `key=value,…` or a JSON list of tags.
fn tags_flag(value: &str) -> Result<Vec<pb::Tag>, CliError> {
    let text = flag_text("tags", value)?;
    if text.trim_start().starts_with('[') {
        let response: pb::GetJobTaggingResponse = json::parse(&format!("{{\"tags\": {text}}}"))
            .map_err(|problem| CliError::Usage(format!("--tags: {problem}")))?;
        return Ok(response.tags);
    }
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok(pb::Tag {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }),
            None => Err(CliError::Usage(format!(
                "--tags: {pair:?} is not key=value"
            ))),
        })
        .collect()
}

async fn create_job(args: CreateJob) -> Result<ExitCode, CliError> {
    let request = pb::CreateJobRequest {
        account_id: args.client.account_id.clone(),
        client_request_token: args
            .client_request_token
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        description: args.description,
        priority: args.priority,
        confirmation_required: if args.no_confirmation_required {
            Some(false)
        } else if args.confirmation_required {
            Some(true)
        } else {
            None
        },
        manifest: args.manifest.as_deref().map(manifest_flag).transpose()?,
        operation: Some(json_flag("operation", &args.operation)?),
        report: args
            .report
            .as_deref()
            .map(|value| json_flag("report", value))
            .transpose()?,
        tags: args
            .tags
            .as_deref()
            .map(tags_flag)
            .transpose()?
            .unwrap_or_default(),
        failure_threshold: args
            .failure_threshold
            .as_deref()
            .map(|value| json_flag("failure-threshold", value))
            .transpose()?,
        manifest_generator: args
            .manifest_generator
            .as_deref()
            .map(|value| json_flag("manifest-generator", value))
            .transpose()?,
    };
    let mut client = Client::connect(&args.client).await?;
    let response = client.jobs.create_job(request).await?.into_inner();
    print(args.client.output, &response, |r| format!("{}\n", r.job_id))
}

async fn describe_job(args: JobCommand) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(&args.client).await?;
    let response = client
        .jobs
        .describe_job(pb::DescribeJobRequest {
            account_id: args.client.account_id.clone(),
            job_id: args.job_id,
        })
        .await?
        .into_inner();
    print(args.client.output, &response, |r| {
        r.job.as_ref().map(describe_table).unwrap_or_default()
    })
}

fn describe_table(job: &pb::JobDescriptor) -> String {
    let mut fields = vec![
        ("JobId", job.job_id.clone()),
        ("Description", job.description.clone()),
        ("Status", table::status_name(job.status)),
        ("Priority", job.priority.to_string()),
        (
            "ConfirmationRequired",
            job.confirmation_required.to_string(),
        ),
        ("Operation", operation_name(job.operation.as_ref())),
        ("Manifest", manifest_name(job)),
        (
            "Tasks",
            job.progress_summary
                .as_ref()
                .map(|s| {
                    format!(
                        "{} succeeded, {} failed, {} total",
                        s.number_of_tasks_succeeded,
                        s.number_of_tasks_failed,
                        s.total_number_of_tasks
                    )
                })
                .unwrap_or_default(),
        ),
        (
            "ActiveSeconds",
            job.progress_summary
                .as_ref()
                .and_then(|s| s.timers.as_ref())
                .map(|t| t.elapsed_time_in_active_seconds.to_string())
                .unwrap_or_default(),
        ),
        ("StatusUpdateReason", job.status_update_reason.clone()),
        ("SuspendedCause", job.suspended_cause.clone()),
        ("CreationTime", table::time(job.create_time.as_ref())),
        ("SuspendedTime", table::time(job.suspended_time.as_ref())),
        (
            "TerminationTime",
            table::time(job.termination_time.as_ref()),
        ),
    ];
    fields.extend(table::outcome_fields(job));
    let tags: Vec<String> = job
        .tags
        .iter()
        .map(|t| format!("{}={}", t.key, t.value))
        .collect();
    fields.push(("Tags", tags.join(",")));
    table::render_fields(&fields)
}

fn operation_name(operation: Option<&pb::Operation>) -> String {
    use pb::operation::Operation as O;
    match operation.and_then(|o| o.operation.as_ref()) {
        Some(O::ComputeObjectChecksum(op)) => format!(
            "ComputeObjectChecksum {}",
            table::enum_suffix(op.algorithm().as_str_name(), "CHECKSUM_ALGORITHM_")
        ),
        Some(O::DeleteObject(_)) => "DeleteObject".into(),
        Some(O::Invoke(op)) => format!("Invoke {}", op.endpoint_url),
        Some(O::PutObjectCopy(op)) => format!(
            "PutObjectCopy to {}/{}",
            op.target_bucket, op.target_key_prefix
        ),
        None => String::new(),
    }
}

fn manifest_name(job: &pb::JobDescriptor) -> String {
    if let Some(manifest) = &job.manifest {
        return format!("{}/{}", manifest.bucket, manifest.key);
    }
    job.manifest_generator
        .as_ref()
        .map(|g| format!("generated from {}/{}", g.source_bucket, g.prefix))
        .unwrap_or_default()
}

async fn list_jobs(args: ListJobs) -> Result<ExitCode, CliError> {
    let statuses = args
        .job_statuses
        .iter()
        .map(|name| table::parse_status(name).map(|s| s as i32))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|problem| CliError::Usage(format!("--job-statuses: {problem}")))?;
    let mut client = Client::connect(&args.client).await?;
    let mut page_token = args.next_token.clone().unwrap_or_default();
    let mut jobs = Vec::new();
    let next_token = loop {
        let page = client
            .jobs
            .list_jobs(pb::ListJobsRequest {
                account_id: args.client.account_id.clone(),
                statuses: statuses.clone(),
                page_size: args.max_results.unwrap_or(0),
                page_token: page_token.clone(),
            })
            .await?
            .into_inner();
        jobs.extend(page.jobs);
        if args.no_paginate || page.next_page_token.is_empty() {
            break page.next_page_token;
        }
        page_token = page.next_page_token;
    };
    let response = pb::ListJobsResponse {
        jobs,
        next_page_token: next_token,
    };
    print(args.client.output, &response, |r| {
        let rows: Vec<Vec<String>> = r
            .jobs
            .iter()
            .map(|job| {
                vec![
                    job.job_id.clone(),
                    table::status_name(job.status),
                    job.priority.to_string(),
                    table::progress(job.progress_summary.as_ref()),
                    table::time(job.create_time.as_ref()),
                    job.description.clone(),
                ]
            })
            .collect();
        let mut text = table::render(
            &[
                "JOB ID",
                "STATUS",
                "PRIORITY",
                "SUCCEEDED/FAILED/TOTAL",
                "CREATED",
                "DESCRIPTION",
            ],
            &rows,
        );
        if !r.next_page_token.is_empty() {
            text.push_str(&format!("NextToken: {}\n", r.next_page_token));
        }
        text
    })
}

async fn update_job_status(args: UpdateJobStatus) -> Result<ExitCode, CliError> {
    let requested = table::parse_status(&args.requested_job_status)
        .map_err(|problem| CliError::Usage(format!("--requested-job-status: {problem}")))?;
    let mut client = Client::connect(&args.job.client).await?;
    let response = client
        .jobs
        .update_job_status(pb::UpdateJobStatusRequest {
            account_id: args.job.client.account_id.clone(),
            job_id: args.job.job_id,
            requested_job_status: requested as i32,
            status_update_reason: args.status_update_reason,
        })
        .await?
        .into_inner();
    print(args.job.client.output, &response, |r| {
        table::render_fields(&[
            ("JobId", r.job_id.clone()),
            ("Status", table::status_name(r.status)),
            ("StatusUpdateReason", r.status_update_reason.clone()),
        ])
    })
}

async fn update_job_priority(args: UpdateJobPriority) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(&args.job.client).await?;
    let response = client
        .jobs
        .update_job_priority(pb::UpdateJobPriorityRequest {
            account_id: args.job.client.account_id.clone(),
            job_id: args.job.job_id,
            priority: args.priority,
        })
        .await?
        .into_inner();
    print(args.job.client.output, &response, |r| {
        table::render_fields(&[
            ("JobId", r.job_id.clone()),
            ("Priority", r.priority.to_string()),
        ])
    })
}

fn tags_table(tags: &[pb::Tag]) -> String {
    let rows: Vec<Vec<String>> = tags
        .iter()
        .map(|t| vec![t.key.clone(), t.value.clone()])
        .collect();
    table::render(&["KEY", "VALUE"], &rows)
}

async fn put_job_tagging(args: PutJobTagging) -> Result<ExitCode, CliError> {
    let tags = tags_flag(&args.tags)?;
    let mut client = Client::connect(&args.job.client).await?;
    let response = client
        .jobs
        .put_job_tagging(pb::PutJobTaggingRequest {
            account_id: args.job.client.account_id.clone(),
            job_id: args.job.job_id,
            tags,
        })
        .await?
        .into_inner();
    print(args.job.client.output, &response, |r| tags_table(&r.tags))
}

async fn get_job_tagging(args: JobCommand) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(&args.client).await?;
    let response = client
        .jobs
        .get_job_tagging(pb::GetJobTaggingRequest {
            account_id: args.client.account_id.clone(),
            job_id: args.job_id,
        })
        .await?
        .into_inner();
    print(args.client.output, &response, |r| tags_table(&r.tags))
}

async fn delete_job_tagging(args: JobCommand) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(&args.client).await?;
    let response = client
        .jobs
        .delete_job_tagging(pb::DeleteJobTaggingRequest {
            account_id: args.client.account_id.clone(),
            job_id: args.job_id,
        })
        .await?
        .into_inner();
    print(args.client.output, &response, |r| tags_table(&r.tags))
}

async fn history(args: History) -> Result<ExitCode, CliError> {
    use futures::StreamExt;
    let output = args.job.client.output;
    let mut client = Client::connect(&args.job.client).await?;
    let mut stream = client
        .jobs
        .get_job_history(pb::GetJobHistoryRequest {
            account_id: args.job.client.account_id.clone(),
            job_id: args.job.job_id,
            after_sequence: 0,
            include_task_results: args.include_task_results,
        })
        .await?
        .into_inner();
    if output == Output::Table {
        print_text(&format!(
            "{:<4} {:<9} {:<21} {:<20} DETAIL\n",
            "SEQ", "POSITION", "TIME", "EVENT"
        ))?;
    }
    while let Some(item) = stream.next().await {
        let item = item?;
        match output {
            Output::Json => print_json(&json::to_value(&item))?,
            Output::Table => print_text(&history_line(&item))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One history row in fixed-width columns (rows stream, so widths cannot
/// adapt to them).
fn history_line(item: &pb::GetJobHistoryResponse) -> String {
    use pb::job_event::Event;
    if let Some(event) = &item.event {
        let detail = match &event.event {
            Some(Event::JobCreated(created)) => created
                .job
                .as_ref()
                .map(|job| operation_name(job.operation.as_ref()))
                .unwrap_or_default(),
            Some(Event::StatusChanged(change)) => table::status_change(change),
            Some(Event::PriorityChanged(change)) => {
                format!("{} -> {}", change.previous_priority, change.priority)
            }
            Some(Event::TagsChanged(tags)) => tags
                .tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect::<Vec<_>>()
                .join(","),
            Some(Event::ReportWritten(written)) => written
                .location
                .as_ref()
                .map(|l| format!("{}/{}", l.bucket, l.manifest_key))
                .unwrap_or_default(),
            Some(Event::ReportFailed(failed)) => failed
                .failure_reason
                .as_ref()
                .map(|r| format!("{}: {}", r.failure_code, r.failure_reason))
                .unwrap_or_default(),
            None => String::new(),
        };
        return format!(
            "{:<4} {:<9} {:<21} {:<20} {detail}\n",
            event.sequence,
            event.position,
            table::time(event.event_time.as_ref()),
            event.event_type,
        );
    }
    if let Some(result) = &item.task_result {
        return format!(
            "{:<4} {:<9} {:<21} {:<20} task {} {}/{} {} {} {}\n",
            "",
            "",
            "",
            "TaskResult",
            result.task_number,
            result.bucket,
            result.key,
            table::enum_suffix(result.task_status().as_str_name(), "TASK_STATUS_")
                .to_ascii_lowercase(),
            result.http_status_code,
            result.error_code,
        );
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_flag_may_be_bucket_slash_key() {
        let manifest = manifest_flag("photos/lists/manifest.csv").unwrap();
        assert_eq!(manifest.bucket, "photos");
        assert_eq!(manifest.key, "lists/manifest.csv");
        assert_eq!(
            manifest.format,
            pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32
        );
        assert!(manifest_flag("no-slash").is_err());
        let json = manifest_flag(r#"{"bucket": "b", "key": "k", "etag": "e"}"#).unwrap();
        assert_eq!(json.etag, "e");
    }

    #[test]
    fn tags_may_be_pairs_or_json() {
        let pairs = tags_flag("team=data, env=prod").unwrap();
        let json =
            tags_flag(r#"[{"key":"team","value":"data"},{"key":"env","value":"prod"}]"#).unwrap();
        assert_eq!(pairs, json);
        assert!(tags_flag("").unwrap().is_empty());
        assert!(matches!(tags_flag("novalue"), Err(CliError::Usage(_))));
    }

    #[test]
    fn grpc_codes_map_to_documented_exit_codes() {
        let code = |code| CliError::Rpc(tonic::Status::new(code, "x")).exit_code();
        assert_eq!(code(tonic::Code::InvalidArgument), 2);
        assert_eq!(code(tonic::Code::NotFound), 3);
        assert_eq!(code(tonic::Code::FailedPrecondition), 4);
        assert_eq!(code(tonic::Code::Unavailable), 5);
        assert_eq!(code(tonic::Code::PermissionDenied), 6);
        assert_eq!(code(tonic::Code::Internal), 7);
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
