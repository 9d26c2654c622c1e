//! Claims chunks of Active jobs (several of a job's at once when its work is
//! quick, see [`ClaimSizes`]), runs their tasks with bounded concurrency and
//! records the results in one transaction per claim. The claim's leases are
//! renewed while its tasks run; a worker that dies stops renewing and its
//! chunks are taken over once the leases expire.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};
use uuid::Uuid;

use super::gate::ChunkRun;
use super::{Engine, Round, Wakers, run_rounds};
use crate::domain::{AccountId, Effect, JobId, Operation};
use crate::domain::{Task, TaskResult};
use crate::objects::{LocalOperation, TaskOperation, TaskOutcome};
use crate::store::{ClaimedChunk, StoreError, tasks};

pub(super) async fn run(
    engine: Engine,
    permits: Arc<Semaphore>,
    sizes: Arc<Mutex<ClaimSizes>>,
    shutdown: CancellationToken,
) {
    let owner = Uuid::new_v4();
    // The account served last: the next claim goes to the account after it.
    let last_account = Mutex::new(None);
    // Whether the last claim found nothing.
    let idle = AtomicBool::new(false);
    run_rounds(
        &engine,
        "worker",
        &engine.wakers.workers,
        &shutdown,
        || async {
            Ok(
                if work_once(&engine, owner, &permits, &last_account, &sizes, &idle).await? {
                    Round::MoreWork
                } else {
                    Round::Idle
                },
            )
        },
    )
    .await;
}

/// How long the tasks of one claim should take to run. A claim of quick
/// work takes more chunks at once, so that a job's results are recorded
/// in fewer, larger transactions (every commit of one job's results waits
/// for the one before it on the job's row); slow work stays at one chunk
/// per claim, so that it spreads over every worker and process.
const CLAIM_TARGET: Duration = Duration::from_millis(250);

/// The most chunks one claim takes.
const MAX_CLAIM_CHUNKS: u32 = 32;

/// Jobs whose claim size is remembered; past this many the sizes start
/// afresh.
const REMEMBERED_JOBS: usize = 256;

/// The process's claim size for each job it ran lately (see
/// [`CLAIM_TARGET`]): one chunk at first, doubled after a claim whose
/// tasks all ran in under half the target, halved after one that took
/// longer than the target.
#[derive(Debug, Default)]
pub(super) struct ClaimSizes {
    chunks: HashMap<JobId, u32>,
}

impl ClaimSizes {
    /// The sizes other than one, by job, as a claim takes them.
    fn sizes(&self) -> Vec<(JobId, u32)> {
        self.chunks.iter().map(|(&job, &n)| (job, n)).collect()
    }

    /// Learns from a claim of `claimed` chunks of `job` whose started tasks
    /// ran in `took`; `all_ran` is false when some were handed back. A
    /// quick claim that found fewer chunks than asked for (the job's last
    /// ones) leaves the size as it was.
    fn learn(&mut self, job: JobId, claimed: usize, took: Duration, all_ran: bool) {
        let claimed = u32::try_from(claimed).unwrap_or(MAX_CLAIM_CHUNKS).max(1);
        let current = self.chunks.get(&job).copied().unwrap_or(1);
        let next = if !all_ran || took > CLAIM_TARGET {
            (claimed / 2).max(1)
        } else if took < CLAIM_TARGET / 2 && claimed >= current {
            current.saturating_mul(2).min(MAX_CLAIM_CHUNKS)
        } else {
            current
        };
        if next <= 1 {
            self.chunks.remove(&job);
            return;
        }
        if self.chunks.len() >= REMEMBERED_JOBS && !self.chunks.contains_key(&job) {
            self.chunks.clear();
        }
        self.chunks.insert(job, next);
    }
}

/// Runs one claim if there is one; returns whether there was.
async fn work_once(
    engine: &Engine,
    owner: Uuid,
    permits: &Semaphore,
    last_account: &Mutex<Option<AccountId>>,
    sizes: &Mutex<ClaimSizes>,
    idle: &AtomicBool,
) -> Result<bool, StoreError> {
    let client = engine.store.client().await?;
    // An idle worker polls every poll interval, and is woken by commands
    // that start no task: it first asks whether any job runs tasks at all,
    // which costs the database far less than a claim.
    if idle.load(Ordering::Relaxed) && !tasks::any_job_runs_tasks(&client).await? {
        return Ok(false);
    }
    let after = last_account
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let known = sizes.lock().unwrap_or_else(|e| e.into_inner()).sizes();
    let claimed =
        tasks::claim_chunks(&client, owner, engine.config.lease, after.as_ref(), &known).await?;
    idle.store(claimed.is_none(), Ordering::Relaxed);
    let Some(chunk) = claimed else {
        return Ok(false);
    };
    *last_account.lock().unwrap_or_else(|e| e.into_inner()) = Some(chunk.account_id.clone());
    debug!(job_id = %chunk.job_id, chunks = ?chunk.chunk_numbers, tasks = chunk.tasks.len(), "chunks claimed");
    // Registered first, then the status looked at once: a stop that
    // committed after the claim is seen one way or the other.
    let gate = engine.gate.open(chunk.job_id);
    if !tasks::status(&client, chunk.job_id).await?.runs_tasks() {
        gate.stop();
    }
    // The connection goes back to the pool while the tasks run.
    drop(client);
    let first_chunk = chunk.chunk_numbers.first().copied().unwrap_or_default();
    let span = info_span!("chunk", job_id = %chunk.job_id, chunk = first_chunk);
    let started = Instant::now();
    let run = tokio::select! {
        run = run_tasks(engine, &chunk, permits, &gate).instrument(span) => run,
        lost = renew_lease(engine, &chunk, owner) => {
            warn!(job_id = %chunk.job_id, chunk = first_chunk, lost = ?lost.err(), "chunk lease lost; abandoning it");
            return Ok(true);
        }
        () = watch_status(engine, &chunk, &gate) => unreachable!("the status watch never returns"),
    };
    let took = started.elapsed();
    let unstarted = chunk.tasks.get(run.started).map(|task| task.number);
    sizes.lock().unwrap_or_else(|e| e.into_inner()).learn(
        chunk.job_id,
        chunk.chunk_numbers.len(),
        took,
        unstarted.is_none(),
    );
    let mut client = engine.store.client().await?;
    match tasks::complete_chunk(
        &mut client,
        &chunk,
        owner,
        &run.results,
        unstarted,
        Utc::now(),
    )
    .await?
    {
        Some((job, decision)) => {
            // These results took the job out of Active (it failed or
            // finished): the job's other chunks here start nothing more.
            if decision.effects.contains(&Effect::StopTaskStarts) {
                engine.gate.stop(job.id);
            }
            if !job.status.runs_tasks() {
                Wakers::wake(&engine.wakers.finisher);
            }
        }
        None => {
            warn!(job_id = %chunk.job_id, chunk = first_chunk, "chunk lease lost before its results were recorded");
        }
    }
    Ok(true)
}

/// What running a claim produced: the results of the tasks that started,
/// which are always the claim's first `started` tasks.
struct ChunkOutcome {
    results: Vec<TaskResult>,
    started: usize,
}

/// Starts the chunk's tasks strictly in order, each once a process-wide
/// permit is free (at most `task_concurrency` run at once), and stops
/// starting them once the gate says so or the chunk's slice of time is
/// over; tasks already started finish. File
/// work on a directory store goes a run of tasks per permit, on one
/// blocking thread, instead of a thread hand-off for every file step.
async fn run_tasks(
    engine: &Engine,
    chunk: &ClaimedChunk,
    permits: &Semaphore,
    gate: &ChunkRun,
) -> ChunkOutcome {
    let operation = engine.operations.for_operation(
        chunk.job_id,
        &chunk.operation,
        chunk.bucket_grant.as_ref(),
    );
    let local = operation.local();
    let per_permit = if local.is_some() {
        local_run_length(chunk.tasks.len(), engine.config.task_concurrency)
    } else {
        1
    };
    let mut running = FuturesUnordered::new();
    let mut results = Vec::with_capacity(chunk.tasks.len());
    let mut started = 0;
    let slice = tokio::time::sleep(engine.config.chunk_slice);
    tokio::pin!(slice);
    let mut slice_over = false;
    loop {
        let may_start = started < chunk.tasks.len() && !gate.is_stopped() && !slice_over;
        tokio::select! {
            permit = permits.acquire(), if may_start => {
                let Ok(permit) = permit else { break };
                if gate.is_stopped() {
                    continue;
                }
                let end = (started + per_permit).min(chunk.tasks.len());
                let run = TaskRun {
                    engine,
                    spec: &chunk.operation,
                    operation: operation.as_ref(),
                    permits,
                    gate,
                };
                running.push(run.tasks(&chunk.tasks[started..end], local.clone(), permit));
                started = end;
            }
            Some(done) = running.next(), if !running.is_empty() => results.extend(done),
            () = &mut slice, if may_start => {
                debug!(started, rest = chunk.tasks.len() - started, "chunk slice over; the rest is handed back");
                slice_over = true;
            }
            else => break,
        }
    }
    ChunkOutcome { results, started }
}

/// The most tasks one blocking thread runs in a row.
const MAX_LOCAL_RUN: usize = 32;

/// How many tasks of a chunk of `tasks` one permit runs as file work: the
/// chunk spread over the permits, so that all of them are used, in runs
/// short enough that a stopped job stops soon.
fn local_run_length(tasks: usize, concurrency: usize) -> usize {
    tasks.div_ceil(concurrency.max(1)).clamp(1, MAX_LOCAL_RUN)
}

/// What running some of a chunk's tasks needs.
#[derive(Clone, Copy)]
struct TaskRun<'a> {
    engine: &'a Engine,
    spec: &'a Operation,
    operation: &'a dyn TaskOperation,
    permits: &'a Semaphore,
    gate: &'a ChunkRun,
}

impl<'a> TaskRun<'a> {
    /// Runs `tasks` on `permit` (one after another, on one blocking thread
    /// when the operation is `local`), then retries each transient failure
    /// on permits of its own; gives every task's result.
    async fn tasks(
        self,
        tasks: &'a [Task],
        local: Option<Arc<dyn LocalOperation>>,
        permit: SemaphorePermit<'a>,
    ) -> Vec<TaskResult> {
        let first = match local {
            Some(local) => run_blocking(local, tasks.to_vec()).await,
            None => {
                let mut outcomes = Vec::with_capacity(tasks.len());
                for task in tasks {
                    let started = Instant::now();
                    let outcome = self.operation.run(task).await;
                    outcomes.push((outcome, started.elapsed()));
                }
                outcomes
            }
        };
        drop(permit);
        let mut results = Vec::with_capacity(tasks.len());
        for (task, (outcome, took)) in tasks.iter().zip(first) {
            let retrying = Instant::now();
            let outcome = self.retried(task, outcome).await;
            let result = outcome.into_result(task);
            self.engine.metrics.task_finished(
                self.spec,
                result.succeeded,
                took + retrying.elapsed(),
            );
            results.push(result);
        }
        results
    }

    /// Retries a transient failure with exponential backoff and full
    /// jitter (each retry waits for a permit of its own); the last
    /// attempt's outcome is the result. No retry starts once the job has
    /// left Active.
    async fn retried(&self, task: &Task, mut outcome: TaskOutcome) -> TaskOutcome {
        let config = &self.engine.config;
        let mut attempt = 1;
        while outcome.retryable && attempt < config.task_max_attempts && !self.gate.is_stopped() {
            let delay = retry_delay(attempt, config.retry_base_delay, config.retry_max_delay);
            debug!(task = task.number, attempt, ?delay, error = ?outcome.error_code, "retrying task");
            tokio::time::sleep(delay).await;
            let _permit = self.permits.acquire().await;
            // The job may have left Active while this task waited.
            if self.gate.is_stopped() {
                break;
            }
            self.engine.metrics.task_retried(self.spec);
            outcome = self.operation.run(task).await;
            attempt += 1;
        }
        outcome
    }
}

/// Runs `tasks` one after another on one blocking thread, with how long
/// each took.
async fn run_blocking(
    local: Arc<dyn LocalOperation>,
    tasks: Vec<Task>,
) -> Vec<(TaskOutcome, Duration)> {
    let count = tasks.len();
    tokio::task::spawn_blocking(move || local.run_all(&tasks))
        .await
        .unwrap_or_else(|_| {
            // A panic in file work: each task is tried again on its own.
            let failed =
                TaskOutcome::failure(500, "InternalError", "the operation stopped unexpectedly")
                    .retryable();
            vec![(failed, Duration::ZERO); count]
        })
}

/// The fallback of the gate: stops the chunk once its job is no longer
/// Active (cancelled, failing, pausing), checking every poll interval, in
/// case a notification was missed.
async fn watch_status(engine: &Engine, chunk: &ClaimedChunk, gate: &ChunkRun) {
    let every = engine.config.poll_interval;
    loop {
        tokio::time::sleep(every).await;
        let status = match engine.store.client().await {
            Ok(client) => tasks::status(&client, chunk.job_id).await,
            Err(error) => Err(error),
        };
        if matches!(status, Ok(status) if !status.runs_tasks()) {
            gate.stop();
        }
    }
}

/// A random delay up to `base × 2^(attempt-1)`, capped at `max`.
fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Renews the claim's leases every third of their length; returns only when
/// one was lost (the rest are then handed back) or could not be renewed.
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

    #[test]
    fn quick_claims_grow_and_slow_ones_shrink_per_job() {
        let (fast, slow) = (JobId(Uuid::from_u128(1)), JobId(Uuid::from_u128(2)));
        let mut sizes = ClaimSizes::default();
        // What a claim of `job` asks for: its size, else one (the SQL's default).
        let asked = |sizes: &ClaimSizes, job: JobId| {
            sizes
                .sizes()
                .into_iter()
                .find(|(id, _)| *id == job)
                .map_or(1, |(_, n)| n)
        };
        assert_eq!(asked(&sizes, fast), 1, "an unknown job gets one chunk");
        for expected in [2, 4, 8, 16, 32, 32, 32] {
            let claimed = asked(&sizes, fast) as usize;
            sizes.learn(fast, claimed, Duration::from_millis(5), true);
            assert_eq!(asked(&sizes, fast), expected);
        }
        // The job's last chunks: fewer found than asked for, size kept.
        sizes.learn(fast, 3, Duration::from_millis(1), true);
        assert_eq!(asked(&sizes, fast), 32);
        // Too slow: halved; handed back: halved.
        sizes.learn(fast, 32, CLAIM_TARGET * 2, true);
        assert_eq!(asked(&sizes, fast), 16);
        sizes.learn(fast, 16, Duration::from_millis(1), false);
        assert_eq!(asked(&sizes, fast), 8);
        // Between half the target and the target: unchanged.
        sizes.learn(fast, 8, CLAIM_TARGET * 3 / 4, true);
        assert_eq!(asked(&sizes, fast), 8);
        // Another job's slowness does not touch it, and stays at one.
        for _ in 0..5 {
            sizes.learn(slow, 1, Duration::from_secs(2), true);
        }
        assert_eq!(asked(&sizes, slow), 1);
        assert_eq!(asked(&sizes, fast), 8);
    }

    #[test]
    fn claim_sizes_forget_jobs_past_a_bound() {
        let mut sizes = ClaimSizes::default();
        for n in 0..(REMEMBERED_JOBS as u128 * 3) {
            sizes.learn(JobId(Uuid::from_u128(n)), 1, Duration::ZERO, true);
            assert!(sizes.chunks.len() <= REMEMBERED_JOBS);
        }
    }

    #[test]
    fn file_work_spreads_a_chunk_over_every_permit_in_short_runs() {
        assert_eq!(local_run_length(256, 16), 16);
        assert_eq!(local_run_length(250, 16), 16);
        assert_eq!(local_run_length(10, 16), 1);
        assert_eq!(local_run_length(0, 16), 1);
        assert_eq!(local_run_length(100_000, 16), MAX_LOCAL_RUN);
        assert_eq!(local_run_length(256, 0), MAX_LOCAL_RUN);
    }
}
