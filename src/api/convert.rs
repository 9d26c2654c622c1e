//! Proto ↔ domain conversion. Input is validated here: `*_UNSPECIFIED` and
//! unknown enum values, bad UUIDs and out-of-range values are refused with
//! INVALID_ARGUMENT naming the field.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::domain::text::quoted;
use crate::domain::{
    self, AccountId, BucketGrant, ChecksumAlgorithm, CopySpec, FailureReason, FailureThreshold,
    GeneratorSpec, InvocationSchema, InvokeSpec, Job, JobId, JobSpec, JobStatus, ManifestField,
    ManifestFormat, ManifestSource, ManifestSpec, MetadataDirective, ObjectLocation,
    ObjectMetadata, Operation, ReportScope, ReportSpec, Tag,
};
use crate::objects::{self, invoke::Allowlist, manifest};
use crate::proto as pb;

pub const MAX_TAGS: usize = 50;
pub const MAX_PAGE_SIZE: i32 = 1000;
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

pub fn job_id(value: &str) -> Result<JobId> {
    job_id_field("job_id", value)
}

/// A job id in the field `field`; a bad one is quoted briefly, never whole.
pub fn job_id_field(field: &str, value: &str) -> Result<JobId> {
    uuid::Uuid::parse_str(value)
        .map(JobId)
        .map_err(|_| ApiError::invalid(field, format!("{} is not a UUID", quoted(value))))
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

pub fn status_update_reason(value: &str) -> Result<Option<String>> {
    optional_reason("status_update_reason", value)
}

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
    use pb::JobStatus as P;
    let status = match P::try_from(value) {
        Ok(P::New) => JobStatus::New,
        Ok(P::Preparing) => JobStatus::Preparing,
        Ok(P::Suspended) => JobStatus::Suspended,
        Ok(P::Ready) => JobStatus::Ready,
        Ok(P::Active) => JobStatus::Active,
        Ok(P::Pausing) => JobStatus::Pausing,
        Ok(P::Paused) => JobStatus::Paused,
        Ok(P::Completing) => JobStatus::Completing,
        Ok(P::Complete) => JobStatus::Complete,
        Ok(P::Cancelling) => JobStatus::Cancelling,
        Ok(P::Cancelled) => JobStatus::Cancelled,
        Ok(P::Failing) => JobStatus::Failing,
        Ok(P::Failed) => JobStatus::Failed,
        Ok(P::Unspecified) => return Err(ApiError::invalid(field, "must be set")),
        Err(_) => return Err(ApiError::invalid(field, format!("unknown value {value}"))),
    };
    Ok(status)
}

pub fn status_to_proto(status: JobStatus) -> pb::JobStatus {
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
    }
}

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

pub fn tags_to_proto(tags: &[Tag]) -> Vec<pb::Tag> {
    tags.iter()
        .map(|t| pb::Tag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
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
    Ok(ManifestSpec {
        format,
        fields,
        location: ObjectLocation {
            bucket,
            key: value.key.clone(),
        },
        etag: (!value.etag.is_empty()).then(|| value.etag.trim_matches('"').to_owned()),
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
    Ok(InvokeSpec {
        endpoint_url: value.endpoint_url.clone(),
        schema,
        user_arguments: value.user_arguments.clone().into_iter().collect(),
        timeout_millis: u64::from(timeout_seconds) * 1000,
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

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
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

fn operation_to_proto(operation: &Operation) -> pb::Operation {
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

fn failure_reasons_to_proto(reasons: &[FailureReason]) -> Vec<pb::FailureReason> {
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
    }
}

/// The whole descriptor of a job as of `now` (for the Active timer).
pub fn job_to_proto(job: &Job, now: DateTime<Utc>) -> pb::JobDescriptor {
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
    }
}

pub fn job_to_list_proto(job: &Job, now: DateTime<Utc>) -> pb::JobListDescriptor {
    pb::JobListDescriptor {
        job_id: job.id.to_string(),
        description: job.spec.description.clone(),
        status: status_to_proto(job.status) as i32,
        priority: job.priority,
        create_time: Some(timestamp(job.created_at)),
        termination_time: job.termination_time.map(timestamp),
        progress_summary: Some(progress_to_proto(job, now)),
    }
}

/// Turns a job's stored events into proto events, folding them as it goes
/// so that status changes can name the status they came from.
pub struct HistoryFolder {
    job: Option<Job>,
}

impl HistoryFolder {
    pub fn new() -> HistoryFolder {
        HistoryFolder { job: None }
    }

    /// Whether the folded job has reached Complete, Cancelled or Failed, after
    /// which no status change follows.
    pub fn is_finished(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|job| job.status.is_terminal())
    }

    pub fn convert(&mut self, recorded: &crate::store::RecordedEvent) -> pb::JobEvent {
        use crate::store::LoggedEvent;
        use pb::job_event::Event as E;
        let event = match (&recorded.event, &mut self.job) {
            (LoggedEvent::Created(created), _) => {
                let job = domain::created(recorded.job_id, created, recorded.recorded_at);
                let event = E::JobCreated(pb::JobCreatedEvent {
                    job: Some(job_to_proto(&job, recorded.recorded_at)),
                });
                self.job = Some(job);
                Some(event)
            }
            (LoggedEvent::Changed(event), Some(job)) => {
                let previous = job.clone();
                domain::apply(job, event, recorded.recorded_at);
                change_to_proto(&previous, job, event)
            }
            (LoggedEvent::Changed(_), None) => None,
        };
        pb::JobEvent {
            job_id: recorded.job_id.to_string(),
            sequence: recorded.sequence as i64,
            position: recorded.position,
            event_time: Some(timestamp(recorded.recorded_at)),
            schema_version: u32::from(recorded.schema_version),
            event_type: recorded.event.type_name().to_owned(),
            event,
        }
    }
}

impl Default for HistoryFolder {
    fn default() -> Self {
        HistoryFolder::new()
    }
}

fn change_to_proto(
    previous: &Job,
    job: &Job,
    event: &domain::Event,
) -> Option<pb::job_event::Event> {
    use domain::Event as D;
    use pb::job_event::Event as E;
    let status_changed = |reason: Option<&String>, failure_reasons: &[FailureReason]| {
        E::StatusChanged(pb::StatusChangedEvent {
            previous_status: status_to_proto(previous.status) as i32,
            status: status_to_proto(job.status) as i32,
            status_update_reason: reason.cloned().unwrap_or_default(),
            failure_reasons: failure_reasons_to_proto(failure_reasons),
            total_number_of_tasks: None,
            suspended_cause: String::new(),
        })
    };
    Some(match event {
        D::ManifestPrepared {
            total_number_of_tasks,
            awaiting_confirmation,
        } => E::StatusChanged(pb::StatusChangedEvent {
            previous_status: status_to_proto(previous.status) as i32,
            status: status_to_proto(job.status) as i32,
            status_update_reason: String::new(),
            failure_reasons: vec![],
            total_number_of_tasks: Some(*total_number_of_tasks),
            suspended_cause: if *awaiting_confirmation {
                job.suspended_cause.clone().unwrap_or_default()
            } else {
                String::new()
            },
        }),
        D::JobConfirmed { reason } | D::CancellationRequested { reason } => {
            status_changed(reason.as_ref(), &[])
        }
        D::FailureDetected { failure_reasons } => status_changed(None, failure_reasons),
        D::PreparationStarted
        | D::JobActivated
        | D::PauseRequested
        | D::JobPaused
        | D::AllTasksFinished
        | D::JobCompleted
        | D::JobCancelled
        | D::JobFailed => status_changed(None, &[]),
        D::PriorityChanged { previous, priority } => E::PriorityChanged(pb::PriorityChangedEvent {
            previous_priority: *previous,
            priority: *priority,
        }),
        D::TagsReplaced { tags } => E::TagsChanged(pb::TagsChangedEvent {
            tags: tags_to_proto(tags),
        }),
        D::ReportWritten { location } => E::ReportWritten(pb::ReportWrittenEvent {
            location: Some(report_location_to_proto(location)),
        }),
        D::ReportFailed { failure_reason } => E::ReportFailed(pb::ReportFailedEvent {
            failure_reason: failure_reasons_to_proto(std::slice::from_ref(failure_reason)).pop(),
        }),
        D::TaskResultsRecorded { .. } => return None,
    })
}

fn report_location_to_proto(location: &ObjectLocation) -> pb::ReportLocation {
    pb::ReportLocation {
        bucket: location.bucket.clone(),
        manifest_key: location.key.clone(),
    }
}

/// One task result as the API shows it.
pub fn task_result_to_proto(
    object: &crate::domain::TaskRow,
    result: &crate::domain::TaskResult,
) -> pb::TaskResult {
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
