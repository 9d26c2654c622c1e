//! The operations a job runs on each object. Each turns a task into a
//! [`TaskOutcome`] carrying what S3 would report: success or failure, the
//! HTTP status code, an error code and a result message.

use std::{ops::ControlFlow, sync::Arc};

use futures::{StreamExt, future::BoxFuture};
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, PutMultipartOptions, WriteMultipart,
};

use super::directory::{DirectoryStore, Finished};
use super::invoke::{Allowlist, Invoke, InvokeLimits};
use super::object_state::{StateClient, StateOperation};
use super::outcome::{Deadline, LocalOperation, TaskOperation, TaskOutcome};
use super::{Buckets, ObjectRef};
use crate::domain::{
    BucketGrant, ChecksumAlgorithm, CopySpec, JobId, MetadataDirective, ObjectMetadata, Operation,
    Task,
};

/// The bounds every task runs within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationLimits {
    /// How long one attempt of an operation on one object may take.
    pub timeout: std::time::Duration,
    /// What Invoke may take from an endpoint.
    pub invoke: InvokeLimits,
}

impl Default for OperationLimits {
    fn default() -> Self {
        OperationLimits {
            timeout: std::time::Duration::from_secs(900),
            invoke: InvokeLimits::default(),
        }
    }
}

/// What operations run against: the object store, an HTTP client, the
/// endpoints Invoke may call and the limits every task runs within.
#[derive(Clone)]
pub struct OperationContext {
    /// Where objects are.
    pub buckets: Buckets,
    /// The HTTP client of Invoke.
    pub http: reqwest::Client,
    /// The endpoints Invoke may call.
    pub invoke_allowlist: Arc<Allowlist>,
    /// The S3 client of tags, Object Lock, ACLs and restores.
    state: StateClient,
    /// The bounds every task runs within.
    pub limits: OperationLimits,
    /// Runs every task instead of the job's operation: for benchmarks that
    /// measure the engine alone (a no-op), never set by the server.
    replacement: Option<Arc<dyn TaskOperation>>,
}

impl OperationContext {
    /// Operations over `buckets`, calling only what `invoke_allowlist` allows, within `limits`.
    pub fn new(
        buckets: Buckets,
        invoke_allowlist: Allowlist,
        limits: OperationLimits,
    ) -> OperationContext {
        OperationContext {
            buckets,
            http: super::invoke::http_client(),
            invoke_allowlist: Arc::new(invoke_allowlist),
            state: StateClient::default(),
            limits,
            replacement: None,
        }
    }

    /// This context with `operation` run for every task of every job.
    pub fn replaced_by(self, operation: Arc<dyn TaskOperation>) -> OperationContext {
        OperationContext {
            replacement: Some(operation),
            ..self
        }
    }

    /// The implementation of one job's operation: refusing objects outside
    /// the job's bucket grant and bounding every attempt by the timeout. On
    /// a directory store, checksums, deletions and plain copies are plain
    /// file work, which the engine may run several at a time on one thread.
    pub fn for_operation(
        &self,
        job_id: JobId,
        operation: &Operation,
        grant: Option<&BucketGrant>,
    ) -> Arc<dyn TaskOperation> {
        if let Some(replacement) = &self.replacement {
            return replacement.clone();
        }
        let grant = grant.cloned();
        let timeout = self.limits.timeout;
        if let Some(files) = self.file_operation(operation) {
            return Arc::new(Local {
                files,
                grant,
                timeout,
            });
        }
        Arc::new(Bounded {
            inner: self.operation(job_id, operation),
            grant,
            timeout,
        })
    }

    /// Whether `operation` runs as file work (see [`LocalOperation`]): the
    /// engine gives such jobs larger chunks.
    pub fn is_file_work(&self, operation: &Operation) -> bool {
        self.replacement.is_none() && self.file_operation(operation).is_some()
    }

    fn file_operation(&self, operation: &Operation) -> Option<Arc<dyn FileOperation>> {
        let store = self.buckets.directory()?.clone();
        match operation {
            Operation::ComputeObjectChecksum { algorithm } => Some(Arc::new(FileChecksum {
                store,
                algorithm: *algorithm,
            })),
            Operation::DeleteObject => Some(Arc::new(FileDelete { store })),
            Operation::PutObjectCopy(spec) if spec.metadata == MetadataDirective::Copy => {
                Some(Arc::new(FileCopy {
                    store,
                    target_bucket: spec.target_bucket.clone(),
                    target_key_prefix: spec.target_key_prefix.clone(),
                }))
            }
            _ => None,
        }
    }

    fn operation(&self, job_id: JobId, operation: &Operation) -> Arc<dyn TaskOperation> {
        let buckets = self.buckets.clone();
        match operation {
            Operation::ComputeObjectChecksum { algorithm } => Arc::new(ComputeChecksum {
                buckets,
                algorithm: *algorithm,
            }),
            Operation::DeleteObject => Arc::new(DeleteObject { buckets }),
            Operation::PutObjectCopy(spec) => Arc::new(PutObjectCopy {
                buckets,
                spec: spec.clone(),
            }),
            Operation::Invoke(spec) => Arc::new(Invoke {
                http: self.http.clone(),
                spec: spec.clone(),
                job_id,
                allowlist: self.invoke_allowlist.clone(),
                limits: self.limits.invoke,
            }),
            Operation::PutObjectTagging { .. }
            | Operation::DeleteObjectTagging
            | Operation::PutObjectLegalHold { .. }
            | Operation::PutObjectRetention(_)
            | Operation::PutObjectAcl(_)
            | Operation::InitiateRestoreObject(_) => match operation.needs_s3() {
                // CreateJob refuses these on a directory store; a job made
                // on an S3 store and run on a directory one fails each task.
                Some(kept) if self.buckets.directory().is_some() => {
                    Arc::new(Unsupported(format!("this object store keeps no {kept}")))
                }
                _ => Arc::new(StateOperation::new(self.state.clone(), operation.clone())),
            },
        }
    }
}

/// Fails every task with `NotImplemented`, saying why.
struct Unsupported(String);

impl TaskOperation for Unsupported {
    fn run<'a>(&'a self, _task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move { TaskOutcome::failure(501, "NotImplemented", self.0.clone()) })
    }
}

/// The `AccessDenied` failure of a task whose bucket the job's grant
/// does not cover, checked before anything is touched.
fn refused_by(grant: Option<&BucketGrant>, task: &Task) -> Option<TaskOutcome> {
    grant
        .filter(|grant| !grant.permits(&task.object.bucket))
        .map(|_| {
            TaskOutcome::failure(
                403,
                "AccessDenied",
                "the job's token does not grant the object's bucket",
            )
        })
}

/// An operation within a job's bounds: an object in a bucket the job was
/// not granted fails with `AccessDenied` before anything is touched, and an
/// attempt that outlives the timeout fails with `RequestTimeout` (retried
/// like any transient failure).
struct Bounded {
    inner: Arc<dyn TaskOperation>,
    grant: Option<BucketGrant>,
    timeout: std::time::Duration,
}

impl TaskOperation for Bounded {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            if let Some(refused) = refused_by(self.grant.as_ref(), task) {
                return refused;
            }
            let deadline = Deadline::after(self.timeout);
            match tokio::time::timeout(self.timeout, self.inner.run(task)).await {
                Ok(outcome) => outcome,
                Err(_) => deadline.outcome(),
            }
        })
    }
}

/// An operation on a directory store's files, done on the calling thread.
trait FileOperation: Send + Sync {
    /// Runs it once on `task`'s object, giving up once past `deadline`.
    fn run_file(&self, task: &Task, deadline: &Deadline) -> TaskOutcome;
}

/// A file operation within a job's bounds (as [`Bounded`]): the engine
/// runs it through [`LocalOperation`] on a blocking thread of its choosing,
/// a lone retry through [`TaskOperation`] on one of its own.
#[derive(Clone)]
struct Local {
    files: Arc<dyn FileOperation>,
    grant: Option<BucketGrant>,
    timeout: std::time::Duration,
}

impl LocalOperation for Local {
    fn run_blocking(&self, task: &Task) -> TaskOutcome {
        if let Some(refused) = refused_by(self.grant.as_ref(), task) {
            return refused;
        }
        self.files.run_file(task, &Deadline::after(self.timeout))
    }

    /// Each task as [`LocalOperation::run_blocking`], the path to their
    /// directories walked once for the run.
    fn run_all(&self, tasks: &[Task]) -> Vec<(TaskOutcome, std::time::Duration)> {
        super::directory::keeping_directories(|| super::outcome::run_each(self, tasks))
    }
}

impl TaskOperation for Local {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        let local = self.clone();
        let task = task.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || local.run_blocking(&task))
                .await
                .unwrap_or_else(|_| {
                    TaskOutcome::failure(500, "InternalError", "the operation stopped unexpectedly")
                        .retryable()
                })
        })
    }

    fn local(&self) -> Option<Arc<dyn LocalOperation>> {
        Some(Arc::new(self.clone()))
    }
}

/// Bytes read from a file at a time.
const READ_BUFFER: usize = 256 << 10;

thread_local! {
    /// Each blocking thread's read buffer, reused from task to task.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The checksum of a file, read on the calling thread in pieces of
/// `READ_BUFFER` bytes, so memory stays flat whatever the object's size.
struct FileChecksum {
    store: DirectoryStore,
    algorithm: ChecksumAlgorithm,
}

impl FileOperation for FileChecksum {
    fn run_file(&self, task: &Task, deadline: &Deadline) -> TaskOutcome {
        let path = match file_path(task, "object versions") {
            Ok(path) => path,
            Err(refused) => return refused,
        };
        let mut hasher = Checksummer::new(self.algorithm);
        let read = BUFFER.with_borrow_mut(|buffer| {
            buffer.resize(READ_BUFFER, 0);
            self.store.read_blocking(&path, buffer, |bytes| {
                hasher.update(bytes);
                if deadline.passed() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
        match read {
            Ok(Finished::Done) => checksum_outcome(self.algorithm, &hasher.finish()),
            Ok(Finished::Stopped) => deadline.outcome(),
            Err(error) => object_error(error),
        }
    }
}

/// Deletes a file; like S3, deleting a missing key succeeds.
struct FileDelete {
    store: DirectoryStore,
}

impl FileOperation for FileDelete {
    fn run_file(&self, task: &Task, _deadline: &Deadline) -> TaskOutcome {
        let path = match file_path(task, "deleting object versions") {
            Ok(path) => path,
            Err(refused) => return refused,
        };
        match self.store.delete_blocking(&path) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted(),
            Err(error) => object_error(error),
        }
    }
}

/// Copies a file to the target bucket, keeping what it is (a COPY
/// directive: a directory store keeps no other metadata).
struct FileCopy {
    store: DirectoryStore,
    target_bucket: String,
    target_key_prefix: String,
}

impl FileOperation for FileCopy {
    fn run_file(&self, task: &Task, deadline: &Deadline) -> TaskOutcome {
        let from = match file_path(task, "copying object versions") {
            Ok(from) => from,
            Err(refused) => return refused,
        };
        let target_key = format!("{}{}", self.target_key_prefix, task.object.key);
        let to = match super::object_path(&self.target_bucket, &target_key) {
            Ok(to) => to,
            Err(invalid) => return TaskOutcome::failure(400, "InvalidKey", invalid.to_string()),
        };
        let mut proceed = || {
            if deadline.passed() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        match self.store.copy_blocking(&from, &to, false, &mut proceed) {
            Ok(Finished::Done) => copied(&self.target_bucket, &target_key),
            Ok(Finished::Stopped) => deadline.outcome(),
            Err(error) => object_error(error),
        }
    }
}

/// The path of a task's object in a directory store, or the failure of a
/// task it cannot be (a key that leaves its bucket, a version id: files
/// have no versions).
fn file_path(task: &Task, versions: &str) -> Result<object_store::path::Path, TaskOutcome> {
    let path = super::object_path(&task.object.bucket, &task.object.key)
        .map_err(|invalid| TaskOutcome::failure(400, "InvalidKey", invalid.to_string()))?;
    if task.object.version_id.is_some() {
        return Err(unversioned(versions));
    }
    Ok(path)
}

/// The failure of a task naming a version on a store without versions.
fn unversioned(versions: &str) -> TaskOutcome {
    TaskOutcome::failure(
        501,
        "NotImplemented",
        format!("this object store does not support {versions}"),
    )
}

/// Streams an object and computes its checksum.
struct ComputeChecksum {
    buckets: Buckets,
    algorithm: ChecksumAlgorithm,
}

impl TaskOperation for ComputeChecksum {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            let object = &task.object;
            let source = match locate(&self.buckets, task) {
                Ok(source) => source,
                Err(refused) => return refused,
            };
            let options = GetOptions {
                version: object.version_id.clone(),
                ..GetOptions::default()
            };
            let result = match source.store.get_opts(&source.path, options).await {
                Ok(result) => result,
                Err(error) => return object_error(error),
            };
            let mut hasher = Checksummer::new(self.algorithm);
            let mut stream = result.into_stream();
            while let Some(bytes) = stream.next().await {
                match bytes {
                    Ok(bytes) => hasher.update(&bytes),
                    Err(error) => return object_error(error),
                }
            }
            checksum_outcome(self.algorithm, &hasher.finish())
        })
    }
}

/// A checksum task's success, with the checksum as S3 reports it.
fn checksum_outcome(algorithm: ChecksumAlgorithm, digest: &[u8]) -> TaskOutcome {
    let message = serde_json::json!({
        "checksumAlgorithm": algorithm.s3_name(),
        "checksumType": "FULL_OBJECT",
        "checksumBase64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest),
        "checksumHex": hex::encode(digest),
    });
    TaskOutcome::success(200, message.to_string())
}

/// A deletion's success.
fn deleted() -> TaskOutcome {
    TaskOutcome::success(204, "deleted")
}

/// A copy's success.
fn copied(target_bucket: &str, target_key: &str) -> TaskOutcome {
    TaskOutcome::success(200, format!("copied to {target_bucket}/{target_key}"))
}

/// Deletes an object. Like S3, deleting a missing key succeeds.
struct DeleteObject {
    buckets: Buckets,
}

impl TaskOperation for DeleteObject {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            let object = match locate(&self.buckets, task) {
                Ok(object) => object,
                Err(refused) => return refused,
            };
            if task.object.version_id.is_some() {
                return unversioned("deleting object versions");
            }
            match object.store.delete(&object.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted(),
                Err(error) => object_error(error),
            }
        })
    }
}

/// Copies an object within the store, keeping or replacing its metadata.
struct PutObjectCopy {
    buckets: Buckets,
    spec: CopySpec,
}

impl TaskOperation for PutObjectCopy {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            let from = match locate(&self.buckets, task) {
                Ok(from) => from,
                Err(refused) => return refused,
            };
            let target_key = format!("{}{}", self.spec.target_key_prefix, task.object.key);
            let to = match self.buckets.locate(&self.spec.target_bucket, &target_key) {
                Ok(to) => to,
                Err(invalid) => {
                    return TaskOutcome::failure(400, "InvalidKey", invalid.to_string());
                }
            };
            if task.object.version_id.is_some() {
                return unversioned("copying object versions");
            }
            let outcome = match &self.spec.metadata {
                // One store: a server-side copy keeps the metadata.
                MetadataDirective::Copy if Arc::ptr_eq(&from.store, &to.store) => {
                    from.store.copy(&from.path, &to.path).await
                }
                MetadataDirective::Copy => stream_copy(&from, &to, None).await,
                MetadataDirective::Replace(metadata) => {
                    stream_copy(&from, &to, Some(attributes_of(metadata))).await
                }
            };
            match outcome {
                Ok(()) => copied(&self.spec.target_bucket, &target_key),
                Err(error) => object_error(error),
            }
        })
    }
}

/// The attributes a REPLACE copy writes.
fn attributes_of(metadata: &ObjectMetadata) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(content_type) = &metadata.content_type {
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.clone()),
        );
    }
    if let Some(cache_control) = &metadata.cache_control {
        attributes.insert(
            Attribute::CacheControl,
            AttributeValue::from(cache_control.clone()),
        );
    }
    for (key, value) in &metadata.user_metadata {
        attributes.insert(
            Attribute::Metadata(key.clone().into()),
            AttributeValue::from(value.clone()),
        );
    }
    attributes
}

/// Streams an object into a multipart upload, with `attributes` or (when
/// `None`) the source's own.
async fn stream_copy(
    from: &ObjectRef,
    to: &ObjectRef,
    attributes: Option<Attributes>,
) -> Result<(), object_store::Error> {
    let source = from.store.get(&from.path).await?;
    let attributes = attributes.unwrap_or_else(|| source.attributes.clone());
    let upload = to
        .store
        .put_multipart_opts(
            &to.path,
            PutMultipartOptions {
                attributes,
                ..Default::default()
            },
        )
        .await?;
    let mut writer = WriteMultipart::new(upload);
    let mut stream = source.into_stream();
    while let Some(bytes) = stream.next().await {
        match bytes {
            Ok(bytes) => writer.write(&bytes),
            Err(error) => {
                let _ = writer.abort().await;
                return Err(error);
            }
        }
    }
    writer.finish().await.map(|_| ())
}

/// Where a task's object is, or the task's `InvalidKey` failure.
fn locate(buckets: &Buckets, task: &Task) -> Result<ObjectRef, TaskOutcome> {
    buckets
        .locate(&task.object.bucket, &task.object.key)
        .map_err(|invalid| TaskOutcome::failure(400, "InvalidKey", invalid.to_string()))
}

fn object_error(error: object_store::Error) -> TaskOutcome {
    match error {
        object_store::Error::NotFound { .. } => {
            TaskOutcome::failure(404, "NoSuchKey", "The specified key does not exist.")
        }
        object_store::Error::NotImplemented | object_store::Error::NotSupported { .. } => {
            unversioned("object versions")
        }
        object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Unauthenticated { source, .. } => TaskOutcome::failure(
            403,
            "AccessDenied",
            format!("Access Denied: {}", sanitized(&source.to_string())),
        ),
        other => TaskOutcome::failure(500, "InternalError", sanitized(&other.to_string())),
    }
}

/// An object store's error text fit for a task result: URLs (which name
/// the server's S3 endpoint) are replaced and the text is cut short.
/// The directory store's own messages already name objects, not paths.
fn sanitized(text: &str) -> String {
    let words: Vec<&str> = text
        .split(' ')
        .map(|word| {
            if word.contains("://") {
                "<endpoint>"
            } else {
                word
            }
        })
        .collect();
    crate::domain::text::truncated(&words.join(" "), 512)
}

/// Incremental checksum over any supported algorithm.
pub struct Checksummer(State);

enum State {
    Crc32(crc::Digest<'static, u32>),
    Crc32c(crc::Digest<'static, u32>),
    Crc64Nvme(crc::Digest<'static, u64>),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Md5(md5::Md5),
}

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
static CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
static CRC64NVME: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

impl Checksummer {
    /// A checksum of nothing yet, by `algorithm`.
    pub fn new(algorithm: ChecksumAlgorithm) -> Checksummer {
        use sha2::Digest;
        Checksummer(match algorithm {
            ChecksumAlgorithm::Crc32 => State::Crc32(CRC32.digest()),
            ChecksumAlgorithm::Crc32c => State::Crc32c(CRC32C.digest()),
            ChecksumAlgorithm::Crc64Nvme => State::Crc64Nvme(CRC64NVME.digest()),
            ChecksumAlgorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Md5 => State::Md5(md5::Md5::new()),
        })
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match &mut self.0 {
            State::Crc32(digest) | State::Crc32c(digest) => digest.update(bytes),
            State::Crc64Nvme(digest) => digest.update(bytes),
            State::Sha1(hasher) => hasher.update(bytes),
            State::Sha256(hasher) => hasher.update(bytes),
            State::Md5(hasher) => hasher.update(bytes),
        }
    }

    /// The checksum's bytes, big-endian for CRCs as S3 encodes them.
    pub fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self.0 {
            State::Crc32(digest) | State::Crc32c(digest) => {
                digest.finalize().to_be_bytes().to_vec()
            }
            State::Crc64Nvme(digest) => digest.finalize().to_be_bytes().to_vec(),
            State::Sha1(hasher) => hasher.finalize().to_vec(),
            State::Sha256(hasher) => hasher.finalize().to_vec(),
            State::Md5(hasher) => hasher.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_lose_their_urls() {
        let text =
            "Error performing GET http://10.0.0.5:9000/bucket/key in 1s - Server returned 500";
        assert_eq!(
            sanitized(text),
            "Error performing GET <endpoint> in 1s - Server returned 500"
        );
        assert!(sanitized(&"x".repeat(10_000)).len() <= 512);
    }

    fn hex_of(algorithm: ChecksumAlgorithm, input: &[u8]) -> String {
        let mut checksum = Checksummer::new(algorithm);
        // Split the input to prove the digest is incremental.
        let (a, b) = input.split_at(input.len() / 2);
        checksum.update(a);
        checksum.update(b);
        hex::encode(checksum.finish())
    }

    #[test]
    fn checksums_match_published_check_values() {
        // "123456789" is the standard CRC check input (CRC RevEng catalogue).
        let check = b"123456789";
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32, check), "cbf43926");
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32c, check), "e3069283");
        assert_eq!(
            hex_of(ChecksumAlgorithm::Crc64Nvme, check),
            "ae8b14860a799888"
        );
        // FIPS 180 and RFC 1321 test vectors.
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex_of(ChecksumAlgorithm::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
