//! `decide` holds every lifecycle rule; `apply` only folds. Neither does IO or
//! reads a clock: `now` and the event time are parameters.

use chrono::{DateTime, Utc};

use super::{
    Command, DomainError, ErrorSummary, Event, FailureReason, Job, JobCreated, JobId, JobSpec,
    JobStatus, Progress,
};

/// The failure code of a job that crossed its task-failure threshold.
pub const TASK_FAILURE_THRESHOLD_EXCEEDED: &str = "TaskFailureThresholdExceeded";
/// The failure code of a manifest that lists no object.
pub const MANIFEST_EMPTY: &str = "ManifestEmpty";
/// The failure code of a job left Suspended past the limit.
pub const SUSPENSION_LIMIT_EXCEEDED: &str = "SuspensionLimitExceeded";
/// The failure code of a completion report that could not be written.
pub const REPORT_WRITE_FAILED: &str = "ReportWriteFailed";
/// The cause recorded when a job waits for confirmation.
pub const AWAITING_CONFIRMATION: &str = "The job requires confirmation before it runs";

/// Starts a job's stream.
pub fn create(spec: JobSpec) -> JobCreated {
    JobCreated { spec }
}

/// The state right after creation.
pub fn created(id: JobId, created: &JobCreated, at: DateTime<Utc>) -> Job {
    let spec = created.spec.clone();
    Job {
        id,
        status: JobStatus::New,
        priority: spec.priority,
        tags: spec.tags.clone(),
        progress: Progress::default(),
        failure_reasons: Vec::new(),
        status_update_reason: None,
        suspended_time: None,
        suspended_cause: None,
        confirmed: !spec.confirmation_required,
        created_at: at,
        termination_time: None,
        active_since: None,
        elapsed_active_millis: 0,
        report_location: None,
        errors: ErrorSummary::default(),
        version: 1,
        spec,
    }
}

/// What a command decided: the events to record, and what must happen
/// besides them, which the store and the engine carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happened, in order, to append to the log.
    pub events: Vec<Event>,
    /// What must happen besides.
    pub effects: Vec<Effect>,
    /// The job's status before the events, and after them.
    from: JobStatus,
    to: JobStatus,
}

/// What must happen besides recording a decision's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The job left Active: no new task of it may start, in any process;
    /// tasks already started finish and are recorded.
    StopTaskStarts,
    /// The job ended: its task chunks will never run and are released.
    ReleaseChunks,
}

impl Decision {
    /// The decision to record `events` for a job now in `from`, with the
    /// effects its status change calls for.
    fn of(from: JobStatus, events: Vec<Event>) -> Decision {
        let to = events
            .iter()
            .rev()
            .find_map(Event::target_status)
            .unwrap_or(from);
        let mut effects = Vec::new();
        if from.runs_tasks() && !to.runs_tasks() {
            effects.push(Effect::StopTaskStarts);
        }
        if !from.is_terminal() && to.is_terminal() {
            effects.push(Effect::ReleaseChunks);
        }
        Decision {
            events,
            effects,
            from,
            to,
        }
    }

    /// Whether the scheduler has to hand out the slots again: the job
    /// joined or left the jobs that compete for them, or changed its
    /// priority among them. (Cancelling a Suspended job, say, does not.)
    pub fn reschedules(&self) -> bool {
        self.from.competes_for_slot() != self.to.competes_for_slot()
            || (self.to.competes_for_slot()
                && self
                    .events
                    .iter()
                    .any(|event| matches!(event, Event::PriorityChanged { .. })))
    }

    /// Whether the job entered a status that the finisher ends: a drain,
    /// or Completing.
    pub fn awaits_finisher(&self) -> bool {
        self.from != self.to && self.to.is_ended_by_finisher()
    }
}

/// A request a caller may make of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    /// UpdateJobStatus READY.
    Confirm,
    /// UpdateJobStatus CANCELLED.
    Cancel,
    /// UpdateJobPriority.
    ChangePriority,
    /// PutJobTagging / DeleteJobTagging.
    ReplaceTags,
}

/// The requests [`decide`] would accept for `job` as it is at `now` (status
/// changes only where they change something): the lifecycle's own answer,
/// for clients that offer only what is allowed.
pub fn allowed_actions(job: &Job, now: DateTime<Utc>) -> Vec<UserAction> {
    [
        (UserAction::Confirm, Command::Confirm { reason: None }),
        (UserAction::Cancel, Command::Cancel { reason: None }),
        (
            UserAction::ChangePriority,
            Command::ChangePriority {
                priority: job.priority,
            },
        ),
        (
            UserAction::ReplaceTags,
            Command::ReplaceTags {
                tags: job.tags.clone(),
            },
        ),
    ]
    .into_iter()
    .filter(|(action, command)| match decide(job, command, now) {
        // A status change is offered only where it would change the status
        // (cancelling a Cancelling job is accepted, and does nothing).
        Ok(decision) => {
            !matches!(action, UserAction::Confirm | UserAction::Cancel)
                || !decision.events.is_empty()
        }
        Err(_) => false,
    })
    .map(|(action, _)| action)
    .collect()
}

/// Decides what a command does to a job: the events to record and their
/// effects, or why not.
pub fn decide(job: &Job, command: &Command, now: DateTime<Utc>) -> Result<Decision, DomainError> {
    decide_events(job, command, now).map(|events| Decision::of(job.status, events))
}

fn decide_events(
    job: &Job,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let status = job.status;
    let events = match command {
        Command::StartPreparation => match status {
            JobStatus::New => vec![Event::PreparationStarted],
            // A preparer that died mid-way is replaced; preparation restarts.
            JobStatus::Preparing => vec![],
            JobStatus::Suspended
            | JobStatus::Ready
            | JobStatus::Active
            | JobStatus::Pausing
            | JobStatus::Paused
            | JobStatus::Completing
            | JobStatus::Complete
            | JobStatus::Cancelling
            | JobStatus::Cancelled
            | JobStatus::Failing
            | JobStatus::Failed
            | JobStatus::DryRunComplete => return Err(refused(status, "start preparation")),
        },
        Command::FinishPreparation {
            total_number_of_tasks,
            total_bytes,
        } => {
            require(status, JobStatus::Preparing, "finish preparation")?;
            if job.spec.dry_run {
                // A dry run answers "how many objects?", zero included, and
                // has nothing to confirm or run.
                vec![Event::DryRunCounted {
                    total_number_of_tasks: *total_number_of_tasks,
                    total_bytes: *total_bytes,
                }]
            } else if *total_number_of_tasks == 0 {
                fail_now(FailureReason::new(
                    MANIFEST_EMPTY,
                    "the manifest lists no object",
                ))
            } else {
                vec![Event::ManifestPrepared {
                    total_number_of_tasks: *total_number_of_tasks,
                    awaiting_confirmation: !job.confirmed,
                    total_bytes: *total_bytes,
                }]
            }
        }
        Command::FailPreparation { reason } => {
            require(status, JobStatus::Preparing, "fail preparation")?;
            fail_now(reason.clone())
        }
        Command::Confirm { reason } => match status {
            JobStatus::Suspended => vec![Event::JobConfirmed {
                reason: reason.clone(),
            }],
            JobStatus::New
            | JobStatus::Preparing
            | JobStatus::Ready
            | JobStatus::Active
            | JobStatus::Pausing
            | JobStatus::Paused
            | JobStatus::Completing
            | JobStatus::Complete
            | JobStatus::Cancelling
            | JobStatus::Cancelled
            | JobStatus::Failing
            | JobStatus::Failed
            | JobStatus::DryRunComplete => {
                return Err(DomainError::IllegalTransition {
                    current: status,
                    requested: JobStatus::Ready,
                });
            }
        },
        Command::Cancel { reason } => cancel(status, reason)?,
        Command::Activate => match status {
            JobStatus::Ready | JobStatus::Paused => {
                let mut events = vec![Event::JobActivated];
                if job.progress.is_finished() {
                    events.push(Event::AllTasksFinished);
                }
                events
            }
            JobStatus::New
            | JobStatus::Preparing
            | JobStatus::Suspended
            | JobStatus::Active
            | JobStatus::Pausing
            | JobStatus::Completing
            | JobStatus::Complete
            | JobStatus::Cancelling
            | JobStatus::Cancelled
            | JobStatus::Failing
            | JobStatus::Failed
            | JobStatus::DryRunComplete => return Err(refused(status, "activate")),
        },
        Command::Pause => {
            require(status, JobStatus::Active, "pause")?;
            vec![Event::PauseRequested]
        }
        Command::RecordTaskResults {
            succeeded,
            failed,
            errors,
        } => record_task_results(job, *succeeded, *failed, errors)?,
        Command::FinishDraining => match status {
            JobStatus::Cancelling | JobStatus::Failing if job.report_due() => {
                return Err(refused(status, "end before its completion report"));
            }
            JobStatus::Cancelling => vec![Event::JobCancelled],
            JobStatus::Failing => vec![Event::JobFailed],
            JobStatus::Pausing => vec![Event::JobPaused],
            JobStatus::New
            | JobStatus::Preparing
            | JobStatus::Suspended
            | JobStatus::Ready
            | JobStatus::Active
            | JobStatus::Paused
            | JobStatus::Completing
            | JobStatus::Complete
            | JobStatus::Cancelled
            | JobStatus::Failed
            | JobStatus::DryRunComplete => return Err(refused(status, "finish draining")),
        },
        Command::FinishCompletion => {
            require(status, JobStatus::Completing, "complete")?;
            if job.report_due() {
                return Err(refused(status, "end before its completion report"));
            }
            vec![Event::JobCompleted]
        }
        Command::ExpireSuspension { limit } => {
            require(status, JobStatus::Suspended, "expire suspension")?;
            let suspended_for = job.suspended_time.map(|since| now - since);
            if suspended_for.is_none_or(|held| held < *limit) {
                return Err(refused(status, "expire a suspension before its limit"));
            }
            fail_now(FailureReason::new(
                SUSPENSION_LIMIT_EXCEEDED,
                format!(
                    "the job was not confirmed within {} of its suspension",
                    describe_duration(*limit)
                ),
            ))
        }
        Command::RecordReport { outcome } => {
            if !status.ends_with_report() || job.report_recorded() {
                return Err(refused(status, "record a completion report"));
            }
            vec![match outcome {
                Ok(location) => Event::ReportWritten {
                    location: location.clone(),
                },
                Err(reason) => Event::ReportFailed {
                    failure_reason: reason.clone(),
                },
            }]
        }
        Command::ChangePriority { priority } => {
            if status.is_terminal() {
                return Err(refused(status, "change priority"));
            }
            if *priority < 0 {
                return Err(DomainError::InvalidPriority(*priority));
            }
            if *priority == job.priority {
                vec![]
            } else {
                vec![Event::PriorityChanged {
                    previous: job.priority,
                    priority: *priority,
                }]
            }
        }
        Command::ReplaceTags { tags } => {
            if *tags == job.tags {
                vec![]
            } else {
                vec![Event::TagsReplaced { tags: tags.clone() }]
            }
        }
    };
    Ok(events)
}

fn cancel(status: JobStatus, reason: &Option<String>) -> Result<Vec<Event>, DomainError> {
    let requested = Event::CancellationRequested {
        reason: reason.clone(),
    };
    match status {
        JobStatus::New | JobStatus::Suspended | JobStatus::Ready | JobStatus::Paused => {
            Ok(vec![requested, Event::JobCancelled])
        }
        JobStatus::Preparing | JobStatus::Active | JobStatus::Pausing => Ok(vec![requested]),
        // Already on its way to Cancelled: asking again changes nothing.
        JobStatus::Cancelling => Ok(vec![]),
        JobStatus::Completing
        | JobStatus::Complete
        | JobStatus::Cancelled
        | JobStatus::Failing
        | JobStatus::Failed
        | JobStatus::DryRunComplete => Err(DomainError::IllegalTransition {
            current: status,
            requested: JobStatus::Cancelled,
        }),
    }
}

fn record_task_results(
    job: &Job,
    succeeded: u64,
    failed: u64,
    errors: &ErrorSummary,
) -> Result<Vec<Event>, DomainError> {
    if !job.status.accepts_results() {
        return Err(refused(job.status, "record task results"));
    }
    let progress = Progress {
        succeeded: job.progress.succeeded + succeeded,
        failed: job.progress.failed + failed,
        ..job.progress
    };
    if progress.run() > progress.total {
        return Err(DomainError::TooManyResults {
            total: progress.total,
            run: progress.run(),
        });
    }
    let mut events = vec![Event::TaskResultsRecorded {
        succeeded,
        failed,
        errors: errors.clone(),
    }];
    if job.status.runs_tasks() {
        let threshold = job.spec.failure_threshold;
        if threshold.is_exceeded(progress.run(), progress.failed) {
            events.push(Event::FailureDetected {
                failure_reasons: vec![FailureReason::new(
                    TASK_FAILURE_THRESHOLD_EXCEEDED,
                    format!(
                        "{} of {} tasks run failed, more than {} % (checked once {} tasks have run)",
                        progress.failed,
                        progress.run(),
                        threshold.max_failure_percent,
                        threshold.minimum_tasks_run
                    ),
                )],
            });
        } else if progress.is_finished() {
            events.push(Event::AllTasksFinished);
        }
    }
    Ok(events)
}

/// "30 days", "2 hours", "90 seconds": the largest whole unit.
fn describe_duration(duration: chrono::TimeDelta) -> String {
    let seconds = duration.num_seconds();
    let (count, unit) = if seconds % 86_400 == 0 && seconds > 0 {
        (seconds / 86_400, "day")
    } else if seconds % 3600 == 0 && seconds > 0 {
        (seconds / 3600, "hour")
    } else {
        (seconds, "second")
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Failing then Failed at once: used where no task can be in flight.
fn fail_now(reason: FailureReason) -> Vec<Event> {
    vec![
        Event::FailureDetected {
            failure_reasons: vec![reason],
        },
        Event::JobFailed,
    ]
}

fn require(
    status: JobStatus,
    expected: JobStatus,
    action: &'static str,
) -> Result<(), DomainError> {
    if status == expected {
        Ok(())
    } else {
        Err(refused(status, action))
    }
}

fn refused(current: JobStatus, action: &'static str) -> DomainError {
    DomainError::NotAllowed { current, action }
}

/// Folds one event into the job. `at` is the time the event was recorded.
pub fn apply(job: &mut Job, event: &Event, at: DateTime<Utc>) {
    if let Some(next) = event.target_status() {
        enter_status(job, next, at);
    }
    match event {
        Event::DryRunCounted {
            total_number_of_tasks,
            total_bytes,
        } => {
            job.progress.total = *total_number_of_tasks;
            job.progress.total_bytes = *total_bytes;
        }
        Event::ManifestPrepared {
            total_number_of_tasks,
            awaiting_confirmation,
            total_bytes,
        } => {
            job.progress.total = *total_number_of_tasks;
            job.progress.total_bytes = *total_bytes;
            if *awaiting_confirmation {
                job.suspended_time = Some(at);
                job.suspended_cause = Some(AWAITING_CONFIRMATION.to_owned());
            }
        }
        Event::JobConfirmed { reason } => {
            job.confirmed = true;
            if reason.is_some() {
                job.status_update_reason = reason.clone();
            }
        }
        Event::CancellationRequested { reason } => {
            if reason.is_some() {
                job.status_update_reason = reason.clone();
            }
        }
        Event::TaskResultsRecorded {
            succeeded,
            failed,
            errors,
        } => {
            job.progress.succeeded += succeeded;
            job.progress.failed += failed;
            job.errors.merge(errors);
        }
        Event::FailureDetected { failure_reasons } => {
            job.failure_reasons.extend(failure_reasons.iter().cloned());
        }
        Event::PriorityChanged { priority, .. } => job.priority = *priority,
        Event::ReportWritten { location } => job.report_location = Some(location.clone()),
        Event::ReportFailed { failure_reason } => job.failure_reasons.push(failure_reason.clone()),
        Event::TagsReplaced { tags } => job.tags = tags.clone(),
        Event::PreparationStarted
        | Event::JobActivated
        | Event::PauseRequested
        | Event::JobPaused
        | Event::AllTasksFinished
        | Event::JobCompleted
        | Event::JobCancelled
        | Event::JobFailed => {}
    }
}

fn enter_status(job: &mut Job, next: JobStatus, at: DateTime<Utc>) {
    if let Some(since) = job.active_since.take() {
        job.elapsed_active_millis += (at - since).num_milliseconds().max(0);
    }
    if next == JobStatus::Active {
        job.active_since = Some(at);
    }
    if next.is_terminal() {
        job.termination_time = Some(at);
    }
    job.status = next;
}
