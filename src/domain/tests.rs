//! The lifecycle rules in the domain's own terms: given the events a job
//! has seen, when a command arrives, then these events (and effects) are
//! decided, or the command is refused. Property tests check the fold.

use super::*;
use JobStatus::*;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A checksum job's spec: also the fixture of other modules' tests.
pub(crate) fn spec(confirmation_required: bool) -> JobSpec {
    JobSpec {
        account_id: AccountId("111122223333".into()),
        client_request_token: "token".into(),
        description: "test".into(),
        priority: 10,
        confirmation_required,
        manifest: ManifestSource::Manifest(ManifestSpec {
            format: ManifestFormat::S3BatchOperationsCsv20180820,
            fields: vec![],
            location: ObjectLocation {
                bucket: "b".into(),
                key: "manifest.csv".into(),
            },
            etag: None,
            version_id: None,
        }),
        operation: Operation::ComputeObjectChecksum {
            algorithm: ChecksumAlgorithm::Sha256,
        },
        report: None,
        tags: vec![],
        failure_threshold: FailureThreshold::default(),
        bucket_grant: None,
        role_arn: None,
        dry_run: false,
        notification_endpoint: None,
    }
}

/// A dry run of `spec(true)`.
fn dry_run_spec() -> JobSpec {
    JobSpec {
        dry_run: true,
        ..spec(true)
    }
}

/// Tasks of the jobs in these tests.
const TASKS: u64 = 10;

fn report_spec() -> ReportSpec {
    ReportSpec {
        bucket: "reports".into(),
        prefix: String::new(),
        scope: ReportScope::AllTasks,
    }
}

/// The events that take a job created with confirmation required through
/// the lifecycle to `status`: the history a test is given.
fn history_to(status: JobStatus) -> Vec<Event> {
    let prepared = Event::ManifestPrepared {
        total_number_of_tasks: TASKS,
        awaiting_confirmation: true,
        total_bytes: None,
    };
    let confirmed = Event::JobConfirmed { reason: None };
    let to_active = || {
        vec![
            Event::PreparationStarted,
            prepared.clone(),
            confirmed.clone(),
            Event::JobActivated,
        ]
    };
    let then = |mut events: Vec<Event>, more: Vec<Event>| {
        events.extend(more);
        events
    };
    match status {
        New => vec![],
        Preparing => vec![Event::PreparationStarted],
        Suspended => vec![Event::PreparationStarted, prepared.clone()],
        Ready => vec![Event::PreparationStarted, prepared.clone(), confirmed],
        Active => to_active(),
        Pausing => then(to_active(), vec![Event::PauseRequested]),
        Paused => then(to_active(), vec![Event::PauseRequested, Event::JobPaused]),
        Completing => then(
            to_active(),
            vec![
                Event::TaskResultsRecorded {
                    succeeded: TASKS,
                    failed: 0,
                    errors: failures(0),
                },
                Event::AllTasksFinished,
            ],
        ),
        Complete => then(history_to(Completing), vec![Event::JobCompleted]),
        Cancelling => then(
            to_active(),
            vec![Event::CancellationRequested { reason: None }],
        ),
        Cancelled => vec![
            Event::CancellationRequested { reason: None },
            Event::JobCancelled,
        ],
        Failing => then(
            to_active(),
            vec![
                Event::TaskResultsRecorded {
                    succeeded: 0,
                    failed: TASKS,
                    errors: failures(TASKS),
                },
                Event::FailureDetected {
                    failure_reasons: vec![FailureReason::new(
                        TASK_FAILURE_THRESHOLD_EXCEEDED,
                        "10 of 10 tasks run failed",
                    )],
                },
            ],
        ),
        Failed => vec![
            Event::PreparationStarted,
            Event::FailureDetected {
                failure_reasons: vec![FailureReason::new("ManifestNotFound", "gone")],
            },
            Event::JobFailed,
        ],
        DryRunComplete => vec![
            Event::PreparationStarted,
            Event::DryRunCounted {
                total_number_of_tasks: TASKS,
                total_bytes: Some(TASKS * 1024),
            },
        ],
    }
}

/// A job and the events it has seen.
#[derive(Clone)]
struct Given {
    job: Job,
}

/// Given a job of `spec(true)` that has seen `events`, a second apart.
fn given(events: impl IntoIterator<Item = Event>) -> Given {
    given_spec(spec(true), events)
}

/// Given a job of `spec` that has seen `events`, a second apart.
fn given_spec(spec: JobSpec, events: impl IntoIterator<Item = Event>) -> Given {
    let mut job = created(JobId(uuid::Uuid::nil()), &create(spec), t0());
    let mut at = t0();
    for event in events {
        at += TimeDelta::seconds(1);
        apply(&mut job, &event, at);
    }
    Given { job }
}

/// Given a job in `status`, reached by its ordinary history.
fn given_in(status: JobStatus) -> Given {
    let spec = if status == DryRunComplete {
        dry_run_spec()
    } else {
        spec(true)
    };
    given_spec(spec, history_to(status))
}

impl Given {
    /// When `command` arrives a minute after the last event.
    fn when(&self, command: Command) -> Then {
        self.when_at(command, t0() + TimeDelta::minutes(1))
    }

    fn when_at(&self, command: Command, now: DateTime<Utc>) -> Then {
        Then {
            result: decide(&self.job, &command, now),
            before: self.job.clone(),
            now,
            command,
        }
    }
}

/// What a command decided.
struct Then {
    result: Result<Decision, DomainError>,
    before: Job,
    now: DateTime<Utc>,
    command: Command,
}

impl Then {
    fn decision(&self) -> &Decision {
        match &self.result {
            Ok(decision) => decision,
            Err(refusal) => panic!(
                "{:?} in {} was refused: {refusal}",
                self.command, self.before.status
            ),
        }
    }

    /// Then exactly these events.
    fn then(&self, expected: &[Event]) -> &Then {
        assert_eq!(self.decision().events, expected, "{:?}", self.command);
        self
    }

    /// Then events that move the job through exactly these statuses.
    fn then_statuses(&self, expected: &[JobStatus]) -> &Then {
        let statuses: Vec<JobStatus> = self
            .decision()
            .events
            .iter()
            .filter_map(Event::target_status)
            .collect();
        assert_eq!(
            statuses, expected,
            "{:?} in {}",
            self.command, self.before.status
        );
        self
    }

    /// Then these effects besides the events.
    fn then_effects(&self, expected: &[Effect]) -> &Then {
        assert_eq!(self.decision().effects, expected, "{:?}", self.command);
        self
    }

    /// Then the command is refused, with this error.
    fn then_refused(&self) -> &DomainError {
        match &self.result {
            Ok(decision) => panic!(
                "{:?} in {} was accepted: {decision:?}",
                self.command, self.before.status
            ),
            Err(refusal) => refusal,
        }
    }

    /// The job after the decided events, to look at what they folded into.
    fn state(&self) -> Job {
        let mut job = self.before.clone();
        for event in &self.decision().events {
            apply(&mut job, event, self.now);
        }
        job
    }

    /// The job after the events, as the history a next command is given.
    fn and(&self) -> Given {
        Given { job: self.state() }
    }
}

fn prepared() -> Command {
    Command::FinishPreparation {
        total_number_of_tasks: TASKS,
        total_bytes: None,
    }
}

fn results(succeeded: u64, failed: u64) -> Command {
    Command::RecordTaskResults {
        succeeded,
        failed,
        errors: failures(failed),
    }
}

/// `failed` failures of one code, without samples.
fn failures(failed: u64) -> ErrorSummary {
    let mut errors = ErrorSummary::default();
    if failed > 0 {
        errors.codes.insert(
            "TestFailure".into(),
            CodeFailures {
                failed,
                samples: Vec::new(),
            },
        );
    }
    errors
}

#[test]
fn transition_table_is_exactly_the_designed_one() {
    let allowed: &[(JobStatus, &[JobStatus])] = &[
        (New, &[Preparing, Cancelling]),
        (
            Preparing,
            &[Ready, Suspended, Failing, Cancelling, DryRunComplete],
        ),
        (Suspended, &[Ready, Cancelling, Failing]),
        (Ready, &[Active, Cancelling]),
        (Active, &[Completing, Failing, Cancelling, Pausing]),
        (Pausing, &[Paused, Cancelling]),
        (Paused, &[Active, Cancelling]),
        (Completing, &[Complete]),
        (Complete, &[]),
        (Cancelling, &[Cancelled]),
        (Cancelled, &[]),
        (Failing, &[Failed]),
        (Failed, &[]),
        (DryRunComplete, &[]),
    ];
    assert_eq!(allowed.len(), JobStatus::ALL.len());
    for (from, targets) in allowed {
        for to in JobStatus::ALL {
            assert_eq!(
                from.can_transition_to(to),
                targets.contains(&to),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn status_predicates_are_the_designed_sets() {
    type Predicate = fn(JobStatus) -> bool;
    let sets: [(Predicate, &[JobStatus]); 8] = [
        (
            JobStatus::is_terminal,
            &[Complete, Cancelled, Failed, DryRunComplete],
        ),
        (JobStatus::runs_tasks, &[Active]),
        (JobStatus::is_draining, &[Pausing, Cancelling, Failing]),
        (
            JobStatus::accepts_results,
            &[Active, Pausing, Cancelling, Failing],
        ),
        (JobStatus::holds_slot, &[Active, Pausing]),
        (
            JobStatus::competes_for_slot,
            &[Ready, Active, Pausing, Paused],
        ),
        (JobStatus::awaits_preparation, &[New, Preparing]),
        (
            JobStatus::ends_with_report,
            &[Completing, Cancelling, Failing],
        ),
    ];
    for (test, expected) in sets {
        assert_eq!(JobStatus::all_where(test), expected);
    }
    assert_eq!(
        JobStatus::all_where(JobStatus::awaits_confirmation),
        [Suspended]
    );
}

#[test]
fn every_history_reaches_its_status() {
    for status in JobStatus::ALL {
        assert_eq!(given_in(status).job.status, status);
    }
}

#[test]
fn status_names_round_trip() {
    for status in JobStatus::ALL {
        assert_eq!(JobStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(JobStatus::parse("Bogus"), None);
}

#[test]
fn confirmation_unset_means_suspended_after_preparation() {
    given_in(Preparing)
        .when(prepared())
        .then(&[Event::ManifestPrepared {
            total_number_of_tasks: TASKS,
            awaiting_confirmation: true,
            total_bytes: None,
        }]);
}

#[test]
fn a_dry_run_ends_counted_without_confirmation_tasks_or_report() {
    // Given a dry run that asks for confirmation and a report,
    let spec = JobSpec {
        report: Some(report_spec()),
        ..dry_run_spec()
    };
    // when its manifest is counted,
    let then = given_spec(spec, [Event::PreparationStarted]).when(Command::FinishPreparation {
        total_number_of_tasks: 7,
        total_bytes: Some(7168),
    });
    // then it ends at once in the status only dry runs reach, with its counts.
    then.then(&[Event::DryRunCounted {
        total_number_of_tasks: 7,
        total_bytes: Some(7168),
    }]);
    let job = then.state();
    assert_eq!(job.status, DryRunComplete);
    assert!(job.status.is_terminal());
    assert_eq!(job.progress.total, 7);
    assert_eq!(job.progress.total_bytes, Some(7168));
    assert_eq!(job.progress.run(), 0);
    assert!(!job.needs_report());
    assert_eq!(job.suspended_time, None);
    assert!(job.termination_time.is_some());
    assert_eq!(
        then.decision().effects,
        vec![Effect::ReleaseChunks],
        "a dry run has no chunk, but ending releases whatever a job holds"
    );
}

#[test]
fn a_dry_run_that_counts_nothing_answers_zero_where_a_job_fails() {
    let count_none = Command::FinishPreparation {
        total_number_of_tasks: 0,
        total_bytes: Some(0),
    };
    given_spec(dry_run_spec(), [Event::PreparationStarted])
        .when(count_none.clone())
        .then_statuses(&[DryRunComplete]);
    given_in(Preparing)
        .when(count_none)
        .then_statuses(&[Failing, Failed]);
}

#[test]
fn a_job_that_runs_never_reaches_dry_run_complete() {
    for status in JobStatus::ALL {
        let reaches = status.can_transition_to(DryRunComplete);
        assert_eq!(reaches, status == Preparing, "{status}");
    }
    // A job that runs is prepared into Suspended or Ready, never DryRunComplete.
    for confirmation in [true, false] {
        let then = given_spec(spec(confirmation), [Event::PreparationStarted]).when(prepared());
        assert_ne!(then.state().status, DryRunComplete);
    }
}

#[test]
fn job_without_confirmation_goes_straight_to_ready() {
    let then = given_spec(spec(false), [Event::PreparationStarted]).when(prepared());
    then.then_statuses(&[Ready]);
    assert_eq!(then.state().suspended_time, None);
}

#[test]
fn suspension_records_time_and_cause() {
    let job = given_in(Preparing).when(prepared()).state();
    assert!(job.suspended_time.is_some());
    assert_eq!(job.suspended_cause.as_deref(), Some(AWAITING_CONFIRMATION));
}

#[test]
fn confirm_is_allowed_only_from_suspended() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(Command::Confirm { reason: None });
        if status == Suspended {
            then.then(&[Event::JobConfirmed { reason: None }]);
        } else {
            assert_eq!(
                then.then_refused(),
                &DomainError::IllegalTransition {
                    current: status,
                    requested: Ready
                },
                "confirm from {status}"
            );
        }
    }
}

#[test]
fn a_confirmed_job_never_returns_to_suspended() {
    let job = given_in(Paused)
        .when(Command::Activate)
        .then_statuses(&[Active])
        .state();
    assert!(job.confirmed);
}

#[test]
fn cancel_response_statuses_follow_tasks_in_flight() {
    let expected: &[(JobStatus, Option<&[JobStatus]>)] = &[
        (New, Some(&[Cancelling, Cancelled])),
        (Preparing, Some(&[Cancelling])),
        (Suspended, Some(&[Cancelling, Cancelled])),
        (Ready, Some(&[Cancelling, Cancelled])),
        (Active, Some(&[Cancelling])),
        (Pausing, Some(&[Cancelling])),
        (Paused, Some(&[Cancelling, Cancelled])),
        (Completing, None),
        (Complete, None),
        (Cancelling, Some(&[])),
        (Cancelled, None),
        (Failing, None),
        (Failed, None),
    ];
    for (status, outcome) in expected {
        let then = given_in(*status).when(Command::Cancel { reason: None });
        match outcome {
            Some(statuses) => {
                then.then_statuses(statuses);
            }
            None => assert_eq!(
                then.then_refused(),
                &DomainError::IllegalTransition {
                    current: *status,
                    requested: Cancelled
                },
                "cancel from {status}"
            ),
        }
    }
}

#[test]
fn cancel_keeps_the_status_update_reason() {
    let reason = Some("No longer needed".to_owned());
    let then = given_in(Ready).when(Command::Cancel {
        reason: reason.clone(),
    });
    then.then(&[
        Event::CancellationRequested {
            reason: reason.clone(),
        },
        Event::JobCancelled,
    ]);
    let job = then.state();
    assert_eq!(job.status_update_reason, reason);
    assert!(job.termination_time.is_some());
}

#[test]
fn leaving_active_stops_task_starts_and_ending_releases_chunks() {
    given_in(Active)
        .when(Command::Cancel { reason: None })
        .then_effects(&[Effect::StopTaskStarts]);
    given_in(Active)
        .when(Command::Pause)
        .then_effects(&[Effect::StopTaskStarts]);
    given_in(Active)
        .when(results(TASKS, 0))
        .then_effects(&[Effect::StopTaskStarts]);
    given_in(Active).when(results(1, 0)).then_effects(&[]);
    // Ending, by any path, releases the chunks that will never run.
    given_in(Paused)
        .when(Command::Cancel { reason: None })
        .then_effects(&[Effect::ReleaseChunks]);
    given_in(Cancelling)
        .when(Command::FinishDraining)
        .then_effects(&[Effect::ReleaseChunks]);
    given_in(Completing)
        .when(Command::FinishCompletion)
        .then_effects(&[Effect::ReleaseChunks]);
    given_in(Pausing)
        .when(Command::FinishDraining)
        .then_effects(&[]);
    given_in(Paused).when(Command::Activate).then_effects(&[]);
}

#[test]
fn draining_ends_in_the_matching_status() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(Command::FinishDraining);
        match status {
            Cancelling => {
                then.then(&[Event::JobCancelled]);
            }
            Failing => {
                then.then(&[Event::JobFailed]);
            }
            Pausing => {
                then.then(&[Event::JobPaused]);
            }
            _ => assert!(then.then_refused().is_race(), "drain from {status}"),
        }
    }
}

#[test]
fn activation_only_from_ready_or_paused() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(Command::Activate);
        if matches!(status, Ready | Paused) {
            then.then(&[Event::JobActivated]);
        } else {
            assert!(then.then_refused().is_race(), "activate from {status}");
        }
    }
}

#[test]
fn pause_only_from_active() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(Command::Pause);
        if status == Active {
            then.then(&[Event::PauseRequested]);
        } else {
            assert!(then.then_refused().is_race(), "pause from {status}");
        }
    }
}

#[test]
fn preparation_steps_only_in_their_statuses() {
    let fail = || Command::FailPreparation {
        reason: FailureReason::new("ManifestNotFound", "missing"),
    };
    for status in JobStatus::ALL {
        let given = given_in(status);
        match status {
            New => {
                given
                    .when(Command::StartPreparation)
                    .then(&[Event::PreparationStarted]);
                given.when(prepared()).then_refused();
                // A job fails preparation only once it started.
                given.when(fail()).then_refused();
            }
            Preparing => {
                // A restarted preparer resumes.
                given.when(Command::StartPreparation).then(&[]);
                given.when(prepared()).then_statuses(&[Suspended]);
                given.when(fail()).then_statuses(&[Failing, Failed]);
            }
            _ => {
                given.when(Command::StartPreparation).then_refused();
                given.when(prepared()).then_refused();
                given.when(fail()).then_refused();
            }
        }
    }
}

#[test]
fn an_empty_manifest_fails_the_job() {
    let then = given_in(Preparing).when(Command::FinishPreparation {
        total_number_of_tasks: 0,
        total_bytes: None,
    });
    then.then_statuses(&[Failing, Failed]);
    assert_eq!(then.state().failure_reasons[0].failure_code, MANIFEST_EMPTY);
}

#[test]
fn finishing_every_task_moves_active_to_completing_then_complete() {
    let given = given_in(Active)
        .when(results(4, 1))
        .then(&[Event::TaskResultsRecorded {
            succeeded: 4,
            failed: 1,
            errors: failures(1),
        }])
        .and();
    let then = given.when(results(5, 0));
    then.then(&[
        Event::TaskResultsRecorded {
            succeeded: 5,
            failed: 0,
            errors: failures(0),
        },
        Event::AllTasksFinished,
    ]);
    assert_eq!(
        then.state().progress,
        Progress {
            total: 10,
            succeeded: 9,
            failed: 1,
            total_bytes: None,
        }
    );
    then.and()
        .when(Command::FinishCompletion)
        .then(&[Event::JobCompleted]);
}

#[test]
fn results_beyond_the_task_count_are_refused_as_a_fault() {
    let refusal = given_in(Active)
        .when(results(TASKS + 1, 0))
        .then_refused()
        .clone();
    assert_eq!(
        refusal,
        DomainError::TooManyResults {
            total: TASKS,
            run: TASKS + 1
        }
    );
    assert!(!refusal.is_race(), "more results than tasks is no race");
}

#[test]
fn task_results_are_accepted_only_while_tasks_can_run_or_drain() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(results(0, 0));
        assert_eq!(
            then.result.is_ok(),
            status.accepts_results(),
            "record results in {status}"
        );
    }
}

#[test]
fn failure_threshold_fails_the_job_above_half_after_a_thousand_tasks() {
    let threshold = FailureThreshold::default();
    assert!(!threshold.is_exceeded(999, 999));
    assert!(!threshold.is_exceeded(1000, 500));
    assert!(threshold.is_exceeded(1000, 501));
    assert!(threshold.is_exceeded(1200, 720));
    assert!(!threshold.is_exceeded(1200, 480));

    let mut history = history_to(Active);
    history[1] = Event::ManifestPrepared {
        total_number_of_tasks: 2000,
        awaiting_confirmation: true,
        total_bytes: None,
    };
    let then = given(history).when(results(400, 600));
    let events = &then.then_statuses(&[Failing]).decision().events;
    let Some(Event::FailureDetected { failure_reasons }) = events.last() else {
        panic!("expected a failure, got {events:?}");
    };
    assert_eq!(
        failure_reasons[0].failure_code,
        TASK_FAILURE_THRESHOLD_EXCEEDED
    );
    assert!(failure_reasons[0].failure_reason.contains("600 of 1000"));
    then.and()
        .when(Command::FinishDraining)
        .then(&[Event::JobFailed]);
}

#[test]
fn priority_changes_in_every_non_terminal_status() {
    for status in JobStatus::ALL {
        let then = given_in(status).when(Command::ChangePriority { priority: 99 });
        if status.is_terminal() {
            then.then_refused();
        } else {
            then.then(&[Event::PriorityChanged {
                previous: 10,
                priority: 99,
            }]);
        }
    }
}

#[test]
fn unchanged_priority_or_tags_record_nothing() {
    let given = given_in(Ready);
    given
        .when(Command::ChangePriority { priority: 10 })
        .then(&[]);
    given.when(Command::ReplaceTags { tags: vec![] }).then(&[]);
    assert_eq!(
        given
            .when(Command::ChangePriority { priority: -1 })
            .then_refused(),
        &DomainError::InvalidPriority(-1)
    );
}

#[test]
fn tags_can_be_replaced_in_every_status() {
    let tags = vec![Tag {
        key: "team".into(),
        value: "storage".into(),
    }];
    for status in JobStatus::ALL {
        given_in(status)
            .when(Command::ReplaceTags { tags: tags.clone() })
            .then(&[Event::TagsReplaced { tags: tags.clone() }])
            .then_statuses(&[]);
    }
}

#[test]
fn suspension_expires_only_after_the_limit() {
    let given = given_in(Suspended);
    let suspended = given.job.suspended_time.unwrap();
    let limit = TimeDelta::days(30);
    given
        .when_at(
            Command::ExpireSuspension { limit },
            suspended + TimeDelta::days(29),
        )
        .then_refused();
    let then = given.when_at(Command::ExpireSuspension { limit }, suspended + limit);
    let events = &then.then_statuses(&[Failing, Failed]).decision().events;
    assert!(
        matches!(&events[0], Event::FailureDetected { failure_reasons } if failure_reasons[0].failure_code == SUSPENSION_LIMIT_EXCEEDED)
    );
}

#[test]
fn a_job_owing_a_report_ends_only_once_its_outcome_is_recorded() {
    let mut with_report = spec(true);
    with_report.report = Some(report_spec());
    let location = ObjectLocation {
        bucket: "reports".into(),
        key: "job-x/manifest.json".into(),
    };
    for status in [Completing, Cancelling, Failing] {
        let mut history = history_to(status);
        if status == Cancelling {
            // A task ran before the cancel, so a report is owed.
            history.insert(
                4,
                Event::TaskResultsRecorded {
                    succeeded: 1,
                    failed: 0,
                    errors: failures(0),
                },
            );
        }
        let given = given_spec(with_report.clone(), history);
        let finish = || {
            if status == Completing {
                Command::FinishCompletion
            } else {
                Command::FinishDraining
            }
        };
        assert!(given.when(finish()).then_refused().is_race());
        let recorded = given
            .when(Command::RecordReport {
                outcome: Ok(location.clone()),
            })
            .then(&[Event::ReportWritten {
                location: location.clone(),
            }])
            .and();
        recorded
            .when(Command::RecordReport {
                outcome: Err(FailureReason::new(REPORT_WRITE_FAILED, "x")),
            })
            .then_refused();
        assert!(recorded.when(finish()).state().status.is_terminal());
    }
    // A Pausing job owes no report: it resumes later.
    given_spec(
        with_report.clone(),
        history_to(Pausing)
            .into_iter()
            .chain([Event::TaskResultsRecorded {
                succeeded: 1,
                failed: 0,
                errors: failures(0),
            }]),
    )
    .when(Command::FinishDraining)
    .then(&[Event::JobPaused]);
    // A report that cannot be written still lets the job end, saying why.
    let failed = given_spec(with_report, history_to(Completing))
        .when(Command::RecordReport {
            outcome: Err(FailureReason::new(REPORT_WRITE_FAILED, "disk full")),
        })
        .and()
        .when(Command::FinishCompletion);
    failed.then(&[Event::JobCompleted]);
    assert_eq!(
        failed.state().failure_reasons[0].failure_code,
        REPORT_WRITE_FAILED
    );
}

#[test]
fn elapsed_active_time_sums_active_intervals() {
    let mut job = given_in(Ready).job;
    let start = t0();
    apply(&mut job, &Event::JobActivated, start);
    apply(
        &mut job,
        &Event::PauseRequested,
        start + TimeDelta::seconds(30),
    );
    apply(&mut job, &Event::JobPaused, start + TimeDelta::seconds(40));
    apply(
        &mut job,
        &Event::JobActivated,
        start + TimeDelta::seconds(100),
    );
    assert_eq!(
        job.elapsed_active_seconds(start + TimeDelta::seconds(110)),
        40
    );
}

#[test]
fn terminal_statuses_accept_no_status_change() {
    let commands = [
        Command::StartPreparation,
        prepared(),
        Command::Confirm { reason: None },
        Command::Cancel { reason: None },
        Command::Activate,
        Command::Pause,
        results(1, 0),
        Command::FinishDraining,
        Command::FinishCompletion,
        Command::ChangePriority { priority: 1 },
    ];
    for status in [Complete, Cancelled, Failed, DryRunComplete] {
        for command in &commands {
            given_in(status).when(command.clone()).then_refused();
        }
    }
}

fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::StartPreparation),
        (0u64..30, proptest::option::of(0u64..1 << 40)).prop_map(|(n, bytes)| {
            Command::FinishPreparation {
                total_number_of_tasks: n,
                total_bytes: bytes,
            }
        }),
        Just(Command::FailPreparation {
            reason: FailureReason::new("ManifestNotFound", "missing")
        }),
        proptest::option::of("[a-z]{0,8}").prop_map(|reason| Command::Confirm { reason }),
        proptest::option::of("[a-z]{0,8}").prop_map(|reason| Command::Cancel { reason }),
        Just(Command::Activate),
        Just(Command::Pause),
        (0u64..8, 0u64..8).prop_map(|(succeeded, failed)| results(succeeded, failed)),
        Just(Command::FinishDraining),
        Just(Command::FinishCompletion),
        (0i64..60).prop_map(|days| Command::ExpireSuspension {
            limit: TimeDelta::days(days)
        }),
        (-2i32..5).prop_map(|priority| Command::ChangePriority { priority }),
        proptest::collection::vec(("[a-c]", "[x-z]{0,2}"), 0..3).prop_map(|pairs| {
            Command::ReplaceTags {
                tags: pairs
                    .into_iter()
                    .map(|(key, value)| Tag { key, value })
                    .collect(),
            }
        }),
    ]
}

proptest! {
    #[test]
    fn random_commands_never_make_an_illegal_transition_and_the_log_folds_to_the_state(
        confirmation in any::<bool>(),
        dry_run in any::<bool>(),
        threshold_min in 1u64..20,
        commands in proptest::collection::vec((any_command(), 0i64..5_000_000), 1..60),
    ) {
        let mut spec = spec(confirmation);
        spec.dry_run = dry_run;
        spec.failure_threshold.minimum_tasks_run = threshold_min;
        let start = created(JobId(uuid::Uuid::nil()), &create(spec), t0());
        let mut job = start.clone();
        let mut log: Vec<(Event, DateTime<Utc>)> = Vec::new();
        let mut now = t0();
        for (command, step_seconds) in commands {
            now += TimeDelta::seconds(step_seconds);
            let before = job.clone();
            let Ok(decision) = decide(&job, &command, now) else {
                continue;
            };
            for event in decision.events {
                if let Some(next) = event.target_status() {
                    prop_assert!(
                        job.status.can_transition_to(next),
                        "{:?} moved {} to {}", command, job.status, next
                    );
                }
                apply(&mut job, &event, now);
                // Events survive the round trip through their stored form.
                let stored = serde_json::to_string(&event).unwrap();
                log.push((serde_json::from_str(&stored).unwrap(), now));
            }
            // Effects follow the status change, whatever the command.
            prop_assert_eq!(
                decision.effects.contains(&Effect::StopTaskStarts),
                before.status.runs_tasks() && !job.status.runs_tasks()
            );
            prop_assert_eq!(
                decision.effects.contains(&Effect::ReleaseChunks),
                !before.status.is_terminal() && job.status.is_terminal()
            );
            prop_assert!(!before.status.is_terminal() || job.status == before.status);
            prop_assert!(job.progress.run() <= job.progress.total);
            prop_assert!(job.priority >= 0);
            if before.confirmed {
                prop_assert_ne!(job.status, JobStatus::Suspended);
            }
            // A dry run never runs, and only a dry run ends counted.
            if dry_run {
                prop_assert!(!matches!(job.status, Suspended | Ready | Active | Completing | Complete));
                prop_assert_eq!(job.progress.run(), 0);
            } else {
                prop_assert_ne!(job.status, DryRunComplete);
            }
        }
        let mut folded = start;
        for (event, at) in &log {
            apply(&mut folded, event, *at);
        }
        prop_assert_eq!(folded, job);
    }
}

#[test]
fn allowed_actions_are_what_decide_accepts_in_each_status() {
    use UserAction::{Cancel, ChangePriority, Confirm, ReplaceTags};
    for status in JobStatus::ALL {
        let job = given_in(status).job;
        let allowed = allowed_actions(&job, t0() + TimeDelta::minutes(1));
        let expected: &[UserAction] = match status {
            Suspended => &[Confirm, Cancel, ChangePriority, ReplaceTags],
            New | Preparing | Ready | Active | Pausing | Paused => {
                &[Cancel, ChangePriority, ReplaceTags]
            }
            Completing | Cancelling | Failing => &[ChangePriority, ReplaceTags],
            Complete | Cancelled | Failed | DryRunComplete => &[ReplaceTags],
        };
        assert_eq!(allowed, expected, "{status}");
    }
}

#[test]
fn a_decision_wakes_only_the_engine_loops_it_gives_work() {
    let wakes = |then: &Then| {
        let decision = then.decision();
        (decision.reschedules(), decision.awaits_finisher())
    };
    // Cancelling a job that waits for confirmation frees no slot and
    // leaves nothing to finish.
    let then = given_in(Suspended).when(Command::Cancel { reason: None });
    assert_eq!(wakes(&then), (false, false));
    // Confirming makes it compete for a slot.
    let then = given_in(Suspended).when(Command::Confirm { reason: None });
    assert_eq!(wakes(&then), (true, false));
    // Cancelling a running job frees its slot and leaves a drain to finish.
    let then = given_in(Active).when(Command::Cancel { reason: None });
    assert_eq!(wakes(&then), (true, true));
    // Pausing keeps the slot until the drain, which the finisher ends.
    let then = given_in(Active).when(Command::Pause);
    assert_eq!(wakes(&then), (false, true));
    // The last result frees the slot and leaves Completing to finish.
    let then = given_in(Active).when(results(TASKS, 0));
    assert_eq!(wakes(&then), (true, true));
    // A result that ends nothing wakes neither.
    let then = given_in(Active).when(results(1, 0));
    assert_eq!(wakes(&then), (false, false));
    // A new priority matters among the jobs that compete, not before.
    let then = given_in(Ready).when(Command::ChangePriority { priority: 7 });
    assert_eq!(wakes(&then), (true, false));
    let then = given_in(Suspended).when(Command::ChangePriority { priority: 7 });
    assert_eq!(wakes(&then), (false, false));
}
