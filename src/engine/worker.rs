//! Claims chunks of Active jobs, runs their tasks with bounded concurrency
//! and records the results in one transaction per chunk. The claim's lease is
//! renewed while the chunk runs; a worker that dies stops renewing and its
//! chunk is taken over once the lease expires.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Engine, Round, Wakers, run_rounds};
use crate::domain::JobStatus;
use crate::objects::operations::TaskOperation;
use crate::store::{ClaimedChunk, StoreError, Task, TaskResult, tasks};

pub(super) async fn run(engine: Engine, permits: Arc<Semaphore>, shutdown: CancellationToken) {
    let owner = Uuid::new_v4();
    run_rounds(
        &engine,
        "worker",
        &engine.wakers.workers,
        &shutdown,
        || async {
            Ok(if work_once(&engine, owner, &permits).await? {
                Round::MoreWork
            } else {
                Round::Idle
            })
        },
    )
    .await;
}

/// Runs one chunk if there is one; returns whether there was.
async fn work_once(engine: &Engine, owner: Uuid, permits: &Semaphore) -> Result<bool, StoreError> {
    let mut client = engine.store.client().await?;
    let Some(chunk) = tasks::claim_chunk(&client, owner, engine.config.lease).await? else {
        return Ok(false);
    };
    debug!(job_id = %chunk.job_id, chunk = chunk.chunk_number, tasks = chunk.tasks.len(), "chunk claimed");
    let results = tokio::select! {
        results = run_tasks(engine, &chunk, permits) => results,
        lost = renew_lease(engine, &chunk, owner) => {
            warn!(job_id = %chunk.job_id, chunk = chunk.chunk_number, lost = ?lost.err(), "chunk lease lost; abandoning it");
            return Ok(true);
        }
    };
    match tasks::complete_chunk(&mut client, &chunk, owner, &results, Utc::now()).await? {
        Some(job) if job.status != JobStatus::Active => Wakers::wake(&engine.wakers.finisher),
        Some(_) => {}
        None => {
            warn!(job_id = %chunk.job_id, chunk = chunk.chunk_number, "chunk lease lost before its results were recorded");
        }
    }
    Ok(true)
}

async fn run_tasks(engine: &Engine, chunk: &ClaimedChunk, permits: &Semaphore) -> Vec<TaskResult> {
    let operation = engine
        .operations
        .for_operation(chunk.job_id, &chunk.operation);
    let runs = chunk
        .tasks
        .iter()
        .map(|task| run_task(engine, operation.as_ref(), task, permits));
    futures::future::join_all(runs).await
}

/// Runs one task, retrying transient failures with exponential backoff and
/// full jitter; the last attempt's outcome is the result. A task holds one of
/// the process-wide `task_concurrency` permits only while it runs.
async fn run_task(
    engine: &Engine,
    operation: &dyn TaskOperation,
    task: &Task,
    permits: &Semaphore,
) -> TaskResult {
    let config = &engine.config;
    let mut attempt = 1;
    loop {
        let outcome = {
            let _permit = permits.acquire().await;
            operation.run(task).await
        };
        if !outcome.retryable || attempt >= config.task_max_attempts {
            return outcome.into_result(task);
        }
        let delay = retry_delay(attempt, config.retry_base_delay, config.retry_max_delay);
        debug!(task = task.number, attempt, ?delay, error = ?outcome.error_code, "retrying task");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A random delay up to `base × 2^(attempt-1)`, capped at `max`.
fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Renews the chunk's lease every third of its length; returns only when the
/// lease was lost (or could not be renewed).
async fn renew_lease(engine: &Engine, chunk: &ClaimedChunk, owner: Uuid) -> Result<(), StoreError> {
    let lease = engine.config.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let client = engine.store.client().await?;
        if !tasks::extend_lease(&client, chunk, owner, lease).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_and_stay_under_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..20 {
            let ceiling = (base * 2u32.pow(attempt.min(10) - 1)).min(max);
            for _ in 0..50 {
                assert!(retry_delay(attempt, base, max) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<Duration> =
            (0..50).map(|_| retry_delay(3, base, max)).collect();
        assert!(spread.len() > 10, "delays are jittered");
    }
}
