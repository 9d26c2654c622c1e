//! Completion reports in AWS's `Report_CSV_20180820` format, streamed into
//! CSV files of bounded size and described by a `manifest.json`:
//!
//! ```text
//! <prefix>/job-<job_id>/manifest.json
//! <prefix>/job-<job_id>/results/<uuid>.csv
//! ```
//!
//! Rows have no header and follow AWS's actual order: bucket, URL-encoded key,
//! version id, `succeeded`/`failed`, HTTP status code, error code, result
//! message. Failed and succeeded tasks go to separate files, each listed in the
//! manifest with its MD5.

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use object_store::{PutPayload, WriteMultipart};
use serde_json::json;

use super::{Buckets, encode_key};
use crate::domain::ObjectLocation;
use crate::domain::text::quoted;
use crate::domain::{TaskResult, TaskRow};

/// The `ReportSchema` line AWS writes (its rows put the HTTP status first).
pub const REPORT_SCHEMA: &str =
    "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage";

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report's bucket or prefix cannot name objects.
    #[error("report location {0}")]
    Location(#[from] super::InvalidKey),
    /// The object store failed.
    #[error("{0}")]
    Store(#[from] object_store::Error),
    /// A row could not be written.
    #[error("{0}")]
    Rows(String),
}

/// A results file written so far.
#[derive(Debug, Clone)]
pub struct ReportFile {
    /// The file's key.
    pub key: String,
    /// Whether it lists succeeded tasks (else failed ones).
    pub succeeded: bool,
    /// The MD5 of its content, in hex.
    pub md5: String,
    /// Rows in it.
    pub rows: u64,
}

/// Writes one report: files for failed tasks, then (unless only failures are
/// wanted) files for succeeded ones, then the manifest.
pub struct ReportWriter<'a> {
    buckets: &'a Buckets,
    bucket: String,
    base: String,
    rows_per_file: u64,
    files: Vec<ReportFile>,
    current: Option<OpenFile>,
}

struct OpenFile {
    upload: WriteMultipart,
    md5: Md5,
    file: ReportFile,
}

/// Report file parts uploading at once.
const UPLOADS_IN_FLIGHT: usize = 4;

impl<'a> ReportWriter<'a> {
    /// A writer for `<bucket>/<prefix>/job-<job_id>/`.
    pub fn new(
        buckets: &'a Buckets,
        bucket: &str,
        prefix: &str,
        job_id: &str,
        rows_per_file: u64,
    ) -> ReportWriter<'a> {
        let base = if prefix.is_empty() {
            format!("job-{job_id}")
        } else {
            format!("{}/job-{job_id}", prefix.trim_matches('/'))
        };
        ReportWriter {
            buckets,
            bucket: bucket.to_owned(),
            base,
            rows_per_file: rows_per_file.max(1),
            files: Vec::new(),
            current: None,
        }
    }

    /// Appends rows of one status (the caller passes failed rows first, then
    /// succeeded ones), opening a new file when the status changes or the
    /// current file is full.
    pub async fn write_rows(&mut self, rows: &[(TaskRow, TaskResult)]) -> Result<(), ReportError> {
        for (object, result) in rows {
            let needs_new = match &self.current {
                Some(open) => {
                    open.file.succeeded != result.succeeded || open.file.rows >= self.rows_per_file
                }
                None => true,
            };
            if needs_new {
                self.close_file().await?;
                self.open_file(result.succeeded).await?;
            }
            let line = csv_row(object, result)?;
            let Some(open) = self.current.as_mut() else {
                return Err(ReportError::Rows("no report file is open".into()));
            };
            open.md5.update(&line);
            open.upload.write(&line);
            open.file.rows += 1;
        }
        // Parts already handed to the store upload in the background; at
        // most a few at a time, so memory stays bounded however large the
        // report (parts are 5 MiB).
        if let Some(open) = self.current.as_mut() {
            open.upload.wait_for_capacity(UPLOADS_IN_FLIGHT).await?;
        }
        Ok(())
    }

    async fn open_file(&mut self, succeeded: bool) -> Result<(), ReportError> {
        let key = format!("{}/results/{}.csv", self.base, uuid::Uuid::new_v4());
        let target = self.buckets.locate(&self.bucket, &key)?;
        let upload = target.store.put_multipart(&target.path).await?;
        self.current = Some(OpenFile {
            upload: WriteMultipart::new(upload),
            md5: Md5::new(),
            file: ReportFile {
                key,
                succeeded,
                md5: String::new(),
                rows: 0,
            },
        });
        Ok(())
    }

    async fn close_file(&mut self) -> Result<(), ReportError> {
        if let Some(open) = self.current.take() {
            open.upload.finish().await?;
            let mut file = open.file;
            file.md5 = hex::encode(open.md5.finalize());
            self.files.push(file);
        }
        Ok(())
    }

    /// Closes the last file and writes `manifest.json`; returns its location.
    pub async fn finish(
        mut self,
        created: DateTime<Utc>,
    ) -> Result<(ObjectLocation, Vec<ReportFile>), ReportError> {
        self.close_file().await?;
        let results: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|file| {
                json!({
                    "TaskExecutionStatus": if file.succeeded { "succeeded" } else { "failed" },
                    "Bucket": self.bucket,
                    "MD5Checksum": file.md5,
                    "Key": file.key,
                })
            })
            .collect();
        let manifest = json!({
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "Results": results,
            "ReportSchema": REPORT_SCHEMA,
        });
        let key = format!("{}/manifest.json", self.base);
        let target = self.buckets.locate(&self.bucket, &key)?;
        target
            .store
            .put(
                &target.path,
                PutPayload::from(manifest.to_string().into_bytes()),
            )
            .await?;
        Ok((
            ObjectLocation {
                bucket: self.bucket,
                key,
            },
            self.files,
        ))
    }
}

/// One report row, RFC 4180 quoted, ending in `\n`.
fn csv_row(object: &TaskRow, result: &TaskResult) -> Result<Vec<u8>, ReportError> {
    report_row(&ReportRow {
        bucket: &object.bucket,
        key: &object.key,
        version_id: object.version_id.as_deref().unwrap_or(""),
        succeeded: result.succeeded,
        http_status_code: result.http_status_code,
        error_code: result.error_code.as_deref().unwrap_or(""),
        result_message: result.result_message.as_deref().unwrap_or(""),
    })
    .map_err(|error| ReportError::Rows(error.to_string()))
}

/// One task's line of a completion report, before encoding.
pub struct ReportRow<'a> {
    /// The object's bucket.
    pub bucket: &'a str,
    /// The key as stored; the row carries it URL-encoded.
    pub key: &'a str,
    /// The version id, or empty.
    pub version_id: &'a str,
    /// Whether the task succeeded.
    pub succeeded: bool,
    /// The HTTP status S3 would report.
    pub http_status_code: i32,
    /// The error code, or empty.
    pub error_code: &'a str,
    /// The result message, or empty.
    pub result_message: &'a str,
}

/// A report line in AWS's column order (bucket, URL-encoded key, version id,
/// `succeeded`/`failed`, HTTP status code, error code, result message),
/// quoted as RFC 4180, ending in `\n`.
pub fn report_row(row: &ReportRow<'_>) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(128));
    writer.write_record([
        row.bucket,
        &encode_key(row.key),
        row.version_id,
        if row.succeeded { "succeeded" } else { "failed" },
        &row.http_status_code.to_string(),
        row.error_code,
        row.result_message,
    ])?;
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_aws_order_and_quote_as_rfc_4180() {
        let object = TaskRow {
            bucket: "bkt".into(),
            key: "dir/a b,c.txt".into(),
            version_id: Some("v1".into()),
        };
        let result = TaskResult {
            task_number: 0,
            succeeded: false,
            http_status_code: 404,
            error_code: Some("NoSuchKey".into()),
            result_message: Some("says \"no\", twice".into()),
        };
        let line = String::from_utf8(csv_row(&object, &result).unwrap()).unwrap();
        assert_eq!(
            line,
            "bkt,dir/a%20b%2Cc.txt,v1,failed,404,NoSuchKey,\"says \"\"no\"\", twice\"\n"
        );
    }
}

/// The largest report manifest read back (a manifest lists one entry per
/// results file: 32 MiB is well over 100,000 files).
pub const MAX_MANIFEST_BYTES: u64 = 32 << 20;

/// A results file that a report's `manifest.json` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The MD5 of its content, in hex, as the manifest gives it.
    pub md5: String,
}

/// The results files a `manifest.json` lists; the error says what is wrong
/// with it.
pub fn listed_files(manifest: &[u8]) -> Result<Vec<ListedFile>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|error| error.to_string())?;
    if value["Format"] != "Report_CSV_20180820" {
        return Err("not a Report_CSV_20180820 manifest".into());
    }
    let results = value["Results"]
        .as_array()
        .ok_or_else(|| "no Results list".to_owned())?;
    results
        .iter()
        .map(|entry| {
            let field = |name: &str| {
                entry[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("a result has no {name}"))
            };
            Ok(ListedFile {
                bucket: field("Bucket")?,
                key: field("Key")?,
                md5: field("MD5Checksum")?,
            })
        })
        .collect()
}

/// Why a report file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReportReadError {
    /// The key is neither the report's manifest nor a file it lists.
    #[error("{0} is not a file of this job's report")]
    NotListed(String),
    /// The file is gone from the store.
    #[error("{0} is no longer in the object store")]
    Missing(String),
    /// The manifest cannot be used.
    #[error("the report's manifest.json {0}")]
    Manifest(String),
    /// The object store failed.
    #[error("{0}")]
    Store(#[from] object_store::Error),
}

/// One file of the report whose manifest is at `manifest`, as a stream of
/// chunks: the manifest itself, or a results file it lists. Nothing else in
/// the store can be reached this way.
pub async fn report_file(
    buckets: &Buckets,
    manifest: &ObjectLocation,
    key: &str,
) -> Result<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>, ReportReadError>
{
    let located = |key: &str| {
        buckets
            .locate(&manifest.bucket, key)
            .map_err(|_| ReportReadError::NotListed(quoted(key)))
    };
    let missing = |error: object_store::Error, key: &str| match error {
        object_store::Error::NotFound { .. } => ReportReadError::Missing(key.to_owned()),
        other => ReportReadError::Store(other),
    };
    if key != manifest.key {
        let object = located(&manifest.key)?;
        let got = object
            .store
            .get(&object.path)
            .await
            .map_err(|error| missing(error, &manifest.key))?;
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(ReportReadError::Manifest(format!(
                "is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let content = got.bytes().await?;
        let files = listed_files(&content).map_err(ReportReadError::Manifest)?;
        if !files
            .iter()
            .any(|file| file.bucket == manifest.bucket && file.key == key)
        {
            return Err(ReportReadError::NotListed(quoted(key)));
        }
    }
    let object = located(key)?;
    let got = object
        .store
        .get(&object.path)
        .await
        .map_err(|error| missing(error, key))?;
    Ok(got.into_stream())
}
