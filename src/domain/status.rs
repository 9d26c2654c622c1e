//! The thirteen statuses of a job that runs, the one terminal status of a
//! dry run, and the one table of transitions between them.
//!
//! A dry run (`JobSpec::dry_run`) is prepared like any job, its manifest or
//! generator read and its objects counted, and then ends in
//! [`JobStatus::DryRunComplete`], which no job that runs ever reaches: a
//! status that cannot be mistaken for a run that happened.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Created; nothing processed yet.
    New,
    /// The manifest is read into tasks.
    Preparing,
    /// Waiting for the owner's confirmation.
    Suspended,
    /// Waiting for an active slot.
    Ready,
    /// Tasks run.
    Active,
    /// A higher-priority job needs the slot; in-flight tasks drain.
    Pausing,
    /// Waiting to get a slot back.
    Paused,
    /// Every task has a result; the report is written.
    Completing,
    /// Terminal: every task ran.
    Complete,
    /// Cancelled; in-flight tasks drain.
    Cancelling,
    /// Terminal.
    Cancelled,
    /// Failing; in-flight tasks drain and the report is written.
    Failing,
    /// Terminal; the failure reasons say why.
    Failed,
    /// Terminal, for dry runs only: the manifest was read and its objects
    /// counted; no task ran and no object was touched.
    DryRunComplete,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 14] = [
        JobStatus::New,
        JobStatus::Preparing,
        JobStatus::Suspended,
        JobStatus::Ready,
        JobStatus::Active,
        JobStatus::Pausing,
        JobStatus::Paused,
        JobStatus::Completing,
        JobStatus::Complete,
        JobStatus::Cancelling,
        JobStatus::Cancelled,
        JobStatus::Failing,
        JobStatus::Failed,
        JobStatus::DryRunComplete,
    ];

    /// Complete, Cancelled, Failed and DryRunComplete are never left.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete
                | JobStatus::Cancelled
                | JobStatus::Failed
                | JobStatus::DryRunComplete
        )
    }

    /// Whether workers start the job's tasks: Active only.
    pub fn runs_tasks(self) -> bool {
        self == JobStatus::Active
    }

    /// Whether no new task starts while the tasks in flight finish, after
    /// which the status ends: Pausing, Cancelling and Failing.
    pub fn is_draining(self) -> bool {
        matches!(
            self,
            JobStatus::Pausing | JobStatus::Cancelling | JobStatus::Failing
        )
    }

    /// Whether the engine's finisher ends the status once what it waits
    /// for is done: the draining statuses, and Completing.
    pub fn is_ended_by_finisher(self) -> bool {
        self.is_draining() || self == JobStatus::Completing
    }

    /// Whether task results may still be recorded: while tasks run or drain.
    pub fn accepts_results(self) -> bool {
        self.runs_tasks() || self.is_draining()
    }

    /// Whether the job occupies one of its account's active slots: Active,
    /// and Pausing until it has drained.
    pub fn holds_slot(self) -> bool {
        matches!(self, JobStatus::Active | JobStatus::Pausing)
    }

    /// Whether the job is among those the scheduler weighs for the slots:
    /// runnable (Ready, Paused) or holding one (Active, Pausing).
    pub fn competes_for_slot(self) -> bool {
        matches!(self, JobStatus::Ready | JobStatus::Paused) || self.holds_slot()
    }

    /// Whether a preparer should take the job: New, or Preparing in a
    /// process that may have died (the preparation lock tells).
    pub fn awaits_preparation(self) -> bool {
        matches!(self, JobStatus::New | JobStatus::Preparing)
    }

    /// Whether the job waits for its owner's confirmation: Suspended.
    pub fn awaits_confirmation(self) -> bool {
        self == JobStatus::Suspended
    }

    /// Whether the status ends with the job's completion report written, if
    /// it asked for one and a task ran: Completing, Cancelling and Failing.
    /// A Pausing job owes none; it resumes later.
    pub fn ends_with_report(self) -> bool {
        matches!(
            self,
            JobStatus::Completing | JobStatus::Cancelling | JobStatus::Failing
        )
    }

    /// Every status for which `test` holds, in lifecycle order: the values
    /// SQL statements take as parameters, so that no statement names a
    /// status of its own.
    pub fn all_where(test: fn(JobStatus) -> bool) -> Vec<JobStatus> {
        JobStatus::ALL.into_iter().filter(|s| test(*s)).collect()
    }

    /// The transition table of DESIGN.md section 1. Cancellation of an idle job
    /// passes through Cancelling within one command, so every cancel goes
    /// `… → Cancelling → Cancelled`.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            New => matches!(next, Preparing | Cancelling),
            Preparing => matches!(
                next,
                Ready | Suspended | Failing | Cancelling | DryRunComplete
            ),
            Suspended => matches!(next, Ready | Cancelling | Failing),
            Ready => matches!(next, Active | Cancelling),
            Active => matches!(next, Completing | Failing | Cancelling | Pausing),
            Pausing => matches!(next, Paused | Cancelling),
            Paused => matches!(next, Active | Cancelling),
            Completing => matches!(next, Complete),
            Cancelling => matches!(next, Cancelled),
            Failing => matches!(next, Failed),
            Complete | Cancelled | Failed | DryRunComplete => false,
        }
    }

    /// The name used in the event log, in messages and in the `jobs` table.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "New",
            JobStatus::Preparing => "Preparing",
            JobStatus::Suspended => "Suspended",
            JobStatus::Ready => "Ready",
            JobStatus::Active => "Active",
            JobStatus::Pausing => "Pausing",
            JobStatus::Paused => "Paused",
            JobStatus::Completing => "Completing",
            JobStatus::Complete => "Complete",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
            JobStatus::Failing => "Failing",
            JobStatus::Failed => "Failed",
            JobStatus::DryRunComplete => "DryRunComplete",
        }
    }

    /// The inverse of [`JobStatus::as_str`].
    pub fn parse(name: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
