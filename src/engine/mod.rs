//! The engine moves jobs forward without being asked: the preparer turns
//! manifests into tasks, the scheduler hands out active slots by priority,
//! workers claim and run task chunks, and the finisher ends draining and
//! completing jobs. Every loop keeps its state in PostgreSQL, so any number
//! of processes can run them against one database.

mod finisher;
mod gate;
mod preparer;
mod reporter;
mod scheduler;
mod worker;

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::objects::operations::OperationContext;
use crate::store::{Store, StoreError};

/// Tuning of the engine loops.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Active jobs per account.
    pub max_active_jobs: usize,
    /// Tasks run at once by this process.
    pub task_concurrency: usize,
    /// Tasks per chunk: the unit of claiming and of result commits.
    pub chunk_size: usize,
    /// Tasks per chunk of file work on a directory store (checksums,
    /// deletions, plain copies), which takes microseconds a task: larger
    /// chunks, fewer commits.
    pub file_chunk_size: usize,
    /// The longest a worker keeps starting one chunk's tasks before it
    /// records what ran and hands the rest back to be claimed again: fast
    /// work commits whole chunks, slow work commits at least this often
    /// (and the next claim may go to another account).
    pub chunk_slice: Duration,
    /// How long a chunk claim lasts without renewal before others may take it.
    pub lease: Duration,
    /// How often idle loops look for work.
    pub poll_interval: Duration,
    /// How long a job may wait in Suspended for confirmation before it fails.
    pub suspension_limit: Duration,
    /// Attempts per task when failures are transient (1 = no retry).
    pub task_max_attempts: u32,
    /// The first retry waits up to this long; each later one up to twice as
    /// long as the one before, capped at `retry_max_delay` (full jitter).
    pub retry_base_delay: Duration,
    /// The longest wait between retries.
    pub retry_max_delay: Duration,
    /// Rows per completion report CSV file.
    pub report_rows_per_file: u64,
    /// Tasks one job may have.
    pub max_tasks_per_job: u64,
    /// Jobs prepared at once by this process (one per account).
    pub max_preparing_jobs: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_active_jobs: 4,
            task_concurrency: 16,
            chunk_size: 256,
            file_chunk_size: 2048,
            chunk_slice: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
            suspension_limit: Duration::from_secs(30 * 24 * 3600),
            task_max_attempts: 5,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(10),
            report_rows_per_file: 1_000_000,
            max_tasks_per_job: 20_000_000_000,
            max_preparing_jobs: 4,
        }
    }
}

/// Wake-ups for the engine loops of this process, so work moves on at once
/// instead of at the next poll. Polling stays as the fallback (and is how
/// other processes notice).
#[derive(Debug, Default)]
pub struct Wakers {
    /// Wakes the preparer.
    pub preparer: Notify,
    /// Wakes the scheduler.
    pub scheduler: Notify,
    /// Wakes the workers.
    pub workers: Notify,
    /// Wakes the finisher.
    pub finisher: Notify,
}

impl Wakers {
    /// Wakes a loop now, or its next wait if it is busy.
    pub fn wake(notify: &Notify) {
        notify.notify_waiters();
        notify.notify_one();
    }
}

pub(crate) use gate::TaskGate;

/// The engine of one process.
#[derive(Clone)]
pub(crate) struct Engine {
    store: Store,
    operations: OperationContext,
    config: EngineConfig,
    wakers: Arc<Wakers>,
    gate: Arc<TaskGate>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// The engine over `store`, running operations with `operations`.
    pub(crate) fn new(
        store: Store,
        operations: OperationContext,
        config: EngineConfig,
        wakers: Arc<Wakers>,
        gate: Arc<TaskGate>,
        notifier: Notifier,
        metrics: Arc<Metrics>,
    ) -> Engine {
        Engine {
            store,
            operations,
            config,
            wakers,
            gate,
            notifier,
            metrics,
        }
    }

    /// Runs every loop until `shutdown` is cancelled; in-flight chunks finish first.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.task_concurrency.max(1),
        ));
        let workers = 4.min(self.config.task_concurrency.max(1));
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(preparer::run(self.clone(), shutdown.clone()));
        loops.spawn(scheduler::run(self.clone(), shutdown.clone()));
        loops.spawn(finisher::run(self.clone(), shutdown.clone()));
        loops.spawn(gate::follow_status_changes(
            self.gate.clone(),
            self.notifier.clone(),
            shutdown.clone(),
        ));
        let sizes = Arc::new(std::sync::Mutex::new(worker::ClaimSizes::default()));
        for _ in 0..workers {
            loops.spawn(worker::run(
                self.clone(),
                permits.clone(),
                sizes.clone(),
                shutdown.clone(),
            ));
        }
        while loops.join_next().await.is_some() {}
    }
}

/// Runs `round` until shutdown: after a round that found no more work, waits
/// the poll interval; after a failed one, logs it and backs off.
async fn run_rounds<F, Fut>(
    engine: &Engine,
    name: &str,
    wake: &Notify,
    shutdown: &CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Round, StoreError>>,
{
    loop {
        let keep_going = match round().await {
            Ok(Round::MoreWork) if !shutdown.is_cancelled() => true,
            Ok(_) => idle(engine, wake, shutdown).await,
            Err(error) => back_off(name, error, shutdown).await,
        };
        if !keep_going {
            return;
        }
    }
}

/// What a loop round found.
enum Round {
    /// Work may be waiting: go again at once.
    MoreWork,
    /// Nothing left for now: wait for the poll interval.
    Idle,
}

/// Waits for a wake-up or the poll interval, or returns false when shutting down.
async fn idle(engine: &Engine, wake: &Notify, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = wake.notified() => true,
        _ = tokio::time::sleep(engine.config.poll_interval) => true,
    }
}

/// Logs a failed round and waits before the next, or returns false when
/// shutting down.
pub(super) async fn back_off(
    loop_name: &str,
    error: StoreError,
    shutdown: &CancellationToken,
) -> bool {
    warn!(engine_loop = loop_name, error = %error, cause = ?std::error::Error::source(&error), "engine round failed");
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}
