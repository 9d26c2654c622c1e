//! Rebuilding a job from its log alone, for audits (`batchops replay`) and
//! for tests that hold the projection against the log.

use deadpool_postgres::GenericClient;
use futures::TryStreamExt;

use super::error::During;
use super::{LoggedEvent, StoreError, pages};
use std::collections::BTreeMap;

use crate::domain::{self, CodeFailures, ErrorSample, ErrorSummary, Job, JobId, MAX_SAMPLES};

const RESULT_COUNTS: &str = "
    SELECT count(*) FILTER (WHERE succeeded), count(*) FILTER (WHERE NOT succeeded)
    FROM task_results WHERE job_id = $1";
const FAILURE_COUNTS: &str = "
    SELECT coalesce(error_code, ''), count(*)
    FROM task_results WHERE job_id = $1 AND NOT succeeded
    GROUP BY 1";
/// The lowest-numbered failed tasks of each error code, with their objects.
const FAILURE_SAMPLES: &str = "
    SELECT r.code, r.task_number, t.bucket, t.key, t.version_id, r.result_message
    FROM (
        SELECT coalesce(error_code, '') AS code, task_number, result_message,
               row_number() OVER (PARTITION BY coalesce(error_code, '') ORDER BY task_number) AS nth
        FROM task_results WHERE job_id = $1 AND NOT succeeded
    ) r
    JOIN tasks t ON t.job_id = $1 AND t.task_number = r.task_number
    WHERE r.nth <= $2
    ORDER BY r.code, r.task_number";

/// Rebuilds a job from its log alone: folds its events and counts its task
/// results. `None` when the log holds no event of the job.
pub async fn replay(client: &impl GenericClient, id: JobId) -> Result<Option<Job>, StoreError> {
    const PAGE: usize = 1000;
    let mut job: Option<Job> = None;
    let pages = pages::job_events_on(client, id, 0, PAGE);
    futures::pin_mut!(pages);
    while let Some(page) = pages.try_next().await? {
        for recorded in &page {
            match (&recorded.event, job.as_mut()) {
                (LoggedEvent::Created(created), _) => {
                    job = Some(domain::created(id, created, recorded.recorded_at));
                }
                (LoggedEvent::Changed(event), Some(job)) => {
                    domain::apply(job, event, recorded.recorded_at);
                    job.version = recorded.sequence;
                }
                (LoggedEvent::Changed(_), None) => {
                    return Err(StoreError::Corrupt(format!(
                        "job {id} has event {} before JobCreated",
                        recorded.sequence
                    )));
                }
            }
        }
    }
    if let Some(job) = job.as_mut() {
        let row = client
            .query_one(RESULT_COUNTS, &[&id.0])
            .await
            .during("RESULT_COUNTS")?;
        job.progress.succeeded = row.try_get::<_, i64>(0)? as u64;
        job.progress.failed = row.try_get::<_, i64>(1)? as u64;
        job.errors = failures(client, id).await?;
    }
    Ok(job)
}

/// A job's failures by error code, from its task result log.
async fn failures(client: &impl GenericClient, id: JobId) -> Result<ErrorSummary, StoreError> {
    let mut codes: BTreeMap<String, CodeFailures> = BTreeMap::new();
    for row in client
        .query(FAILURE_COUNTS, &[&id.0])
        .await
        .during("FAILURE_COUNTS")?
    {
        codes.entry(row.try_get(0)?).or_default().failed = row.try_get::<_, i64>(1)? as u64;
    }
    for row in client
        .query(FAILURE_SAMPLES, &[&id.0, &(MAX_SAMPLES as i64)])
        .await
        .during("FAILURE_SAMPLES")?
    {
        let code: String = row.try_get(0)?;
        let version: Option<String> = row.try_get(4)?;
        let message: Option<String> = row.try_get(5)?;
        codes
            .entry(code)
            .or_default()
            .samples
            .push(ErrorSample::new(
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                version.as_deref(),
                message.as_deref(),
            ));
    }
    // Merged as chunks are, so that the same bounds apply.
    let mut summary = ErrorSummary::default();
    summary.merge(&ErrorSummary {
        codes,
        other_codes_failed: 0,
    });
    Ok(summary)
}
