//! Turns a New job's manifest into tasks. The whole preparation is one
//! transaction holding the job's advisory lock: tasks appear all at once with
//! the Suspended/Ready event, a preparer that dies leaves nothing behind, and
//! another process resumes the job from scratch.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Engine, Round, Wakers, run_rounds};
use crate::domain::{Command, JobId, JobStatus, ManifestSource};
use crate::objects::manifest;
use crate::store::{PreparedCount, StoreError, jobs, tasks};

/// Chunks per COPY batch.
const CHUNKS_PER_BATCH: usize = 16;

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    run_rounds(
        &engine,
        "preparer",
        &engine.wakers.preparer,
        &shutdown,
        || async {
            prepare_waiting(&engine, &shutdown).await?;
            Ok(Round::Idle)
        },
    )
    .await;
}

async fn prepare_waiting(engine: &Engine, shutdown: &CancellationToken) -> Result<(), StoreError> {
    let waiting = {
        let client = engine.store.client().await?;
        tasks::jobs_in(&client, &[JobStatus::New, JobStatus::Preparing], 16).await?
    };
    for id in waiting {
        if shutdown.is_cancelled() {
            break;
        }
        prepare(engine, id).await?;
    }
    Ok(())
}

async fn prepare(engine: &Engine, id: JobId) -> Result<(), StoreError> {
    let mut client = engine.store.client().await?;
    let tx = client.transaction().await?;
    if !tasks::try_lock_job(&tx, id).await? {
        return Ok(());
    }
    // Preparing must be visible while the tasks are written, so it commits
    // on its own connection; this transaction keeps the lock meanwhile.
    let job = {
        let mut other = engine.store.client().await?;
        match tasks::try_execute(&mut other, id, &Command::StartPreparation, Utc::now()).await? {
            Some(job) => job,
            None => return Ok(()),
        }
    };
    info!(job_id = %id, "preparing job");
    let chunk_size = engine.config.chunk_size;
    let outcome = async {
        let buckets = &engine.operations.buckets;
        let batch_size = chunk_size * CHUNKS_PER_BATCH;
        let mut batches = match &job.spec.manifest {
            ManifestSource::Manifest(spec) => manifest::open(buckets, spec, batch_size).await?,
            ManifestSource::Generator(spec) => {
                manifest::generate(buckets, spec, batch_size).await?
            }
        };
        let mut prepared = PreparedCount::default();
        while let Some(batch) = batches.next().await {
            prepared = tasks::copy_tasks(&tx, id, prepared, &batch?, chunk_size).await?;
            if tasks::status(&*tx, id).await? != JobStatus::Preparing {
                return Ok(None);
            }
        }
        Ok(Some(prepared.tasks as u64))
    }
    .await;
    let command = match outcome {
        Ok(Some(total)) => Command::FinishPreparation {
            total_number_of_tasks: total,
        },
        // Cancelled meanwhile: roll back; the finisher ends the cancellation.
        Ok(None) => return Ok(()),
        Err(PrepareError::Store(error)) => return Err(error),
        Err(PrepareError::Manifest(error)) => {
            warn!(job_id = %id, error = %error, "manifest rejected");
            tasks::discard_prepared(&tx, id).await?;
            Command::FailPreparation {
                reason: error.failure_reason(),
            }
        }
    };
    let job = jobs::lock(&tx, id, None).await?;
    if job.status != JobStatus::Preparing {
        return Ok(());
    }
    let (job, _) = jobs::record(&tx, job, &command, Utc::now()).await?;
    tx.commit().await?;
    info!(job_id = %id, status = %job.status, tasks = job.progress.total, "preparation finished");
    Wakers::wake(&engine.wakers.scheduler);
    Ok(())
}

enum PrepareError {
    Manifest(manifest::ManifestError),
    Store(StoreError),
}

impl From<manifest::ManifestError> for PrepareError {
    fn from(error: manifest::ManifestError) -> Self {
        PrepareError::Manifest(error)
    }
}

impl From<StoreError> for PrepareError {
    fn from(error: StoreError) -> Self {
        PrepareError::Store(error)
    }
}
