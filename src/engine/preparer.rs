//! Turns New jobs' manifests into tasks. Each preparation is one transaction
//! holding the job's advisory lock: tasks appear all at once with the
//! Suspended/Ready event, a preparer that dies leaves nothing behind, and
//! another process resumes the job from scratch.
//!
//! Several jobs are prepared at once (`max_preparing_jobs`), at most one per
//! account, and the waiting jobs are taken in turns between accounts: each
//! account's first waiting job comes before any account's second. So a huge
//! manifest, or a job that keeps failing, holds up only its own account,
//! and a small job of another account is prepared while it runs. A manifest
//! listing more than `max_tasks_per_job` objects fails its job.
//!
//! A dry run is read and checked the same way, batch by batch, but its rows
//! are only counted (with their bytes, where the source gives sizes): no
//! task is written, and the lifecycle ends it in DryRunComplete.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Engine, Wakers};
use crate::domain::{AccountId, Command, FailureReason, JobId, JobStatus, ManifestSource};
use crate::objects::manifest;
use crate::store::{PreparedCount, StoreError, jobs, tasks};

/// Tasks per COPY batch, about: a batch is whole chunks, at least one.
const BATCH_TASKS: usize = 8192;

/// Waiting jobs looked at per round.
const CANDIDATES: usize = 64;

/// The failure code of a manifest that lists more objects than a job may have.
pub(crate) const TOO_MANY_TASKS: &str = "TooManyTasks";

/// Accounts with a preparation running in this process.
type Busy = Arc<Mutex<HashSet<AccountId>>>;

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(engine.config.max_preparing_jobs.max(1)));
    let busy = Busy::default();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    loop {
        let started = start_waiting(&engine, &slots, &busy, &mut running).await;
        let keep_going = match started {
            Ok(()) => wait(&engine, &shutdown, &mut running).await,
            Err(error) => super::back_off("preparer", error, &shutdown).await,
        };
        if !keep_going {
            break;
        }
    }
    // Preparations in flight finish (or roll back) before the engine stops.
    while running.join_next().await.is_some() {}
}

/// What one preparation attempt came to.
enum Outcome {
    /// The job's status changed: a slot may be worth filling at once.
    Prepared,
    /// Nothing was done (another process holds the job, or it moved on).
    Skipped,
}

/// Waits for a wake-up, the poll interval, or a preparation that finished
/// its job; returns false at shutdown.
async fn wait(
    engine: &Engine,
    shutdown: &CancellationToken,
    running: &mut JoinSet<Outcome>,
) -> bool {
    let deadline = tokio::time::Instant::now() + engine.config.poll_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = engine.wakers.preparer.notified() => return true,
            _ = tokio::time::sleep_until(deadline) => return true,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if matches!(done, Ok(Outcome::Prepared)) {
                    return true;
                }
            }
        }
    }
}

/// Starts preparing waiting jobs while slots are free, one per account.
async fn start_waiting(
    engine: &Engine,
    slots: &Arc<Semaphore>,
    busy: &Busy,
    running: &mut JoinSet<Outcome>,
) -> Result<(), StoreError> {
    if slots.available_permits() == 0 {
        return Ok(());
    }
    let waiting = {
        let client = engine.store.client().await?;
        tasks::jobs_to_prepare(&client, CANDIDATES).await?
    };
    for (id, account) in waiting {
        {
            let mut busy = busy.lock().unwrap_or_else(|e| e.into_inner());
            if busy.contains(&account) {
                continue;
            }
            busy.insert(account.clone());
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            release(busy, &account);
            break;
        };
        running.spawn(prepare_in_slot(
            engine.clone(),
            id,
            account,
            permit,
            busy.clone(),
        ));
    }
    Ok(())
}

fn release(busy: &Busy, account: &AccountId) {
    busy.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(account);
}

async fn prepare_in_slot(
    engine: Engine,
    id: JobId,
    account: AccountId,
    _permit: OwnedSemaphorePermit,
    busy: Busy,
) -> Outcome {
    let outcome = match prepare(&engine, id).await {
        Ok(outcome) => outcome,
        Err(error) => {
            warn!(job_id = %id, error = %error, "preparation failed; it is retried");
            Outcome::Skipped
        }
    };
    release(&busy, &account);
    outcome
}

async fn prepare(engine: &Engine, id: JobId) -> Result<Outcome, StoreError> {
    let mut client = engine.store.client().await?;
    let tx = client.transaction().await?;
    if !tasks::try_lock_job(&tx, id).await? {
        return Ok(Outcome::Skipped);
    }
    // Preparing must be visible while the tasks are written, so it commits
    // on its own connection; this transaction keeps the lock meanwhile.
    let job = {
        let mut other = engine.store.client().await?;
        match tasks::try_execute(&mut other, id, &Command::StartPreparation, Utc::now()).await? {
            Some(job) => job,
            None => return Ok(Outcome::Skipped),
        }
    };
    info!(job_id = %id, "preparing job");
    let chunk_size = if engine.operations.is_file_work(&job.spec.operation) {
        engine.config.file_chunk_size
    } else {
        engine.config.chunk_size
    }
    .max(1);
    let max_tasks = engine.config.max_tasks_per_job;
    let outcome = async {
        let buckets = &engine.operations.buckets;
        let grant = job.spec.bucket_grant.as_ref();
        let batch_size = chunk_size * (BATCH_TASKS / chunk_size).max(1);
        let mut batches = match &job.spec.manifest {
            ManifestSource::Manifest(spec) => {
                manifest::open(buckets, spec, grant, batch_size).await?
            }
            ManifestSource::Generator(spec) => {
                manifest::generate(buckets, spec, batch_size).await?
            }
        };
        let mut prepared = PreparedCount::default();
        let mut counted = 0u64;
        let mut bytes = batches.sizes_known.then_some(0u64);
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            counted += batch.rows.len() as u64;
            if counted > max_tasks {
                return Err(PrepareError::TooManyTasks);
            }
            bytes = bytes
                .zip(batch.bytes)
                .map(|(total, more)| total.saturating_add(more));
            // A dry run counts; it makes no task.
            if !job.spec.dry_run {
                prepared = tasks::copy_tasks(&tx, id, prepared, &batch.rows, chunk_size).await?;
            }
            if tasks::status(&tx, id).await? != JobStatus::Preparing {
                return Ok(None);
            }
        }
        Ok(Some((counted, bytes)))
    }
    .await;
    let refused = |reason: FailureReason| Command::FailPreparation { reason };
    let command = match outcome {
        Ok(Some((total, bytes))) => Command::FinishPreparation {
            total_number_of_tasks: total,
            total_bytes: bytes,
        },
        // Cancelled meanwhile: roll back; the finisher ends the cancellation.
        Ok(None) => return Ok(Outcome::Skipped),
        Err(PrepareError::Store(error)) => return Err(error),
        Err(PrepareError::Manifest(error)) => {
            warn!(job_id = %id, error = %error, "manifest rejected");
            tasks::discard_prepared(&tx, id).await?;
            refused(error.failure_reason())
        }
        Err(PrepareError::TooManyTasks) => {
            warn!(job_id = %id, max_tasks, "manifest lists too many objects");
            tasks::discard_prepared(&tx, id).await?;
            refused(FailureReason::new(
                TOO_MANY_TASKS,
                format!(
                    "the manifest lists more than {max_tasks} objects, the most a job may have"
                ),
            ))
        }
    };
    let job = jobs::lock(&tx, id, None).await?;
    if job.status != JobStatus::Preparing {
        return Ok(Outcome::Skipped);
    }
    let (job, _) = jobs::record(&tx, job, &command, Utc::now()).await?;
    tx.commit().await?;
    info!(job_id = %id, status = %job.status, tasks = job.progress.total, "preparation finished");
    Wakers::wake(&engine.wakers.scheduler);
    Ok(Outcome::Prepared)
}

enum PrepareError {
    Manifest(manifest::ManifestError),
    Store(StoreError),
    TooManyTasks,
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
