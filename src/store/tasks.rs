//! Tasks, chunks and task results: the SQL of the engine.
//!
//! The preparer COPYs tasks and chunk rows inside one transaction that holds
//! the job's advisory lock, so a preparer that dies leaves nothing behind and
//! the lock itself says that preparation is in flight. Workers claim whole
//! chunks, one or several of a job's at once, with `FOR UPDATE SKIP LOCKED`
//! and a lease; the transaction that records a claim's results deletes the
//! rows of the chunks that ran, COPYs one result per task (the primary key
//! refuses a second) and records the counts on the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use futures::pin_mut;
use postgres_types::{Json, Type};
use tokio_postgres::{Transaction, binary_copy::BinaryCopyInWriter};
use uuid::Uuid;

use super::{
    PROGRESS_CHANNEL, StoreError, cached, error::During, jobs, run, select, select_one, select_opt,
    select_planned,
};
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
/// lets one account's job hold the workers while another's waits. The
/// job's lowest free chunks are leased together: as many as `$5`/`$6` (job
/// ids and counts) say for the job, else one.
///
/// The job is chosen first, by one index probe per running job for a free
/// chunk (in key order with a `LIMIT`, so that the planner neither turns
/// the probes into a scan of every chunk nor reads a job's whole key range
/// into a bitmap), and then its lowest free chunks by the chunks' primary
/// key: a claim costs the same whether the job has ten chunks left or ten
/// thousand (sorting every free chunk of every running job made each claim
/// of a large job cost milliseconds). When other workers are claiming the
/// chosen job's last free chunks, this claim finds nothing and the worker
/// looks again on its next round. The job's operation is read once, from
/// the claimed job only.
///
/// The job row is held `FOR KEY SHARE`: a status change (`FOR UPDATE`)
/// waits for the claim, or the claim for it and then sees the new status,
/// so a finisher never ends a job while a claim of it is in flight; result
/// commits (`FOR NO KEY UPDATE`) and claims do not wait for each other.
// Cheap next to CLAIM_CHUNKS, whose plan is made afresh on every call.
const ANY_JOB_IN_STATUSES: &str = "
    SELECT EXISTS (SELECT 1 FROM jobs WHERE status = ANY($1))";
const CLAIM_CHUNKS: &str = "
    WITH job AS (
        SELECT j.job_id
        FROM jobs j
        CROSS JOIN LATERAL (
            SELECT 1 FROM task_chunks f
            WHERE f.job_id = j.job_id
              AND (f.lease_expires_at IS NULL OR f.lease_expires_at < now())
            ORDER BY f.chunk_number
            LIMIT 1
        ) free
        WHERE j.status = ANY($4)
        ORDER BY j.account_id <= coalesce($3, ''), j.account_id,
                 j.priority DESC, j.created_at, j.job_id
        LIMIT 1
    ), candidate AS (
        SELECT c.job_id, c.chunk_number
        FROM task_chunks c JOIN jobs j ON j.job_id = c.job_id
        WHERE c.job_id = (SELECT job_id FROM job)
          AND j.status = ANY($4)
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now())
        ORDER BY c.chunk_number
        LIMIT (SELECT coalesce(
            (SELECT s.chunks FROM unnest($5::uuid[], $6::integer[]) AS s(job_id, chunks)
             WHERE s.job_id = (SELECT job_id FROM job)),
            1))
        FOR UPDATE OF c SKIP LOCKED
        FOR KEY SHARE OF j
    ), leased AS (
        UPDATE task_chunks c
        SET lease_owner = $1,
            lease_expires_at = now() + make_interval(secs => $2),
            attempts = c.attempts + 1
        FROM candidate
        WHERE c.job_id = candidate.job_id AND c.chunk_number = candidate.chunk_number
        RETURNING c.job_id, c.chunk_number, c.first_task, c.task_count
    )
    SELECT j.job_id, j.account_id,
           j.state -> 'spec' -> 'operation', j.state -> 'spec' -> 'bucket_grant',
           array_agg(l.chunk_number ORDER BY l.chunk_number),
           array_agg(l.first_task ORDER BY l.chunk_number),
           array_agg(l.task_count ORDER BY l.chunk_number)
    FROM leased l JOIN jobs j ON j.job_id = l.job_id
    GROUP BY j.job_id, j.account_id, j.state";
/// The tasks numbered `[$2, $3)` of a job, in order.
const TASKS_IN: &str = "
    SELECT task_number, bucket, key, version_id FROM tasks
    WHERE job_id = $1 AND task_number >= $2 AND task_number < $3
    ORDER BY task_number";
const EXTEND_LEASES: &str = "
    UPDATE task_chunks SET lease_expires_at = now() + make_interval(secs => $4)
    WHERE job_id = $1 AND chunk_number = ANY($2) AND lease_owner = $3";
const RELEASE_CHUNKS: &str = "
    DELETE FROM task_chunks WHERE job_id = $1 AND chunk_number = ANY($2) AND lease_owner = $3";
const SHRINK_CHUNK: &str = "
    UPDATE task_chunks
    SET first_task = $4, task_count = $5, lease_owner = NULL, lease_expires_at = NULL
    WHERE job_id = $1 AND chunk_number = $2 AND lease_owner = $3";
const HAND_BACK_CHUNKS: &str = "
    UPDATE task_chunks SET lease_owner = NULL, lease_expires_at = NULL
    WHERE job_id = $1 AND chunk_number = ANY($2) AND lease_owner = $3";
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

/// Chunks of one job leased together by one worker: a claim.
#[derive(Debug, Clone)]
pub struct ClaimedChunk {
    /// The chunks' job.
    pub job_id: JobId,
    /// The job's account.
    pub account_id: AccountId,
    /// The chunks' numbers within the job, ascending.
    pub chunk_numbers: Vec<i64>,
    /// Each chunk's first task and task count, in the same order.
    ranges: Vec<(i64, i32)>,
    /// The job's operation.
    pub operation: Operation,
    /// The buckets the job may use, when its token limited them.
    pub bucket_grant: Option<BucketGrant>,
    /// The chunks' tasks, in task order.
    pub tasks: Vec<Task>,
}

impl ClaimedChunk {
    /// The failures among `results` of this claim's tasks, by error code.
    fn errors(&self, results: &[TaskResult]) -> ErrorSummary {
        ErrorSummary::of(
            results
                .iter()
                .filter(|r| !r.succeeded)
                .filter_map(|result| {
                    let index = self
                        .tasks
                        .binary_search_by_key(&result.task_number, |task| task.number)
                        .ok()?;
                    let object = &self.tasks[index].object;
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

    /// What finishing the claim does to each chunk when the tasks from
    /// number `unstarted` on never started (`None`: every task ran): chunks
    /// whose tasks all ran are released, the chunk where the unstarted
    /// tasks begin shrinks to them, and chunks after it are handed back
    /// whole.
    fn split_at(&self, unstarted: Option<i64>) -> ChunkEnds {
        let mut ends = ChunkEnds::default();
        for (&number, &(first, count)) in self.chunk_numbers.iter().zip(&self.ranges) {
            let end = first + i64::from(count);
            match unstarted {
                Some(next) if next <= first => ends.handed_back.push(number),
                Some(next) if next < end => ends.shrunk = Some((number, next, (end - next) as i32)),
                _ => ends.released.push(number),
            }
        }
        ends
    }
}

/// How a claim's chunks end (see [`ClaimedChunk::split_at`]).
#[derive(Debug, Default, PartialEq)]
struct ChunkEnds {
    released: Vec<i64>,
    /// The chunk, its first unstarted task and how many there are.
    shrunk: Option<(i64, i64, i32)>,
    handed_back: Vec<i64>,
}

/// Takes the job's preparation lock for the rest of `tx`; false when another
/// transaction holds it.
pub async fn try_lock_job(tx: &impl GenericClient, id: JobId) -> Result<bool, StoreError> {
    let row = select_one(
        tx,
        "TRY_JOB_LOCK",
        TRY_JOB_LOCK,
        &[&PREPARATION_LOCK_SPACE, &id.0.to_string()],
    )
    .await?;
    Ok(row.try_get(0)?)
}

/// The current status of a job, read outside any lock.
pub async fn status(
    client: &impl deadpool_postgres::GenericClient,
    id: JobId,
) -> Result<JobStatus, StoreError> {
    let row = select_opt(client, "JOB_STATUS", JOB_STATUS, &[&id.0])
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let name: String = row.try_get(0)?;
    JobStatus::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("unknown status {name}")))
}

/// Whether any job runs tasks: an idle worker asks this before it tries
/// to claim chunks.
pub async fn any_job_runs_tasks(client: &impl GenericClient) -> Result<bool, StoreError> {
    let rows = select_planned(
        client,
        "ANY_JOB_IN_STATUSES",
        ANY_JOB_IN_STATUSES,
        &[&names(JobStatus::runs_tasks)],
    )
    .await?;
    Ok(super::only_row(rows, "ANY_JOB_IN_STATUSES")?.try_get(0)?)
}

/// Jobs in any of `statuses`, highest priority first.
pub async fn jobs_in(
    client: &impl GenericClient,
    statuses: &[JobStatus],
    limit: usize,
) -> Result<Vec<JobId>, StoreError> {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let rows = select_planned(
        client,
        "JOBS_IN_STATUSES",
        JOBS_IN_STATUSES,
        &[&names, &(limit as i64)],
    )
    .await?;
    rows.iter().map(|row| Ok(JobId(row.try_get(0)?))).collect()
}

/// Jobs waiting to be prepared (New, or Preparing in a process that may
/// have died), with their accounts, in turns between accounts.
pub async fn jobs_to_prepare(
    client: &impl GenericClient,
    limit: usize,
) -> Result<Vec<(JobId, AccountId)>, StoreError> {
    let rows = select_planned(
        client,
        "JOBS_TO_PREPARE",
        JOBS_TO_PREPARE,
        &[&names(JobStatus::awaits_preparation), &(limit as i64)],
    )
    .await?;
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

/// Leases free chunks of the next job in turn, as many as `sizes` (job,
/// chunks) says for it, else one (see `CLAIM_CHUNKS`), and reads their
/// tasks.
pub async fn claim_chunks(
    client: &deadpool_postgres::Client,
    owner: Uuid,
    lease: Duration,
    after_account: Option<&AccountId>,
    sizes: &[(JobId, u32)],
) -> Result<Option<ClaimedChunk>, StoreError> {
    let (jobs, counts): (Vec<Uuid>, Vec<i32>) = sizes
        .iter()
        .map(|(job, chunks)| (job.0, (*chunks).clamp(1, i32::MAX as u32) as i32))
        .unzip();
    let after_account = after_account.map(|account| account.0.as_str());
    let claim = cached(client, CLAIM_CHUNKS, "CLAIM_CHUNKS").await?;
    let Some(row) = client
        .query_opt(
            &claim,
            &[
                &owner,
                &lease.as_secs_f64(),
                &after_account,
                &names(JobStatus::runs_tasks),
                &jobs,
                &counts,
            ],
        )
        .await
        .during("CLAIM_CHUNKS")?
    else {
        return Ok(None);
    };
    let job_id = JobId(row.try_get(0)?);
    let account_id = AccountId(row.try_get(1)?);
    // The job's operation and grant come with the claim, read once.
    let Json(operation): Json<Operation> = row.try_get(2)?;
    let grant: Option<Json<Option<BucketGrant>>> = row.try_get(3)?;
    let bucket_grant = grant.and_then(|Json(grant)| grant);
    let chunk_numbers: Vec<i64> = row.try_get(4)?;
    let firsts: Vec<i64> = row.try_get(5)?;
    let counts: Vec<i32> = row.try_get(6)?;
    // One range read per run of adjacent chunks, all sent at once.
    let read = cached(client, TASKS_IN, "TASKS_IN").await?;
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for (&first, &count) in firsts.iter().zip(&counts) {
        let end = first + i64::from(count);
        match runs.last_mut() {
            Some(run) if run.1 == first => run.1 = end,
            _ => runs.push((first, end)),
        }
    }
    let reads = runs.iter().map(|(first, end)| async {
        client
            .query(&read, &[&job_id.0, first, end])
            .await
            .during("TASKS_IN")
    });
    let mut tasks = Vec::new();
    for rows in futures::future::try_join_all(reads).await? {
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
    }
    let expected: i64 = counts.iter().map(|&count| i64::from(count)).sum();
    if tasks.len() as i64 != expected {
        return Err(StoreError::Corrupt(format!(
            "chunks {chunk_numbers:?} of job {job_id} hold {} tasks, not {expected}",
            tasks.len()
        )));
    }
    Ok(Some(ClaimedChunk {
        job_id,
        account_id,
        chunk_numbers,
        ranges: firsts.into_iter().zip(counts).collect(),
        operation,
        bucket_grant,
        tasks,
    }))
}

/// Extends the leases of a claim still held by `owner`; false when any was
/// lost, and then the claim's chunks still held are handed back at once
/// (their tasks run again in a later claim) instead of staying leased to a
/// worker that abandons them.
pub async fn extend_lease(
    client: &deadpool_postgres::Client,
    claim: &ClaimedChunk,
    owner: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let extend = cached(client, EXTEND_LEASES, "EXTEND_LEASES").await?;
    let updated = client
        .execute(
            &extend,
            &[
                &claim.job_id.0,
                &claim.chunk_numbers,
                &owner,
                &lease.as_secs_f64(),
            ],
        )
        .await
        .during("EXTEND_LEASES")?;
    if updated == claim.chunk_numbers.len() as u64 {
        return Ok(true);
    }
    hand_back(client, claim.job_id, &claim.chunk_numbers, owner).await?;
    Ok(false)
}

/// Hands back whichever of the job's chunks `numbers` `owner` still holds,
/// whole and unleased, for a later claim; gives how many.
async fn hand_back(
    client: &impl deadpool_postgres::GenericClient,
    job: JobId,
    numbers: &[i64],
    owner: Uuid,
) -> Result<u64, StoreError> {
    let hand_back = cached(client, HAND_BACK_CHUNKS, "HAND_BACK_CHUNKS").await?;
    client
        .execute(&hand_back, &[&job.0, &numbers, &owner])
        .await
        .during("HAND_BACK_CHUNKS")
}

/// Records a claim's results in one transaction: releases its chunks,
/// appends one result row per task and records the counts on the job
/// (which may finish or fail it). `unstarted` is the first of the claim's
/// last tasks that never started: its chunk shrinks to them and later
/// chunks are handed back, for a later claim. Returns `None` when a lease
/// was lost, in which case no result is written and the chunks still held
/// are handed back; else the job after the results and the decision they
/// made.
pub async fn complete_chunk(
    client: &mut deadpool_postgres::Client,
    claim: &ClaimedChunk,
    owner: Uuid,
    results: &[TaskResult],
    unstarted: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<(Job, Decision)>, StoreError> {
    let tx = client.transaction().await.during("BEGIN")?;
    let id = &claim.job_id.0;
    let ends = claim.split_at(unstarted);
    let mut ended = 0;
    if !ends.released.is_empty() {
        let release = cached(&tx, RELEASE_CHUNKS, "RELEASE_CHUNKS").await?;
        ended += tx
            .execute(&release, &[id, &ends.released, &owner])
            .await
            .during("RELEASE_CHUNKS")?;
    }
    if let Some((number, first_task, count)) = ends.shrunk {
        let shrink = cached(&tx, SHRINK_CHUNK, "SHRINK_CHUNK").await?;
        ended += tx
            .execute(&shrink, &[id, &number, &owner, &first_task, &count])
            .await
            .during("SHRINK_CHUNK")?;
    }
    if !ends.handed_back.is_empty() {
        ended += hand_back(&tx, claim.job_id, &ends.handed_back, owner).await?;
    }
    if ended != claim.chunk_numbers.len() as u64 {
        tx.rollback().await.during("ROLLBACK")?;
        hand_back(client, claim.job_id, &claim.chunk_numbers, owner).await?;
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
                id,
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
    // Queued until the commit; sent before the job row is locked, so that
    // the lock is held for as few round trips as possible.
    let notify = cached(&tx, NOTIFY_PROGRESS, "NOTIFY_PROGRESS").await?;
    let payload = super::progress_payload(claim.job_id, &claim.account_id);
    tx.execute(&notify, &[&PROGRESS_CHANNEL, &payload])
        .await
        .during("NOTIFY_PROGRESS")?;
    // The job row is locked last: the commits of one job's results wait
    // for each other here, never during the COPY above.
    let job = jobs::lock_for_results(&tx, claim.job_id).await?;
    let succeeded = results.iter().filter(|r| r.succeeded).count() as u64;
    let failed = results.len() as u64 - succeeded;
    let (job, decision) = jobs::record(
        &tx,
        job,
        &Command::RecordTaskResults {
            succeeded,
            failed,
            errors: claim.errors(results),
        },
        now,
    )
    .await?;
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
    let live: i64 = select_one(&tx, "LIVE_CHUNKS", LIVE_CHUNKS, &[&id.0])
        .await?
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
pub async fn take_scheduler_lock(tx: &impl GenericClient) -> Result<(), StoreError> {
    run(
        tx,
        "TAKE_SCHEDULER_LOCK",
        TAKE_SCHEDULER_LOCK,
        &[&SCHEDULER_LOCK],
    )
    .await?;
    Ok(())
}

/// Every job that holds or waits for an active slot.
pub async fn slot_candidates(tx: &impl GenericClient) -> Result<Vec<SlotCandidate>, StoreError> {
    let rows = select_planned(
        tx,
        "SLOT_CANDIDATES",
        SLOT_CANDIDATES,
        &[&names(JobStatus::competes_for_slot)],
    )
    .await?;
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
    client: &impl GenericClient,
    cutoff: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<JobId>, StoreError> {
    let rows = select_planned(
        client,
        "SUSPENDED_SINCE_BEFORE",
        SUSPENDED_SINCE_BEFORE,
        &[
            &cutoff,
            &(limit as i64),
            &names(JobStatus::awaits_confirmation),
        ],
    )
    .await?;
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
    client: &impl GenericClient,
    id: JobId,
    window: std::ops::Range<i64>,
    filter: &ResultFilter,
) -> Result<Vec<(TaskRow, TaskResult)>, StoreError> {
    let rows = select(
        client,
        "RESULTS_WINDOW",
        RESULTS_WINDOW,
        &[
            &id.0,
            &window.start,
            &window.end,
            &filter.succeeded,
            &filter.error_code,
        ],
    )
    .await?;
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
pub async fn is_drained(
    client: &mut deadpool_postgres::Client,
    id: JobId,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await.during("BEGIN")?;
    if !try_lock_job(&tx, id).await? {
        return Ok(false);
    }
    let live: i64 = select_one(&tx, "LIVE_CHUNKS", LIVE_CHUNKS, &[&id.0])
        .await?
        .try_get(0)?;
    Ok(live == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(chunks: &[(i64, i64, i32)]) -> ClaimedChunk {
        ClaimedChunk {
            job_id: JobId(Uuid::nil()),
            account_id: AccountId("a".into()),
            chunk_numbers: chunks.iter().map(|c| c.0).collect(),
            ranges: chunks.iter().map(|c| (c.1, c.2)).collect(),
            operation: Operation::DeleteObject,
            bucket_grant: None,
            tasks: Vec::new(),
        }
    }

    #[test]
    fn a_claim_releases_what_ran_shrinks_where_the_rest_begins_and_hands_back_the_rest() {
        // Chunks 3, 4 and 6 (5 was another worker's): tasks 30..40, 40..50, 60..70.
        let claim = claim(&[(3, 30, 10), (4, 40, 10), (6, 60, 10)]);
        let ends = |released: &[i64], shrunk, handed_back: &[i64]| ChunkEnds {
            released: released.to_vec(),
            shrunk,
            handed_back: handed_back.to_vec(),
        };
        // (first unstarted task, how the chunks end)
        let cases = [
            (None, ends(&[3, 4, 6], None, &[])),
            (Some(45), ends(&[3], Some((4, 45, 5)), &[6])),
            // The rest begins where a chunk begins: nothing shrinks.
            (Some(60), ends(&[3, 4], None, &[6])),
            (Some(30), ends(&[], None, &[3, 4, 6])),
            (Some(69), ends(&[3, 4], Some((6, 69, 1)), &[])),
        ];
        for (unstarted, expected) in cases {
            assert_eq!(
                claim.split_at(unstarted),
                expected,
                "rest from {unstarted:?}"
            );
        }
    }
}
