//! Domain values as the contract's messages: a job as its descriptor and
//! list row, statuses, tags, task results and times.

use chrono::{DateTime, Utc};

use crate::domain::{
    ChecksumAlgorithm, ErrorSummary, FailureReason, GeneratorSpec, InvocationSchema, Job,
    JobStatus, ManifestField, ManifestFormat, ManifestSource, ManifestSpec, MetadataDirective,
    ObjectLocation, Operation, ReportScope, ReportSpec, Tag, TaskResult, TaskRow, UserAction,
};
use crate::proto as pb;

/// A status as the contract's enum.
pub(crate) fn status_to_proto(status: JobStatus) -> pb::JobStatus {
    use pb::JobStatus as P;
    match status {
        JobStatus::New => P::New,
        JobStatus::Preparing => P::Preparing,
        JobStatus::Suspended => P::Suspended,
        JobStatus::Ready => P::Ready,
        JobStatus::Active => P::Active,
        JobStatus::Pausing => P::Pausing,
        JobStatus::Paused => P::Paused,
        JobStatus::Completing => P::Completing,
        JobStatus::Complete => P::Complete,
        JobStatus::Cancelling => P::Cancelling,
        JobStatus::Cancelled => P::Cancelled,
        JobStatus::Failing => P::Failing,
        JobStatus::Failed => P::Failed,
        JobStatus::DryRunComplete => P::DryRunComplete,
    }
}

/// The domain status of a contract enum value; `None` for UNSPECIFIED and
/// values this build does not know.
pub(crate) fn status_from_proto(value: i32) -> Option<JobStatus> {
    JobStatus::ALL
        .into_iter()
        .find(|status| status_to_proto(*status) as i32 == value)
}

/// A status's one name (`Active`, `DryRunComplete`), the domain's, as the
/// CLI, the console and S3 Control show it; `None` as for
/// [`status_from_proto`].
pub(crate) fn status_name(value: i32) -> Option<&'static str> {
    status_from_proto(value).map(JobStatus::as_str)
}

/// Tags as the contract's messages.
pub(crate) fn tags_to_proto(tags: &[Tag]) -> Vec<pb::Tag> {
    tags.iter()
        .map(|t| pb::Tag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// A time as a protobuf Timestamp.
pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn manifest_to_proto(spec: &ManifestSpec) -> pb::Manifest {
    pb::Manifest {
        format: match spec.format {
            ManifestFormat::S3BatchOperationsCsv20180820 => {
                pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32
            }
            ManifestFormat::S3InventoryReportCsv20161130 => {
                pb::ManifestFormat::S3InventoryReportCsv20161130 as i32
            }
        },
        fields: spec
            .fields
            .iter()
            .map(|field| {
                (match field {
                    ManifestField::Ignore => pb::ManifestField::Ignore,
                    ManifestField::Bucket => pb::ManifestField::Bucket,
                    ManifestField::Key => pb::ManifestField::Key,
                    ManifestField::VersionId => pb::ManifestField::VersionId,
                }) as i32
            })
            .collect(),
        bucket: spec.location.bucket.clone(),
        key: spec.location.key.clone(),
        etag: spec.etag.clone().unwrap_or_default(),
        object_version_id: spec.version_id.clone().unwrap_or_default(),
    }
}

fn generator_to_proto(spec: &GeneratorSpec) -> pb::ManifestGenerator {
    pb::ManifestGenerator {
        source_bucket: spec.source_bucket.clone(),
        prefix: spec.prefix.clone(),
        key_name_constraint: Some(pb::KeyNameConstraint {
            match_any_prefix: spec.match_any_prefix.clone(),
            match_any_suffix: spec.match_any_suffix.clone(),
            match_any_substring: spec.match_any_substring.clone(),
        }),
        object_size_greater_than_bytes: spec.size_greater_than,
        object_size_less_than_bytes: spec.size_less_than,
        created_after: spec.created_after.map(timestamp),
        created_before: spec.created_before.map(timestamp),
    }
}

/// A job's operation as the contract's message.
pub(crate) fn operation_to_proto(operation: &Operation) -> pb::Operation {
    use super::object_state;
    use pb::operation::Operation as O;
    let operation = match operation {
        Operation::ComputeObjectChecksum { algorithm } => {
            O::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation {
                algorithm: (match algorithm {
                    ChecksumAlgorithm::Crc32 => pb::ChecksumAlgorithm::Crc32,
                    ChecksumAlgorithm::Crc32c => pb::ChecksumAlgorithm::Crc32c,
                    ChecksumAlgorithm::Crc64Nvme => pb::ChecksumAlgorithm::Crc64nvme,
                    ChecksumAlgorithm::Sha1 => pb::ChecksumAlgorithm::Sha1,
                    ChecksumAlgorithm::Sha256 => pb::ChecksumAlgorithm::Sha256,
                    ChecksumAlgorithm::Md5 => pb::ChecksumAlgorithm::Md5,
                }) as i32,
            })
        }
        Operation::DeleteObject => O::DeleteObject(pb::DeleteObjectOperation {}),
        Operation::Invoke(spec) => O::Invoke(pb::InvokeOperation {
            endpoint_url: spec.endpoint_url.clone(),
            invocation_schema_version: (match spec.schema {
                InvocationSchema::V1 => pb::InvocationSchemaVersion::InvocationSchemaVersion10,
                InvocationSchema::V2 => pb::InvocationSchemaVersion::InvocationSchemaVersion20,
            }) as i32,
            user_arguments: spec.user_arguments.clone().into_iter().collect(),
            timeout_seconds: (spec.timeout_millis / 1000) as u32,
            function_arn: spec.function_arn.clone().unwrap_or_default(),
        }),
        Operation::PutObjectCopy(spec) => O::PutObjectCopy(pb::PutObjectCopyOperation {
            target_bucket: spec.target_bucket.clone(),
            target_key_prefix: spec.target_key_prefix.clone(),
            metadata_directive: (match spec.metadata {
                MetadataDirective::Copy => pb::MetadataDirective::Copy,
                MetadataDirective::Replace(_) => pb::MetadataDirective::Replace,
            }) as i32,
            new_object_metadata: match &spec.metadata {
                MetadataDirective::Copy => None,
                MetadataDirective::Replace(metadata) => Some(pb::ObjectMetadata {
                    content_type: metadata.content_type.clone().unwrap_or_default(),
                    cache_control: metadata.cache_control.clone().unwrap_or_default(),
                    user_metadata: metadata.user_metadata.clone().into_iter().collect(),
                }),
            },
        }),
        Operation::PutObjectTagging { tags } => O::PutObjectTagging(object_state::tagging(tags)),
        Operation::DeleteObjectTagging => {
            O::DeleteObjectTagging(pb::DeleteObjectTaggingOperation {})
        }
        Operation::PutObjectLegalHold { status } => {
            O::PutObjectLegalHold(object_state::legal_hold(*status))
        }
        Operation::PutObjectRetention(spec) => O::PutObjectRetention(object_state::retention(spec)),
        Operation::PutObjectAcl(spec) => O::PutObjectAcl(object_state::acl(spec)),
        Operation::InitiateRestoreObject(spec) => {
            O::InitiateRestoreObject(object_state::restore(spec))
        }
    };
    pb::Operation {
        operation: Some(operation),
    }
}

fn report_to_proto(report: Option<&ReportSpec>) -> pb::JobReport {
    match report {
        None => pb::JobReport::default(),
        Some(report) => pb::JobReport {
            enabled: true,
            bucket: report.bucket.clone(),
            prefix: report.prefix.clone(),
            report_scope: (match report.scope {
                ReportScope::AllTasks => pb::ReportScope::AllTasks,
                ReportScope::FailedTasksOnly => pb::ReportScope::FailedTasksOnly,
            }) as i32,
        },
    }
}

pub(crate) fn failure_reasons_to_proto(reasons: &[FailureReason]) -> Vec<pb::FailureReason> {
    reasons
        .iter()
        .map(|r| pb::FailureReason {
            failure_code: r.failure_code.clone(),
            failure_reason: r.failure_reason.clone(),
        })
        .collect()
}

fn progress_to_proto(job: &Job, now: DateTime<Utc>) -> pb::JobProgressSummary {
    pb::JobProgressSummary {
        total_number_of_tasks: job.progress.total,
        number_of_tasks_succeeded: job.progress.succeeded,
        number_of_tasks_failed: job.progress.failed,
        timers: Some(pb::JobTimers {
            elapsed_time_in_active_seconds: job.elapsed_active_seconds(now),
        }),
        total_object_bytes: job.progress.total_bytes,
    }
}

/// The whole descriptor of a job as of `now` (for the Active timer).
pub(crate) fn job_to_proto(job: &Job, now: DateTime<Utc>) -> pb::JobDescriptor {
    pb::JobDescriptor {
        report_location: job.report_location.as_ref().map(report_location_to_proto),
        job_id: job.id.to_string(),
        account_id: job.spec.account_id.0.clone(),
        description: job.spec.description.clone(),
        status: status_to_proto(job.status) as i32,
        priority: job.priority,
        confirmation_required: job.spec.confirmation_required,
        progress_summary: Some(progress_to_proto(job, now)),
        failure_reasons: failure_reasons_to_proto(&job.failure_reasons),
        status_update_reason: job.status_update_reason.clone().unwrap_or_default(),
        suspended_time: job.suspended_time.map(timestamp),
        suspended_cause: job.suspended_cause.clone().unwrap_or_default(),
        create_time: Some(timestamp(job.created_at)),
        termination_time: job.termination_time.map(timestamp),
        manifest: match &job.spec.manifest {
            ManifestSource::Manifest(manifest) => Some(manifest_to_proto(manifest)),
            ManifestSource::Generator(_) => None,
        },
        manifest_generator: match &job.spec.manifest {
            ManifestSource::Manifest(_) => None,
            ManifestSource::Generator(generator) => Some(generator_to_proto(generator)),
        },
        operation: Some(operation_to_proto(&job.spec.operation)),
        report: Some(report_to_proto(job.spec.report.as_ref())),
        tags: tags_to_proto(&job.tags),
        failure_threshold: Some(pb::FailureThreshold {
            minimum_tasks_run: Some(job.spec.failure_threshold.minimum_tasks_run),
            max_failure_percent: Some(job.spec.failure_threshold.max_failure_percent),
        }),
        version: job.version as i64,
        role_arn: job.spec.role_arn.clone().unwrap_or_default(),
        allowed_actions: crate::domain::allowed_actions(job, now)
            .into_iter()
            .map(|action| {
                (match action {
                    UserAction::Confirm => pb::JobAction::Confirm,
                    UserAction::Cancel => pb::JobAction::Cancel,
                    UserAction::ChangePriority => pb::JobAction::UpdatePriority,
                    UserAction::ReplaceTags => pb::JobAction::UpdateTags,
                }) as i32
            })
            .collect(),
        error_summaries: errors_to_proto(&job.errors),
        other_codes_failed_tasks: job.errors.other_codes_failed,
        dry_run: job.spec.dry_run,
        notification: job
            .spec
            .notification_endpoint
            .as_ref()
            .map(|url| pb::JobNotification {
                endpoint_url: url.clone(),
            }),
    }
}

fn errors_to_proto(errors: &ErrorSummary) -> Vec<pb::ErrorCodeSummary> {
    errors
        .codes
        .iter()
        .map(|(code, failures)| pb::ErrorCodeSummary {
            error_code: code.clone(),
            failed_tasks: failures.failed,
            samples: failures
                .samples
                .iter()
                .map(|sample| pb::ErrorSample {
                    task_number: sample.task_number,
                    bucket: sample.bucket.clone(),
                    key: sample.key.clone(),
                    version_id: sample.version_id.clone().unwrap_or_default(),
                    message: sample.message.clone(),
                })
                .collect(),
        })
        .collect()
}

/// A job's ListJobs row as of `now`.
pub(crate) fn job_to_list_proto(job: &Job, now: DateTime<Utc>) -> pb::JobListDescriptor {
    pb::JobListDescriptor {
        job_id: job.id.to_string(),
        description: job.spec.description.clone(),
        status: status_to_proto(job.status) as i32,
        priority: job.priority,
        create_time: Some(timestamp(job.created_at)),
        termination_time: job.termination_time.map(timestamp),
        progress_summary: Some(progress_to_proto(job, now)),
        dry_run: job.spec.dry_run,
    }
}

pub(crate) fn report_location_to_proto(location: &ObjectLocation) -> pb::ReportLocation {
    pb::ReportLocation {
        bucket: location.bucket.clone(),
        manifest_key: location.key.clone(),
    }
}

/// One task result as the API shows it.
pub(crate) fn task_result_to_proto(object: &TaskRow, result: &TaskResult) -> pb::TaskResult {
    pb::TaskResult {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        version_id: object.version_id.clone().unwrap_or_default(),
        task_status: if result.succeeded {
            pb::TaskStatus::Succeeded
        } else {
            pb::TaskStatus::Failed
        } as i32,
        http_status_code: result.http_status_code,
        error_code: result.error_code.clone().unwrap_or_default(),
        result_message: result.result_message.clone().unwrap_or_default(),
        task_number: result.task_number,
    }
}
