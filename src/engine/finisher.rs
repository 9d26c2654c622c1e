//! Ends the statuses that wait for something: Cancelling, Failing and
//! Pausing once no task is in flight, Completing once the completion step is
//! done, and Suspended once the job has waited longer than the suspension
//! limit.

use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Engine, Round, Wakers, reporter, run_rounds};
use crate::domain::{Command, JobStatus};
use crate::store::{StoreError, jobs, tasks};

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    // When suspended jobs were last checked against the suspension limit.
    let last_sweep = Mutex::new(None);
    run_rounds(
        &engine,
        "finisher",
        &engine.wakers.finisher,
        &shutdown,
        || async {
            finish_once(&engine, &last_sweep).await?;
            Ok(Round::Idle)
        },
    )
    .await;
}

async fn finish_once(
    engine: &Engine,
    last_sweep: &Mutex<Option<Instant>>,
) -> Result<(), StoreError> {
    let mut client = engine.store.client().await?;
    let draining = JobStatus::all_where(JobStatus::is_draining);
    for id in tasks::jobs_in(&client, &draining, 64).await? {
        // Twice: results recorded between reading the job and ending its
        // drain may make a report due, which the domain then insists on.
        for _ in 0..2 {
            let job = jobs::load(&client, id, None).await?;
            if job.report_due() {
                // The report lists every result: wait until nothing is in
                // flight, then read the job again, since results recorded
                // before that are in its counts, which the report goes by.
                if !tasks::is_drained(&mut client, id).await? {
                    break;
                }
                let job = jobs::load(&client, id, None).await?;
                reporter::report(engine, &mut client, &job).await?;
            }
            if let Some(job) = tasks::finish_draining(&mut client, id, Utc::now()).await? {
                info!(job_id = %id, status = %job.status, "draining finished");
                Wakers::wake(&engine.wakers.scheduler);
                break;
            }
        }
    }
    // A limit is days long: a sweep per poll interval is on time, and a
    // wake-up by every command (a thousand a second, say) does not scan
    // the suspended jobs each time.
    let sweep_due = {
        let mut last = last_sweep
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|at: Instant| at.elapsed() >= engine.config.poll_interval);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    let limit = chrono::TimeDelta::from_std(engine.config.suspension_limit)
        .unwrap_or(chrono::TimeDelta::MAX);
    let now = Utc::now();
    if let Some(cutoff) = now.checked_sub_signed(limit).filter(|_| sweep_due) {
        for id in tasks::suspended_before(&client, cutoff, 64).await? {
            if let Some(job) =
                tasks::try_execute(&mut client, id, &Command::ExpireSuspension { limit }, now)
                    .await?
            {
                info!(job_id = %id, status = %job.status, "suspension limit reached");
            }
        }
    }
    for id in tasks::jobs_in(&client, &[JobStatus::Completing], 64).await? {
        let job = jobs::load(&client, id, None).await?;
        reporter::report(engine, &mut client, &job).await?;
        if let Some(job) =
            tasks::try_execute(&mut client, id, &Command::FinishCompletion, Utc::now()).await?
        {
            info!(job_id = %id, status = %job.status, "job completed");
            Wakers::wake(&engine.wakers.scheduler);
        }
    }
    Ok(())
}
