//! Job commands, the event log and the `jobs` projection.

use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::GenericClient;
use postgres_types::{Json, ToSql};
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::{
    EVENTS_CHANNEL, StoreError, cached, error::During, run, select, select_one, select_opt,
    select_planned,
};
use crate::domain::{
    self, AccountId, Command, Decision, EVENT_SCHEMA_VERSION, Effect, Event, Job, JobCreated,
    JobId, JobSpec, JobStatus,
};

/// Names the lock that serialises appends to `job_events` until commit.
const APPEND_LOCK: i64 = 0x6261_7463_6865_7631;
const JOB_CREATED: &str = "JobCreated";

const INSERT_JOB: &str = "
    INSERT INTO jobs (job_id, account_id, client_request_token, request_fingerprint,
                      status, priority, created_at, version, state)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (account_id, client_request_token) DO NOTHING
    RETURNING job_id";
const SELECT_BY_TOKEN: &str = "
    SELECT job_id, request_fingerprint FROM jobs
    WHERE account_id = $1 AND client_request_token = $2";
// With an account, another account's job is not even read: it takes the
// same path as a job that does not exist.
const LOCK_JOB: &str = "
    SELECT state FROM jobs
    WHERE job_id = $1 AND ($2::text IS NULL OR account_id = $2)
    FOR UPDATE";
/// The job row as task results lock it: enough to update it and to keep
/// other writers out, but not status changes' `FOR UPDATE`, so claims
/// (which take `FOR KEY SHARE`) do not wait behind result commits.
const LOCK_JOB_FOR_RESULTS: &str = "
    SELECT state FROM jobs WHERE job_id = $1
    FOR NO KEY UPDATE";
const SELECT_JOB: &str = "
    SELECT state FROM jobs WHERE job_id = $1 AND ($2::text IS NULL OR account_id = $2)";
const UPDATE_JOB: &str = "
    UPDATE jobs SET status = $2, priority = $3, version = $4, state = $5 WHERE job_id = $1";
const INSERT_EVENT: &str = "
    INSERT INTO job_events (job_id, sequence, event_type, schema_version, payload, recorded_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING position";
const TAKE_APPEND_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
const DELETE_CHUNKS: &str = "DELETE FROM task_chunks WHERE job_id = $1";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const LIST_JOBS: &str = "
    SELECT state FROM jobs
    WHERE account_id = $1
      AND (cardinality($2::text[]) = 0 OR status = ANY($2))
      AND ($3::timestamptz IS NULL OR (created_at, job_id) < ($3, $4))
    ORDER BY created_at DESC, job_id DESC
    LIMIT $5";
const ACCOUNT_EVENTS_AFTER: &str = "
    SELECT e.job_id, e.sequence, e.position, e.event_type, e.schema_version, e.payload, e.recorded_at
    FROM job_events e JOIN jobs j ON j.job_id = e.job_id
    WHERE e.position > $1 AND j.account_id = $2
      AND (cardinality($3::uuid[]) = 0 OR e.job_id = ANY($3))
    ORDER BY e.position
    LIMIT $4";
const ALL_EVENTS_AFTER: &str = "
    SELECT e.job_id, e.sequence, e.position, e.event_type, e.schema_version, e.payload, e.recorded_at,
           j.account_id
    FROM job_events e JOIN jobs j ON j.job_id = e.job_id
    WHERE e.position > $1
    ORDER BY e.position
    LIMIT $2";
const LAST_POSITION: &str = "SELECT coalesce(max(position), 0) FROM job_events";

const COUNT_BY_STATUS: &str = "SELECT status, count(*) FROM jobs GROUP BY status";
const JOB_IDS_AFTER: &str = "
    SELECT job_id FROM jobs WHERE job_id > $1 ORDER BY job_id LIMIT $2";
const ORPHAN_STREAMS: &str = "
    SELECT DISTINCT e.job_id FROM job_events e
    WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = e.job_id)";
const REPLACE_STATE: &str = "
    UPDATE jobs SET status = $2, priority = $3, version = $4, state = $5 WHERE job_id = $1";
const EVENTS_AFTER: &str = "
    SELECT job_id, sequence, position, event_type, schema_version, payload, recorded_at
    FROM job_events
    WHERE job_id = $1 AND sequence > $2
    ORDER BY sequence
    LIMIT $3";

/// One stored event as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The job.
    pub job_id: JobId,
    /// The event's place in the job's stream, dense from 1.
    pub sequence: u64,
    /// The event's place in the whole log.
    pub position: i64,
    /// When it was committed.
    pub recorded_at: DateTime<Utc>,
    /// The schema version of its payload.
    pub schema_version: u16,
    /// What happened.
    pub event: LoggedEvent,
}

/// The payload of a stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum LoggedEvent {
    /// The job was created.
    Created(Box<JobCreated>),
    /// Anything after.
    Changed(Event),
}

impl LoggedEvent {
    /// The stored `event_type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            LoggedEvent::Created(_) => JOB_CREATED,
            LoggedEvent::Changed(event) => event.type_name(),
        }
    }
}

/// A page of ListJobs.
#[derive(Debug)]
pub struct JobPage {
    /// The jobs of the page.
    pub jobs: Vec<Job>,
    /// The sort key of the last job, when more jobs follow.
    pub next: Option<(DateTime<Utc>, Uuid)>,
}

/// `now` at the precision the log keeps (microseconds), so that the projection
/// and a replay of the log agree to the last digit.
fn log_time(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6)
}

/// Creates a job, or returns the job an earlier request with the same token
/// created. Returns the id and whether this call created it. With a
/// notification endpoint, the job's status changes are POSTed there from
/// its creation on (see [`super::notifications`]).
pub async fn create(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    spec: &JobSpec,
    fingerprint: &str,
    notification_endpoint: Option<super::notifications::NotificationEndpoint<'_>>,
    now: DateTime<Utc>,
) -> Result<(JobId, bool), StoreError> {
    let now = log_time(now);
    let tx = client.transaction().await.during("BEGIN")?;
    let created = domain::create(spec.clone());
    let job = domain::created(id, &created, now);
    let inserted = select_opt(
        &tx,
        "INSERT_JOB",
        INSERT_JOB,
        &[
            &id.0,
            &spec.account_id.0,
            &spec.client_request_token,
            &fingerprint,
            &job.status.as_str(),
            &job.priority,
            &now,
            &(job.version as i64),
            &Json(&job),
        ],
    )
    .await?;
    if inserted.is_none() {
        let row = select_one(
            &tx,
            "SELECT_BY_TOKEN",
            SELECT_BY_TOKEN,
            &[&spec.account_id.0, &spec.client_request_token],
        )
        .await?;
        let existing = JobId(row.get(0));
        let stored_fingerprint: String = row.get(1);
        return if stored_fingerprint == fingerprint {
            Ok((existing, false))
        } else {
            Err(StoreError::TokenReused(existing))
        };
    }
    run(&tx, "TAKE_APPEND_LOCK", TAKE_APPEND_LOCK, &[&APPEND_LOCK]).await?;
    select_one(
        &tx,
        "INSERT_EVENT",
        INSERT_EVENT,
        &[
            &id.0,
            &1i64,
            &JOB_CREATED,
            &(EVENT_SCHEMA_VERSION as i16),
            &serde_json::to_value(&created)?,
            &now,
        ],
    )
    .await?;
    if let Some(endpoint) = notification_endpoint {
        super::notifications::register(&tx, id, &spec.account_id, &endpoint, now).await?;
    }
    run(&tx, "NOTIFY", NOTIFY, &[&EVENTS_CHANNEL, &id.to_string()]).await?;
    tx.commit().await.during("COMMIT")?;
    Ok((id, true))
}

/// Locks a job's row for the rest of the transaction and reads it. With an
/// account, a job of another account is reported as not found.
pub async fn lock(
    tx: &deadpool_postgres::Transaction<'_>,
    id: JobId,
    account: Option<&AccountId>,
) -> Result<Job, StoreError> {
    let account = account.map(|account| account.0.as_str());
    let row = select_opt(tx, "LOCK_JOB", LOCK_JOB, &[&id.0, &account]).await?;
    found(row, id)
}

/// Locks a job's row to record task results on it (see
/// `LOCK_JOB_FOR_RESULTS`) and reads it.
pub async fn lock_for_results(
    tx: &deadpool_postgres::Transaction<'_>,
    id: JobId,
) -> Result<Job, StoreError> {
    let row = select_opt(tx, "LOCK_JOB_FOR_RESULTS", LOCK_JOB_FOR_RESULTS, &[&id.0]).await?;
    found(row, id)
}

/// Reads a job, through the connection's statement cache: one round trip
/// (Bind and Execute) instead of two (Parse, then Bind and Execute), since
/// reads such as DescribeJob come often.
pub async fn load(
    client: &deadpool_postgres::Client,
    id: JobId,
    account: Option<&AccountId>,
) -> Result<Job, StoreError> {
    let account = account.map(|account| account.0.as_str());
    let row = select_opt(client, "SELECT_JOB", SELECT_JOB, &[&id.0, &account]).await?;
    found(row, id)
}

fn found(row: Option<Row>, id: JobId) -> Result<Job, StoreError> {
    let Some(row) = row else {
        return Err(StoreError::NotFound(id));
    };
    let Json(job): Json<Job> = row.try_get(0)?;
    Ok(job)
}

/// Runs one command in its own transaction and returns the job after it and
/// the decision (events and effects; the store's own effects are carried
/// out, the engine's are the caller's). Retries a bounded number of times
/// on conflict.
pub async fn execute(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    account: Option<&AccountId>,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<(Job, Decision), StoreError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let outcome = async {
            let tx = client.transaction().await.during("BEGIN")?;
            let job = lock(&tx, id, account).await?;
            let outcome = record(&tx, job, command, now).await?;
            tx.commit().await.during("COMMIT")?;
            Ok(outcome)
        }
        .await;
        match outcome {
            Err(StoreError::Conflict) if attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Decides `command` against a job locked in `tx`, appends the events,
/// rewrites the projection and carries out the effects that are the store's
/// (releasing an ended job's chunks). The caller commits, and carries out
/// the effects that are the engine's.
pub async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    mut job: Job,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<(Job, Decision), StoreError> {
    let now = log_time(now);
    let decision = domain::decide(&job, command, now)?;
    if decision.events.is_empty() {
        return Ok((job, decision));
    }
    let mut appends = Vec::new();
    for event in &decision.events {
        domain::apply(&mut job, event, now);
        if event.is_logged_in_job_stream() {
            job.version += 1;
            appends.push((
                job.version as i64,
                event.type_name(),
                serde_json::to_value(event)?,
            ));
        }
    }
    let mut release_chunks = false;
    for effect in &decision.effects {
        match effect {
            Effect::ReleaseChunks => release_chunks = true,
            // The engine's: in this process through its task gate, in
            // others through the NOTIFY below.
            Effect::StopTaskStarts => {}
        }
    }
    let append_lock = cached(tx, TAKE_APPEND_LOCK, "TAKE_APPEND_LOCK").await?;
    let insert = cached(tx, INSERT_EVENT, "INSERT_EVENT").await?;
    let update = cached(tx, UPDATE_JOB, "UPDATE_JOB").await?;
    let delete = cached(tx, DELETE_CHUNKS, "DELETE_CHUNKS").await?;
    let notify = cached(tx, NOTIFY, "NOTIFY").await?;
    let (id, schema_version) = (job.id.0, EVENT_SCHEMA_VERSION as i16);
    let (status, version, state) = (job.status.as_str(), job.version as i64, Json(&job));
    let channel_payload = job.id.to_string();
    let insert_params: Vec<[&(dyn ToSql + Sync); 6]> = appends
        .iter()
        .map(
            |(sequence, event_type, payload)| -> [&(dyn ToSql + Sync); 6] {
                [&id, sequence, event_type, &schema_version, payload, &now]
            },
        )
        .collect();
    let lock_params: [&(dyn ToSql + Sync); 1] = [&APPEND_LOCK];
    let update_params: [&(dyn ToSql + Sync); 5] = [&id, &status, &job.priority, &version, &state];
    let delete_params: [&(dyn ToSql + Sync); 1] = [&id];
    let notify_params: [&(dyn ToSql + Sync); 2] = [&EVENTS_CHANNEL, &channel_payload];
    // The statements after the row lock go out together, in one round trip:
    // PostgreSQL runs them in the order sent, and the first failure (which
    // aborts the ones after it) is the one reported.
    let mut steps = Vec::new();
    if !appends.is_empty() {
        steps.push(("TAKE_APPEND_LOCK", tx.execute(&append_lock, &lock_params)));
    }
    for params in &insert_params {
        steps.push(("INSERT_EVENT", tx.execute(&insert, params)));
    }
    steps.push(("UPDATE_JOB", tx.execute(&update, &update_params)));
    if release_chunks {
        steps.push(("DELETE_CHUNKS", tx.execute(&delete, &delete_params)));
    }
    if !appends.is_empty() {
        steps.push(("NOTIFY", tx.execute(&notify, &notify_params)));
    }
    let outcomes = futures::future::join_all(
        steps
            .into_iter()
            .map(|(label, step)| async move { step.await.during(label) }),
    )
    .await;
    for outcome in outcomes {
        outcome?;
    }
    Ok((job, decision))
}

/// A page of an account's jobs, newest first.
pub async fn list(
    client: &impl GenericClient,
    account: &AccountId,
    statuses: &[JobStatus],
    page_size: usize,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<JobPage, StoreError> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let (after_time, after_id) = after.unzip();
    let rows = select_planned(
        client,
        "LIST_JOBS",
        LIST_JOBS,
        &[
            &account.0,
            &statuses,
            &after_time,
            &after_id,
            &(page_size as i64 + 1),
        ],
    )
    .await?;
    let mut jobs = rows
        .iter()
        .map(|row| row.try_get::<_, Json<Job>>(0).map(|Json(job)| job))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if jobs.len() > page_size {
        jobs.truncate(page_size);
        jobs.last().map(|job| (job.created_at, job.id.0))
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

/// Up to `limit` events of a job with a sequence above `after`, in order.
pub async fn events_after(
    client: &impl GenericClient,
    id: JobId,
    after: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = select(
        client,
        "EVENTS_AFTER",
        EVENTS_AFTER,
        &[&id.0, &(after as i64), &(limit as i64)],
    )
    .await?;
    rows.iter().map(decode_event).collect()
}

/// Decodes a stored event, reading every schema version still supported.
fn decode_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let event_type: String = row.try_get("event_type")?;
    let schema_version: i16 = row.try_get("schema_version")?;
    let payload: serde_json::Value = row.try_get("payload")?;
    if schema_version != EVENT_SCHEMA_VERSION as i16 {
        return Err(StoreError::Corrupt(format!(
            "event {event_type} has unknown schema version {schema_version}"
        )));
    }
    let event = if event_type == JOB_CREATED {
        LoggedEvent::Created(Box::new(serde_json::from_value(payload)?))
    } else {
        LoggedEvent::Changed(serde_json::from_value(payload)?)
    };
    Ok(RecordedEvent {
        job_id: JobId(row.try_get("job_id")?),
        sequence: row.try_get::<_, i64>("sequence")? as u64,
        position: row.try_get("position")?,
        recorded_at: row.try_get("recorded_at")?,
        schema_version: schema_version as u16,
        event,
    })
}

/// Up to `limit` events of an account's jobs (or only of `job_ids`) after
/// log position `after`, in position order. Appends commit in position order
/// (see the module doc), so a reader never skips an event committed later.
pub async fn account_events_after(
    client: &impl GenericClient,
    account: &AccountId,
    job_ids: &[JobId],
    after: i64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let ids: Vec<Uuid> = job_ids.iter().map(|id| id.0).collect();
    let rows = select_planned(
        client,
        "ACCOUNT_EVENTS_AFTER",
        ACCOUNT_EVENTS_AFTER,
        &[&after, &account.0, &ids, &(limit as i64)],
    )
    .await?;
    rows.iter().map(decode_event).collect()
}

/// Up to `limit` events of every job after log position `after`, in log
/// order, each with the account that owns its job.
pub async fn all_events_after(
    client: &impl GenericClient,
    after: i64,
    limit: usize,
) -> Result<Vec<(AccountId, RecordedEvent)>, StoreError> {
    let rows = select_planned(
        client,
        "ALL_EVENTS_AFTER",
        ALL_EVENTS_AFTER,
        &[&after, &(limit as i64)],
    )
    .await?;
    rows.iter()
        .map(|row| Ok((AccountId(row.try_get("account_id")?), decode_event(row)?)))
        .collect()
}

/// The position of the newest committed event (0 for an empty log).
pub async fn last_position(client: &impl GenericClient) -> Result<i64, StoreError> {
    Ok(select_one(client, "LAST_POSITION", LAST_POSITION, &[])
        .await?
        .try_get(0)?)
}

/// How many jobs are in each status (statuses without jobs are absent).
pub async fn count_by_status(
    client: &impl GenericClient,
) -> Result<Vec<(JobStatus, i64)>, StoreError> {
    let rows = select(client, "COUNT_BY_STATUS", COUNT_BY_STATUS, &[]).await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let status = JobStatus::parse(&name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {name:?}")))?;
            Ok((status, row.try_get(1)?))
        })
        .collect()
}

/// Up to `limit` job ids above `after`, in id order.
pub async fn job_ids_after(
    client: &Client,
    after: Uuid,
    limit: usize,
) -> Result<Vec<JobId>, StoreError> {
    let rows = client
        .query(JOB_IDS_AFTER, &[&after, &(limit as i64)])
        .await
        .during("JOB_IDS_AFTER")?;
    rows.iter().map(|row| Ok(JobId(row.try_get(0)?))).collect()
}

/// Jobs that have events but no projection row.
pub async fn orphan_streams(client: &Client) -> Result<Vec<JobId>, StoreError> {
    let rows = client
        .query(ORPHAN_STREAMS, &[])
        .await
        .during("ORPHAN_STREAMS")?;
    rows.iter().map(|row| Ok(JobId(row.try_get(0)?))).collect()
}

/// Overwrites a job's projection with `job` (a replay of its log).
pub async fn replace_projection(client: &Client, job: &Job) -> Result<(), StoreError> {
    client
        .execute(
            REPLACE_STATE,
            &[
                &job.id.0,
                &job.status.as_str(),
                &job.priority,
                &(job.version as i64),
                &Json(job),
            ],
        )
        .await
        .during("REPLACE_STATE")?;
    Ok(())
}
