//! The job lifecycle as pure functions: [`decide`] turns a command into events
//! by the rules of DESIGN.md section 1, [`apply`] folds events into a [`Job`].
//! Nothing here does IO, reads the clock or awaits; the store and the engine
//! call in with the facts (`now`, task counts) and persist what comes out.

mod decide;
mod errors;
mod event;
mod grant;
mod job;
mod object_state;
mod slots;
mod status;
mod task;
pub mod text;

pub use decide::{
    AWAITING_CONFIRMATION, Decision, Effect, MANIFEST_EMPTY, REPORT_WRITE_FAILED,
    SUSPENSION_LIMIT_EXCEEDED, TASK_FAILURE_THRESHOLD_EXCEEDED, UserAction, allowed_actions, apply,
    create, created, decide,
};
pub use errors::{
    CodeFailures, ErrorSample, ErrorSummary, MAX_CODES, MAX_SAMPLE_MESSAGE, MAX_SAMPLES,
};
pub use event::{Command, EVENT_SCHEMA_VERSION, Event, JobCreated};
pub use grant::BucketGrant;
pub use job::{
    AccountId, ChecksumAlgorithm, CopySpec, FailureReason, FailureThreshold, GeneratorSpec,
    InvocationSchema, InvokeSpec, Job, JobId, JobSpec, ManifestField, ManifestFormat,
    ManifestSource, ManifestSpec, MetadataDirective, ObjectLocation, ObjectMetadata, Operation,
    Progress, ReportScope, ReportSpec, Tag,
};
pub use object_state::{
    AclGrant, AclPermission, AclSpec, CannedAcl, GlacierJobTier, Grantee, LegalHold, ObjectTag,
    RestoreSpec, RetentionMode, RetentionSpec,
};
pub use slots::{SlotCandidate, SlotPlan, plan_slots};
pub use status::JobStatus;
pub use task::{Task, TaskResult, TaskRow};

/// Why `decide` refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A status change the caller asked for is not allowed from the current status.
    #[error("job is {current}; it cannot change to {requested}")]
    IllegalTransition {
        /// Where the job is.
        current: JobStatus,
        /// Where the caller asked it to go.
        requested: JobStatus,
    },
    /// An engine step that does not apply in the current status.
    #[error("job is {current}; cannot {action}")]
    NotAllowed {
        /// Where the job is.
        current: JobStatus,
        /// The step that does not apply there.
        action: &'static str,
    },
    /// A negative priority.
    #[error("priority must be non-negative, got {0}")]
    InvalidPriority(i32),
    /// More results than the job has tasks: a fault, never a race.
    #[error("task results would exceed the job's {total} tasks ({run} recorded)")]
    TooManyResults {
        /// The job's tasks.
        total: u64,
        /// Results there would be.
        run: u64,
    },
}

impl DomainError {
    /// Whether the refusal means the job moved on before an engine step
    /// reached it (another process, or a command, got there first): the
    /// step no longer applies. Anything else is a fault to report.
    pub fn is_race(&self) -> bool {
        match self {
            DomainError::NotAllowed { .. } => true,
            DomainError::IllegalTransition { .. }
            | DomainError::InvalidPriority(_)
            | DomainError::TooManyResults { .. } => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
