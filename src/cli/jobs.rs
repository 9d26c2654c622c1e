//! The job commands (`create-job`, `describe-job`, `list-jobs`,
//! `update-job-status`, `update-job-priority`, the tagging commands and
//! `history`) and their tables.

use std::process::ExitCode;

use super::flags::{flag_text, json_flag, manifest_flag, tags_flag};
use super::{
    CliError, Client, CreateJob, History, JobCommand, ListJobs, Output, PutJobTagging,
    UpdateJobPriority, UpdateJobStatus, json, print, print_json, print_text, table,
};
use crate::proto as pb;

pub(super) async fn create_job(args: CreateJob) -> Result<ExitCode, CliError> {
    let mut request = match &args.cli_input_json {
        Some(document) => from_cli_input_json(&args, document)?,
        None => from_flags(&args)?,
    };
    request.dry_run = args.dry_run;
    if let Some(endpoint_url) = &args.notification_endpoint {
        request.notification = Some(pb::JobNotification {
            endpoint_url: endpoint_url.clone(),
        });
    }
    let mut client = Client::connect(&args.client).await?;
    let response = client.jobs.create_job(request).await?.into_inner();
    if !args.dry_run {
        return print(args.client.output, &response, |r| format!("{}\n", r.job_id));
    }
    // A server older than dry runs drops the field and makes a job that
    // would run: it is cancelled at once rather than left to run.
    if !client.describe(&response.job_id).await?.dry_run {
        client
            .jobs
            .update_job_status(pb::UpdateJobStatusRequest {
                account_id: args.client.account_id.clone(),
                job_id: response.job_id.clone(),
                requested_job_status: pb::JobStatus::Cancelled as i32,
                status_update_reason: "the server does not know dry runs".into(),
            })
            .await?;
        return Err(CliError::Usage(format!(
            "the server does not know dry runs: job {} it made instead was cancelled",
            response.job_id
        )));
    }
    // A dry run's answer is its count: wait for it, then show the job.
    let job = until_ended(&mut client, &response.job_id).await?;
    let counted = job.status == pb::JobStatus::DryRunComplete as i32;
    let response = pb::DescribeJobResponse { job: Some(job) };
    print(args.client.output, &response, |r| {
        r.job.as_ref().map(describe_table).unwrap_or_default()
    })?;
    Ok(if counted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The job once it is in a terminal status, asked for every 200 ms.
async fn until_ended(client: &mut Client, job_id: &str) -> Result<pb::JobDescriptor, CliError> {
    loop {
        let job = client.describe(job_id).await?;
        if table::is_terminal(job.status) {
            return Ok(job);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The request `aws s3control create-job --cli-input-json` would make.
fn from_cli_input_json(args: &CreateJob, document: &str) -> Result<pb::CreateJobRequest, CliError> {
    let text = flag_text("cli-input-json", document)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| CliError::Usage(format!("--cli-input-json: {error}")))?;
    let account = match value.get("AccountId").and_then(|a| a.as_str()) {
        Some(account) if account != args.client.account_id => {
            return Err(CliError::Usage(format!(
                "--cli-input-json: AccountId {account:?} is not --account-id {:?}",
                args.client.account_id
            )));
        }
        _ => args.client.account_id.clone(),
    };
    let mut request =
        crate::aws::s3control::create_job(&account, crate::aws::node::Node::Json(&value))
            .map_err(|error| CliError::Usage(format!("--cli-input-json: {error}")))?;
    if request.client_request_token.is_empty() {
        request.client_request_token = args
            .client_request_token
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    }
    Ok(request)
}

/// The request the job flags describe.
fn from_flags(args: &CreateJob) -> Result<pb::CreateJobRequest, CliError> {
    let args = args.clone();
    let operation = args
        .operation
        .as_deref()
        .ok_or_else(|| CliError::Usage("--operation is required".into()))?;
    Ok(pb::CreateJobRequest {
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
        operation: Some(json_flag("operation", operation)?),
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
        role_arn: args.role_arn.unwrap_or_default(),
        dry_run: args.dry_run,
        notification: args
            .notification_endpoint
            .map(|endpoint_url| pb::JobNotification { endpoint_url }),
    })
}

pub(super) async fn describe_job(args: JobCommand) -> Result<ExitCode, CliError> {
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
        (
            "Notifications",
            job.notification
                .as_ref()
                .map(|n| n.endpoint_url.clone())
                .unwrap_or_default(),
        ),
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
        Some(O::PutObjectTagging(op)) => {
            let tags: Vec<String> = op
                .tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect();
            format!("PutObjectTagging {}", tags.join(","))
        }
        Some(O::DeleteObjectTagging(_)) => "DeleteObjectTagging".into(),
        Some(O::PutObjectLegalHold(op)) => format!(
            "PutObjectLegalHold {}",
            table::enum_suffix(op.status().as_str_name(), "LEGAL_HOLD_STATUS_")
        ),
        Some(O::PutObjectRetention(op)) => format!(
            "PutObjectRetention {} until {}",
            table::enum_suffix(op.mode().as_str_name(), "RETENTION_MODE_"),
            op.retain_until
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        ),
        Some(O::PutObjectAcl(op)) => match &op.acl {
            Some(pb::put_object_acl_operation::Acl::CannedAcl(canned)) => format!(
                "PutObjectAcl {}",
                table::enum_suffix(
                    pb::CannedAcl::try_from(*canned)
                        .unwrap_or_default()
                        .as_str_name(),
                    "CANNED_ACL_"
                )
            ),
            Some(pb::put_object_acl_operation::Acl::AccessControlPolicy(policy)) => {
                format!("PutObjectAcl {} grants", policy.grants.len())
            }
            None => "PutObjectAcl".into(),
        },
        Some(O::InitiateRestoreObject(op)) => format!(
            "InitiateRestoreObject {} days, {}",
            op.expiration_in_days,
            table::enum_suffix(op.glacier_job_tier().as_str_name(), "GLACIER_JOB_TIER_")
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

pub(super) async fn list_jobs(args: ListJobs) -> Result<ExitCode, CliError> {
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

pub(super) async fn update_job_status(args: UpdateJobStatus) -> Result<ExitCode, CliError> {
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

pub(super) async fn update_job_priority(args: UpdateJobPriority) -> Result<ExitCode, CliError> {
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

pub(super) async fn put_job_tagging(args: PutJobTagging) -> Result<ExitCode, CliError> {
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

pub(super) async fn get_job_tagging(args: JobCommand) -> Result<ExitCode, CliError> {
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

pub(super) async fn delete_job_tagging(args: JobCommand) -> Result<ExitCode, CliError> {
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

pub(super) async fn history(args: History) -> Result<ExitCode, CliError> {
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
