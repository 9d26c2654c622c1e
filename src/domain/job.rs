//! The job aggregate: what a job was created with ([`JobSpec`]) and the state
//! its events fold into ([`Job`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use super::JobStatus;

/// A job's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A new, time-ordered id.
    pub fn generate() -> JobId {
        JobId(Uuid::now_v7())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The account that owns a job; validated at the API boundary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountId(pub String);

impl AccountId {
    /// Whether `text` has AWS's form of an account id: exactly 12 digits.
    pub fn is_valid(text: &str) -> bool {
        text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The layout of a manifest object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestFormat {
    /// `S3BatchOperations_CSV_20180820`.
    S3BatchOperationsCsv20180820,
    /// `S3InventoryReport_CSV_20161130`: the location is an inventory
    /// `manifest.json` listing CSV (optionally gzipped) files.
    S3InventoryReportCsv20161130,
}

/// What one manifest column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestField {
    /// A column to skip.
    Ignore,
    /// The bucket.
    Bucket,
    /// The URL-encoded key.
    Key,
    /// The version id.
    VersionId,
}

/// An object in the store: bucket and (decoded) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLocation {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
}

/// Where a manifest is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSpec {
    /// How the manifest is laid out.
    pub format: ManifestFormat,
    /// Empty means the default layout (`bucket,key[,version_id]`).
    pub fields: Vec<ManifestField>,
    /// Where the manifest object is.
    pub location: ObjectLocation,
    /// When set, the manifest object must carry this ETag (without quotes).
    pub etag: Option<String>,
    /// When set, this version of the manifest object is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// Where a job's objects come from: a manifest, or a listing of a bucket.
/// Stored untagged, so a `ManifestSpec` reads back as it was first written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ManifestSource {
    /// A manifest object.
    Manifest(ManifestSpec),
    /// A listing of a bucket.
    Generator(GeneratorSpec),
}

/// Lists `source_bucket` under `prefix` and keeps the objects that pass every
/// filter that is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorSpec {
    /// The bucket to list.
    pub source_bucket: String,
    /// Only keys under this prefix.
    pub prefix: String,
    /// Keys must start with one of these, when any is given.
    pub match_any_prefix: Vec<String>,
    /// Keys must end with one of these, when any is given.
    pub match_any_suffix: Vec<String>,
    /// Keys must contain one of these, when any is given.
    pub match_any_substring: Vec<String>,
    /// Only objects larger than this many bytes.
    pub size_greater_than: Option<u64>,
    /// Only objects smaller than this many bytes.
    pub size_less_than: Option<u64>,
    /// Only objects created after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only objects created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

impl GeneratorSpec {
    /// Whether an object with this key, size and creation time is selected.
    pub fn selects(&self, key: &str, size: u64, created: DateTime<Utc>) -> bool {
        let any = |patterns: &[String], test: &dyn Fn(&str) -> bool| {
            patterns.is_empty() || patterns.iter().any(|p| test(p))
        };
        key.starts_with(&self.prefix)
            && any(&self.match_any_prefix, &|p| key.starts_with(p))
            && any(&self.match_any_suffix, &|p| key.ends_with(p))
            && any(&self.match_any_substring, &|p| key.contains(p))
            && self.size_greater_than.is_none_or(|min| size > min)
            && self.size_less_than.is_none_or(|max| size < max)
            && self.created_after.is_none_or(|after| created > after)
            && self.created_before.is_none_or(|before| created < before)
    }
}

/// A checksum algorithm of the `compute_object_checksum` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO HDLC).
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-64/NVME.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// MD5.
    Md5,
}

impl ChecksumAlgorithm {
    /// The name S3 uses for the algorithm.
    pub fn s3_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
            ChecksumAlgorithm::Md5 => "MD5",
        }
    }
}

/// The operation a job runs on each object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Compute a checksum of each object with `algorithm`.
    ComputeObjectChecksum {
        /// The checksum to compute.
        algorithm: ChecksumAlgorithm,
    },
    /// Delete each object.
    DeleteObject,
    /// Call an HTTP endpoint with each object, as AWS Lambda is called.
    Invoke(InvokeSpec),
    /// Copy each object.
    PutObjectCopy(CopySpec),
    /// Replace each object's tag set.
    PutObjectTagging {
        /// The new tag set (at most 10).
        tags: Vec<super::ObjectTag>,
    },
    /// Remove each object's tags.
    DeleteObjectTagging,
    /// Set or remove each object's legal hold.
    PutObjectLegalHold {
        /// The hold.
        status: super::LegalHold,
    },
    /// Set each object's retention.
    PutObjectRetention(super::RetentionSpec),
    /// Replace each object's ACL.
    PutObjectAcl(super::AclSpec),
    /// Start a restore of each archived object.
    InitiateRestoreObject(super::RestoreSpec),
}

impl Operation {
    /// What only an S3 store keeps, for an operation that changes it: the
    /// directory store refuses such jobs.
    pub fn needs_s3(&self) -> Option<&'static str> {
        match self {
            Operation::PutObjectTagging { .. } | Operation::DeleteObjectTagging => {
                Some("object tags")
            }
            Operation::PutObjectLegalHold { .. } => Some("Object Lock legal holds"),
            Operation::PutObjectRetention(_) => Some("Object Lock retention"),
            Operation::PutObjectAcl(_) => Some("object ACLs"),
            Operation::InitiateRestoreObject(_) => Some("archived objects to restore"),
            Operation::ComputeObjectChecksum { .. }
            | Operation::DeleteObject
            | Operation::Invoke(_)
            | Operation::PutObjectCopy(_) => None,
        }
    }
}

/// Copy each object to `target_bucket`, its key prefixed by `target_key_prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySpec {
    /// The bucket copies go to.
    pub target_bucket: String,
    /// Prepended to each object's key.
    pub target_key_prefix: String,
    /// Keep the object's metadata or replace it.
    pub metadata: MetadataDirective,
}

/// What metadata a copy carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataDirective {
    /// Keep the source object's metadata (a server-side copy).
    Copy,
    /// Write the copy with this metadata instead.
    Replace(ObjectMetadata),
}

/// Object metadata set by a copy with the REPLACE directive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMetadata {
    /// The `Content-Type` to set.
    pub content_type: Option<String>,
    /// The `Cache-Control` to set.
    pub cache_control: Option<String>,
    /// User metadata (`x-amz-meta-*`) to set.
    pub user_metadata: std::collections::BTreeMap<String, String>,
}

/// The payload layout of an Invoke call, as AWS Lambda handlers expect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationSchema {
    /// `1.0`: tasks name `s3BucketArn`.
    V1,
    /// `2.0`: tasks name `s3Bucket`; the job carries `userArguments`.
    V2,
}

/// POST one AWS Lambda S3 batch event per task to an HTTP(S) endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeSpec {
    /// The endpoint, under the server's invoke allowlist.
    pub endpoint_url: String,
    /// The event layout the handler expects.
    pub schema: InvocationSchema,
    /// Passed to schema 2.0 handlers as `userArguments`.
    pub user_arguments: std::collections::BTreeMap<String, String>,
    /// Per-call timeout.
    pub timeout_millis: u64,
    /// The Lambda function ARN the endpoint stands for, when the job named
    /// a function (S3 Control's `LambdaInvoke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
}

/// Which tasks a completion report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportScope {
    /// Every task.
    AllTasks,
    /// Failed tasks only.
    FailedTasksOnly,
}

/// Where the completion report goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSpec {
    /// The bucket the report goes to.
    pub bucket: String,
    /// Reports go under `<prefix>/job-<id>/`.
    pub prefix: String,
    /// Which tasks the report lists.
    pub scope: ReportScope,
}

/// The task-failure threshold: once `minimum_tasks_run` tasks have run, the job
/// fails when failed tasks exceed `max_failure_percent` of the tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureThreshold {
    /// Tasks run before the threshold is checked.
    pub minimum_tasks_run: u64,
    /// The share of failed tasks, in percent, above which the job fails.
    pub max_failure_percent: u32,
}

impl Default for FailureThreshold {
    /// AWS's fixed values: 1,000 tasks, 50 %.
    fn default() -> Self {
        FailureThreshold {
            minimum_tasks_run: 1000,
            max_failure_percent: 50,
        }
    }
}

impl FailureThreshold {
    /// Whether `failed` of `run` tasks crosses the threshold.
    pub fn is_exceeded(self, run: u64, failed: u64) -> bool {
        run >= self.minimum_tasks_run
            && u128::from(failed) * 100 > u128::from(self.max_failure_percent) * u128::from(run)
    }
}

/// A key/value label on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's key.
    pub key: String,
    /// The tag's value.
    pub value: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    /// A code such as `ManifestNotFound` or `TaskFailureThresholdExceeded`.
    pub failure_code: String,
    /// What happened, for people; at most 1 KiB.
    pub failure_reason: String,
}

impl FailureReason {
    /// A failure reason; an over-long reason is cut to
    /// [`MAX_FAILURE_REASON`](super::text::MAX_FAILURE_REASON) bytes, so no
    /// input can make an event or a reply unbounded.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> FailureReason {
        FailureReason {
            failure_code: super::text::truncated(&code.into(), 64),
            failure_reason: super::text::truncated(&reason.into(), super::text::MAX_FAILURE_REASON),
        }
    }
}

/// Everything a job is created with. Immutable after creation, except
/// priority and tags, which have their own events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The owning account.
    pub account_id: AccountId,
    /// The idempotency token of the CreateJob call.
    pub client_request_token: String,
    /// A description for people.
    pub description: String,
    /// The priority the job was created with.
    pub priority: i32,
    /// Whether the job waits in Suspended for its owner's confirmation.
    pub confirmation_required: bool,
    /// Where the job's objects come from.
    pub manifest: ManifestSource,
    /// What is done to each object.
    pub operation: Operation,
    /// Where the completion report goes, if one is wanted.
    pub report: Option<ReportSpec>,
    /// The tags the job was created with.
    pub tags: Vec<Tag>,
    /// When too many failed tasks fail the job.
    pub failure_threshold: FailureThreshold,
    /// The buckets the job may use, when the token that created it was
    /// limited to some; absent means any bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_grant: Option<super::BucketGrant>,
    /// The IAM role ARN the job was created with (recorded for jobs moved
    /// over from AWS; batchops assumes no role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// A dry run: the manifest is read and its objects counted, and the job
    /// ends in DryRunComplete; no task runs and no object is touched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Where the job's status changes are POSTed, when it named an endpoint
    /// (checked against the invoke allowlist when the job was created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_endpoint: Option<String>,
}

/// Task counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Tasks the manifest produced.
    pub total: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// The objects' total size in bytes, when the manifest or the listing
    /// gave every object's size (generators and inventory reports with a
    /// `Size` column do; CSV manifests do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

impl Progress {
    /// Tasks with a final result.
    pub fn run(self) -> u64 {
        self.succeeded + self.failed
    }

    /// Whether every task has a final result.
    pub fn is_finished(self) -> bool {
        self.run() >= self.total
    }
}

/// The current state of a job: the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// What the job was created with.
    pub spec: JobSpec,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// The current priority.
    pub priority: i32,
    /// The current tags.
    pub tags: Vec<Tag>,
    /// Task counts.
    pub progress: Progress,
    /// Why the job failed, or why its report could not be written.
    pub failure_reasons: Vec<FailureReason>,
    /// The reason given with the latest confirmation or cancellation.
    pub status_update_reason: Option<String>,
    /// When the job entered Suspended.
    pub suspended_time: Option<DateTime<Utc>>,
    /// Why it waits in Suspended.
    pub suspended_cause: Option<String>,
    /// Set once the job was confirmed; it never returns to Suspended after.
    pub confirmed: bool,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// When the job reached a terminal status (Complete, Cancelled, Failed,
    /// or a dry run's DryRunComplete).
    pub termination_time: Option<DateTime<Utc>>,
    /// When the current Active interval began, while Active.
    pub active_since: Option<DateTime<Utc>>,
    /// Milliseconds spent Active in completed intervals.
    pub elapsed_active_millis: i64,
    /// Where the completion report's `manifest.json` was written.
    #[serde(default)]
    pub report_location: Option<ObjectLocation>,
    /// The failures so far by error code, with samples.
    #[serde(default)]
    pub errors: super::ErrorSummary,
    /// The sequence number of the job's latest logged event.
    pub version: u64,
}

impl Job {
    /// Whether the job needs a completion report: one was asked for, at least
    /// one task ran, and none has been written (or failed) yet.
    pub fn needs_report(&self) -> bool {
        self.spec.report.is_some() && self.progress.run() > 0 && !self.report_recorded()
    }

    /// Whether the report must be written before the current status may
    /// end: one is needed and the status ends with it (not Pausing).
    pub fn report_due(&self) -> bool {
        self.status.ends_with_report() && self.needs_report()
    }

    /// Whether a report outcome (written or failed) is already recorded.
    pub fn report_recorded(&self) -> bool {
        self.report_location.is_some()
            || self
                .failure_reasons
                .iter()
                .any(|r| r.failure_code == super::REPORT_WRITE_FAILED)
    }

    /// Seconds spent Active up to `now`, counting a current Active interval.
    pub fn elapsed_active_seconds(&self, now: DateTime<Utc>) -> i64 {
        let current = self
            .active_since
            .map(|since| (now - since).num_milliseconds().max(0))
            .unwrap_or(0);
        (self.elapsed_active_millis + current) / 1000
    }
}
