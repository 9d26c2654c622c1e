//! Ends the statuses that wait for something to finish: Cancelling, Failing
//! and Pausing once no task is in flight, and Completing once the completion
//! step is done.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Engine, Round, run_rounds};
use crate::domain::{Command, JobStatus};
use crate::store::{StoreError, tasks};

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    run_rounds(&engine, "finisher", &shutdown, || async {
        finish_once(&engine).await?;
        Ok(Round::Idle)
    })
    .await;
}

async fn finish_once(engine: &Engine) -> Result<(), StoreError> {
    let mut client = engine.store.client().await?;
    let draining = [
        JobStatus::Cancelling,
        JobStatus::Failing,
        JobStatus::Pausing,
    ];
    for id in tasks::jobs_in(&client, &draining, 64).await? {
        if let Some(job) = tasks::finish_draining(&mut client, id, Utc::now()).await? {
            info!(job_id = %id, status = %job.status, "draining finished");
        }
    }
    for id in tasks::jobs_in(&client, &[JobStatus::Completing], 64).await? {
        if let Some(job) =
            tasks::try_execute(&mut client, id, &Command::FinishCompletion, Utc::now()).await?
        {
            info!(job_id = %id, status = %job.status, "job completed");
        }
    }
    Ok(())
}
