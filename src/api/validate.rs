//! Requests into domain values. Input is validated here: `*_UNSPECIFIED`
//! and unknown enum values, bad UUIDs and out-of-range values are refused
//! with INVALID_ARGUMENT naming the field. (Domain values into the
//! contract's messages: [`crate::contract`].)

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

mod object_state;

use super::ApiError;
use crate::domain::text::quoted;
use crate::domain::{
    AccountId, BucketGrant, ChecksumAlgorithm, CopySpec, FailureThreshold, GeneratorSpec,
    InvocationSchema, InvokeSpec, JobId, JobSpec, JobStatus, ManifestField, ManifestFormat,
    ManifestSource, ManifestSpec, MetadataDirective, ObjectLocation, ObjectMetadata, Operation,
    ReportScope, ReportSpec, Tag,
};
use crate::objects::{
    self,
    invoke::{Allowlist, Functions},
    manifest,
};
use crate::proto as pb;

/// Tags a job may carry.
pub const MAX_TAGS: usize = 50;
/// The largest ListJobs page.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// The ListJobs page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i32 = 100;

type Result<T> = std::result::Result<T, ApiError>;

/// An account id in AWS's form: 12 digits. A typo must not silently act
/// for another account.
pub fn account_id(value: &str) -> Result<AccountId> {
    if AccountId::is_valid(value) {
        Ok(AccountId(value.to_owned()))
    } else {
        Err(ApiError::invalid(
            "account_id",
            format!(
                "must be 12 digits (an AWS account id), got {}",
                quoted(value)
            ),
        ))
    }
}

/// The `job_id` field as a job id.
pub fn job_id(value: &str) -> Result<JobId> {
    job_id_field("job_id", value)
}

/// A job id in the field `field`; a bad one is quoted briefly, never whole.
pub fn job_id_field(field: &str, value: &str) -> Result<JobId> {
    uuid::Uuid::parse_str(value)
        .map(JobId)
        .map_err(|_| ApiError::invalid(field, format!("{} is not a UUID", quoted(value))))
}

/// ListJobTaskResults' `error_code` filter: absent when empty.
pub fn error_code_filter(value: &str) -> Result<Option<String>> {
    text("error_code", value, 64)?;
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// GetJobReportFile's `key`.
pub fn report_file_key(value: &str) -> Result<&str> {
    if value.is_empty() {
        return Err(ApiError::invalid("key", "is required"));
    }
    if value.len() > 1024 {
        return Err(ApiError::invalid("key", "longer than 1024 bytes"));
    }
    text("key", value, 1024)?;
    Ok(value)
}

fn text(field: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("longer than {max_chars} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::invalid(field, "contains control characters"));
    }
    Ok(())
}

fn optional_reason(field: &str, value: &str) -> Result<Option<String>> {
    text(field, value, 256)?;
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// The optional `status_update_reason`: at most 256 characters.
pub fn status_update_reason(value: &str) -> Result<Option<String>> {
    optional_reason("status_update_reason", value)
}

/// A priority: non-negative.
pub fn priority(value: i32) -> Result<i32> {
    if value < 0 {
        return Err(ApiError::invalid(
            "priority",
            format!("must be ≥ 0, got {value}"),
        ));
    }
    Ok(value)
}

/// The domain status of a proto enum value, refusing UNSPECIFIED and unknown values.
pub fn job_status(field: &str, value: i32) -> Result<JobStatus> {
    if value == pb::JobStatus::Unspecified as i32 {
        return Err(ApiError::invalid(field, "must be set"));
    }
    crate::contract::status_from_proto(value)
        .ok_or_else(|| ApiError::invalid(field, format!("unknown value {value}")))
}

/// Tags: at most 50, keys 1–128 characters and unique, values at most 256.
pub fn tags(values: &[pb::Tag]) -> Result<Vec<Tag>> {
    if values.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", values.len()),
        ));
    }
    let mut tags: Vec<Tag> = Vec::with_capacity(values.len());
    for (i, tag) in values.iter().enumerate() {
        let field = format!("tags[{i}]");
        if tag.key.is_empty() || tag.key.chars().count() > 128 {
            return Err(ApiError::invalid(
                format!("{field}.key"),
                "must be 1–128 characters",
            ));
        }
        text(&format!("{field}.key"), &tag.key, 128)?;
        text(&format!("{field}.value"), &tag.value, 256)?;
        if tags.iter().any(|t| t.key == tag.key) {
            return Err(ApiError::invalid(
                format!("{field}.key"),
                format!("duplicate key {}", quoted(&tag.key)),
            ));
        }
        tags.push(Tag {
            key: tag.key.clone(),
            value: tag.value.clone(),
        });
    }
    Ok(tags)
}

fn bucket(field: &str, value: &str) -> Result<String> {
    if objects::is_valid_bucket(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(
            field,
            "must be a bucket name: 3–63 lowercase letters, digits, '.', '-' or '_'",
        ))
    }
}

/// A prefix that keys are appended to: at most 512 bytes, relative, and
/// every segment but a last empty one (`photos/`) a proper key segment: not
/// empty (`a//b`), not `.` or `..`, without backslashes or control
/// characters. Checked here so that a job never fails only after its work.
fn key_prefix(field: &str, prefix: &str) -> Result<()> {
    let segments: Vec<&str> = prefix.split('/').collect();
    let inner = &segments[..segments.len() - 1];
    let valid = prefix.len() <= 512
        && !prefix.starts_with('/')
        && !prefix.contains('\\')
        && !prefix.chars().any(char::is_control)
        && inner.iter().all(|s| !s.is_empty())
        && segments.iter().all(|s| *s != "." && *s != "..");
    if valid || prefix.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be at most 512 bytes, relative, without empty, '.' or '..' segments, backslashes or control characters",
        ))
    }
}

fn manifest_source(request: &pb::CreateJobRequest) -> Result<ManifestSource> {
    match (&request.manifest, &request.manifest_generator) {
        (Some(manifest), None) => self::manifest(manifest).map(ManifestSource::Manifest),
        (None, Some(generator)) => manifest_generator(generator).map(ManifestSource::Generator),
        (None, None) => Err(ApiError::invalid(
            "manifest",
            "is required (or manifest_generator)",
        )),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "manifest_generator",
            "cannot be given together with manifest",
        )),
    }
}

fn manifest_generator(value: &pb::ManifestGenerator) -> Result<GeneratorSpec> {
    const FIELD: &str = "manifest_generator";
    let source_bucket = bucket(&format!("{FIELD}.source_bucket"), &value.source_bucket)?;
    let pattern_list = |name: &str, patterns: &[String]| -> Result<Vec<String>> {
        let field = format!("{FIELD}.key_name_constraint.{name}");
        if patterns.len() > 20 {
            return Err(ApiError::invalid(field, "at most 20 entries"));
        }
        for pattern in patterns {
            if pattern.is_empty() || pattern.len() > 1024 {
                return Err(ApiError::invalid(field, "entries must be 1–1024 bytes"));
            }
            text(&field, pattern, 1024)?;
        }
        Ok(patterns.to_vec())
    };
    let constraint = value.key_name_constraint.clone().unwrap_or_default();
    if value.prefix.len() > 1024 {
        return Err(ApiError::invalid(
            format!("{FIELD}.prefix"),
            "at most 1024 bytes",
        ));
    }
    text(&format!("{FIELD}.prefix"), &value.prefix, 1024)?;
    let time =
        |field: &str, value: &Option<prost_types::Timestamp>| -> Result<Option<DateTime<Utc>>> {
            value
                .as_ref()
                .map(|t| {
                    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).ok_or_else(|| {
                        ApiError::invalid(format!("{FIELD}.{field}"), "is not a valid time")
                    })
                })
                .transpose()
        };
    Ok(GeneratorSpec {
        source_bucket,
        prefix: value.prefix.clone(),
        match_any_prefix: pattern_list("match_any_prefix", &constraint.match_any_prefix)?,
        match_any_suffix: pattern_list("match_any_suffix", &constraint.match_any_suffix)?,
        match_any_substring: pattern_list("match_any_substring", &constraint.match_any_substring)?,
        size_greater_than: value.object_size_greater_than_bytes,
        size_less_than: value.object_size_less_than_bytes,
        created_after: time("created_after", &value.created_after)?,
        created_before: time("created_before", &value.created_before)?,
    })
}

fn manifest(value: &pb::Manifest) -> Result<ManifestSpec> {
    let format = match pb::ManifestFormat::try_from(value.format) {
        Ok(pb::ManifestFormat::S3BatchOperationsCsv20180820) => {
            ManifestFormat::S3BatchOperationsCsv20180820
        }
        Ok(pb::ManifestFormat::S3InventoryReportCsv20161130) => {
            if !value.fields.is_empty() {
                return Err(ApiError::invalid(
                    "manifest.fields",
                    "must be empty for inventory reports (their fileSchema names the columns)",
                ));
            }
            ManifestFormat::S3InventoryReportCsv20161130
        }
        Ok(pb::ManifestFormat::Unspecified) => {
            return Err(ApiError::invalid("manifest.format", "must be set"));
        }
        Err(_) => {
            return Err(ApiError::invalid(
                "manifest.format",
                format!("unknown value {}", value.format),
            ));
        }
    };
    if value.fields.len() > 8 {
        return Err(ApiError::invalid("manifest.fields", "at most 8 fields"));
    }
    let fields = value
        .fields
        .iter()
        .enumerate()
        .map(|(i, field)| match pb::ManifestField::try_from(*field) {
            Ok(pb::ManifestField::Ignore) => Ok(ManifestField::Ignore),
            Ok(pb::ManifestField::Bucket) => Ok(ManifestField::Bucket),
            Ok(pb::ManifestField::Key) => Ok(ManifestField::Key),
            Ok(pb::ManifestField::VersionId) => Ok(ManifestField::VersionId),
            Ok(pb::ManifestField::Unspecified) | Err(_) => Err(ApiError::invalid(
                format!("manifest.fields[{i}]"),
                format!("must be IGNORE, BUCKET, KEY or VERSION_ID, got {field}"),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    manifest::validate_fields(&fields)
        .map_err(|error| ApiError::invalid("manifest.fields", error.to_string()))?;
    let bucket = bucket("manifest.bucket", &value.bucket)?;
    objects::object_path(&bucket, &value.key).map_err(|_| {
        ApiError::invalid(
            "manifest.key",
            "must be a key of 1–1024 bytes inside its bucket",
        )
    })?;
    text("manifest.etag", &value.etag, 1024)?;
    text("manifest.object_version_id", &value.object_version_id, 1024)?;
    Ok(ManifestSpec {
        format,
        fields,
        location: ObjectLocation {
            bucket,
            key: value.key.clone(),
        },
        etag: (!value.etag.is_empty()).then(|| value.etag.trim_matches('"').to_owned()),
        version_id: (!value.object_version_id.is_empty()).then(|| value.object_version_id.clone()),
    })
}

fn operation(value: Option<&pb::Operation>, allowlist: &Allowlist) -> Result<Operation> {
    use pb::operation::Operation as O;
    let missing = || ApiError::invalid("operation", "exactly one operation is required");
    match value
        .and_then(|op| op.operation.as_ref())
        .ok_or_else(missing)?
    {
        O::ComputeObjectChecksum(checksum) => {
            let algorithm = match pb::ChecksumAlgorithm::try_from(checksum.algorithm) {
                Ok(pb::ChecksumAlgorithm::Crc32) => ChecksumAlgorithm::Crc32,
                Ok(pb::ChecksumAlgorithm::Crc32c) => ChecksumAlgorithm::Crc32c,
                Ok(pb::ChecksumAlgorithm::Crc64nvme) => ChecksumAlgorithm::Crc64Nvme,
                Ok(pb::ChecksumAlgorithm::Sha1) => ChecksumAlgorithm::Sha1,
                Ok(pb::ChecksumAlgorithm::Sha256) => ChecksumAlgorithm::Sha256,
                Ok(pb::ChecksumAlgorithm::Md5) => ChecksumAlgorithm::Md5,
                Ok(pb::ChecksumAlgorithm::Unspecified) | Err(_) => {
                    return Err(ApiError::invalid(
                        "operation.compute_object_checksum.algorithm",
                        format!(
                            "must be a CHECKSUM_ALGORITHM_* value, got {}",
                            checksum.algorithm
                        ),
                    ));
                }
            };
            Ok(Operation::ComputeObjectChecksum { algorithm })
        }
        O::DeleteObject(_) => Ok(Operation::DeleteObject),
        O::Invoke(invoke) => invoke_spec(invoke, allowlist).map(Operation::Invoke),
        O::PutObjectCopy(copy) => copy_spec(copy).map(Operation::PutObjectCopy),
        O::PutObjectTagging(tagging) => object_state::put_object_tagging(tagging),
        O::DeleteObjectTagging(_) => Ok(Operation::DeleteObjectTagging),
        O::PutObjectLegalHold(hold) => object_state::put_object_legal_hold(hold),
        O::PutObjectRetention(retention) => {
            object_state::put_object_retention(retention, Utc::now())
        }
        O::PutObjectAcl(acl) => object_state::put_object_acl(acl),
        O::InitiateRestoreObject(restore) => object_state::initiate_restore_object(restore),
    }
}

fn copy_spec(value: &pb::PutObjectCopyOperation) -> Result<CopySpec> {
    const FIELD: &str = "operation.put_object_copy";
    let target_bucket = bucket(&format!("{FIELD}.target_bucket"), &value.target_bucket)?;
    let prefix = &value.target_key_prefix;
    key_prefix(&format!("{FIELD}.target_key_prefix"), prefix)?;
    let directive = pb::MetadataDirective::try_from(value.metadata_directive).map_err(|_| {
        ApiError::invalid(
            format!("{FIELD}.metadata_directive"),
            format!("unknown value {}", value.metadata_directive),
        )
    })?;
    let metadata = match (directive, value.new_object_metadata.as_ref()) {
        (pb::MetadataDirective::Unspecified | pb::MetadataDirective::Copy, None) => {
            MetadataDirective::Copy
        }
        (pb::MetadataDirective::Unspecified | pb::MetadataDirective::Copy, Some(_)) => {
            return Err(ApiError::invalid(
                format!("{FIELD}.new_object_metadata"),
                "is only allowed with METADATA_DIRECTIVE_REPLACE",
            ));
        }
        (pb::MetadataDirective::Replace, metadata) => MetadataDirective::Replace(object_metadata(
            &format!("{FIELD}.new_object_metadata"),
            metadata,
        )?),
    };
    Ok(CopySpec {
        target_bucket,
        target_key_prefix: prefix.clone(),
        metadata,
    })
}

fn object_metadata(field: &str, value: Option<&pb::ObjectMetadata>) -> Result<ObjectMetadata> {
    let Some(value) = value else {
        return Ok(ObjectMetadata::default());
    };
    text(&format!("{field}.content_type"), &value.content_type, 256)?;
    text(&format!("{field}.cache_control"), &value.cache_control, 256)?;
    if value.user_metadata.len() > 50 {
        return Err(ApiError::invalid(
            format!("{field}.user_metadata"),
            "at most 50 entries",
        ));
    }
    for (key, entry) in &value.user_metadata {
        let valid_key = (1..=128).contains(&key.len())
            && key.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !valid_key || entry.chars().count() > 1024 {
            return Err(ApiError::invalid(
                format!("{field}.user_metadata"),
                "keys must be 1–128 characters of a–z, 0–9, '-', '_', '.' and values at most 1024",
            ));
        }
    }
    let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    Ok(ObjectMetadata {
        content_type: optional(&value.content_type),
        cache_control: optional(&value.cache_control),
        user_metadata: value.user_metadata.clone().into_iter().collect(),
    })
}

/// The job's notification endpoint: an http(s) URL under the invoke
/// allowlist, checked as Invoke endpoints are.
fn notification(
    value: Option<&pb::JobNotification>,
    allowlist: &Allowlist,
) -> Result<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let url = objects::invoke::check_endpoint(&value.endpoint_url, allowlist)
        .map_err(|problem| ApiError::invalid("notification.endpoint_url", problem.to_string()))?;
    Ok(Some(url.to_string()))
}

fn invoke_spec(value: &pb::InvokeOperation, allowlist: &Allowlist) -> Result<InvokeSpec> {
    const FIELD: &str = "operation.invoke";
    objects::invoke::check_endpoint(&value.endpoint_url, allowlist).map_err(|problem| {
        ApiError::invalid(format!("{FIELD}.endpoint_url"), problem.to_string())
    })?;
    let schema = match pb::InvocationSchemaVersion::try_from(value.invocation_schema_version) {
        Ok(
            pb::InvocationSchemaVersion::Unspecified
            | pb::InvocationSchemaVersion::InvocationSchemaVersion10,
        ) => InvocationSchema::V1,
        Ok(pb::InvocationSchemaVersion::InvocationSchemaVersion20) => InvocationSchema::V2,
        Err(_) => {
            return Err(ApiError::invalid(
                format!("{FIELD}.invocation_schema_version"),
                format!("unknown value {}", value.invocation_schema_version),
            ));
        }
    };
    if !value.user_arguments.is_empty() && schema != InvocationSchema::V2 {
        return Err(ApiError::invalid(
            format!("{FIELD}.user_arguments"),
            "need invocation schema 2.0",
        ));
    }
    if value.user_arguments.len() > 10 {
        return Err(ApiError::invalid(
            format!("{FIELD}.user_arguments"),
            "at most 10 entries",
        ));
    }
    for (key, argument) in &value.user_arguments {
        if key.is_empty() || key.chars().count() > 64 || argument.chars().count() > 1024 {
            return Err(ApiError::invalid(
                format!("{FIELD}.user_arguments"),
                "keys must be 1–64 characters and values at most 1024",
            ));
        }
    }
    let timeout_seconds = match value.timeout_seconds {
        0 => 30,
        1..=900 => value.timeout_seconds,
        _ => {
            return Err(ApiError::invalid(
                format!("{FIELD}.timeout_seconds"),
                "must be 0–900",
            ));
        }
    };
    text(&format!("{FIELD}.function_arn"), &value.function_arn, 1024)?;
    Ok(InvokeSpec {
        endpoint_url: value.endpoint_url.clone(),
        schema,
        user_arguments: value.user_arguments.clone().into_iter().collect(),
        timeout_millis: u64::from(timeout_seconds) * 1000,
        function_arn: (!value.function_arn.is_empty()).then(|| value.function_arn.clone()),
    })
}

fn report(value: Option<&pb::JobReport>) -> Result<Option<ReportSpec>> {
    let Some(value) = value else { return Ok(None) };
    if !value.enabled {
        if !value.bucket.is_empty() || !value.prefix.is_empty() || value.report_scope != 0 {
            return Err(ApiError::invalid(
                "report.enabled",
                "must be true when other report fields are set",
            ));
        }
        return Ok(None);
    }
    let bucket = bucket("report.bucket", &value.bucket)?;
    key_prefix("report.prefix", value.prefix.trim_matches('/'))?;
    let scope = match pb::ReportScope::try_from(value.report_scope) {
        Ok(pb::ReportScope::AllTasks) => ReportScope::AllTasks,
        Ok(pb::ReportScope::FailedTasksOnly) => ReportScope::FailedTasksOnly,
        Ok(pb::ReportScope::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                "report.report_scope",
                "must be ALL_TASKS or FAILED_TASKS_ONLY",
            ));
        }
    };
    Ok(Some(ReportSpec {
        bucket,
        prefix: value.prefix.trim_matches('/').to_owned(),
        scope,
    }))
}

fn failure_threshold(value: Option<&pb::FailureThreshold>) -> Result<FailureThreshold> {
    let mut threshold = FailureThreshold::default();
    let Some(value) = value else {
        return Ok(threshold);
    };
    if let Some(minimum) = value.minimum_tasks_run {
        if !(1..=1_000_000_000).contains(&minimum) {
            return Err(ApiError::invalid(
                "failure_threshold.minimum_tasks_run",
                "must be 1–1,000,000,000",
            ));
        }
        threshold.minimum_tasks_run = minimum;
    }
    if let Some(percent) = value.max_failure_percent {
        if percent > 100 {
            return Err(ApiError::invalid(
                "failure_threshold.max_failure_percent",
                "must be 0–100",
            ));
        }
        threshold.max_failure_percent = percent;
    }
    Ok(threshold)
}

/// Gives an Invoke operation that names a Lambda function but no endpoint
/// (as S3 Control's `LambdaInvoke` does) the endpoint the server's function
/// table maps the function to.
pub fn resolve_function(request: &mut pb::CreateJobRequest, functions: &Functions) -> Result<()> {
    use pb::operation::Operation as O;
    let Some(O::Invoke(invoke)) = request
        .operation
        .as_mut()
        .and_then(|operation| operation.operation.as_mut())
    else {
        return Ok(());
    };
    if !invoke.endpoint_url.is_empty() || invoke.function_arn.is_empty() {
        return Ok(());
    }
    match functions.endpoint(&invoke.function_arn) {
        Some(endpoint) => {
            invoke.endpoint_url = endpoint.to_owned();
            Ok(())
        }
        None => Err(ApiError::invalid(
            "operation.invoke.function_arn",
            format!(
                "{} is not in the server's function table (--invoke-functions)",
                quoted(&invoke.function_arn)
            ),
        )),
    }
}

/// The optional IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<name>`.
fn role_arn(value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    let valid = value.len() <= 2048
        && value.split(':').nth(2) == Some("iam")
        && value.starts_with("arn:")
        && value.split(':').nth(4).is_some_and(AccountId::is_valid)
        && value
            .split(':')
            .nth(5)
            .is_some_and(|r| r.starts_with("role/") && r.len() > 5)
        && !value.chars().any(char::is_control);
    if valid {
        Ok(Some(value.to_owned()))
    } else {
        Err(ApiError::invalid(
            "role_arn",
            format!(
                "must be an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>), got {}",
                quoted(value)
            ),
        ))
    }
}

/// A validated CreateJob request and its fingerprint for idempotency. With
/// a bucket grant (from a token limited to some buckets), every bucket the
/// job names must be granted, and the job keeps the grant.
pub fn create_job(
    request: &pb::CreateJobRequest,
    allowlist: &Allowlist,
    grant: Option<&BucketGrant>,
) -> Result<(JobSpec, String)> {
    let account_id = account_id(&request.account_id)?;
    let token = &request.client_request_token;
    if token.is_empty() || token.chars().count() > 64 {
        return Err(ApiError::invalid(
            "client_request_token",
            "must be 1–64 characters",
        ));
    }
    text("client_request_token", token, 64)?;
    text("description", &request.description, 256)?;
    let spec = JobSpec {
        account_id,
        client_request_token: token.clone(),
        description: request.description.clone(),
        priority: priority(request.priority)?,
        confirmation_required: request.confirmation_required.unwrap_or(true),
        manifest: manifest_source(request)?,
        operation: operation(request.operation.as_ref(), allowlist)?,
        report: report(request.report.as_ref())?,
        tags: tags(&request.tags)?,
        failure_threshold: failure_threshold(request.failure_threshold.as_ref())?,
        bucket_grant: grant.cloned(),
        role_arn: role_arn(&request.role_arn)?,
        dry_run: request.dry_run,
        notification_endpoint: notification(request.notification.as_ref(), allowlist)?,
    };
    if let Some(grant) = grant
        && let Some(bucket) = spec.bucket_outside(grant)
    {
        return Err(ApiError::PermissionDenied(format!(
            "the token does not grant bucket {}",
            quoted(bucket)
        )));
    }
    Ok((spec.clone(), fingerprint(&spec)))
}

/// A stable digest of everything a CreateJob request asks for.
fn fingerprint(spec: &JobSpec) -> String {
    let canonical = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(canonical))
}

/// A page size: 0 for the default, else 1–1000.
pub fn page_size(value: i32) -> Result<usize> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        1..=MAX_PAGE_SIZE => Ok(value as usize),
        _ => Err(ApiError::invalid(
            "page_size",
            format!("must be 0–{MAX_PAGE_SIZE}, got {value}"),
        )),
    }
}
