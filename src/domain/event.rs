//! Commands (what is asked of a job) and events (what happened to it).
//!
//! Events are past tense and immutable. `JobCreated` starts a job's stream at
//! sequence 1; every later event is an [`Event`]. `TaskResultsRecorded` is the
//! aggregate of one chunk's task results: the per-task rows live in the task
//! result log, not in the job's event stream, so it carries no sequence.

use serde::{Deserialize, Serialize};

use super::{ErrorSummary, FailureReason, JobSpec, JobStatus, ObjectLocation, Tag};

/// The schema version written with every new event payload. Bump it when an
/// event's shape changes and teach the store's decoder the older shape.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// The first event of every job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCreated {
    /// Everything the job was created with.
    pub spec: JobSpec,
}

/// What a caller or the engine asks of an existing job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The preparer begins reading the manifest (New → Preparing).
    StartPreparation,
    /// The manifest produced this many tasks (Preparing → Suspended or
    /// Ready; a dry run → DryRunComplete).
    FinishPreparation {
        /// Tasks the manifest produced.
        total_number_of_tasks: u64,
        /// Their objects' total size in bytes, when the manifest or the
        /// listing gave every object's size.
        total_bytes: Option<u64>,
    },
    /// The manifest could not be read or is invalid (→ Failing → Failed).
    FailPreparation {
        /// Why.
        reason: FailureReason,
    },
    /// UpdateJobStatus READY: confirm a Suspended job.
    Confirm {
        /// The status update reason, if given.
        reason: Option<String>,
    },
    /// UpdateJobStatus CANCELLED.
    Cancel {
        /// The status update reason, if given.
        reason: Option<String>,
    },
    /// The scheduler gives the job an active slot (Ready/Paused → Active).
    Activate,
    /// The scheduler takes the slot back for a higher-priority job (Active → Pausing).
    Pause,
    /// A chunk of tasks finished with these counts.
    RecordTaskResults {
        /// Tasks of the chunk that succeeded.
        succeeded: u64,
        /// Tasks of the chunk that failed.
        failed: u64,
        /// The chunk's failures by error code.
        errors: ErrorSummary,
    },
    /// No task of the job is in flight any more: a draining status ends.
    FinishDraining,
    /// The completion step (report) is done (Completing → Complete).
    FinishCompletion,
    /// Fail the job if it has been Suspended for at least `limit`.
    ExpireSuspension {
        /// How long a job may wait for confirmation.
        limit: chrono::TimeDelta,
    },
    /// The completion report was written, or could not be.
    RecordReport {
        /// Where the report's `manifest.json` went, or why it could not be written.
        outcome: Result<ObjectLocation, FailureReason>,
    },
    /// UpdateJobPriority.
    ChangePriority {
        /// The new priority.
        priority: i32,
    },
    /// PutJobTagging (and DeleteJobTagging with no tags).
    ReplaceTags {
        /// The tags from now on.
        tags: Vec<Tag>,
    },
}

/// Something that happened to a job after its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// The preparer began reading the manifest (→ Preparing).
    PreparationStarted,
    /// Preparation ended; the job now waits for confirmation or is Ready.
    ManifestPrepared {
        /// Tasks the manifest produced.
        total_number_of_tasks: u64,
        /// Whether the job now waits in Suspended (else it is Ready).
        awaiting_confirmation: bool,
        /// The objects' total size, when every one's size was known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_bytes: Option<u64>,
    },
    /// A dry run's objects were counted (Preparing → DryRunComplete); no
    /// task was made and none will run.
    DryRunCounted {
        /// Tasks the manifest would have produced.
        total_number_of_tasks: u64,
        /// The objects' total size, when every one's size was known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_bytes: Option<u64>,
    },
    /// The owner confirmed the job (Suspended → Ready).
    JobConfirmed {
        /// The status update reason given.
        reason: Option<String>,
    },
    /// The scheduler gave the job an active slot (→ Active).
    JobActivated,
    /// A higher-priority job needs the slot (Active → Pausing).
    PauseRequested,
    /// No task is in flight any more (Pausing → Paused).
    JobPaused,
    /// A chunk's results: its per-task rows are in the task result log.
    TaskResultsRecorded {
        /// Tasks that succeeded.
        succeeded: u64,
        /// Tasks that failed.
        failed: u64,
        /// The failures by error code.
        #[serde(default)]
        errors: ErrorSummary,
    },
    /// Every task has a final result (Active → Completing).
    AllTasksFinished,
    /// The completion step is done (Completing → Complete).
    JobCompleted,
    /// The owner cancelled the job (→ Cancelling).
    CancellationRequested {
        /// The status update reason given.
        reason: Option<String>,
    },
    /// Nothing is in flight any more (Cancelling → Cancelled).
    JobCancelled,
    /// The job fails (→ Failing): the manifest, the threshold or the suspension limit.
    FailureDetected {
        /// Why.
        failure_reasons: Vec<FailureReason>,
    },
    /// Nothing is in flight any more (Failing → Failed).
    JobFailed,
    /// The priority changed.
    PriorityChanged {
        /// The priority before.
        previous: i32,
        /// The priority now.
        priority: i32,
    },
    /// The completion report's `manifest.json` is at `location`.
    ReportWritten {
        /// Where the report's `manifest.json` is.
        location: ObjectLocation,
    },
    /// The completion report could not be written.
    ReportFailed {
        /// Why the report could not be written.
        failure_reason: FailureReason,
    },
    /// The tags were replaced.
    TagsReplaced {
        /// The tags now.
        tags: Vec<Tag>,
    },
}

impl Event {
    /// The name stored in the log's `event_type` column.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::PreparationStarted => "PreparationStarted",
            Event::ManifestPrepared { .. } => "ManifestPrepared",
            Event::DryRunCounted { .. } => "DryRunCounted",
            Event::JobConfirmed { .. } => "JobConfirmed",
            Event::JobActivated => "JobActivated",
            Event::PauseRequested => "PauseRequested",
            Event::JobPaused => "JobPaused",
            Event::TaskResultsRecorded { .. } => "TaskResultsRecorded",
            Event::AllTasksFinished => "AllTasksFinished",
            Event::JobCompleted => "JobCompleted",
            Event::CancellationRequested { .. } => "CancellationRequested",
            Event::JobCancelled => "JobCancelled",
            Event::FailureDetected { .. } => "FailureDetected",
            Event::JobFailed => "JobFailed",
            Event::PriorityChanged { .. } => "PriorityChanged",
            Event::TagsReplaced { .. } => "TagsReplaced",
            Event::ReportWritten { .. } => "ReportWritten",
            Event::ReportFailed { .. } => "ReportFailed",
        }
    }

    /// The status the job has after this event, if the event changes it.
    pub fn target_status(&self) -> Option<JobStatus> {
        match self {
            Event::PreparationStarted => Some(JobStatus::Preparing),
            Event::ManifestPrepared {
                awaiting_confirmation,
                ..
            } => Some(if *awaiting_confirmation {
                JobStatus::Suspended
            } else {
                JobStatus::Ready
            }),
            Event::DryRunCounted { .. } => Some(JobStatus::DryRunComplete),
            Event::JobConfirmed { .. } => Some(JobStatus::Ready),
            Event::JobActivated => Some(JobStatus::Active),
            Event::PauseRequested => Some(JobStatus::Pausing),
            Event::JobPaused => Some(JobStatus::Paused),
            Event::AllTasksFinished => Some(JobStatus::Completing),
            Event::JobCompleted => Some(JobStatus::Complete),
            Event::CancellationRequested { .. } => Some(JobStatus::Cancelling),
            Event::JobCancelled => Some(JobStatus::Cancelled),
            Event::FailureDetected { .. } => Some(JobStatus::Failing),
            Event::JobFailed => Some(JobStatus::Failed),
            Event::TaskResultsRecorded { .. }
            | Event::PriorityChanged { .. }
            | Event::TagsReplaced { .. }
            | Event::ReportWritten { .. }
            | Event::ReportFailed { .. } => None,
        }
    }

    /// Whether the event is kept in the job's own event stream (all but the
    /// chunk aggregate, whose facts are the per-task rows of the result log).
    pub fn is_logged_in_job_stream(&self) -> bool {
        !matches!(self, Event::TaskResultsRecorded { .. })
    }
}
