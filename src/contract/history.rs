//! A job's stored events as the contract's `JobEvent`s. The events are
//! folded as they are converted, so that a status change names the status
//! it came from. Shared by the history stream and the watch tail.

use crate::domain::{self, FailureReason, Job};
use crate::proto as pb;
use crate::store::{LoggedEvent, RecordedEvent};

use super::job::{
    failure_reasons_to_proto, job_to_proto, report_location_to_proto, status_to_proto,
    tags_to_proto, timestamp,
};

/// Turns a job's stored events into proto events, folding them as it goes
/// so that status changes can name the status they came from.
pub(crate) struct HistoryFolder {
    job: Option<Job>,
}

impl HistoryFolder {
    /// A folder that has seen no event yet.
    pub(crate) fn new() -> HistoryFolder {
        HistoryFolder { job: None }
    }

    /// Whether the folded job has reached a terminal status, after
    /// which no status change follows.
    pub(crate) fn is_finished(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|job| job.status.is_terminal())
    }

    /// The contract's form of `recorded`, the next event of its job (the job's events must come
    /// in sequence order).
    pub(crate) fn convert(&mut self, recorded: &RecordedEvent) -> pb::JobEvent {
        use pb::job_event::Event as E;
        let event = match (&recorded.event, &mut self.job) {
            (LoggedEvent::Created(created), _) => {
                let job = domain::created(recorded.job_id, created, recorded.recorded_at);
                let event = E::JobCreated(Box::new(pb::JobCreatedEvent {
                    job: Some(job_to_proto(&job, recorded.recorded_at)),
                }));
                self.job = Some(job);
                Some(event)
            }
            (LoggedEvent::Changed(event), Some(job)) => {
                let previous = job.clone();
                domain::apply(job, event, recorded.recorded_at);
                change_to_proto(&previous, job, event)
            }
            (LoggedEvent::Changed(_), None) => None,
        };
        pb::JobEvent {
            job_id: recorded.job_id.to_string(),
            sequence: recorded.sequence as i64,
            position: recorded.position,
            event_time: Some(timestamp(recorded.recorded_at)),
            schema_version: u32::from(recorded.schema_version),
            event_type: recorded.event.type_name().to_owned(),
            event,
        }
    }
}

impl Default for HistoryFolder {
    fn default() -> Self {
        HistoryFolder::new()
    }
}

fn change_to_proto(
    previous: &Job,
    job: &Job,
    event: &domain::Event,
) -> Option<pb::job_event::Event> {
    use domain::Event as D;
    use pb::job_event::Event as E;
    let change =
        |reason: Option<&String>, failure_reasons: &[FailureReason]| pb::StatusChangedEvent {
            previous_status: status_to_proto(previous.status) as i32,
            status: status_to_proto(job.status) as i32,
            status_update_reason: reason.cloned().unwrap_or_default(),
            failure_reasons: failure_reasons_to_proto(failure_reasons),
            total_number_of_tasks: None,
            suspended_cause: String::new(),
            total_object_bytes: None,
        };
    let status_changed = |reason: Option<&String>, failure_reasons: &[FailureReason]| {
        E::StatusChanged(change(reason, failure_reasons))
    };
    Some(match event {
        // Preparation ends with the counts, whether the job will run or was
        // a dry run.
        D::DryRunCounted {
            total_number_of_tasks,
            total_bytes,
        }
        | D::ManifestPrepared {
            total_number_of_tasks,
            total_bytes,
            ..
        } => {
            let mut change = change(None, &[]);
            change.total_number_of_tasks = Some(*total_number_of_tasks);
            change.total_object_bytes = *total_bytes;
            if job.status.awaits_confirmation() {
                change.suspended_cause = job.suspended_cause.clone().unwrap_or_default();
            }
            E::StatusChanged(change)
        }
        D::JobConfirmed { reason } | D::CancellationRequested { reason } => {
            status_changed(reason.as_ref(), &[])
        }
        D::FailureDetected { failure_reasons } => status_changed(None, failure_reasons),
        D::PreparationStarted
        | D::JobActivated
        | D::PauseRequested
        | D::JobPaused
        | D::AllTasksFinished
        | D::JobCompleted
        | D::JobCancelled
        | D::JobFailed => status_changed(None, &[]),
        D::PriorityChanged { previous, priority } => E::PriorityChanged(pb::PriorityChangedEvent {
            previous_priority: *previous,
            priority: *priority,
        }),
        D::TagsReplaced { tags } => E::TagsChanged(pb::TagsChangedEvent {
            tags: tags_to_proto(tags),
        }),
        D::ReportWritten { location } => E::ReportWritten(pb::ReportWrittenEvent {
            location: Some(report_location_to_proto(location)),
        }),
        D::ReportFailed { failure_reason } => E::ReportFailed(pb::ReportFailedEvent {
            failure_reason: failure_reasons_to_proto(std::slice::from_ref(failure_reason)).pop(),
        }),
        D::TaskResultsRecorded { .. } => return None,
    })
}
