//! Rebuilding a job from its log alone, for audits (`batchops replay`) and
//! for tests that hold the projection against the log.

use futures::TryStreamExt;
use tokio_postgres::Client;

use super::error::During;
use super::{LoggedEvent, StoreError, pages};
use crate::domain::{self, Job, JobId};

const RESULT_COUNTS: &str = "
    SELECT count(*) FILTER (WHERE succeeded), count(*) FILTER (WHERE NOT succeeded)
    FROM task_results WHERE job_id = $1";

/// Rebuilds a job from its log alone: folds its events and counts its task
/// results. `None` when the log holds no event of the job.
pub async fn replay(client: &Client, id: JobId) -> Result<Option<Job>, StoreError> {
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
    }
    Ok(job)
}
