//! Unit tests of every transition and property tests of the fold.

use super::*;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn spec(confirmation_required: bool) -> JobSpec {
    JobSpec {
        account_id: AccountId("acct".into()),
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
        }),
        operation: Operation::ComputeObjectChecksum {
            algorithm: ChecksumAlgorithm::Sha256,
        },
        report: None,
        tags: vec![],
        failure_threshold: FailureThreshold::default(),
        bucket_grant: None,
    }
}

/// Runs a command and folds its events, panicking when it is refused.
fn run(job: &mut Job, command: Command) -> Vec<Event> {
    let now = t0() + TimeDelta::seconds(job.version as i64);
    let events = decide(job, &command, now)
        .unwrap_or_else(|e| panic!("{command:?} refused in {}: {e}", job.status));
    for event in &events {
        apply(job, event, now);
    }
    events
}

const TASKS: u64 = 10;

/// A job driven through real commands into `status`.
fn job_in(status: JobStatus) -> Job {
    let mut job = created(JobId(uuid::Uuid::nil()), &create(spec(true)), t0());
    let steps: &[Command] = match status {
        JobStatus::New => &[],
        JobStatus::Preparing => &[Command::StartPreparation],
        JobStatus::Suspended => &[Command::StartPreparation, prepared()],
        JobStatus::Ready => &[Command::StartPreparation, prepared(), confirm()],
        JobStatus::Active => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
        ],
        JobStatus::Pausing => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::Pause,
        ],
        JobStatus::Paused => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::Pause,
            Command::FinishDraining,
        ],
        JobStatus::Completing => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::RecordTaskResults {
                succeeded: TASKS,
                failed: 0,
            },
        ],
        JobStatus::Complete => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::RecordTaskResults {
                succeeded: TASKS,
                failed: 0,
            },
            Command::FinishCompletion,
        ],
        JobStatus::Cancelling => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::Cancel { reason: None },
        ],
        JobStatus::Cancelled => &[Command::Cancel { reason: None }],
        JobStatus::Failing => &[
            Command::StartPreparation,
            prepared(),
            confirm(),
            Command::Activate,
            Command::RecordTaskResults {
                succeeded: 0,
                failed: TASKS,
            },
        ],
        JobStatus::Failed => &[
            Command::StartPreparation,
            Command::FailPreparation {
                reason: FailureReason::new("ManifestNotFound", "gone"),
            },
        ],
    };
    if status == JobStatus::Failing {
        job.spec.failure_threshold = FailureThreshold {
            minimum_tasks_run: 1,
            max_failure_percent: 50,
        };
    }
    for step in steps {
        run(&mut job, step.clone());
    }
    assert_eq!(job.status, status, "fixture for {status}");
    job
}

fn prepared() -> Command {
    Command::FinishPreparation {
        total_number_of_tasks: TASKS,
    }
}

fn confirm() -> Command {
    Command::Confirm { reason: None }
}

fn statuses_after(job: &Job, command: Command) -> Result<Vec<JobStatus>, DomainError> {
    let mut job = job.clone();
    let events = decide(&job, &command, t0())?;
    Ok(events
        .iter()
        .filter_map(|event| {
            apply(&mut job, event, t0());
            event.target_status()
        })
        .collect())
}

use JobStatus::*;

#[test]
fn transition_table_is_exactly_the_designed_one() {
    let allowed: &[(JobStatus, &[JobStatus])] = &[
        (New, &[Preparing, Cancelling]),
        (Preparing, &[Ready, Suspended, Failing, Cancelling]),
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
    ];
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
fn status_names_round_trip() {
    for status in JobStatus::ALL {
        assert_eq!(JobStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(JobStatus::parse("Bogus"), None);
}

#[test]
fn confirmation_unset_means_suspended_after_preparation() {
    let job = job_in(Preparing);
    assert_eq!(statuses_after(&job, prepared()), Ok(vec![Suspended]));
}

#[test]
fn job_without_confirmation_goes_straight_to_ready() {
    let mut job = created(JobId(uuid::Uuid::nil()), &create(spec(false)), t0());
    run(&mut job, Command::StartPreparation);
    run(&mut job, prepared());
    assert_eq!(job.status, Ready);
    assert_eq!(job.suspended_time, None);
}

#[test]
fn suspension_records_time_and_cause() {
    let job = job_in(Suspended);
    assert!(job.suspended_time.is_some());
    assert_eq!(job.suspended_cause.as_deref(), Some(AWAITING_CONFIRMATION));
}

#[test]
fn confirm_is_allowed_only_from_suspended() {
    for status in JobStatus::ALL {
        let result = statuses_after(&job_in(status), Command::Confirm { reason: None });
        if status == Suspended {
            assert_eq!(result, Ok(vec![Ready]));
        } else {
            assert_eq!(
                result,
                Err(DomainError::IllegalTransition {
                    current: status,
                    requested: Ready
                }),
                "confirm from {status}"
            );
        }
    }
}

#[test]
fn a_confirmed_job_never_returns_to_suspended() {
    let mut job = job_in(Ready);
    run(&mut job, Command::Activate);
    run(&mut job, Command::Pause);
    run(&mut job, Command::FinishDraining);
    run(&mut job, Command::Activate);
    assert!(job.confirmed);
    assert_ne!(job.status, Suspended);
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
        let result = statuses_after(&job_in(*status), Command::Cancel { reason: None });
        match outcome {
            Some(statuses) => assert_eq!(result, Ok(statuses.to_vec()), "cancel from {status}"),
            None => assert_eq!(
                result,
                Err(DomainError::IllegalTransition {
                    current: *status,
                    requested: Cancelled
                }),
                "cancel from {status}"
            ),
        }
    }
}

#[test]
fn cancel_keeps_the_status_update_reason() {
    let mut job = job_in(Ready);
    run(
        &mut job,
        Command::Cancel {
            reason: Some("No longer needed".into()),
        },
    );
    assert_eq!(job.status, Cancelled);
    assert_eq!(
        job.status_update_reason.as_deref(),
        Some("No longer needed")
    );
    assert!(job.termination_time.is_some());
}

#[test]
fn draining_ends_in_the_matching_status() {
    for status in JobStatus::ALL {
        let result = statuses_after(&job_in(status), Command::FinishDraining);
        match status {
            Cancelling => assert_eq!(result, Ok(vec![Cancelled])),
            Failing => assert_eq!(result, Ok(vec![Failed])),
            Pausing => assert_eq!(result, Ok(vec![Paused])),
            _ => assert!(result.is_err(), "drain from {status}"),
        }
    }
}

#[test]
fn activation_only_from_ready_or_paused() {
    for status in JobStatus::ALL {
        let result = statuses_after(&job_in(status), Command::Activate);
        if matches!(status, Ready | Paused) {
            assert_eq!(result, Ok(vec![Active]), "activate from {status}");
        } else {
            assert!(result.is_err(), "activate from {status}");
        }
    }
}

#[test]
fn pause_only_from_active() {
    for status in JobStatus::ALL {
        let result = statuses_after(&job_in(status), Command::Pause);
        if status == Active {
            assert_eq!(result, Ok(vec![Pausing]));
        } else {
            assert!(result.is_err(), "pause from {status}");
        }
    }
}

#[test]
fn preparation_steps_only_in_their_statuses() {
    for status in JobStatus::ALL {
        let job = job_in(status);
        let start = statuses_after(&job, Command::StartPreparation);
        let finish = statuses_after(&job, prepared());
        let fail = statuses_after(
            &job,
            Command::FailPreparation {
                reason: FailureReason::new("ManifestNotFound", "missing"),
            },
        );
        match status {
            New => {
                assert_eq!(start, Ok(vec![Preparing]));
                assert!(finish.is_err());
                assert!(
                    fail.is_err(),
                    "a job fails preparation only once it started"
                );
            }
            Preparing => {
                assert_eq!(start, Ok(vec![]), "a restarted preparer resumes");
                assert_eq!(finish, Ok(vec![Suspended]));
                assert_eq!(fail, Ok(vec![Failing, Failed]));
            }
            _ => {
                assert!(start.is_err(), "start preparation from {status}");
                assert!(finish.is_err(), "finish preparation from {status}");
                assert!(fail.is_err(), "fail preparation from {status}");
            }
        }
    }
}

#[test]
fn an_empty_manifest_fails_the_job() {
    let mut job = job_in(Preparing);
    run(
        &mut job,
        Command::FinishPreparation {
            total_number_of_tasks: 0,
        },
    );
    assert_eq!(job.status, Failed);
    assert_eq!(job.failure_reasons[0].failure_code, MANIFEST_EMPTY);
}

#[test]
fn finishing_every_task_moves_active_to_completing_then_complete() {
    let mut job = job_in(Active);
    run(
        &mut job,
        Command::RecordTaskResults {
            succeeded: 4,
            failed: 1,
        },
    );
    assert_eq!(job.status, Active);
    run(
        &mut job,
        Command::RecordTaskResults {
            succeeded: 5,
            failed: 0,
        },
    );
    assert_eq!(job.status, Completing);
    assert_eq!(
        job.progress,
        Progress {
            total: 10,
            succeeded: 9,
            failed: 1
        }
    );
    run(&mut job, Command::FinishCompletion);
    assert_eq!(job.status, Complete);
}

#[test]
fn results_beyond_the_task_count_are_refused() {
    let job = job_in(Active);
    assert_eq!(
        decide(
            &job,
            &Command::RecordTaskResults {
                succeeded: TASKS + 1,
                failed: 0
            },
            t0()
        ),
        Err(DomainError::TooManyResults {
            total: TASKS,
            run: TASKS + 1
        })
    );
}

#[test]
fn task_results_are_accepted_only_while_tasks_can_run_or_drain() {
    for status in JobStatus::ALL {
        let result = decide(
            &job_in(status),
            &Command::RecordTaskResults {
                succeeded: 0,
                failed: 0,
            },
            t0(),
        );
        let accepts = matches!(status, Active | Pausing | Cancelling | Failing);
        assert_eq!(result.is_ok(), accepts, "record results in {status}");
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

    let mut job = job_in(Active);
    job.progress.total = 2000;
    let events = run(
        &mut job,
        Command::RecordTaskResults {
            succeeded: 400,
            failed: 600,
        },
    );
    assert_eq!(job.status, Failing);
    let Some(Event::FailureDetected { failure_reasons }) = events.last() else {
        panic!("expected a failure, got {events:?}");
    };
    assert_eq!(
        failure_reasons[0].failure_code,
        TASK_FAILURE_THRESHOLD_EXCEEDED
    );
    assert!(failure_reasons[0].failure_reason.contains("600 of 1000"));
    run(&mut job, Command::FinishDraining);
    assert_eq!(job.status, Failed);
}

#[test]
fn priority_changes_in_every_non_terminal_status() {
    for status in JobStatus::ALL {
        let result = decide(
            &job_in(status),
            &Command::ChangePriority { priority: 99 },
            t0(),
        );
        if status.is_terminal() {
            assert!(result.is_err(), "priority in {status}");
        } else {
            assert_eq!(
                result,
                Ok(vec![Event::PriorityChanged {
                    previous: 10,
                    priority: 99
                }])
            );
        }
    }
}

#[test]
fn unchanged_priority_or_tags_record_nothing() {
    let job = job_in(Ready);
    assert_eq!(
        decide(&job, &Command::ChangePriority { priority: 10 }, t0()),
        Ok(vec![])
    );
    assert_eq!(
        decide(&job, &Command::ReplaceTags { tags: vec![] }, t0()),
        Ok(vec![])
    );
    assert_eq!(
        decide(&job, &Command::ChangePriority { priority: -1 }, t0()),
        Err(DomainError::InvalidPriority(-1))
    );
}

#[test]
fn tags_can_be_replaced_in_every_status() {
    let tags = vec![Tag {
        key: "team".into(),
        value: "storage".into(),
    }];
    for status in JobStatus::ALL {
        let mut job = job_in(status);
        run(&mut job, Command::ReplaceTags { tags: tags.clone() });
        assert_eq!(job.tags, tags);
        assert_eq!(job.status, status);
    }
}

#[test]
fn suspension_expires_only_after_the_limit() {
    let job = job_in(Suspended);
    let suspended = job.suspended_time.unwrap();
    let limit = TimeDelta::days(30);
    let early = decide(
        &job,
        &Command::ExpireSuspension { limit },
        suspended + TimeDelta::days(29),
    );
    assert!(early.is_err());
    let late = decide(
        &job,
        &Command::ExpireSuspension { limit },
        suspended + limit,
    )
    .unwrap();
    assert!(
        matches!(&late[0], Event::FailureDetected { failure_reasons } if failure_reasons[0].failure_code == SUSPENSION_LIMIT_EXCEEDED)
    );
    assert_eq!(late[1], Event::JobFailed);
}

#[test]
fn a_job_owing_a_report_ends_only_once_its_outcome_is_recorded() {
    let report = ReportSpec {
        bucket: "reports".into(),
        prefix: String::new(),
        scope: ReportScope::AllTasks,
    };
    for status in [Completing, Cancelling, Failing] {
        let mut job = job_in(status);
        job.spec.report = Some(report.clone());
        job.progress.succeeded = job.progress.succeeded.max(1);
        let finish = if status == Completing {
            Command::FinishCompletion
        } else {
            Command::FinishDraining
        };
        assert!(
            decide(&job, &finish, t0()).is_err(),
            "{status} ended without its report"
        );
        let location = ObjectLocation {
            bucket: "reports".into(),
            key: "job-x/manifest.json".into(),
        };
        run(
            &mut job,
            Command::RecordReport {
                outcome: Ok(location.clone()),
            },
        );
        assert_eq!(job.report_location, Some(location));
        assert!(
            decide(
                &job,
                &Command::RecordReport {
                    outcome: Err(FailureReason::new(REPORT_WRITE_FAILED, "x"))
                },
                t0()
            )
            .is_err()
        );
        run(&mut job, finish);
        assert!(job.status.is_terminal());
    }
    // A report that cannot be written still lets the job end, saying why.
    let mut job = job_in(Completing);
    job.spec.report = Some(report);
    run(
        &mut job,
        Command::RecordReport {
            outcome: Err(FailureReason::new(REPORT_WRITE_FAILED, "disk full")),
        },
    );
    run(&mut job, Command::FinishCompletion);
    assert_eq!(job.status, Complete);
    assert_eq!(job.failure_reasons[0].failure_code, REPORT_WRITE_FAILED);
}

#[test]
fn elapsed_active_time_sums_active_intervals() {
    let mut job = job_in(Ready);
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
        Command::RecordTaskResults {
            succeeded: 1,
            failed: 0,
        },
        Command::FinishDraining,
        Command::FinishCompletion,
        Command::ChangePriority { priority: 1 },
    ];
    for status in [Complete, Cancelled, Failed] {
        for command in &commands {
            assert!(
                decide(&job_in(status), command, t0()).is_err(),
                "{command:?} in {status}"
            );
        }
    }
}

fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::StartPreparation),
        (0u64..30).prop_map(|n| Command::FinishPreparation {
            total_number_of_tasks: n
        }),
        Just(Command::FailPreparation {
            reason: FailureReason::new("ManifestNotFound", "missing")
        }),
        proptest::option::of("[a-z]{0,8}").prop_map(|reason| Command::Confirm { reason }),
        proptest::option::of("[a-z]{0,8}").prop_map(|reason| Command::Cancel { reason }),
        Just(Command::Activate),
        Just(Command::Pause),
        (0u64..8, 0u64..8)
            .prop_map(|(succeeded, failed)| Command::RecordTaskResults { succeeded, failed }),
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
        threshold_min in 1u64..20,
        commands in proptest::collection::vec((any_command(), 0i64..5_000_000), 1..60),
    ) {
        let mut spec = spec(confirmation);
        spec.failure_threshold.minimum_tasks_run = threshold_min;
        let start = created(JobId(uuid::Uuid::nil()), &create(spec), t0());
        let mut job = start.clone();
        let mut log: Vec<(Event, DateTime<Utc>)> = Vec::new();
        let mut now = t0();
        for (command, step_seconds) in commands {
            now += TimeDelta::seconds(step_seconds);
            let before = job.clone();
            let Ok(events) = decide(&job, &command, now) else {
                continue;
            };
            for event in events {
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
            prop_assert!(!before.status.is_terminal() || job.status == before.status);
            prop_assert!(job.progress.run() <= job.progress.total);
            prop_assert!(job.priority >= 0);
            if before.confirmed {
                prop_assert_ne!(job.status, JobStatus::Suspended);
            }
        }
        let mut folded = start;
        for (event, at) in &log {
            apply(&mut folded, event, *at);
        }
        prop_assert_eq!(folded, job);
    }
}
