//! Claims chunks of Active jobs, runs their tasks with bounded concurrency
//! and records the results in one transaction per chunk. The claim's lease is
//! renewed while the chunk runs; a worker that dies stops renewing and its
//! chunk is taken over once the lease expires.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Engine, Round, run_rounds};
use crate::objects::operations::{self, TaskOperation};
use crate::store::{ClaimedChunk, StoreError, Task, TaskResult, tasks};

pub(super) async fn run(engine: Engine, permits: Arc<Semaphore>, shutdown: CancellationToken) {
    let owner = Uuid::new_v4();
    run_rounds(&engine, "worker", &shutdown, || async {
        Ok(if work_once(&engine, owner, &permits).await? {
            Round::MoreWork
        } else {
            Round::Idle
        })
    })
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
    if tasks::complete_chunk(&mut client, &chunk, owner, &results, Utc::now())
        .await?
        .is_none()
    {
        warn!(job_id = %chunk.job_id, chunk = chunk.chunk_number, "chunk lease lost before its results were recorded");
    }
    Ok(true)
}

async fn run_tasks(engine: &Engine, chunk: &ClaimedChunk, permits: &Semaphore) -> Vec<TaskResult> {
    let operation = operations::for_operation(&chunk.operation, engine.objects.clone());
    let runs = chunk
        .tasks
        .iter()
        .map(|task| run_task(operation.as_ref(), task, permits));
    futures::future::join_all(runs).await
}

/// Runs one task once a process-wide permit is free: at most
/// `task_concurrency` tasks run at once across all chunks.
async fn run_task(operation: &dyn TaskOperation, task: &Task, permits: &Semaphore) -> TaskResult {
    let _permit = permits.acquire().await;
    operation.run(task).await.into_result(task)
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
