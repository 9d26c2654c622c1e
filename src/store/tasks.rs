//! Tasks, chunks and task results: the SQL of the engine.
//!
//! The preparer COPYs tasks and chunk rows inside one transaction that holds
//! the job's advisory lock, so a preparer that dies leaves nothing behind and
//! the lock itself says that preparation is in flight. Workers claim whole
//! chunks with `FOR UPDATE SKIP LOCKED` and a lease; the transaction that
//! records a chunk's results deletes its row, COPYs one result per task
//! (the primary key refuses a second) and records the counts on the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::pin_mut;
use postgres_types::{Json, Type};
use tokio_postgres::{Client, Transaction, binary_copy::BinaryCopyInWriter};
use uuid::Uuid;

use super::{PROGRESS_CHANNEL, StoreError, cached, error::During, jobs};
use crate::domain::{
    AccountId, BucketGrant, Command, Decision, ErrorSample, ErrorSummary, Job, JobId, JobStatus,
    Operation, SlotCandidate, Task, TaskResult, TaskRow,
};

/// Namespace of the per-job advisory lock held while a job is prepared.
const PREPARATION_LOCK_SPACE: i32 = 0x6270;

const TRY_JOB_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))";
const COPY_TASKS: &str =
    "COPY tasks (job_id, task_number, bucket, key, version_id) FROM STDIN BINARY";
const COPY_CHUNKS: &str =
    "COPY task_chunks (job_id, chunk_number, first_task, task_count) FROM STDIN BINARY";
const COPY_RESULTS: &str = "COPY task_results (job_id, task_number, succeeded, http_status_code, \
     error_code, result_message, recorded_at) FROM STDIN BINARY";
const JOB_STATUS: &str = "SELECT status FROM jobs WHERE job_id = $1";
const JOBS_IN_STATUSES: &str = "
    SELECT job_id FROM jobs WHERE status = ANY($1)
    ORDER BY priority DESC, created_at, job_id LIMIT $2";
/// Jobs waiting for preparation, taken in turns between accounts: every
/// account's first job (by priority, then age) before any account's second,
/// and within a turn the longest-waiting first.
const JOBS_TO_PREPARE: &str = "
    SELECT job_id, account_id FROM (
        SELECT job_id, account_id, created_at,
               row_number() OVER (PARTITION BY account_id
                                  ORDER BY priority DESC, created_at, job_id) AS turn
        FROM jobs WHERE status = ANY($1)
    ) waiting
    ORDER BY turn, created_at, job_id
    LIMIT $2";
/// Accounts take turns: the next account after `$3` (in account order,
/// wrapping around) that has a claimable chunk is served, and within it the
/// highest-priority job. Priority orders an account's own jobs; it never
/// lets one account's job hold the workers while another's waits.
///
/// The job row is held `FOR KEY SHARE`: a status change (`FOR UPDATE`)
/// waits for the claim, or the claim for it and then sees the new status,
/// so a finisher never ends a job while a claim of it is in flight; result
/// commits (`FOR NO KEY UPDATE`) and claims do not wait for each other.
const CLAIM_CHUNK: &str = "
    WITH candidate AS (
        SELECT c.job_id, c.chunk_number
        FROM task_chunks c JOIN jobs j ON j.job_id = c.job_id
        WHERE j.status = ANY($4)
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now())
        ORDER BY j.account_id <= coalesce($3, ''), j.account_id,
                 j.priority DESC, j.created_at, c.chunk_number
        LIMIT 1
        FOR UPDATE OF c SKIP LOCKED
        FOR KEY SHARE OF j
    )
    UPDATE task_chunks c
    SET lease_owner = $1,
        lease_expires_at = now() + make_interval(secs => $2),
        attempts = c.attempts + 1
    FROM candidate JOIN jobs j ON j.job_id = candidate.job_id
    WHERE c.job_id = candidate.job_id AND c.chunk_number = candidate.chunk_number
    RETURNING c.job_id, c.chunk_number, c.first_task, c.task_count, j.account_id,
              j.state -> 'spec' -> 'operation', j.state -> 'spec' -> 'bucket_grant'";
const CHUNK_TASKS: &str = "
    SELECT task_number, bucket, key, version_id FROM tasks
    WHERE job_id = $1 AND task_number >= $2 AND task_number < $2 + $3
    ORDER BY task_number";
const EXTEND_LEASE: &str = "
    UPDATE task_chunks SET lease_expires_at = now() + make_interval(secs => $4)
    WHERE job_id = $1 AND chunk_number = $2 AND lease_owner = $3";
const RELEASE_CHUNK: &str = "
    DELETE FROM task_chunks WHERE job_id = $1 AND chunk_number = $2 AND lease_owner = $3";
const SHRINK_CHUNK: &str = "
    UPDATE task_chunks
    SET first_task = $4, task_count = $5, lease_owner = NULL, lease_expires_at = NULL
    WHERE job_id = $1 AND chunk_number = $2 AND lease_owner = $3";
const LIVE_CHUNKS: &str = "
    SELECT count(*) FROM task_chunks
    WHERE job_id = $1 AND lease_expires_at IS NOT NULL AND lease_expires_at >= now()";
const DELETE_CHUNKS: &str = "DELETE FROM task_chunks WHERE job_id = $1";
const SUSPENDED_SINCE_BEFORE: &str = "
    SELECT job_id FROM jobs
    WHERE status = ANY($3) AND (state ->> 'suspended_time')::timestamptz <= $1
    LIMIT $2";
/// A window of task numbers `[$2, $3)` of a job's results, with their
/// objects. Both tables are bounded by the window, so a read costs the
/// window whatever the planner thinks of the tables (statistics taken
/// before a large job was written would otherwise make it hash and sort the
/// whole job for every page).
const RESULTS_WINDOW: &str = "
    SELECT r.task_number, t.bucket, t.key, t.version_id, r.succeeded, r.http_status_code,
           r.error_code, r.result_message
    FROM task_results r
    JOIN tasks t ON t.job_id = r.job_id AND t.task_number = r.task_number
    WHERE r.job_id = $1 AND r.task_number >= $2 AND r.task_number < $3
      AND t.job_id = $1 AND t.task_number >= $2 AND t.task_number < $3
      AND ($4::boolean IS NULL OR r.succeeded = $4)
      AND ($5::text IS NULL OR r.error_code = $5)
    ORDER BY r.task_number";
const NOTIFY_PROGRESS: &str = "SELECT pg_notify($1, $2)";
const DELETE_TASKS: &str = "DELETE FROM tasks WHERE job_id = $1";
/// Names the lock under which slot decisions are made.
const SCHEDULER_LOCK: i64 = 0x6261_7463_6873_6368;
const TAKE_SCHEDULER_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
const SLOT_CANDIDATES: &str = "
    SELECT job_id, account_id, status, priority, created_at FROM jobs
    WHERE status = ANY($1)";

/// A chunk leased by one worker.
#[derive(Debug, Clone)]
pub struct ClaimedChunk {
    /// The chunk's job.
    pub job_id: JobId,
    /// The job's account.
    pub account_id: AccountId,
    /// The chunk's number within the job.
    pub chunk_number: i64,
    /// The job's operation.
    pub operation: Operation,
    /// The buckets the job may use, when its token limited them.
    pub bucket_grant: Option<BucketGrant>,
    /// The chunk's tasks, in order.
    pub tasks: Vec<Task>,
}

impl ClaimedChunk {
    /// The failures among `results` of this chunk's tasks, by error code.
    fn errors(&self, results: &[TaskResult]) -> ErrorSummary {
        let first = self.tasks.first().map_or(0, |task| task.number);
        ErrorSummary::of(
            results
                .iter()
                .filter(|r| !r.succeeded)
                .filter_map(|result| {
                    let index = usize::try_from(result.task_number - first).ok()?;
                    let object = &self.tasks.get(index)?.object;
                    Some((
                        result.error_code.clone().unwrap_or_default(),
                        ErrorSample::new(
                            result.task_number,
                            &object.bucket,
                            &object.key,
                            object.version_id.as_deref(),
                            result.result_message.as_deref(),
                        ),
                    ))
                }),
        )
    }
}

/// Takes the job's preparation lock for the rest of `tx`; false when another
/// transaction holds it.
pub async fn try_lock_job(tx: &Transaction<'_>, id: JobId) -> Result<bool, StoreError> {
    let row = tx
        .query_one(TRY_JOB_LOCK, &[&PREPARATION_LOCK_SPACE, &id.0.to_string()])
        .await
        .during("TRY_JOB_LOCK")?;
    Ok(row.try_get(0)?)
}

/// The current status of a job, read outside any lock.
pub async fn status(
    client: &impl deadpool_postgres::GenericClient,
    id: JobId,
) -> Result<JobStatus, StoreError> {
    let statement = cached(client, JOB_STATUS, "JOB_STATUS").await?;
    let row = client
        .query_opt(&statement, &[&id.0])
        .await
        .during("JOB_STATUS")?
        .ok_or(StoreError::NotFound(id))?;
    let name: String = row.try_get(0)?;
    JobStatus::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("unknown status {name}")))
}

/// Jobs in any of `statuses`, highest priority first.
pub async fn jobs_in(
    client: &Client,
    statuses: &[JobStatus],
    limit: usize,
) -> Result<Vec<JobId>, StoreError> {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let rows = client
        .query(JOBS_IN_STATUSES, &[&names, &(limit as i64)])
        .await
        .during("JOBS_IN_STATUSES")?;
    rows.iter().map(|row| Ok(JobId(row.try_get(0)?))).collect()
}

/// Jobs waiting to be prepared (New, or Preparing in a process that may
/// have died), with their accounts, in turns between accounts.
pub async fn jobs_to_prepare(
    client: &Client,
    limit: usize,
) -> Result<Vec<(JobId, AccountId)>, StoreError> {
    let rows = client
        .query(
            JOBS_TO_PREPARE,
            &[&names(JobStatus::awaits_preparation), &(limit as i64)],
        )
        .await
        .during("JOBS_TO_PREPARE")?;
    rows.iter()
        .map(|row| Ok((JobId(row.try_get(0)?), AccountId(row.try_get(1)?))))
        .collect()
}

/// Where the next tasks and chunks of a job being prepared are numbered from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreparedCount {
    /// Tasks written so far.
    pub tasks: i64,
    /// Chunks written so far.
    pub chunks: i64,
}

/// Appends `rows` as tasks to a job being prepared in `tx`, split into chunks
/// of at most `chunk_size`, numbered on from `from`; returns the numbering
/// after them.
pub async fn copy_tasks(
    tx: &Transaction<'_>,
    id: JobId,
    from: PreparedCount,
    rows: &[TaskRow],
    chunk_size: usize,
) -> Result<PreparedCount, StoreError> {
    let sink = tx.copy_in(COPY_TASKS).await.during("COPY_TASKS")?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::UUID, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT],
    );
    pin_mut!(writer);
    for (offset, row) in rows.iter().enumerate() {
        let number = from.tasks + offset as i64;
        writer
            .as_mut()
            .write(&[&id.0, &number, &row.bucket, &row.key, &row.version_id])
            .await
            .during("COPY_TASKS")?;
    }
    writer.finish().await.during("COPY_TASKS")?;

    let sink = tx.copy_in(COPY_CHUNKS).await.during("COPY_CHUNKS")?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::UUID, Type::INT8, Type::INT8, Type::INT4]);
    pin_mut!(writer);
    let mut next = from;
    for chunk in rows.chunks(chunk_size) {
        writer
            .as_mut()
            .write(&[&id.0, &next.chunks, &next.tasks, &(chunk.len() as i32)])
            .await
            .during("COPY_CHUNKS")?;
        next.tasks += chunk.len() as i64;
        next.chunks += 1;
    }
    writer.finish().await.during("COPY_CHUNKS")?;
    Ok(next)
}

/// Leases the next chunk to run, if any: of the next account after
/// `after_account` with work, its highest-priority Active job's.
pub async fn claim_chunk(
    client: &deadpool_postgres::Client,
    owner: Uuid,
    lease: Duration,
    after_account: Option<&AccountId>,
) -> Result<Option<ClaimedChunk>, StoreError> {
    let after_account = after_account.map(|account| account.0.as_str());
    let claim = cached(client, CLAIM_CHUNK, "CLAIM_CHUNK").await?;
    let Some(row) = client
        .query_opt(
            &claim,
            &[
                &owner,
                &lease.as_secs_f64(),
                &after_account,
                &names(JobStatus::runs_tasks),
            ],
        )
        .await
        .during("CLAIM_CHUNK")?
    else {
        return Ok(None);
    };
    let job_id = JobId(row.try_get(0)?);
    let chunk_number: i64 = row.try_get(1)?;
    let first_task: i64 = row.try_get(2)?;
    let task_count: i32 = row.try_get(3)?;
    let account_id = AccountId(row.try_get(4)?);
    // The job's operation and grant come with the claim, read once.
    let Json(operation): Json<Operation> = row.try_get(5)?;
    let grant: Option<Json<Option<BucketGrant>>> = row.try_get(6)?;
    let bucket_grant = grant.and_then(|Json(grant)| grant);
    let chunk_tasks = cached(client, CHUNK_TASKS, "CHUNK_TASKS").await?;
    let rows = client
        .query(
            &chunk_tasks,
            &[&job_id.0, &first_task, &i64::from(task_count)],
        )
        .await
        .during("CHUNK_TASKS")?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        tasks.push(Task {
            number: row.try_get(0)?,
            object: TaskRow {
                bucket: row.try_get(1)?,
                key: row.try_get(2)?,
                version_id: row.try_get(3)?,
            },
        });
    }
    if tasks.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "chunk {chunk_number} of job {job_id} has no tasks"
        )));
    }
    Ok(Some(ClaimedChunk {
        job_id,
        account_id,
        chunk_number,
        operation,
        bucket_grant,
        tasks,
    }))
}

/// Extends a lease still held by `owner`; false when it was lost.
pub async fn extend_lease(
    client: &Client,
    chunk: &ClaimedChunk,
    owner: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let updated = client
        .execute(
            EXTEND_LEASE,
            &[
                &chunk.job_id.0,
                &chunk.chunk_number,
                &owner,
                &lease.as_secs_f64(),
            ],
        )
        .await
        .during("EXTEND_LEASE")?;
    Ok(updated == 1)
}

/// Records a chunk's results in one transaction: releases the chunk, appends
/// one result row per task and records the counts on the job (which may
/// finish or fail it). `unstarted` (first task, count) are the chunk's last
/// tasks that never started: the chunk shrinks to them and is released for a
/// later claim instead of being deleted. Returns `None` when the lease was
/// lost, in which case nothing is written; else the job after the results
/// and the decision they made.
pub async fn complete_chunk(
    client: &mut deadpool_postgres::Client,
    chunk: &ClaimedChunk,
    owner: Uuid,
    results: &[TaskResult],
    unstarted: Option<(i64, usize)>,
    now: DateTime<Utc>,
) -> Result<Option<(Job, Decision)>, StoreError> {
    let tx = client.transaction().await.during("BEGIN")?;
    let (id, number) = (&chunk.job_id.0, &chunk.chunk_number);
    let released = match unstarted {
        None => {
            let release = cached(&tx, RELEASE_CHUNK, "RELEASE_CHUNK").await?;
            tx.execute(&release, &[id, number, &owner])
                .await
                .during("RELEASE_CHUNK")?
        }
        Some((first_task, count)) => {
            let count = count as i32;
            let shrink = cached(&tx, SHRINK_CHUNK, "SHRINK_CHUNK").await?;
            tx.execute(&shrink, &[id, number, &owner, &first_task, &count])
                .await
                .during("SHRINK_CHUNK")?
        }
    };
    if released == 0 {
        return Ok(None);
    }
    let copy = cached(&tx, COPY_RESULTS, "COPY_RESULTS").await?;
    let sink = tx.copy_in(&copy).await.during("COPY_RESULTS")?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::INT8,
            Type::BOOL,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ],
    );
    pin_mut!(writer);
    for result in results {
        writer
            .as_mut()
            .write(&[
                &chunk.job_id.0,
                &result.task_number,
                &result.succeeded,
                &result.http_status_code,
                &result.error_code,
                &result.result_message,
                &now,
            ])
            .await
            .during("COPY_RESULTS")?;
    }
    writer.finish().await.during("COPY_RESULTS")?;
    // The job row is locked last, so the COPY above never holds up commands.
    let job = jobs::lock_for_results(&tx, chunk.job_id).await?;
    let succeeded = results.iter().filter(|r| r.succeeded).count() as u64;
    let failed = results.len() as u64 - succeeded;
    let (job, decision) = jobs::record(
        &tx,
        job,
        &Command::RecordTaskResults {
            succeeded,
            failed,
            errors: chunk.errors(results),
        },
        now,
    )
    .await?;
    let notify = cached(&tx, NOTIFY_PROGRESS, "NOTIFY_PROGRESS").await?;
    tx.execute(&notify, &[&PROGRESS_CHANNEL, &chunk.job_id.to_string()])
        .await
        .during("NOTIFY_PROGRESS")?;
    tx.commit().await.during("COMMIT")?;
    Ok(Some((job, decision)))
}

/// Ends a draining status when nothing of the job is in flight: no live
/// chunk lease and no preparer. Returns the job when it changed.
pub async fn finish_draining(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Option<Job>, StoreError> {
    let tx = client.transaction().await.during("BEGIN")?;
    let job = jobs::lock(&tx, id, None).await?;
    if !job.status.is_draining() || !try_lock_job(&tx, id).await? {
        return Ok(None);
    }
    let live: i64 = tx
        .query_one(LIVE_CHUNKS, &[&id.0])
        .await
        .during("LIVE_CHUNKS")?
        .try_get(0)?;
    if live > 0 {
        return Ok(None);
    }
    let job = match jobs::record(&tx, job, &Command::FinishDraining, now).await {
        Ok((job, _)) => job,
        // Its completion report is due first.
        Err(StoreError::Domain(refusal)) if refusal.is_race() => return Ok(None),
        Err(other) => return Err(other),
    };
    tx.commit().await.during("COMMIT")?;
    Ok(Some(job))
}

/// Runs an engine command on a job in its own transaction, taking the job
/// row lock; `Ok(None)` when the step no longer applies because the job
/// moved on (a race the engine expects). Any other refusal is an error.
pub async fn try_execute(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Option<Job>, StoreError> {
    match jobs::execute(client, id, None, command, now).await {
        Ok((job, _)) => Ok(Some(job)),
        Err(StoreError::Domain(refusal)) if refusal.is_race() => Ok(None),
        Err(other) => Err(other),
    }
}

/// The names of the statuses for which `test` holds, as SQL parameters:
/// every status rule stays in the domain, none is written in SQL.
fn names(test: fn(JobStatus) -> bool) -> Vec<&'static str> {
    JobStatus::all_where(test)
        .into_iter()
        .map(JobStatus::as_str)
        .collect()
}

/// Removes the tasks and chunks written so far for a job being prepared in
/// `tx` (its preparation failed).
pub async fn discard_prepared(tx: &Transaction<'_>, id: JobId) -> Result<(), StoreError> {
    tx.execute(DELETE_CHUNKS, &[&id.0])
        .await
        .during("DELETE_CHUNKS")?;
    tx.execute(DELETE_TASKS, &[&id.0])
        .await
        .during("DELETE_TASKS")?;
    Ok(())
}

/// Takes the scheduler lock for the rest of `tx`, waiting for other schedulers.
pub async fn take_scheduler_lock(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(TAKE_SCHEDULER_LOCK, &[&SCHEDULER_LOCK])
        .await
        .during("TAKE_SCHEDULER_LOCK")?;
    Ok(())
}

/// Every job that holds or waits for an active slot.
pub async fn slot_candidates(tx: &Transaction<'_>) -> Result<Vec<SlotCandidate>, StoreError> {
    let rows = tx
        .query(SLOT_CANDIDATES, &[&names(JobStatus::competes_for_slot)])
        .await
        .during("SLOT_CANDIDATES")?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get(2)?;
            Ok(SlotCandidate {
                job_id: JobId(row.try_get(0)?),
                account_id: row.try_get(1)?,
                status: JobStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
                priority: row.try_get(3)?,
                created_at: row.try_get(4)?,
            })
        })
        .collect()
}

/// Suspended jobs suspended at or before `cutoff`.
pub async fn suspended_before(
    client: &Client,
    cutoff: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<JobId>, StoreError> {
    let rows = client
        .query(
            SUSPENDED_SINCE_BEFORE,
            &[
                &cutoff,
                &(limit as i64),
                &names(JobStatus::awaits_confirmation),
            ],
        )
        .await
        .during("SUSPENDED_SINCE_BEFORE")?;
    rows.iter().map(|row| Ok(JobId(row.try_get(0)?))).collect()
}

/// Which of a job's task results a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultFilter {
    /// Only successes (`Some(true)`) or only failures (`Some(false)`).
    pub succeeded: Option<bool>,
    /// Only results with this error code.
    pub error_code: Option<String>,
}

/// The task results of a job with task numbers in `window`, in task
/// order, with their objects; only those `filter` keeps.
pub async fn results_in(
    client: &Client,
    id: JobId,
    window: std::ops::Range<i64>,
    filter: &ResultFilter,
) -> Result<Vec<(TaskRow, TaskResult)>, StoreError> {
    let rows = client
        .query(
            RESULTS_WINDOW,
            &[
                &id.0,
                &window.start,
                &window.end,
                &filter.succeeded,
                &filter.error_code,
            ],
        )
        .await
        .during("RESULTS_WINDOW")?;
    rows.iter()
        .map(|row| {
            Ok((
                TaskRow {
                    bucket: row.try_get(1)?,
                    key: row.try_get(2)?,
                    version_id: row.try_get(3)?,
                },
                TaskResult {
                    task_number: row.try_get(0)?,
                    succeeded: row.try_get(4)?,
                    http_status_code: row.try_get(5)?,
                    error_code: row.try_get(6)?,
                    result_message: row.try_get(7)?,
                },
            ))
        })
        .collect()
}

/// Whether nothing of a draining job is in flight: no preparer holds it and
/// no chunk has a live lease.
pub async fn is_drained(client: &mut deadpool_postgres::Client, id: JobId) -> Result<bool, StoreError> {
    let tx = client.transaction().await.during("BEGIN")?;
    if !try_lock_job(&tx, id).await? {
        return Ok(false);
    }
    let live: i64 = tx
        .query_one(LIVE_CHUNKS, &[&id.0])
        .await
        .during("LIVE_CHUNKS")?
        .try_get(0)?;
    Ok(live == 0)
}
