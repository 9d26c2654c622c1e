//! What running an operation on one object gives: a [`TaskOutcome`] carrying
//! what S3 would report (success or failure, HTTP status, error code and
//! message), and the [`TaskOperation`] trait every operation implements.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use crate::domain::{Task, TaskResult};

/// What one run of an operation on one object produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// Whether the operation succeeded.
    pub succeeded: bool,
    /// The HTTP status S3 would report.
    pub http_status_code: i32,
    /// The error code of a failure.
    pub error_code: Option<String>,
    /// The message: a result, or what went wrong.
    pub result_message: Option<String>,
    /// A transient failure (timeout, connection error, 5xx, 429, Invoke
    /// `TemporaryFailure`): worth another attempt.
    pub retryable: bool,
}

impl TaskOutcome {
    /// A success with this status and message.
    pub fn success(http_status_code: i32, message: impl Into<String>) -> TaskOutcome {
        TaskOutcome {
            succeeded: true,
            http_status_code,
            error_code: None,
            result_message: Some(message.into()),
            retryable: false,
        }
    }

    /// A failure with this status, error code and message.
    pub fn failure(http_status_code: i32, code: &str, message: impl Into<String>) -> TaskOutcome {
        TaskOutcome {
            succeeded: false,
            http_status_code,
            error_code: Some(code.to_owned()),
            result_message: Some(message.into()),
            retryable: false,
        }
    }

    /// Marks a failure as transient.
    pub fn retryable(mut self) -> TaskOutcome {
        self.retryable = true;
        self
    }

    /// The stored result of `task`. Texts from outside (an Invoke reply, an
    /// error) are made storable: NUL characters, which PostgreSQL text cannot
    /// hold, are replaced, and messages are cut at `MAX_RESULT_MESSAGE` bytes.
    pub fn into_result(self, task: &Task) -> TaskResult {
        TaskResult {
            task_number: task.number,
            succeeded: self.succeeded,
            http_status_code: self.http_status_code,
            error_code: self.error_code.map(|code| storable(code, 64)),
            result_message: self.result_message.map(|m| storable(m, MAX_RESULT_MESSAGE)),
        }
    }
}

/// The longest result message kept, in bytes.
pub const MAX_RESULT_MESSAGE: usize = 4096;

/// `text` without NUL characters, cut at a character boundary to `max` bytes.
fn storable(text: String, max: usize) -> String {
    let mut text = if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    };
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Something that can be run on one task's object.
pub trait TaskOperation: Send + Sync {
    /// Runs the operation once on `task`'s object.
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome>;

    /// The same operation as plain blocking code, when all it does is work
    /// on local files: the engine then runs a run of tasks on one blocking
    /// thread instead of handing every file step to a thread of its own.
    fn local(&self) -> Option<Arc<dyn LocalOperation>> {
        None
    }
}

/// An operation that runs to its end on the calling (blocking) thread.
pub trait LocalOperation: Send + Sync {
    /// Runs the operation once on `task`'s object, within the same bounds
    /// as [`TaskOperation::run`].
    fn run_blocking(&self, task: &Task) -> TaskOutcome;

    /// Runs the operation on each of `tasks`, one after another, with how
    /// long each took.
    fn run_all(&self, tasks: &[Task]) -> Vec<(TaskOutcome, Duration)> {
        run_each(self, tasks)
    }
}

/// `operation` run on each of `tasks` in turn, with how long each took.
pub fn run_each<O: LocalOperation + ?Sized>(
    operation: &O,
    tasks: &[Task],
) -> Vec<(TaskOutcome, Duration)> {
    tasks
        .iter()
        .map(|task| {
            let started = Instant::now();
            let outcome = operation.run_blocking(task);
            (outcome, started.elapsed())
        })
        .collect()
}

/// When an attempt must have finished by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// Whether the attempt is past it.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The retryable failure of an attempt that outlived it.
    pub fn outcome(&self) -> TaskOutcome {
        TaskOutcome::failure(
            500,
            "RequestTimeout",
            format!(
                "the operation did not finish within {} s",
                self.timeout.as_secs_f64()
            ),
        )
        .retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_made_storable() {
        assert_eq!(storable("a\0b".into(), 100), "a\u{fffd}b");
        assert_eq!(storable("é".repeat(10), 5), "éé");
        assert_eq!(storable("short".into(), 100), "short");
    }
}
