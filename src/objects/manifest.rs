//! Streams a `S3BatchOperations_CSV_20180820` manifest into batches of task
//! rows. The object is read as a byte stream and parsed on a blocking thread;
//! batches travel over a bounded channel, so memory stays flat whatever the
//! manifest's size.

use std::io::Read;

use futures::{StreamExt, TryStreamExt};
use object_store::GetOptions;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Buckets, is_valid_bucket, object_path};
use crate::domain::text::{quoted, truncated};
use crate::domain::{
    BucketGrant, FailureReason, GeneratorSpec, ManifestField, ManifestFormat, ManifestSpec,
    ObjectLocation, TaskRow,
};

/// Why a manifest cannot be turned into tasks. Each maps to a failure code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The manifest object does not exist.
    #[error("manifest {bucket}/{key} does not exist")]
    NotFound {
        /// The manifest's bucket.
        bucket: String,
        /// The manifest's key.
        key: String,
    },
    /// The manifest object is not the version the job pinned.
    #[error("manifest {bucket}/{key} has ETag {found:?}, not the pinned {expected:?}")]
    ETagMismatch {
        /// The manifest's bucket.
        bucket: String,
        /// The manifest's key.
        key: String,
        /// The ETag the job pinned.
        expected: String,
        /// The ETag the manifest object has.
        found: String,
    },
    /// A line that is not a valid manifest line.
    #[error("manifest line {line}: {problem}")]
    Invalid {
        /// The line's number, from 1.
        line: u64,
        /// What is wrong with it (quoting a short excerpt at most).
        problem: String,
    },
    /// The job's `fields` cannot describe a manifest.
    #[error("manifest fields are invalid: {0}")]
    InvalidFields(String),
    /// The manifest could not be read.
    #[error("manifest could not be read: {0}")]
    Unreadable(String),
    /// The inventory's `manifest.json` is not usable.
    #[error("inventory manifest: {0}")]
    InvalidInventory(String),
    /// The generator cannot list what it names.
    #[error("manifest generator: {0}")]
    InvalidGenerator(String),
    /// The manifest names a bucket the job's token does not grant.
    #[error("the job's token does not grant bucket {0}, which the manifest names")]
    AccessDenied(String),
}

impl ManifestError {
    /// The failure recorded on the job.
    pub fn failure_reason(&self) -> FailureReason {
        let code = match self {
            ManifestError::NotFound { .. } => "ManifestNotFound",
            ManifestError::ETagMismatch { .. } => "ManifestETagMismatch",
            ManifestError::Invalid { .. }
            | ManifestError::InvalidFields(_)
            | ManifestError::InvalidInventory(_)
            | ManifestError::InvalidGenerator(_) => "ManifestInvalid",
            ManifestError::Unreadable(_) => "ManifestUnreadable",
            ManifestError::AccessDenied(_) => "AccessDenied",
        };
        FailureReason::new(code, self.to_string())
    }
}

/// Consecutive task rows of a manifest, with their objects' total size
/// when the source gave every row's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowBatch {
    /// The rows, in manifest order.
    pub rows: Vec<TaskRow>,
    /// The rows' objects' total size in bytes: listings and inventory
    /// reports with a `Size` column give it, CSV manifests do not.
    pub bytes: Option<u64>,
}

/// Batches of task rows from a manifest being read.
pub struct ManifestBatches {
    receiver: mpsc::Receiver<Result<RowBatch, ManifestError>>,
    /// Whether the source gives every object's size (a listing, or an
    /// inventory with a `Size` column), so that even no batch means 0 bytes.
    pub sizes_known: bool,
}

impl ManifestBatches {
    /// The next batch, an error (after which nothing follows), or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RowBatch, ManifestError>> {
        self.receiver.recv().await
    }
}

/// Inventory `manifest.json` files larger than this are refused.
const MAX_INVENTORY_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// The longest key a manifest may name, in bytes once decoded (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest version id a manifest may name, in bytes.
pub const MAX_VERSION_ID_BYTES: usize = 1024;

/// The longest manifest line, in bytes: a bucket, a key URL-encoded at three
/// bytes a character, a version id and their quotes fit easily.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Opens the manifest (checking its ETag when pinned) and starts parsing it.
/// With a bucket grant, an inventory's data files must lie in a granted
/// bucket.
pub async fn open(
    buckets: &Buckets,
    spec: &ManifestSpec,
    grant: Option<&BucketGrant>,
    batch_size: usize,
) -> Result<ManifestBatches, ManifestError> {
    let object = fetch(
        buckets,
        &spec.location,
        spec.etag.as_deref(),
        spec.version_id.as_deref(),
    )
    .await?;
    let (sender, receiver) = mpsc::channel(2);
    let mut sizes_known = false;
    match spec.format {
        ManifestFormat::S3BatchOperationsCsv20180820 => {
            let options = CsvOptions {
                fields: spec.fields.clone(),
                empty_version_is_none: false,
                size_column: None,
            };
            tokio::spawn(parse_object(
                object, false, options, batch_size, sender, None,
            ));
        }
        ManifestFormat::S3InventoryReportCsv20161130 => {
            let bytes = object
                .bytes()
                .await
                .map_err(|error| ManifestError::Unreadable(error.to_string()))?;
            if bytes.len() > MAX_INVENTORY_MANIFEST_BYTES {
                return Err(ManifestError::InvalidInventory(format!(
                    "manifest.json is larger than {MAX_INVENTORY_MANIFEST_BYTES} bytes"
                )));
            }
            let inventory = Inventory::parse(&bytes)?;
            if grant.is_some_and(|grant| !grant.permits(&inventory.destination_bucket)) {
                return Err(ManifestError::AccessDenied(quoted(
                    &inventory.destination_bucket,
                )));
            }
            sizes_known = inventory.size_column.is_some();
            tokio::spawn(read_inventory(
                buckets.clone(),
                inventory,
                batch_size,
                sender,
            ));
        }
    }
    Ok(ManifestBatches {
        receiver,
        sizes_known,
    })
}

/// Lists the generator's bucket and streams the selected objects as task
/// rows, in listing order.
pub async fn generate(
    buckets: &Buckets,
    spec: &GeneratorSpec,
    batch_size: usize,
) -> Result<ManifestBatches, ManifestError> {
    let listing = buckets
        .listing(&spec.source_bucket, &spec.prefix)
        .map_err(|error| ManifestError::InvalidGenerator(error.to_string()))?;
    let (sender, receiver) = mpsc::channel(2);
    let spec = spec.clone();
    tokio::spawn(async move {
        let mut objects = listing.store.list(listing.directory.as_ref());
        let mut batch = Vec::with_capacity(batch_size);
        let mut bytes = 0u64;
        while let Some(meta) = objects.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                // A directory that does not exist lists nothing.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(error) => {
                    let _ = sender
                        .send(Err(ManifestError::Unreadable(error.to_string())))
                        .await;
                    return;
                }
            };
            let Some(key) = meta.location.as_ref().get(listing.strip..) else {
                continue;
            };
            if !spec.selects(key, meta.size, meta.last_modified) {
                continue;
            }
            batch.push(TaskRow {
                bucket: spec.source_bucket.clone(),
                key: key.to_owned(),
                version_id: None,
            });
            bytes = bytes.saturating_add(meta.size);
            if batch.len() == batch_size {
                let full = RowBatch {
                    rows: std::mem::take(&mut batch),
                    bytes: Some(std::mem::take(&mut bytes)),
                };
                if sender.send(Ok(full)).await.is_err() {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let last = RowBatch {
                rows: batch,
                bytes: Some(bytes),
            };
            let _ = sender.send(Ok(last)).await;
        }
    });
    Ok(ManifestBatches {
        receiver,
        sizes_known: true,
    })
}

/// Gets an object (its `version` when given), mapping a missing object and
/// an ETag mismatch to their manifest errors.
async fn fetch(
    buckets: &Buckets,
    location: &ObjectLocation,
    etag: Option<&str>,
    version: Option<&str>,
) -> Result<object_store::GetResult, ManifestError> {
    let not_found = || ManifestError::NotFound {
        bucket: location.bucket.clone(),
        key: location.key.clone(),
    };
    let object = buckets
        .locate(&location.bucket, &location.key)
        .map_err(|_| not_found())?;
    let options = GetOptions {
        if_match: etag.map(|etag| etag.trim_matches('"').to_owned()),
        version: version.map(str::to_owned),
        ..GetOptions::default()
    };
    match object.store.get_opts(&object.path, options).await {
        Ok(object) => Ok(object),
        Err(object_store::Error::NotFound { .. }) => Err(not_found()),
        Err(object_store::Error::Precondition { .. }) => {
            // Name the ETag the object has, so the job can be pinned to it.
            let head = GetOptions {
                version: version.map(str::to_owned),
                head: true,
                ..GetOptions::default()
            };
            let found = match object.store.get_opts(&object.path, head).await.map(|got| got.meta) {
                Ok(meta) => meta.e_tag.unwrap_or_default(),
                Err(_) => String::new(),
            };
            Err(ManifestError::ETagMismatch {
                bucket: location.bucket.clone(),
                key: location.key.clone(),
                expected: etag.unwrap_or_default().to_owned(),
                found,
            })
        }
        Err(object_store::Error::NotImplemented) if version.is_some() => {
            Err(ManifestError::Unreadable(
                "the object store keeps no object versions, so the manifest's version cannot be read"
                    .into(),
            ))
        }
        Err(other) => Err(ManifestError::Unreadable(other.to_string())),
    }
}

type BatchSender = mpsc::Sender<Result<RowBatch, ManifestError>>;

/// Parses one CSV object (gunzipping it when `gzip`) on a blocking thread,
/// sending batches; returns whether it reached the end without error. Errors
/// name `file` when given.
async fn parse_object(
    object: object_store::GetResult,
    gzip: bool,
    options: CsvOptions,
    batch_size: usize,
    sender: BatchSender,
    file: Option<String>,
) -> bool {
    let bytes = object.into_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(bytes));
    let parsed = tokio::task::spawn_blocking(move || {
        let input: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let outcome = parse_with(input, &options, batch_size, |batch| {
            sender.blocking_send(Ok(batch)).is_ok()
        });
        match outcome {
            Ok(_) => true,
            Err(error) => {
                let error = match (error, file) {
                    (ManifestError::Invalid { line, problem }, Some(file)) => {
                        ManifestError::Invalid {
                            line,
                            problem: format!("{problem} (in {file})"),
                        }
                    }
                    (error, _) => error,
                };
                let _ = sender.blocking_send(Err(error));
                false
            }
        }
    })
    .await;
    parsed.unwrap_or(false)
}

/// Reads every file an inventory lists, in order, into one batch stream.
async fn read_inventory(
    buckets: Buckets,
    inventory: Inventory,
    batch_size: usize,
    sender: BatchSender,
) {
    for key in inventory.files {
        let location = ObjectLocation {
            bucket: inventory.destination_bucket.clone(),
            key: key.clone(),
        };
        let object = match fetch(&buckets, &location, None, None).await {
            Ok(object) => object,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let options = CsvOptions {
            fields: inventory.fields.clone(),
            empty_version_is_none: true,
            size_column: inventory.size_column,
        };
        let gzip = key.ends_with(".gz");
        if !parse_object(object, gzip, options, batch_size, sender.clone(), Some(key)).await {
            return;
        }
    }
}

/// What an S3 Inventory `manifest.json` says about its data files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The bucket the data files are in.
    pub destination_bucket: String,
    /// The columns of the data files.
    pub fields: Vec<ManifestField>,
    /// The data files' keys.
    pub files: Vec<String>,
    /// The column of the objects' sizes, when the `fileSchema` has `Size`.
    pub size_column: Option<usize>,
}

impl Inventory {
    /// Parses a `manifest.json`: CSV files only; `Bucket` and `Key` must be in
    /// the `fileSchema`.
    pub fn parse(bytes: &[u8]) -> Result<Inventory, ManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            destination_bucket: String,
            file_format: String,
            file_schema: String,
            files: Vec<RawFile>,
        }
        #[derive(Deserialize)]
        struct RawFile {
            key: String,
        }
        let invalid = |problem: String| ManifestError::InvalidInventory(problem);
        let raw: Raw = serde_json::from_slice(bytes).map_err(|error| {
            invalid(format!(
                "manifest.json is not an inventory manifest: {}",
                truncated(&error.to_string(), 256)
            ))
        })?;
        if !raw.file_format.eq_ignore_ascii_case("csv") {
            return Err(invalid(format!(
                "fileFormat {} is not supported (CSV only)",
                quoted(&raw.file_format)
            )));
        }
        let destination_bucket = raw
            .destination_bucket
            .strip_prefix("arn:aws:s3:::")
            .unwrap_or(&raw.destination_bucket)
            .to_owned();
        if !is_valid_bucket(&destination_bucket) {
            return Err(invalid(format!(
                "destinationBucket {} is not a bucket",
                quoted(&raw.destination_bucket)
            )));
        }
        let fields: Vec<ManifestField> = raw
            .file_schema
            .split(',')
            .map(|column| match column.trim() {
                "Bucket" => ManifestField::Bucket,
                "Key" => ManifestField::Key,
                "VersionId" => ManifestField::VersionId,
                _ => ManifestField::Ignore,
            })
            .collect();
        let size_column = raw
            .file_schema
            .split(',')
            .position(|column| column.trim() == "Size");
        layout_from_fields(&fields).map_err(|_| {
            invalid(format!(
                "fileSchema {} lacks Bucket or Key",
                quoted(&raw.file_schema)
            ))
        })?;
        if raw.files.is_empty() {
            return Err(invalid("the inventory lists no file".into()));
        }
        let mut seen = std::collections::HashSet::with_capacity(raw.files.len());
        for file in &raw.files {
            if object_path(&destination_bucket, &file.key).is_err() {
                return Err(invalid(format!(
                    "file key {} is not a key of 1–{MAX_KEY_BYTES} bytes inside its bucket",
                    quoted(&file.key)
                )));
            }
            if !seen.insert(file.key.as_str()) {
                return Err(invalid(format!(
                    "the inventory lists file {} more than once",
                    quoted(&file.key)
                )));
            }
        }
        Ok(Inventory {
            destination_bucket,
            fields,
            files: raw.files.into_iter().map(|f| f.key).collect(),
            size_column,
        })
    }
}

/// How CSV rows are read.
#[derive(Debug, Clone)]
struct CsvOptions {
    fields: Vec<ManifestField>,
    /// Inventory reports of unversioned buckets leave VersionId empty.
    empty_version_is_none: bool,
    /// The column of the objects' sizes (inventory reports only); an empty
    /// cell is a delete marker's, 0 bytes.
    size_column: Option<usize>,
}

/// The column layout: explicit `fields`, or inferred from the first row.
#[derive(Debug, Clone, Copy)]
struct Layout {
    bucket: usize,
    key: usize,
    version_id: Option<usize>,
    columns: Option<usize>,
}

/// Checks an explicit `fields` list: BUCKET and KEY exactly once, VERSION_ID
/// at most once.
pub fn validate_fields(fields: &[ManifestField]) -> Result<(), ManifestError> {
    layout_from_fields(fields).map(|_| ())
}

fn layout_from_fields(fields: &[ManifestField]) -> Result<Option<Layout>, ManifestError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let position = |wanted: ManifestField| -> Result<Option<usize>, ManifestError> {
        let mut found = fields.iter().enumerate().filter(|(_, f)| **f == wanted);
        let first = found.next().map(|(i, _)| i);
        if found.next().is_some() {
            return Err(ManifestError::InvalidFields(format!(
                "{wanted:?} appears more than once"
            )));
        }
        Ok(first)
    };
    let bucket = position(ManifestField::Bucket)?
        .ok_or_else(|| ManifestError::InvalidFields("Bucket is missing".into()))?;
    let key = position(ManifestField::Key)?
        .ok_or_else(|| ManifestError::InvalidFields("Key is missing".into()))?;
    Ok(Some(Layout {
        bucket,
        key,
        version_id: position(ManifestField::VersionId)?,
        columns: Some(fields.len()),
    }))
}

/// Parses CSV manifest rows from `input`, handing `emit` batches of at most
/// `batch_size` rows. Stops early when `emit` returns false. Returns the number
/// of rows.
pub fn parse_csv(
    input: impl Read,
    fields: &[ManifestField],
    batch_size: usize,
    emit: impl FnMut(Vec<TaskRow>) -> bool,
) -> Result<u64, ManifestError> {
    let options = CsvOptions {
        fields: fields.to_vec(),
        empty_version_is_none: false,
        size_column: None,
    };
    let mut emit = emit;
    parse_with(input, &options, batch_size, |batch| emit(batch.rows))
}

fn parse_with(
    input: impl Read,
    options: &CsvOptions,
    batch_size: usize,
    mut emit: impl FnMut(RowBatch) -> bool,
) -> Result<u64, ManifestError> {
    let mut layout = layout_from_fields(&options.fields)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(LineLimit::new(input, MAX_LINE_BYTES));
    let mut record = csv::StringRecord::new();
    let sized = || options.size_column.map(|_| 0u64);
    let mut batch = RowBatch {
        rows: Vec::with_capacity(batch_size),
        bytes: sized(),
    };
    let mut count = 0u64;
    loop {
        let line = reader.position().line();
        let more = reader
            .read_record(&mut record)
            .map_err(|error| csv_error(line, error))?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        let layout = match layout {
            Some(layout) => layout,
            None => {
                let inferred = match record.len() {
                    2 => Layout {
                        bucket: 0,
                        key: 1,
                        version_id: None,
                        columns: Some(2),
                    },
                    3 => Layout {
                        bucket: 0,
                        key: 1,
                        version_id: Some(2),
                        columns: Some(3),
                    },
                    n => {
                        return Err(ManifestError::Invalid {
                            line,
                            problem: format!(
                                "expected 2 or 3 columns (bucket,key[,version_id]), found {n}"
                            ),
                        });
                    }
                };
                *layout.insert(inferred)
            }
        };
        batch.rows.push(parse_row(
            &record,
            layout,
            line,
            options.empty_version_is_none,
        )?);
        batch.bytes = match (batch.bytes, options.size_column) {
            (Some(total), Some(column)) => {
                object_size(record.get(column)).map(|size| total.saturating_add(size))
            }
            _ => None,
        };
        count += 1;
        if batch.rows.len() == batch_size {
            let full = std::mem::replace(
                &mut batch,
                RowBatch {
                    rows: Vec::with_capacity(batch_size),
                    bytes: sized(),
                },
            );
            if !emit(full) {
                return Ok(count);
            }
        }
    }
    if !batch.rows.is_empty() {
        emit(batch);
    }
    Ok(count)
}

/// An inventory row's `Size`: empty for a delete marker (0 bytes); a cell
/// that is not a number leaves the total unknown rather than failing a
/// column that only counts.
fn object_size(cell: Option<&str>) -> Option<u64> {
    match cell.map(str::trim) {
        Some("") => Some(0),
        Some(text) => text.parse().ok(),
        None => None,
    }
}

fn parse_row(
    record: &csv::StringRecord,
    layout: Layout,
    line: u64,
    empty_version_is_none: bool,
) -> Result<TaskRow, ManifestError> {
    let invalid = |problem: String| ManifestError::Invalid { line, problem };
    if let Some(columns) = layout.columns
        && record.len() != columns
    {
        // Two columns where three were, or the other way round, is a
        // version id present on some rows only; anything else is not.
        let hint = if matches!((columns, record.len()), (2, 3) | (3, 2)) {
            "; version ids must be on all rows or none"
        } else {
            ""
        };
        return Err(invalid(format!(
            "expected {columns} columns like the first row, found {}{hint}",
            record.len()
        )));
    }
    let bucket = record[layout.bucket].trim();
    if !is_valid_bucket(bucket) {
        return Err(invalid(format!(
            "bucket name {} is not valid",
            quoted(bucket)
        )));
    }
    let encoded = &record[layout.key];
    let key = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| invalid(format!("key {} is not URL-encoded UTF-8", quoted(encoded))))?;
    if key.is_empty() {
        return Err(invalid("key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "key {} is longer than {MAX_KEY_BYTES} bytes",
            quoted(encoded)
        )));
    }
    if key.contains('\0') {
        return Err(invalid(format!(
            "key {} decodes to a NUL character",
            quoted(encoded)
        )));
    }
    let version_id = match layout.version_id {
        Some(column) if empty_version_is_none && record[column].trim().is_empty() => None,
        Some(column) => {
            let value = record[column].trim();
            if value.contains('\0') {
                return Err(invalid("version id contains a NUL character".into()));
            }
            if value.is_empty() {
                return Err(invalid(
                    "version id is empty; version ids must be on all rows or none".into(),
                ));
            }
            if value.len() > MAX_VERSION_ID_BYTES {
                return Err(invalid(format!(
                    "version id {} is longer than {MAX_VERSION_ID_BYTES} bytes",
                    quoted(value)
                )));
            }
            Some(value.to_owned())
        }
        None => None,
    };
    Ok(TaskRow {
        bucket: bucket.to_owned(),
        key: key.into_owned(),
        version_id,
    })
}

fn csv_error(line: u64, error: csv::Error) -> ManifestError {
    match error.kind() {
        csv::ErrorKind::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<LineTooLong>().is_some()) =>
        {
            ManifestError::Invalid {
                line,
                problem: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
            }
        }
        csv::ErrorKind::Io(io) => ManifestError::Unreadable(truncated(&io.to_string(), 256)),
        csv::ErrorKind::Utf8 { pos, .. } => ManifestError::Invalid {
            line: pos.as_ref().map(|p| p.line()).unwrap_or(line),
            problem: "the line is not valid UTF-8".into(),
        },
        _ => ManifestError::Invalid {
            line,
            problem: truncated(&error.to_string(), 256),
        },
    }
}

/// A line longer than the reader's limit.
#[derive(Debug, thiserror::Error)]
#[error("a manifest line is too long")]
struct LineTooLong;

/// Fails the read once a line exceeds `max` bytes, so that no line is held
/// whole in memory however long it is.
struct LineLimit<R> {
    inner: R,
    max: usize,
    /// Bytes since the last newline.
    current: usize,
}

impl<R: Read> LineLimit<R> {
    fn new(inner: R, max: usize) -> LineLimit<R> {
        LineLimit {
            inner,
            max,
            current: 0,
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        for segment in buffer[..read].split_inclusive(|&b| b == b'\n') {
            let ends_line = segment.last() == Some(&b'\n');
            self.current += segment.len() - usize::from(ends_line);
            if self.current > self.max {
                return Err(std::io::Error::other(LineTooLong));
            }
            if ends_line {
                self.current = 0;
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, fields: &[ManifestField]) -> Result<Vec<TaskRow>, ManifestError> {
        let mut rows = Vec::new();
        parse_csv(text.as_bytes(), fields, 2, |batch| {
            assert!(batch.len() <= 2);
            rows.extend(batch);
            true
        })?;
        Ok(rows)
    }

    fn row(bucket: &str, key: &str, version: Option<&str>) -> TaskRow {
        TaskRow {
            bucket: bucket.into(),
            key: key.into(),
            version_id: version.map(Into::into),
        }
    }

    #[test]
    fn keys_are_url_decoded() {
        let rows = parse(
            "bkt,a%20b/c%2Bd.txt\nbkt,plain\n\"bkt\",\"q%2Cuoted\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                row("bkt", "a b/c+d.txt", None),
                row("bkt", "plain", None),
                row("bkt", "q,uoted", None)
            ]
        );
    }

    #[test]
    fn version_ids_must_be_on_all_rows_or_none() {
        let rows = parse("bkt,k1,v1\nbkt,k2,v2\n", &[]).unwrap();
        assert_eq!(rows[1], row("bkt", "k2", Some("v2")));
        let error = parse("bkt,k1,v1\nbkt,k2\n", &[]).unwrap_err();
        assert!(
            matches!(error, ManifestError::Invalid { line: 2, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("version ids must be on all rows or none"),
            "{error}"
        );
    }

    #[test]
    fn fields_remap_columns() {
        use ManifestField::*;
        let rows = parse("x,k%2F1,bkt\n", &[Ignore, Key, Bucket]).unwrap();
        assert_eq!(rows, vec![row("bkt", "k/1", None)]);
        let rows = parse("v9,bkt,k\n", &[VersionId, Bucket, Key]).unwrap();
        assert_eq!(rows, vec![row("bkt", "k", Some("v9"))]);
        assert!(matches!(
            parse("a,b\n", &[Bucket, Bucket, Key]),
            Err(ManifestError::InvalidFields(_))
        ));
        assert!(matches!(
            parse("a,b\n", &[Bucket, Ignore]),
            Err(ManifestError::InvalidFields(_))
        ));
    }

    #[test]
    fn malformed_lines_are_named() {
        let error = parse("bkt,ok\nbkt,ok2\nonly-one-column\n", &[]).unwrap_err();
        assert_eq!(
            error,
            ManifestError::Invalid {
                line: 3,
                problem: "expected 2 columns like the first row, found 1".into()
            }
        );
        let error = parse("BAD_BUCKET,key\n", &[]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("manifest line 1: bucket name"),
            "{error}"
        );
        let error = parse("bkt,%FF%FE\n", &[]).unwrap_err();
        assert!(
            error.to_string().contains("not URL-encoded UTF-8"),
            "{error}"
        );
        let error = parse("bkt,a%00b\n", &[]).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
        let error = parse("a,b,c,d\n", &[]).unwrap_err();
        assert!(error.to_string().contains("found 4"), "{error}");
    }

    #[test]
    fn inventory_manifests_name_their_files_and_columns() {
        let json = br#"{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::inv-dest","version":"2016-11-30",
            "creationTimestamp":"1514944800000","fileFormat":"CSV",
            "fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size",
            "files":[{"key":"inv/a.csv.gz","size":10,"MD5checksum":"x"},{"key":"inv/b.csv","size":5,"MD5checksum":"y"}]}"#;
        let inventory = Inventory::parse(json).unwrap();
        assert_eq!(inventory.destination_bucket, "inv-dest");
        assert_eq!(inventory.files, vec!["inv/a.csv.gz", "inv/b.csv"]);
        use ManifestField::*;
        assert_eq!(
            inventory.fields,
            vec![Bucket, Key, VersionId, Ignore, Ignore, Ignore]
        );
        assert_eq!(inventory.size_column, Some(5));
        let orc = br#"{"destinationBucket":"d-d-d","fileFormat":"ORC","fileSchema":"Bucket, Key","files":[{"key":"a"}]}"#;
        assert!(
            Inventory::parse(orc)
                .unwrap_err()
                .to_string()
                .contains("ORC")
        );
        let no_key = br#"{"destinationBucket":"d-d-d","fileFormat":"CSV","fileSchema":"Bucket, Size","files":[{"key":"a"}]}"#;
        assert!(Inventory::parse(no_key).is_err());
        assert!(Inventory::parse(b"not json").is_err());
    }

    #[test]
    fn inventory_sizes_add_up_per_batch_and_a_bad_cell_leaves_the_total_unknown() {
        use ManifestField::*;
        let options = CsvOptions {
            fields: vec![Bucket, Key, Ignore],
            empty_version_is_none: true,
            size_column: Some(2),
        };
        let sizes = |text: &str| {
            let mut batches = Vec::new();
            parse_with(text.as_bytes(), &options, 2, |batch| {
                batches.push((batch.rows.len(), batch.bytes));
                true
            })
            .unwrap();
            batches
        };
        // Given rows of 10, 20, a delete marker (empty) and 5 bytes,
        // then: batches of two with their sums.
        assert_eq!(
            sizes("b1b,a,10\nb1b,b,20\nb1b,c,\nb1b,d,5\n"),
            vec![(2, Some(30)), (2, Some(5))]
        );
        // Given a size that is not a number: that batch's total is unknown.
        assert_eq!(
            sizes("b1b,a,10\nb1b,b,big\nb1b,c,7\n"),
            vec![(2, None), (1, Some(7))]
        );
    }

    #[test]
    fn inventory_rows_may_leave_the_version_empty() {
        use ManifestField::*;
        let options = CsvOptions {
            fields: vec![Bucket, Key, VersionId, Ignore],
            empty_version_is_none: true,
            size_column: None,
        };
        let mut rows = Vec::new();
        parse_with(
            "\"bkt\",\"a%20b\",\"\",\"true\"\n\"bkt\",\"c\",\"v2\",\"false\"\n".as_bytes(),
            &options,
            10,
            |batch| {
                assert_eq!(batch.bytes, None);
                rows.extend(batch.rows);
                true
            },
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![row("bkt", "a b", None), row("bkt", "c", Some("v2"))]
        );
    }

    #[test]
    fn a_poison_line_is_quoted_as_a_short_excerpt() {
        let poison = format!("{},key\n", "b".repeat(6_000_000));
        let error = parse(&poison, &[]).unwrap_err();
        let message = error.to_string();
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.contains("longer than 16384 bytes"), "{message}");
        // A field within the line limit but over S3's bounds is named briefly.
        let bucket = format!("{},key\n", "b".repeat(100));
        let message = parse(&bucket, &[]).unwrap_err().to_string();
        assert!(
            message.contains("(100 bytes)") && message.len() < 200,
            "{message}"
        );
        let key = format!("bkt,{}\n", "k".repeat(1025));
        let message = parse(&key, &[]).unwrap_err().to_string();
        assert!(
            message.contains("longer than 1024 bytes") && message.len() < 200,
            "{message}"
        );
        let version = format!("bkt,k,{}\n", "v".repeat(1025));
        let message = parse(&version, &[]).unwrap_err().to_string();
        assert!(
            message.contains("version id") && message.len() < 200,
            "{message}"
        );
        let failure = parse(&poison, &[]).unwrap_err().failure_reason();
        assert!(failure.failure_reason.len() <= 1024);
    }

    #[test]
    fn lines_up_to_the_limit_are_read() {
        let key = "k".repeat(1024);
        let rows = parse(&format!("bkt,{key}\nbkt,b\n"), &[]).unwrap();
        assert_eq!(rows[0].key, key);
    }

    #[test]
    fn an_inventory_listing_a_file_twice_is_refused() {
        let json =
            br#"{"destinationBucket":"inv-dest","fileFormat":"CSV","fileSchema":"Bucket, Key",
            "files":[{"key":"inv/a.csv"},{"key":"inv/b.csv"},{"key":"inv/a.csv"}]}"#;
        let message = Inventory::parse(json).unwrap_err().to_string();
        assert!(
            message.contains("\"inv/a.csv\" more than once"),
            "{message}"
        );
        let escaping =
            br#"{"destinationBucket":"inv-dest","fileFormat":"CSV","fileSchema":"Bucket, Key",
            "files":[{"key":"../other/a.csv"}]}"#;
        assert!(Inventory::parse(escaping).is_err());
        let huge = format!(
            r#"{{"destinationBucket":"inv-dest","fileFormat":"{}","fileSchema":"Bucket, Key","files":[{{"key":"a"}}]}}"#,
            "x".repeat(100_000)
        );
        let message = Inventory::parse(huge.as_bytes()).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn blank_lines_are_skipped_and_batches_are_bounded() {
        let rows = parse("bkt,a\n\nbkt,b\nbkt,c\n", &[]).unwrap();
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn an_early_stop_reads_no_further() {
        let text = "bkt,a\nbkt,b\nbkt,c\nbkt,d\nbkt,e\n";
        let mut batches = 0;
        let count = parse_csv(text.as_bytes(), &[], 2, |_| {
            batches += 1;
            false
        })
        .unwrap();
        assert_eq!((batches, count), (1, 2));
    }
}
