//! Tasks: one object of a job's manifest each, and the final result the
//! operation gave for it.

/// One object named by a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// The object's bucket.
    pub bucket: String,
    /// The object's key, decoded.
    pub key: String,
    /// The version, when the manifest names versions.
    pub version_id: Option<String>,
}

/// A task to run: its number within the job and its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's number within its job, in manifest order from 0.
    pub number: i64,
    /// The object.
    pub object: TaskRow,
}

/// The final result of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// The task's number within its job.
    pub task_number: i64,
    /// Whether the operation succeeded.
    pub succeeded: bool,
    /// The HTTP status S3 would report.
    pub http_status_code: i32,
    /// The error code of a failure (`NoSuchKey`, `AccessDenied`, …).
    pub error_code: Option<String>,
    /// The operation's message (a checksum, an Invoke result string, an error).
    pub result_message: Option<String>,
}
