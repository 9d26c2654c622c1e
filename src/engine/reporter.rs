//! Writes a job's completion report (see `objects::report`) once its tasks
//! are done or drained, and records where it went, or why it could not be
//! written, before the job ends.

use chrono::Utc;
use deadpool_postgres::Client;
use futures::TryStreamExt;
use tracing::{info, warn};

use super::Engine;
use crate::domain::{
    Command, FailureReason, Job, ObjectLocation, REPORT_WRITE_FAILED, ReportScope,
};
use crate::objects::report::{ReportError, ReportWriter};
use crate::store::tasks::ResultFilter;
use crate::store::{StoreError, pages, tasks};

/// Task numbers read per page while writing a report.
const PAGE: usize = 5000;

/// Writes and records the report of a job that needs one. A store error is
/// returned (and the step retried later); a report that cannot be written is
/// recorded as a failure reason and the job ends anyway.
pub(super) async fn report(
    engine: &Engine,
    client: &mut Client,
    job: &Job,
) -> Result<(), StoreError> {
    let Some(spec) = &job.spec.report else {
        return Ok(());
    };
    if !job.needs_report() {
        return Ok(());
    }
    let outcome = match write(engine, job).await? {
        Ok(location) => {
            info!(job_id = %job.id, bucket = %location.bucket, key = %location.key, "completion report written");
            Ok(location)
        }
        Err(error) => {
            warn!(job_id = %job.id, error = %error, "completion report could not be written");
            Err(FailureReason::new(
                REPORT_WRITE_FAILED,
                format!(
                    "the completion report could not be written to {}/{}: {error}",
                    spec.bucket, spec.prefix
                ),
            ))
        }
    };
    tasks::try_execute(
        client,
        job.id,
        &Command::RecordReport { outcome },
        Utc::now(),
    )
    .await?;
    Ok(())
}

async fn write(
    engine: &Engine,
    job: &Job,
) -> Result<Result<ObjectLocation, ReportError>, StoreError> {
    let Some(spec) = &job.spec.report else {
        unreachable!("checked by the caller");
    };
    let mut writer = ReportWriter::new(
        &engine.operations.buckets,
        &spec.bucket,
        &spec.prefix,
        &job.id.to_string(),
        engine.config.report_rows_per_file,
    );
    let filters: &[bool] = match spec.scope {
        ReportScope::AllTasks => &[false, true],
        ReportScope::FailedTasksOnly => &[false],
    };
    for succeeded in filters {
        // The job's counts say how many rows each pass finds: a pass with
        // none reads nothing, and a pass stops at its last row instead of
        // reading the windows after it (a job without failures needs no
        // scan of its results for a failed-tasks-only report). Callers pass
        // the job as read once nothing of it is in flight (a Completing job
        // takes no more results; a draining one is read again after
        // `is_drained`), so its counts and its result rows agree.
        let mut wanted = if *succeeded {
            job.progress.succeeded
        } else {
            job.progress.failed
        };
        if wanted == 0 {
            continue;
        }
        let filter = ResultFilter {
            succeeded: Some(*succeeded),
            error_code: None,
        };
        let pages = pages::task_results(&engine.store, job.id, filter, job.progress.total, PAGE);
        futures::pin_mut!(pages);
        while let Some(page) = pages.try_next().await? {
            if let Err(error) = writer.write_rows(&page).await {
                return Ok(Err(error));
            }
            wanted = wanted.saturating_sub(page.len() as u64);
            if wanted == 0 {
                break;
            }
        }
    }
    Ok(writer
        .finish(Utc::now())
        .await
        .map(|(location, _)| location))
}
