//! Tasks: one object of a job's manifest each, and the final result the
//! operation gave for it.

/// One object named by a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// A task to run: its number within the job and its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub number: i64,
    pub object: TaskRow,
}

/// The final result of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub task_number: i64,
    pub succeeded: bool,
    pub http_status_code: i32,
    pub error_code: Option<String>,
    pub result_message: Option<String>,
}
