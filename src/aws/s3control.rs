//! AWS S3 Control's job shapes (API version 2018-08-20, as botocore's
//! `s3control/2018-08-20/service-2.json` defines them) mapped onto the
//! contract's messages, both ways. Requests become the same
//! `CreateJobRequest` the gRPC API takes, so every rule and limit is the
//! one the contract has; what batchops does not run is refused by name.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

mod object_state;

use super::node::Node;
use super::xml::Writer;
use crate::domain::text::quoted;
use crate::proto as pb;

/// The XML namespace of S3 Control's documents.
pub const NAMESPACE: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";

/// A request AWS's model would call a bad request; the message names the
/// field by its AWS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

type Result<T> = std::result::Result<T, ShapeError>;

fn bad(message: impl Into<String>) -> ShapeError {
    ShapeError(message.into())
}

/// The bucket of an S3 bucket ARN (`arn:aws:s3:::bucket`).
pub fn bucket_of_arn(field: &str, arn: &str) -> Result<String> {
    match s3_resource(arn) {
        Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => Ok(bucket.to_owned()),
        _ => Err(bad(format!(
            "{field} must be an S3 bucket ARN (arn:aws:s3:::bucket), got {}",
            quoted(arn)
        ))),
    }
}

/// The bucket and key of an S3 object ARN (`arn:aws:s3:::bucket/key`).
pub fn object_of_arn(field: &str, arn: &str) -> Result<(String, String)> {
    match s3_resource(arn).and_then(|resource| resource.split_once('/')) {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok((bucket.to_owned(), key.to_owned()))
        }
        _ => Err(bad(format!(
            "{field} must be an S3 object ARN (arn:aws:s3:::bucket/key), got {}",
            quoted(arn)
        ))),
    }
}

/// What follows `arn:<partition>:s3:::`.
fn s3_resource(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    rest.strip_prefix("s3:::")
}

fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn text(node: Node<'_>, name: &str) -> Option<String> {
    node.get(name).and_then(|n| n.text())
}

fn required(node: Node<'_>, path: &str, name: &str) -> Result<String> {
    text(node, name)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(format!("{path}{name} is required")))
}

fn boolean(node: Node<'_>, path: &str, name: &str) -> Result<Option<bool>> {
    match text(node, name).as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(bad(format!(
            "{path}{name} must be true or false, got {}",
            quoted(other)
        ))),
    }
}

fn number<T: std::str::FromStr>(node: Node<'_>, path: &str, name: &str) -> Result<Option<T>> {
    match text(node, name) {
        None => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| {
            bad(format!(
                "{path}{name} must be a number, got {}",
                quoted(&value)
            ))
        }),
    }
}

fn time(node: Node<'_>, path: &str, name: &str) -> Result<Option<prost_types::Timestamp>> {
    let Some(value) = text(node, name) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            value
                .parse::<f64>()
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs as i64, 0))
        })
        .ok_or_else(|| {
            bad(format!(
                "{path}{name} must be an ISO 8601 time, got {}",
                quoted(&value)
            ))
        })?;
    Ok(Some(crate::contract::timestamp(parsed)))
}

/// Refuses any member of `node` not in `known`, naming it: what batchops
/// does not run must not be silently dropped.
fn only(node: Node<'_>, path: &str, known: &[&str], what: &str) -> Result<()> {
    match node
        .names()
        .into_iter()
        .find(|name| !known.contains(&name.as_str()))
    {
        Some(name) => Err(bad(format!(
            "{path}{} is not supported by batchops{what}",
            quoted(&name).trim_matches('"')
        ))),
        None => Ok(()),
    }
}

/// The operations batchops runs, by S3 Control's names (with
/// [`object_state::MEMBERS`]).
const OPERATIONS: [&str; 3] = ["LambdaInvoke", "S3PutObjectCopy", "S3ComputeObjectChecksum"];

/// Every operation batchops runs, for messages.
fn operations_run() -> String {
    OPERATIONS
        .iter()
        .chain(object_state::MEMBERS.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}
/// A CreateJob request (its document, as XML or the AWS CLI's JSON) for
/// `account`, as the contract's request.
/// A `LambdaInvoke` names its function; the server's function table
/// (`--invoke-functions`) gives the endpoint when the job is validated.
pub fn create_job(account: &str, request: Node<'_>) -> Result<pb::CreateJobRequest> {
    only(
        request,
        "",
        &[
            "AccountId",
            "ConfirmationRequired",
            "Operation",
            "Report",
            "ClientRequestToken",
            "Manifest",
            "Description",
            "Priority",
            "RoleArn",
            "Tags",
            "ManifestGenerator",
        ],
        "",
    )?;
    let operation = request
        .get("Operation")
        .ok_or_else(|| bad("Operation is required"))?;
    Ok(pb::CreateJobRequest {
        account_id: account.to_owned(),
        client_request_token: text(request, "ClientRequestToken").unwrap_or_default(),
        description: text(request, "Description").unwrap_or_default(),
        priority: number(request, "", "Priority")?.unwrap_or(0),
        confirmation_required: boolean(request, "", "ConfirmationRequired")?,
        manifest: request.get("Manifest").map(manifest).transpose()?,
        operation: Some(self::operation(operation)?),
        report: request.get("Report").map(report).transpose()?,
        tags: request
            .get("Tags")
            .map(tags)
            .transpose()?
            .unwrap_or_default(),
        failure_threshold: None,
        manifest_generator: request
            .get("ManifestGenerator")
            .map(manifest_generator)
            .transpose()?,
        role_arn: text(request, "RoleArn").unwrap_or_default(),
        // AWS's model has no dry runs, and sends notifications through
        // EventBridge, not the job.
        dry_run: false,
        notification: None,
    })
}

fn operation(node: Node<'_>) -> Result<pb::Operation> {
    use pb::operation::Operation as O;
    let names = node.names();
    let [name] = names.as_slice() else {
        return Err(bad(format!(
            "Operation must name exactly one operation (batchops runs {})",
            operations_run()
        )));
    };
    let inner = node.get(name).ok_or_else(|| bad("Operation is empty"))?;
    let path = format!("Operation.{name}.");
    let operation = match name.as_str() {
        "S3ComputeObjectChecksum" => {
            only(inner, &path, &["ChecksumAlgorithm", "ChecksumType"], "")?;
            let algorithm = match required(inner, &path, "ChecksumAlgorithm")?.as_str() {
                "CRC32" => pb::ChecksumAlgorithm::Crc32,
                "CRC32C" => pb::ChecksumAlgorithm::Crc32c,
                "CRC64NVME" => pb::ChecksumAlgorithm::Crc64nvme,
                "SHA1" => pb::ChecksumAlgorithm::Sha1,
                "SHA256" => pb::ChecksumAlgorithm::Sha256,
                "MD5" => pb::ChecksumAlgorithm::Md5,
                other => {
                    return Err(bad(format!(
                        "{path}ChecksumAlgorithm {} is not supported by batchops (CRC32, CRC32C, CRC64NVME, MD5, SHA1, SHA256)",
                        quoted(other)
                    )));
                }
            };
            match text(inner, "ChecksumType").as_deref() {
                None | Some("FULL_OBJECT") => {}
                Some(other) => {
                    return Err(bad(format!(
                        "{path}ChecksumType {} is not supported by batchops (FULL_OBJECT)",
                        quoted(other)
                    )));
                }
            }
            O::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation {
                algorithm: algorithm as i32,
            })
        }
        "S3PutObjectCopy" => {
            only(
                inner,
                &path,
                &[
                    "TargetResource",
                    "TargetKeyPrefix",
                    "MetadataDirective",
                    "NewObjectMetadata",
                ],
                "",
            )?;
            let target = required(inner, &path, "TargetResource")?;
            let directive = match text(inner, "MetadataDirective").as_deref() {
                None | Some("COPY") => pb::MetadataDirective::Copy,
                Some("REPLACE") => pb::MetadataDirective::Replace,
                Some(other) => {
                    return Err(bad(format!(
                        "{path}MetadataDirective must be COPY or REPLACE, got {}",
                        quoted(other)
                    )));
                }
            };
            let metadata = inner
                .get("NewObjectMetadata")
                .map(|metadata| {
                    let path = format!("{path}NewObjectMetadata.");
                    only(
                        metadata,
                        &path,
                        &["ContentType", "CacheControl", "UserMetadata"],
                        "",
                    )?;
                    Ok(pb::ObjectMetadata {
                        content_type: text(metadata, "ContentType").unwrap_or_default(),
                        cache_control: text(metadata, "CacheControl").unwrap_or_default(),
                        user_metadata: metadata
                            .get("UserMetadata")
                            .map(|m| m.entries().into_iter().collect())
                            .unwrap_or_default(),
                    })
                })
                .transpose()?;
            O::PutObjectCopy(pb::PutObjectCopyOperation {
                target_bucket: bucket_of_arn(&format!("{path}TargetResource"), &target)?,
                target_key_prefix: text(inner, "TargetKeyPrefix").unwrap_or_default(),
                metadata_directive: directive as i32,
                new_object_metadata: metadata,
            })
        }
        "LambdaInvoke" => {
            only(
                inner,
                &path,
                &["FunctionArn", "InvocationSchemaVersion", "UserArguments"],
                "",
            )?;
            let function = required(inner, &path, "FunctionArn")?;
            let schema = match text(inner, "InvocationSchemaVersion").as_deref() {
                None | Some("1.0") => pb::InvocationSchemaVersion::InvocationSchemaVersion10,
                Some("2.0") => pb::InvocationSchemaVersion::InvocationSchemaVersion20,
                Some(other) => {
                    return Err(bad(format!(
                        "{path}InvocationSchemaVersion must be 1.0 or 2.0, got {}",
                        quoted(other)
                    )));
                }
            };
            O::Invoke(pb::InvokeOperation {
                endpoint_url: String::new(),
                invocation_schema_version: schema as i32,
                user_arguments: inner
                    .get("UserArguments")
                    .map(|m| m.entries().into_iter().collect())
                    .unwrap_or_default(),
                timeout_seconds: 0,
                function_arn: function,
            })
        }
        other => match object_state::parse(other, inner, &path) {
            Some(parsed) => parsed?,
            None => {
                return Err(bad(format!(
                    "Operation {} is not supported by batchops (it runs {})",
                    quoted(other),
                    operations_run()
                )));
            }
        },
    };
    Ok(pb::Operation {
        operation: Some(operation),
    })
}

fn report(node: Node<'_>) -> Result<pb::JobReport> {
    only(
        node,
        "Report.",
        &[
            "Bucket",
            "Format",
            "Enabled",
            "Prefix",
            "ReportScope",
            "ExpectedBucketOwner",
        ],
        "",
    )?;
    let enabled =
        boolean(node, "Report.", "Enabled")?.ok_or_else(|| bad("Report.Enabled is required"))?;
    if !enabled {
        return Ok(pb::JobReport::default());
    }
    match text(node, "Format").as_deref() {
        None | Some("Report_CSV_20180820") => {}
        Some(other) => {
            return Err(bad(format!(
                "Report.Format must be Report_CSV_20180820, got {}",
                quoted(other)
            )));
        }
    }
    let scope = match text(node, "ReportScope").as_deref() {
        None | Some("AllTasks") => pb::ReportScope::AllTasks,
        Some("FailedTasksOnly") => pb::ReportScope::FailedTasksOnly,
        Some(other) => {
            return Err(bad(format!(
                "Report.ReportScope must be AllTasks or FailedTasksOnly, got {}",
                quoted(other)
            )));
        }
    };
    Ok(pb::JobReport {
        enabled,
        bucket: bucket_of_arn("Report.Bucket", &required(node, "Report.", "Bucket")?)?,
        prefix: text(node, "Prefix").unwrap_or_default(),
        report_scope: scope as i32,
    })
}

fn manifest(node: Node<'_>) -> Result<pb::Manifest> {
    let spec = node
        .get("Spec")
        .ok_or_else(|| bad("Manifest.Spec is required"))?;
    let location = node
        .get("Location")
        .ok_or_else(|| bad("Manifest.Location is required"))?;
    only(
        location,
        "Manifest.Location.",
        &["ObjectArn", "ObjectVersionId", "ETag"],
        "",
    )?;
    let format = match required(spec, "Manifest.Spec.", "Format")?.as_str() {
        "S3BatchOperations_CSV_20180820" => pb::ManifestFormat::S3BatchOperationsCsv20180820,
        "S3InventoryReport_CSV_20161130" => pb::ManifestFormat::S3InventoryReportCsv20161130,
        other => {
            return Err(bad(format!(
                "Manifest.Spec.Format must be S3BatchOperations_CSV_20180820 or S3InventoryReport_CSV_20161130, got {}",
                quoted(other)
            )));
        }
    };
    let fields = spec
        .get("Fields")
        .map(|fields| fields.items())
        .unwrap_or_default()
        .into_iter()
        .map(|field| match field.text().as_deref() {
            Some("Ignore") => Ok(pb::ManifestField::Ignore as i32),
            Some("Bucket") => Ok(pb::ManifestField::Bucket as i32),
            Some("Key") => Ok(pb::ManifestField::Key as i32),
            Some("VersionId") => Ok(pb::ManifestField::VersionId as i32),
            other => Err(bad(format!(
                "Manifest.Spec.Fields must be Ignore, Bucket, Key or VersionId, got {}",
                quoted(other.unwrap_or_default())
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let (bucket, key) = object_of_arn(
        "Manifest.Location.ObjectArn",
        &required(location, "Manifest.Location.", "ObjectArn")?,
    )?;
    Ok(pb::Manifest {
        format: format as i32,
        fields,
        bucket,
        key,
        etag: text(location, "ETag").unwrap_or_default(),
        object_version_id: text(location, "ObjectVersionId").unwrap_or_default(),
    })
}

fn manifest_generator(node: Node<'_>) -> Result<pb::ManifestGenerator> {
    only(node, "ManifestGenerator.", &["S3JobManifestGenerator"], "")?;
    let generator = node
        .get("S3JobManifestGenerator")
        .ok_or_else(|| bad("ManifestGenerator.S3JobManifestGenerator is required"))?;
    let path = "ManifestGenerator.S3JobManifestGenerator.";
    only(
        generator,
        path,
        &[
            "SourceBucket",
            "EnableManifestOutput",
            "Filter",
            "ExpectedBucketOwner",
        ],
        " (generated manifests are not written)",
    )?;
    if boolean(generator, path, "EnableManifestOutput")? == Some(true) {
        return Err(bad(format!(
            "{path}EnableManifestOutput is not supported by batchops (generated manifests are not written)"
        )));
    }
    let source = required(generator, path, "SourceBucket")?;
    let mut result = pb::ManifestGenerator {
        source_bucket: bucket_of_arn(&format!("{path}SourceBucket"), &source)?,
        ..Default::default()
    };
    if let Some(filter) = generator.get("Filter") {
        let path = format!("{path}Filter.");
        only(
            filter,
            &path,
            &[
                "CreatedAfter",
                "CreatedBefore",
                "KeyNameConstraint",
                "ObjectSizeGreaterThanBytes",
                "ObjectSizeLessThanBytes",
            ],
            "",
        )?;
        result.created_after = time(filter, &path, "CreatedAfter")?;
        result.created_before = time(filter, &path, "CreatedBefore")?;
        result.object_size_greater_than_bytes =
            number(filter, &path, "ObjectSizeGreaterThanBytes")?;
        result.object_size_less_than_bytes = number(filter, &path, "ObjectSizeLessThanBytes")?;
        if let Some(constraint) = filter.get("KeyNameConstraint") {
            let list = |name: &str| -> Vec<String> {
                constraint
                    .get(name)
                    .map(|l| l.items().into_iter().filter_map(|i| i.text()).collect())
                    .unwrap_or_default()
            };
            result.key_name_constraint = Some(pb::KeyNameConstraint {
                match_any_prefix: list("MatchAnyPrefix"),
                match_any_suffix: list("MatchAnySuffix"),
                match_any_substring: list("MatchAnySubstring"),
            });
        }
    }
    Ok(result)
}

/// A tag set (`Tags`, each with `Key` and `Value`).
pub fn tags(node: Node<'_>) -> Result<Vec<pb::Tag>> {
    node.items()
        .into_iter()
        .map(|tag| {
            Ok(pb::Tag {
                key: required(tag, "Tags[].", "Key")?,
                value: text(tag, "Value").unwrap_or_default(),
            })
        })
        .collect()
}

/// A job status by S3 Control's name (`Active`), as the contract's enum.
pub fn status_from_name(name: &str) -> Option<pb::JobStatus> {
    crate::domain::JobStatus::parse(name).map(crate::contract::status_to_proto)
}

/// The S3 Control name of a status (`Active` for JOB_STATUS_ACTIVE): the
/// domain's name. A dry run's `DryRunComplete` is not in AWS's model, and
/// is shown as it is rather than as a status that would mean the job ran.
pub fn status_name(status: i32) -> String {
    crate::contract::status_name(status)
        .unwrap_or("Unspecified")
        .to_owned()
}

fn iso(time: Option<&prost_types::Timestamp>) -> Option<String> {
    let time = time?;
    DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn progress(out: &mut Writer, summary: Option<&pb::JobProgressSummary>) {
    let Some(summary) = summary else { return };
    out.start("ProgressSummary")
        .leaf(
            "TotalNumberOfTasks",
            &summary.total_number_of_tasks.to_string(),
        )
        .leaf(
            "NumberOfTasksSucceeded",
            &summary.number_of_tasks_succeeded.to_string(),
        )
        .leaf(
            "NumberOfTasksFailed",
            &summary.number_of_tasks_failed.to_string(),
        );
    if let Some(timers) = &summary.timers {
        out.start("Timers")
            .leaf(
                "ElapsedTimeInActiveSeconds",
                &timers.elapsed_time_in_active_seconds.to_string(),
            )
            .end("Timers");
    }
    out.end("ProgressSummary");
}

fn time_leaf(out: &mut Writer, name: &str, time: Option<&prost_types::Timestamp>) {
    if let Some(text) = iso(time) {
        out.leaf(name, &text);
    }
}

/// Writes a job as S3 Control's `JobDescriptor`. `region` goes into its ARN.
pub fn job_descriptor(out: &mut Writer, job: &pb::JobDescriptor, region: &str) {
    out.start("Job")
        .leaf("JobId", &job.job_id)
        .leaf(
            "ConfirmationRequired",
            &job.confirmation_required.to_string(),
        )
        .leaf_if("Description", &job.description)
        .leaf(
            "JobArn",
            &format!("arn:aws:s3:{region}:{}:job/{}", job.account_id, job.job_id),
        )
        .leaf("Status", &status_name(job.status));
    if let Some(manifest) = &job.manifest {
        out.start("Manifest").start("Spec");
        let format = match pb::ManifestFormat::try_from(manifest.format) {
            Ok(pb::ManifestFormat::S3InventoryReportCsv20161130) => {
                "S3InventoryReport_CSV_20161130"
            }
            _ => "S3BatchOperations_CSV_20180820",
        };
        out.leaf("Format", format);
        if !manifest.fields.is_empty() {
            out.start("Fields");
            for field in &manifest.fields {
                let name = match pb::ManifestField::try_from(*field) {
                    Ok(pb::ManifestField::Bucket) => "Bucket",
                    Ok(pb::ManifestField::Key) => "Key",
                    Ok(pb::ManifestField::VersionId) => "VersionId",
                    _ => "Ignore",
                };
                out.leaf("member", name);
            }
            out.end("Fields");
        }
        out.end("Spec")
            .start("Location")
            .leaf(
                "ObjectArn",
                &format!("arn:aws:s3:::{}/{}", manifest.bucket, manifest.key),
            )
            .leaf_if("ObjectVersionId", &manifest.object_version_id)
            .leaf_if("ETag", &manifest.etag)
            .end("Location")
            .end("Manifest");
    }
    if let Some(operation) = job.operation.as_ref().and_then(|o| o.operation.as_ref()) {
        write_operation(out, operation);
    }
    out.leaf("Priority", &job.priority.to_string());
    progress(out, job.progress_summary.as_ref());
    out.leaf_if("StatusUpdateReason", &job.status_update_reason);
    if !job.failure_reasons.is_empty() {
        out.start("FailureReasons");
        for reason in &job.failure_reasons {
            let text = if reason.failure_code == crate::domain::TASK_FAILURE_THRESHOLD_EXCEEDED {
                with_error_codes(&reason.failure_reason, job)
            } else {
                reason.failure_reason.clone()
            };
            out.start("member")
                .leaf("FailureCode", &reason.failure_code)
                .leaf("FailureReason", &text)
                .end("member");
        }
        out.end("FailureReasons");
    }
    if let Some(report) = &job.report {
        out.start("Report")
            .leaf("Enabled", &report.enabled.to_string());
        if report.enabled {
            let scope = match pb::ReportScope::try_from(report.report_scope) {
                Ok(pb::ReportScope::FailedTasksOnly) => "FailedTasksOnly",
                _ => "AllTasks",
            };
            out.leaf("Bucket", &bucket_arn(&report.bucket))
                .leaf("Format", "Report_CSV_20180820")
                .leaf_if("Prefix", &report.prefix)
                .leaf("ReportScope", scope);
        }
        out.end("Report");
    }
    time_leaf(out, "CreationTime", job.create_time.as_ref());
    time_leaf(out, "TerminationDate", job.termination_time.as_ref());
    out.leaf_if("RoleArn", &job.role_arn);
    time_leaf(out, "SuspendedDate", job.suspended_time.as_ref());
    out.leaf_if("SuspendedCause", &job.suspended_cause);
    if let Some(generator) = &job.manifest_generator {
        out.start("ManifestGenerator")
            .start("S3JobManifestGenerator")
            .leaf("SourceBucket", &bucket_arn(&generator.source_bucket))
            .leaf("EnableManifestOutput", "false")
            .start("Filter");
        time_leaf(out, "CreatedAfter", generator.created_after.as_ref());
        time_leaf(out, "CreatedBefore", generator.created_before.as_ref());
        if let Some(constraint) = &generator.key_name_constraint {
            out.start("KeyNameConstraint");
            for (name, list) in [
                ("MatchAnyPrefix", &constraint.match_any_prefix),
                ("MatchAnySuffix", &constraint.match_any_suffix),
                ("MatchAnySubstring", &constraint.match_any_substring),
            ] {
                if !list.is_empty() {
                    out.start(name);
                    for item in list {
                        out.leaf("member", item);
                    }
                    out.end(name);
                }
            }
            out.end("KeyNameConstraint");
        }
        if let Some(size) = generator.object_size_greater_than_bytes {
            out.leaf("ObjectSizeGreaterThanBytes", &size.to_string());
        }
        if let Some(size) = generator.object_size_less_than_bytes {
            out.leaf("ObjectSizeLessThanBytes", &size.to_string());
        }
        out.end("Filter")
            .end("S3JobManifestGenerator")
            .end("ManifestGenerator");
    }
    out.end("Job");
}

/// A task-failure threshold's reason with the job's failures by error code
/// after it, the way S3 Control callers see why (AWS's model has no place
/// for the summary itself).
fn with_error_codes(reason: &str, job: &pb::JobDescriptor) -> String {
    let mut codes: Vec<String> = job
        .error_summaries
        .iter()
        .map(|code| format!("{} {}", code.error_code, code.failed_tasks))
        .collect();
    if job.other_codes_failed_tasks > 0 {
        codes.push(format!("other codes {}", job.other_codes_failed_tasks));
    }
    if codes.is_empty() {
        return reason.to_owned();
    }
    format!("{reason}. Failed tasks by error code: {}", codes.join(", "))
}

fn write_operation(out: &mut Writer, operation: &pb::operation::Operation) {
    use pb::operation::Operation as O;
    let map =
        |out: &mut Writer, name: &str, entries: &std::collections::HashMap<String, String>| {
            if entries.is_empty() {
                return;
            }
            let sorted: BTreeMap<&String, &String> = entries.iter().collect();
            out.start(name);
            for (key, value) in sorted {
                out.start("entry")
                    .leaf("key", key)
                    .leaf("value", value)
                    .end("entry");
            }
            out.end(name);
        };
    match operation {
        O::ComputeObjectChecksum(checksum) => {
            let algorithm = pb::ChecksumAlgorithm::try_from(checksum.algorithm)
                .map(|a| a.as_str_name().trim_start_matches("CHECKSUM_ALGORITHM_"))
                .unwrap_or("SHA256");
            out.start("Operation")
                .start("S3ComputeObjectChecksum")
                .leaf("ChecksumAlgorithm", algorithm)
                .leaf("ChecksumType", "FULL_OBJECT")
                .end("S3ComputeObjectChecksum")
                .end("Operation");
        }
        O::PutObjectCopy(copy) => {
            out.start("Operation")
                .start("S3PutObjectCopy")
                .leaf("TargetResource", &bucket_arn(&copy.target_bucket))
                .leaf_if("TargetKeyPrefix", &copy.target_key_prefix);
            let replace = copy.metadata_directive == pb::MetadataDirective::Replace as i32;
            out.leaf(
                "MetadataDirective",
                if replace { "REPLACE" } else { "COPY" },
            );
            if let Some(metadata) = &copy.new_object_metadata {
                out.start("NewObjectMetadata")
                    .leaf_if("CacheControl", &metadata.cache_control)
                    .leaf_if("ContentType", &metadata.content_type);
                map(out, "UserMetadata", &metadata.user_metadata);
                out.end("NewObjectMetadata");
            }
            out.end("S3PutObjectCopy").end("Operation");
        }
        O::Invoke(invoke) => {
            let function = if invoke.function_arn.is_empty() {
                &invoke.endpoint_url
            } else {
                &invoke.function_arn
            };
            let schema = if invoke.invocation_schema_version
                == pb::InvocationSchemaVersion::InvocationSchemaVersion20 as i32
            {
                "2.0"
            } else {
                "1.0"
            };
            out.start("Operation")
                .start("LambdaInvoke")
                .leaf("FunctionArn", function)
                .leaf("InvocationSchemaVersion", schema);
            map(out, "UserArguments", &invoke.user_arguments);
            out.end("LambdaInvoke").end("Operation");
        }
        // No S3 Control operation deletes objects: the field is left out.
        O::DeleteObject(_) => {}
        O::PutObjectTagging(_)
        | O::DeleteObjectTagging(_)
        | O::PutObjectLegalHold(_)
        | O::PutObjectRetention(_)
        | O::PutObjectAcl(_)
        | O::InitiateRestoreObject(_) => object_state::write(out, operation),
    }
}

/// Writes a ListJobs row as S3 Control's `JobListDescriptor`.
pub fn job_list_descriptor(out: &mut Writer, job: &pb::JobListDescriptor) {
    out.start("member")
        .leaf("JobId", &job.job_id)
        .leaf_if("Description", &job.description)
        .leaf("Priority", &job.priority.to_string())
        .leaf("Status", &status_name(job.status));
    time_leaf(out, "CreationTime", job.create_time.as_ref());
    time_leaf(out, "TerminationDate", job.termination_time.as_ref());
    progress(out, job.progress_summary.as_ref());
    out.end("member");
}

/// Writes a tag set.
pub fn write_tags(out: &mut Writer, tags: &[pb::Tag]) {
    out.start("Tags");
    for tag in tags {
        out.start("member")
            .leaf("Key", &tag.key)
            .leaf("Value", &tag.value)
            .end("member");
    }
    out.end("Tags");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::xml;

    #[test]
    fn arns_name_buckets_and_objects() {
        assert_eq!(bucket_of_arn("f", "arn:aws:s3:::photos").unwrap(), "photos");
        assert_eq!(
            object_of_arn("f", "arn:aws-cn:s3:::photos/a/b c.csv").unwrap(),
            ("photos".into(), "a/b c.csv".into())
        );
        assert!(bucket_of_arn("f", "photos").is_err());
        assert!(bucket_of_arn("f", "arn:aws:s3:::photos/key").is_err());
        assert!(object_of_arn("f", "arn:aws:s3:::photos").is_err());
        assert!(object_of_arn("f", "arn:aws:iam::1:role/x").is_err());
    }

    const CREATE: &str = r#"<CreateJobRequest xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/">
        <ConfirmationRequired>true</ConfirmationRequired>
        <Operation><S3PutObjectCopy><TargetResource>arn:aws:s3:::backup</TargetResource>
          <TargetKeyPrefix>copies/</TargetKeyPrefix><MetadataDirective>REPLACE</MetadataDirective>
          <NewObjectMetadata><ContentType>text/plain</ContentType>
            <UserMetadata><entry><key>team</key><value>data</value></entry></UserMetadata>
          </NewObjectMetadata></S3PutObjectCopy></Operation>
        <Report><Bucket>arn:aws:s3:::reports</Bucket><Format>Report_CSV_20180820</Format>
          <Enabled>true</Enabled><Prefix>batch</Prefix><ReportScope>FailedTasksOnly</ReportScope></Report>
        <ClientRequestToken>t-1</ClientRequestToken>
        <Manifest><Spec><Format>S3BatchOperations_CSV_20180820</Format>
          <Fields><member>Bucket</member><member>Key</member></Fields></Spec>
          <Location><ObjectArn>arn:aws:s3:::photos/manifest.csv</ObjectArn>
            <ObjectVersionId>v-1</ObjectVersionId><ETag>"abc"</ETag></Location></Manifest>
        <Priority>7</Priority><RoleArn>arn:aws:iam::111122223333:role/batch</RoleArn>
        <Tags><member><Key>k</Key><Value>v</Value></member></Tags>
      </CreateJobRequest>"#;

    #[test]
    fn xml_and_cli_json_make_the_same_request() {
        let element = xml::parse(CREATE.as_bytes()).unwrap();
        let from_xml = create_job("111122223333", Node::Xml(&element)).unwrap();
        let json: serde_json::Value = serde_json::json!({
            "AccountId": "111122223333",
            "ConfirmationRequired": true,
            "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::backup",
                "TargetKeyPrefix": "copies/", "MetadataDirective": "REPLACE",
                "NewObjectMetadata": {"ContentType": "text/plain", "UserMetadata": {"team": "data"}}}},
            "Report": {"Bucket": "arn:aws:s3:::reports", "Format": "Report_CSV_20180820",
                "Enabled": true, "Prefix": "batch", "ReportScope": "FailedTasksOnly"},
            "ClientRequestToken": "t-1",
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                "Location": {"ObjectArn": "arn:aws:s3:::photos/manifest.csv",
                    "ObjectVersionId": "v-1", "ETag": "\"abc\""}},
            "Priority": 7,
            "RoleArn": "arn:aws:iam::111122223333:role/batch",
            "Tags": [{"Key": "k", "Value": "v"}]
        });
        let from_json = create_job("111122223333", Node::Json(&json)).unwrap();
        assert_eq!(from_xml, from_json);
        assert_eq!(from_xml.priority, 7);
        assert_eq!(from_xml.manifest.as_ref().unwrap().key, "manifest.csv");
        assert_eq!(from_xml.manifest.as_ref().unwrap().object_version_id, "v-1");
        assert_eq!(from_xml.report.as_ref().unwrap().bucket, "reports");
        assert_eq!(from_xml.role_arn, "arn:aws:iam::111122223333:role/batch");
    }

    #[test]
    fn describe_job_writes_the_manifest_location_back() {
        let element = xml::parse(CREATE.as_bytes()).unwrap();
        let request = create_job("111122223333", Node::Xml(&element)).unwrap();
        let job = pb::JobDescriptor {
            job_id: "j".into(),
            manifest: request.manifest,
            ..pb::JobDescriptor::default()
        };
        let mut out = Writer::document("DescribeJobResult", NAMESPACE);
        job_descriptor(&mut out, &job, "eu-west-1");
        let written = out.finish("DescribeJobResult");
        assert!(
            written.contains(
                "<Location><ObjectArn>arn:aws:s3:::photos/manifest.csv</ObjectArn>\
                 <ObjectVersionId>v-1</ObjectVersionId><ETag>&quot;abc&quot;</ETag></Location>"
            ),
            "{written}"
        );
        assert!(written.contains("arn:aws:s3:eu-west-1:"), "{written}");
    }

    #[test]
    fn operations_batchops_does_not_run_are_refused_by_name() {
        for (operation, named) in [
            (
                serde_json::json!({"S3ReplicateObject": {}}),
                "S3ReplicateObject",
            ),
            (
                serde_json::json!({"S3PutObjectRetention": {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2031-01-02T03:04:05Z", "EventHold": "ON"}}}),
                "EventHold",
            ),
            (
                serde_json::json!({"S3PutObjectAcl": {"AccessControlPolicy": {}}}),
                "exactly one of AccessControlList and CannedAccessControlList",
            ),
            (
                serde_json::json!({"S3PutObjectLegalHold": {"LegalHold": {"Status": "MAYBE"}}}),
                "Status must be one of ON, OFF",
            ),
            (
                serde_json::json!({"S3InitiateRestoreObject": {"ExpirationInDays": -1}}),
                "ExpirationInDays must be 0 or more",
            ),
            (
                serde_json::json!({"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::b", "StorageClass": "GLACIER"}}),
                "StorageClass",
            ),
            (
                serde_json::json!({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA512"}}),
                "SHA512",
            ),
        ] {
            let request = serde_json::json!({"Operation": operation});
            let error = create_job("111122223333", Node::Json(&request)).unwrap_err();
            assert!(error.0.contains(named), "{error}");
        }
    }

    /// The object-state members exactly as boto3 1.44.8 sends them.
    const OBJECT_STATE: [&str; 6] = [
        "<S3PutObjectTagging><TagSet><member><Key>k</Key><Value>v</Value></member><member><Key>e</Key><Value /></member></TagSet></S3PutObjectTagging>",
        "<S3DeleteObjectTagging />",
        "<S3PutObjectLegalHold><LegalHold><Status>ON</Status></LegalHold></S3PutObjectLegalHold>",
        "<S3PutObjectRetention><BypassGovernanceRetention>true</BypassGovernanceRetention><Retention><RetainUntilDate>2031-01-02T03:04:05Z</RetainUntilDate><Mode>GOVERNANCE</Mode></Retention></S3PutObjectRetention>",
        "<S3PutObjectAcl><AccessControlPolicy><AccessControlList><Owner><ID>owner-id</ID><DisplayName>o</DisplayName></Owner><Grants><member><Grantee><TypeIdentifier>id</TypeIdentifier><Identifier>abc</Identifier><DisplayName>d</DisplayName></Grantee><Permission>READ</Permission></member><member><Grantee><TypeIdentifier>uri</TypeIdentifier><Identifier>http://acs.amazonaws.com/groups/global/AllUsers</Identifier></Grantee><Permission>READ_ACP</Permission></member></Grants></AccessControlList></AccessControlPolicy></S3PutObjectAcl>",
        "<S3InitiateRestoreObject><ExpirationInDays>2</ExpirationInDays><GlacierJobTier>BULK</GlacierJobTier></S3InitiateRestoreObject>",
    ];

    fn operation_of(member: &str) -> pb::operation::Operation {
        let document =
            format!("<CreateJobRequest><Operation>{member}</Operation></CreateJobRequest>");
        let element = xml::parse(document.as_bytes()).unwrap();
        create_job("111122223333", Node::Xml(&element))
            .unwrap()
            .operation
            .unwrap()
            .operation
            .unwrap()
    }

    #[test]
    fn object_state_members_are_read_as_boto3_sends_them_and_written_back_alike() {
        use pb::operation::Operation as O;
        let read: Vec<_> = OBJECT_STATE.iter().map(|m| operation_of(m)).collect();
        let O::PutObjectTagging(tagging) = &read[0] else {
            panic!("{:?}", read[0])
        };
        assert_eq!(
            tagging.tags,
            vec![
                pb::ObjectTag {
                    key: "k".into(),
                    value: "v".into()
                },
                pb::ObjectTag {
                    key: "e".into(),
                    value: String::new()
                },
            ]
        );
        assert!(matches!(read[1], O::DeleteObjectTagging(_)));
        assert!(
            matches!(&read[2], O::PutObjectLegalHold(h) if h.status == pb::LegalHoldStatus::On as i32)
        );
        let O::PutObjectRetention(retention) = &read[3] else {
            panic!("{:?}", read[3])
        };
        assert_eq!(retention.mode, pb::RetentionMode::Governance as i32);
        assert!(retention.bypass_governance_retention);
        assert_eq!(
            retention.retain_until.as_ref().unwrap().seconds,
            1_925_089_445
        );
        let O::PutObjectAcl(acl) = &read[4] else {
            panic!("{:?}", read[4])
        };
        let Some(pb::put_object_acl_operation::Acl::AccessControlPolicy(policy)) = &acl.acl else {
            panic!("{acl:?}")
        };
        assert_eq!(policy.owner_id, "owner-id");
        assert_eq!(policy.grants.len(), 2);
        assert_eq!(
            policy.grants[1].permission,
            pb::AclPermission::ReadAcp as i32
        );
        assert!(matches!(
            &read[5],
            O::InitiateRestoreObject(r) if r.expiration_in_days == 2 && r.glacier_job_tier == pb::GlacierJobTier::Bulk as i32
        ));

        // DescribeJob writes each back in a form read the same again.
        for operation in read {
            let job = pb::JobDescriptor {
                job_id: "j".into(),
                operation: Some(pb::Operation {
                    operation: Some(operation.clone()),
                }),
                ..pb::JobDescriptor::default()
            };
            let mut out = Writer::document("DescribeJobResult", NAMESPACE);
            job_descriptor(&mut out, &job, "us-east-1");
            let written = out.finish("DescribeJobResult");
            let start = written.find("<Operation>").unwrap() + "<Operation>".len();
            let end = written.find("</Operation>").unwrap();
            assert_eq!(operation_of(&written[start..end]), operation, "{written}");
        }
    }

    #[test]
    fn a_threshold_failure_names_the_failed_tasks_by_error_code() {
        let job = pb::JobDescriptor {
            job_id: "j".into(),
            failure_reasons: vec![
                pb::FailureReason {
                    failure_code: crate::domain::TASK_FAILURE_THRESHOLD_EXCEEDED.into(),
                    failure_reason: "600 of 1000 tasks run failed".into(),
                },
                pb::FailureReason {
                    failure_code: "ReportWriteFailed".into(),
                    failure_reason: "no bucket".into(),
                },
            ],
            error_summaries: vec![
                pb::ErrorCodeSummary {
                    error_code: "AccessDenied".into(),
                    failed_tasks: 100,
                    samples: Vec::new(),
                },
                pb::ErrorCodeSummary {
                    error_code: "NoSuchKey".into(),
                    failed_tasks: 500,
                    samples: Vec::new(),
                },
            ],
            ..pb::JobDescriptor::default()
        };
        let mut out = Writer::document("DescribeJobResult", NAMESPACE);
        job_descriptor(&mut out, &job, "us-east-1");
        let written = out.finish("DescribeJobResult");
        assert!(
            written.contains(
                "<FailureReason>600 of 1000 tasks run failed. Failed tasks by error code: \
                 AccessDenied 100, NoSuchKey 500</FailureReason>"
            ),
            "{written}"
        );
        assert!(
            written.contains("<FailureReason>no bucket</FailureReason>"),
            "{written}"
        );
    }

    #[test]
    fn a_canned_acl_is_read_by_its_s3_name() {
        let operation = operation_of(
            "<S3PutObjectAcl><AccessControlPolicy><CannedAccessControlList>bucket-owner-full-control</CannedAccessControlList></AccessControlPolicy></S3PutObjectAcl>",
        );
        assert_eq!(
            operation,
            pb::operation::Operation::PutObjectAcl(pb::PutObjectAclOperation {
                acl: Some(pb::put_object_acl_operation::Acl::CannedAcl(
                    pb::CannedAcl::BucketOwnerFullControl as i32
                )),
            })
        );
    }

    #[test]
    fn statuses_have_s3_controls_names() {
        for status in [
            pb::JobStatus::Active,
            pb::JobStatus::Cancelling,
            pb::JobStatus::Suspended,
        ] {
            let name = status_name(status as i32);
            assert_eq!(status_from_name(&name), Some(status));
        }
        assert_eq!(status_name(pb::JobStatus::Completing as i32), "Completing");
        // A dry run's status is shown as it is, never as a status of a run.
        let dry = pb::JobStatus::DryRunComplete;
        assert_eq!(status_name(dry as i32), "DryRunComplete");
        assert_eq!(status_from_name("DryRunComplete"), Some(dry));
        assert_eq!(status_from_name("ACTIVE"), None);
        assert_eq!(status_from_name("Done"), None);
    }
}
